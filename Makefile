# Rapport — make help lists the targets.
GO       ?= go
BIN      := bin/rapport
PKGS     := ./...
TESTFLAGS ?= -count=1 -timeout 9m

.PHONY: help build test test-race lint generate demo bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/rapport
	$(GO) build -o $(BIN) ./cmd/rapport

test: ## run every test against the local PostgreSQL and Redis
	$(GO) test $(TESTFLAGS) $(PKGS)

test-race: ## run every test with the race detector
	$(GO) test -race $(TESTFLAGS) $(PKGS)

lint: ## go vet, gofmt, the layering check, and golangci-lint when installed
	$(GO) vet $(PKGS)
	$(GO) test -count=1 ./internal/layering/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	@if command -v golangci-lint >/dev/null 2>&1; then golangci-lint run; else echo "golangci-lint not installed; skipped"; fi

generate: ## regenerate generated code (the Windows-to-IANA zone table of calendar/microsoft)
	$(GO) generate $(PKGS)

demo: build ## run the demo against simulated Google Calendar and HubSpot
	./$(BIN) demo

bench: build ## run the Go benchmarks and the rapport bench harness
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	./$(BIN) bench

clean: ## remove build output
	rm -rf bin
