#!/usr/bin/env bash
# Runs the README's commands exactly as written: every fenced block that follows a
# `<!-- readme-test: NAME -->` line is taken from README.md (or docs/auth.md, docs/schemas.md)
# itself, so the text and the test cannot drift apart.
#
#   install        `cargo install …` into a temp CARGO_INSTALL_ROOT, which goes first on PATH
#   smoke          `fdc-kernel dev --smoke`
#   check-config   the shipped config validates
#   auth-kernel    started in the background; the test waits for the env file it writes
#   auth-producer  the walkthrough (bash -e) against it; then Postgres must hold its 2 events
#   auth-preapprove  docs/auth.md: a pre-approved key is issued at once, against the same kernel
#   schema-example   docs/schemas.md's worked example (its schema-kernel block must be auth-kernel),
#                    against the same kernel: one reading stored unvalidated, one with the schema's
#                    schema_id, one a dead letter with error=schema and the detail the doc shows
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
for name in schema-kernel schema-example schema-detail; do
  if [ -z "$(block "$name" docs/schemas.md)" ]; then
    echo "readme.sh: docs/schemas.md has no block marked readme-test: $name" >&2
    exit 1
  fi
done

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

echo "== docs/schemas.md: worked example"
# Its kernel is the README's, so the example runs against the kernel already up.
[ "$(block schema-kernel docs/schemas.md)" = "$(block auth-kernel)" ] ||
  { echo "docs/schemas.md's schema-kernel block is not the README's auth-kernel block" >&2; exit 1; }
TMPDIR="$work" timeout 120 bash -euo pipefail -c "$(block schema-example docs/schemas.md)" | tee "$work/schema.out"
schema_id=$(psql "$FDC_POSTGRES__URL" -Atc \
  "SELECT schema_id FROM schemas WHERE name = 'reading' AND version = '1.0.0'")
producer=$(psql "$FDC_POSTGRES__URL" -Atc \
  "SELECT producer_id FROM producers WHERE schema_binding = 'reading@^1'")
[ -n "$schema_id" ] && [ -n "$producer" ] ||
  { echo "no schema reading@1.0.0 ('$schema_id') or no producer bound to it ('$producer')" >&2; exit 1; }
# The first reading is stored unvalidated, the second with the schema's id ...
want="{\"temp\": 20.0} - | {\"temp\": 21.5, \"unit\": \"C\"} $schema_id"
for _ in $(seq 1 100); do
  got=$(psql "$FDC_POSTGRES__URL" -Atc "SELECT string_agg(payload::text || ' ' || coalesce(schema_id::text, '-'), ' | ' ORDER BY ts)
                                           FROM events WHERE producer_id = '$producer'")
  [ "$got" = "$want" ] && break
  sleep 0.2
done
[ "$got" = "$want" ] || { echo "stored readings: '$got', expected '$want'" >&2; exit 1; }
# ... the third is a dead letter with error=schema and the detail the doc shows ...
want=$(block schema-detail docs/schemas.md | sed "s/(schema_id [^)]*)/(schema_id $schema_id)/")
for _ in $(seq 1 100); do
  got=$(redis-cli -u "$FDC_REDIS__URL" --raw XRANGE events:dlq - + |
    awk 'prev == "error" { error = $0 } prev == "detail" && error == "schema" { print } { prev = $0 }')
  [ "$got" = "$want" ] && break
  sleep 0.2
done
[ "$got" = "$want" ] || { printf 'schema dead letters:\n%s\nexpected:\n%s\n' "$got" "$want" >&2; exit 1; }
# ... and `schema show` lists the producer under bound_producers.
sed -n '/"bound_producers"/,/]/p' "$work/schema.out" | grep -q "$producer" ||
  { echo "schema show does not list $producer under bound_producers" >&2; exit 1; }

kill -INT "$dev_pid"
wait "$dev_pid"
dev_pid=
[ ! -e "$env_file" ] || { echo "dev left $env_file behind" >&2; exit 1; }
echo "== readme: every command works as written"
