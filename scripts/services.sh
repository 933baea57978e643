#!/usr/bin/env bash
# scripts/services.sh — `make services`: PostgreSQL on 127.0.0.1:5432 and
# Redis on 127.0.0.1:6379, running, with a PostgreSQL role for the current
# user that may create databases (and roles), as `make demo` and `make test`
# need.
#
# What is missing is installed with apt-get when this user may (root, or
# sudo without a password); what is stopped is started. When it may not, it
# says in one sentence which command to run, and exits 1. Nothing is done
# when everything already runs. RAPPORT_SKIP_SERVICES=1 skips it all (for
# servers elsewhere: TEST_DATABASE_URL, TEST_REDIS_ADDR, RAPPORT_*_URL).
#
# `scripts/services.sh test` (make test) also brings promtool, which the
# checks of deploy/ run: Debian's prometheus package, whose server is
# disabled again when this script installed it only for promtool.
set -euo pipefail

for_tests=no
[ "${1:-}" = test ] && for_tests=yes

PG_PORT=5432
REDIS_PORT=6379

say() { echo "services: $*"; }
fail() { echo "services: $*" >&2; exit 1; }

if [ "${RAPPORT_SKIP_SERVICES:-}" = 1 ]; then
  say "skipped (RAPPORT_SKIP_SERVICES=1)"
  exit 0
fi

have() { command -v "$1" >/dev/null 2>&1; }

pg_running() { have pg_isready && pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
redis_running() { have redis-cli && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

user=$(id -un)
# login_ok: the current user logs in over TCP without a prompt (trust, or a
# password in ~/.pgpass) and may create databases.
login_ok() {
  have psql || return 1
  local may
  may=$(psql -w -h 127.0.0.1 -p "$PG_PORT" -d postgres -tAc \
    "SELECT rolsuper OR (rolcreatedb AND rolcreaterole) FROM pg_roles WHERE rolname = current_user" 2>/dev/null) || return 1
  [ "$may" = t ]
}

# The way to act as root: none (we are), sudo -n, or "no".
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif have sudo && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  SUDO=no
fi

tools_ok() { [ "$for_tests" = no ] || have promtool; }

if pg_running && redis_running && login_ok && tools_ok; then
  say "PostgreSQL (127.0.0.1:$PG_PORT, role $user) and Redis (127.0.0.1:$REDIS_PORT) are running"
  exit 0
fi

# ---- install what is missing
packages=()
if ! have pg_ctlcluster && ! pg_running; then packages+=(postgresql); fi
if ! have redis-server && ! redis_running; then packages+=(redis-server); fi
if ! have pg_isready || ! have psql; then
  case " ${packages[*]} " in *" postgresql "*) ;; *) packages+=(postgresql-client) ;; esac
fi
if ! have redis-cli; then
  case " ${packages[*]} " in *" redis-server "*) ;; *) packages+=(redis-tools) ;; esac
fi
if ! tools_ok; then packages+=(prometheus); fi
if [ ${#packages[@]} -gt 0 ]; then
  if ! have apt-get; then
    brew="brew install postgresql@17 redis"
    [ "$for_tests" = yes ] && brew="$brew prometheus"
    fail "${packages[*]} missing: install them with your package manager and start the services, e.g. on macOS: $brew && brew services start postgresql@17 && brew services start redis"
  fi
  if [ "$SUDO" = no ]; then
    fail "${packages[*]} missing and installing needs root: run 'sudo apt-get install -y --no-install-recommends ${packages[*]}', then make services again"
  fi
  say "installing ${packages[*]} with apt-get"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  case " ${packages[*]} " in
    *" prometheus "*)
      # Only promtool was wanted: no Prometheus server left running.
      if have systemctl && systemctl is-active --quiet prometheus 2>/dev/null; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
        say "the Prometheus server the package started is stopped and disabled (only promtool is needed)"
      fi ;;
  esac
fi

# wait_for CHECK WHAT: a started server takes a moment; the 30 s are a
# safety net, not a pause.
wait_for() {
  local i
  for i in $(seq 1 300); do
    if "$1"; then return 0; fi
    sleep 0.1
  done
  fail "$2 did not come up within 30 s; see its log"
}

# ---- start what is stopped
if ! pg_running; then
  cluster=""
  if have pg_lsclusters; then
    # "16 main 5432 down postgres /var/lib/postgresql/16/main /var/log/…": the cluster on our port.
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1 " " $2; exit}')
  fi
  [ -n "$cluster" ] || fail "PostgreSQL is installed but no cluster listens on port $PG_PORT: create one with 'sudo pg_createcluster --start 16 main' (your version), then make services again"
  if [ "$SUDO" = no ]; then
    fail "PostgreSQL is stopped and starting it needs root: run 'sudo pg_ctlcluster $cluster start', then make services again"
  fi
  say "starting PostgreSQL $cluster"
  # shellcheck disable=SC2086 # "$cluster" is version and name
  $SUDO pg_ctlcluster --skip-systemctl-redirect $cluster start
  wait_for pg_running PostgreSQL
fi
if ! redis_running; then
  say "starting Redis on 127.0.0.1:$REDIS_PORT (no persistence: a development server)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
  wait_for redis_running Redis
fi

# ---- a role for this user
if ! login_ok; then
  if [ "$SUDO" = no ]; then
    fail "PostgreSQL has no role '$user' that may log in on 127.0.0.1 and create databases: run 'sudo -u postgres createuser --superuser $user' (and allow it a password in ~/.pgpass or trust in pg_hba.conf), then make services again"
  fi
  # As the postgres superuser, over the local socket (peer authentication).
  as_postgres() {
    if [ -z "$SUDO" ]; then
      if have runuser; then runuser -u postgres -- "$@"; else su -s /bin/sh postgres -c "$(printf '%q ' "$@")"; fi
    else
      $SUDO -u postgres "$@"
    fi
  }
  if [ "$(as_postgres psql -p "$PG_PORT" -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" = 1 ]; then
    say "letting PostgreSQL role $user log in and create databases and roles"
    as_postgres psql -q -p "$PG_PORT" -d postgres -c "ALTER ROLE \"$user\" LOGIN CREATEDB CREATEROLE" >/dev/null
    login_ok || fail "PostgreSQL role $user exists but cannot log in on 127.0.0.1 without a prompt: put its password in ~/.pgpass (127.0.0.1:$PG_PORT:*:$user:PASSWORD), then make services again"
  else
    say "creating PostgreSQL role $user (its password goes to ~/.pgpass)"
    password=$(od -An -N16 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n' || true)
    [ -n "$password" ] || password="rapport$RANDOM$RANDOM$RANDOM$RANDOM"
    as_postgres psql -q -p "$PG_PORT" -d postgres -c "CREATE ROLE \"$user\" LOGIN CREATEDB CREATEROLE PASSWORD '$password'" >/dev/null
    # The password goes where psql and pgx look for it.
    pgpass="${PGPASSFILE:-$HOME/.pgpass}"
    touch "$pgpass"
    chmod 600 "$pgpass"
    printf '127.0.0.1:%s:*:%s:%s\nlocalhost:%s:*:%s:%s\n' "$PG_PORT" "$user" "$password" "$PG_PORT" "$user" "$password" >>"$pgpass"
    login_ok || fail "PostgreSQL role $user cannot log in on 127.0.0.1:$PG_PORT: let pg_hba.conf accept it (scram-sha-256 with the password in ~/.pgpass, or trust), then make services again"
  fi
fi

say "PostgreSQL (127.0.0.1:$PG_PORT, role $user) and Redis (127.0.0.1:$REDIS_PORT) are running"
