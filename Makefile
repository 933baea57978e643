# Rapport — make help lists the targets.
GO       ?= go
BIN      := bin/rapport
PKGS     := ./...
TESTFLAGS ?= -count=1 -timeout 9m

.PHONY: help build services test test-race lint generate demo bench check-deploy clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# -buildvcs=auto stamps the commit into the binary (rapport version) even
# where GOFLAGS turns stamping off.
build: ## build bin/rapport
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/rapport

services: ## make sure PostgreSQL and Redis run here (installed with apt-get when missing and allowed)
	@scripts/services.sh

test: ## run every test against the local PostgreSQL and Redis (make services, plus promtool)
	@scripts/services.sh test
	$(GO) test $(TESTFLAGS) $(PKGS)

test-race: ## run every test with the race detector
	@scripts/services.sh test
	$(GO) test -race $(TESTFLAGS) $(PKGS)

lint: ## go vet, gofmt, the layering check, and golangci-lint when installed
	$(GO) vet $(PKGS)
	$(GO) test -count=1 ./internal/layering/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	@if command -v golangci-lint >/dev/null 2>&1; then golangci-lint run; else echo "golangci-lint not installed; skipped"; fi

generate: ## regenerate generated code (the Windows-to-IANA zone table of calendar/microsoft)
	$(GO) generate $(PKGS)

demo: build services ## run the demo against simulated Google Calendar and HubSpot
	./$(BIN) demo

bench: build services ## run the Go benchmarks and the rapport bench harness
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	./$(BIN) bench

check-deploy: ## check deploy/: promtool check and test the alert rules, the dashboard's metric names
	$(GO) test -count=1 -run 'Deploy' ./internal/repocheck

clean: ## remove build output
	rm -rf bin
