#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need when it is missing
# (redis-server, PostgreSQL, openssl and prometheus, via apt-get when run as root). The tests
# start their own private Redis, Postgres and Prometheus; they never use a server already
# running on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have_postgres || missing+=(postgresql)
# The key interop tests run the real openssl on keys the kernel writes and reads.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# kernel/tests/observability.rs runs a real Prometheus; .ci/operator-checks runs promtool.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  # Postgres refuses to run as root; the harness runs it as this user.
  useradd --system --no-create-home postgres
fi

cargo test --workspace --locked

# README.md's commands, as written (installs fdc-kernel into a temp dir first).
bash scripts/readme.sh

if [ -x .ci/operator-checks ] || [ -f .ci/operator-checks ]; then
  bash .ci/operator-checks
fi
