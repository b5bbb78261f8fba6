#!/usr/bin/env bash
# Runs the README's commands exactly as written: every fenced block that follows a
# `<!-- readme-test: NAME -->` line is taken from README.md (or docs/auth.md) itself, so the
# text and the test cannot drift apart.
#
#   install        `cargo install …` into a temp CARGO_INSTALL_ROOT, which goes first on PATH
#   smoke          `fdc-kernel dev --smoke`
#   check-config   the shipped config validates
#   auth-kernel    started in the background; the test waits for the env file it writes
#   auth-producer  the walkthrough (bash -e) against it; then Postgres must hold its 2 events
#   auth-preapprove  docs/auth.md: a pre-approved key is issued at once, against the same kernel
#
# FDC_README_BIN_DIR=target/debug skips `install` and uses that directory instead (a quick
# local run; CI always installs).
set -euo pipefail
cd "$(dirname "$0")/.."

block() {
  # The fenced block after the marker line `<!-- readme-test: $1 -->` in ${2:-README.md}.
  awk -v name="$1" '
    $0 == "<!-- readme-test: " name " -->" { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "${2:-README.md}"
}

for name in install smoke check-config auth-kernel auth-producer; do
  if [ -z "$(block "$name")" ]; then
    echo "readme.sh: README.md has no block marked readme-test: $name" >&2
    exit 1
  fi
done
if [ -z "$(block auth-preapprove docs/auth.md)" ]; then
  echo "readme.sh: docs/auth.md has no block marked readme-test: auth-preapprove" >&2
  exit 1
fi

work=$(mktemp -d)
dev_pid=
cleanup() {
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -INT "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${FDC_README_BIN_DIR:-}" ]; then
  export PATH="$(cd "$FDC_README_BIN_DIR" && pwd):$PATH"
else
  export CARGO_INSTALL_ROOT="$work/install"
  export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
  echo "== readme: install"
  bash -euo pipefail -c "$(block install)"
fi
test "$(command -v fdc-kernel)" != "" || { echo "fdc-kernel is not on PATH" >&2; exit 1; }

# Nothing from the caller's environment may make the README pass by accident.
unset FDC_REDIS__URL FDC_POSTGRES__URL FDC_ADMIN_URL FDC_ADMIN_TOKEN_FILE FDC_AUTH__SIGNING_KEY FDC_CONFIG

echo "== readme: smoke"
bash -euo pipefail -c "$(block smoke)"

echo "== readme: check-config"
bash -euo pipefail -c "$(block check-config)" >/dev/null

echo "== readme: auth walkthrough"
env_file=$(block auth-kernel | sed -n 's/.*--env-file \([^ ]*\).*/\1/p')
test -n "$env_file" || { echo "the auth-kernel block names no --env-file" >&2; exit 1; }
rm -f "$env_file"
bash -euo pipefail -c "exec $(block auth-kernel)" >"$work/dev.out" 2>"$work/dev.err" &
dev_pid=$!
for _ in $(seq 1 600); do
  [ -s "$env_file" ] && break
  kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.out" "$work/dev.err" >&2; exit 1; }
  sleep 0.2
done
[ -s "$env_file" ] || { echo "no $env_file after 120s" >&2; cat "$work/dev.err" >&2; exit 1; }

TMPDIR="$work" bash -euo pipefail -c "$(block auth-producer)" | tee "$work/producer.out"

# Both published events are stored, each with its producer (the token's subject).
. "$env_file"
stored=0
for _ in $(seq 1 100); do
  stored=$(psql "$FDC_POSTGRES__URL" -Atc \
    "SELECT count(*) FROM events WHERE producer_id IS NOT NULL AND payload ? 'temp'")
  [ "$stored" = 2 ] && break
  sleep 0.2
done
if [ "$stored" != 2 ]; then
  echo "expected 2 authenticated events in Postgres, found $stored" >&2
  cat "$work/dev.err" >&2
  exit 1
fi

echo "== docs/auth.md: pre-approved key"
TMPDIR="$work" bash -euo pipefail -c "$(block auth-preapprove docs/auth.md)" | tee "$work/preapprove.out"
grep -q '^status:      issued$' "$work/preapprove.out" || { echo "the pre-approved key was not issued" >&2; exit 1; }

kill -INT "$dev_pid"
wait "$dev_pid"
dev_pid=
[ ! -e "$env_file" ] || { echo "dev left $env_file behind" >&2; exit 1; }
echo "== readme: every command works as written"
