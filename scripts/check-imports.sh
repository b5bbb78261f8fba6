#!/usr/bin/env bash
# Checks "what may import what" (docs/architecture.md, table 2.5) with grep, so an import that
# runs backwards fails CI instead of waiting for a reviewer.
#
# Inside the kernel library (kernel/src), each top-level module (a directory or a file) may
# name `crate::<module>` only for the modules in its row of RULES below, and `fdc_spill::` (the
# spill byte store, a crate of its own) only where its row names `fdc_spill`. Comment lines and
# `#[cfg(test)] mod tests { … }` (the end of a file; clippy keeps test modules last) are not
# production code and are not checked. Across crates (docs/architecture.md 2.1): the operator,
# fdc-common, fdc-testenv and fdc-spill must not name `fdc_kernel` (in code or Cargo.toml),
# fdc-common names no fdc crate, the others none but fdc-common.
#
# The edges that run backwards today are in ALLOWED_BACKWARD, each with its name in
# docs/architecture.md 1.5 (B1…B11). The migration steps remove them; an entry whose edge is
# gone is reported as stale so that the list only shrinks.
#
#   scripts/check-imports.sh               self-test, then check this tree
#   scripts/check-imports.sh --check DIR   check the tree at DIR only (a copy of the repository)
#
# The self-test copies the sources, plants `use crate::ingest::…` in the kernel's store/, then
# (each in a fresh copy) `use fdc_kernel::…` in the operator and in fdc-common, and expects the
# check to fail on exactly that edge each time.
set -euo pipefail
cd "$(dirname "$0")/.."

# module: the modules it may import (`-`: none; `*`: the library's public API, for the
# benchmark that is a binary in the target layout). fdc-common (`fdc_common::…`) is open to
# all; `config` in a row is `fdc_common::config` (the kernel has no `crate::config`);
# `fdc_spill` is the crate fdc-spill.
RULES='
entry: -
retry: -
error_chain: -
stall: -
protocol: entry config
redis_io: entry retry config
store: protocol retry config error_chain
metrics: protocol stall
health: protocol stall
supervise: protocol
readiness: health redis_io store error_chain
schemas: protocol retry config
auth: entry protocol redis_io retry metrics config error_chain schemas
ingest: entry protocol retry redis_io store auth health metrics supervise stall fdc_spill config schemas
http: health metrics redis_io store readiness
logging: config
check_config: config store redis_io auth error_chain
service: entry protocol retry redis_io store auth ingest health metrics supervise stall readiness fdc_spill http logging config error_chain schemas
dev: service config
'

# Today's backward edges (from -> to), named as in docs/architecture.md 1.5.
ALLOWED_BACKWARD='
'

# Prints "from to" for every `crate::<module>` named in production code under $1.
kernel_edges() {
  local src=$1 f mod
  while IFS= read -r f; do
    mod=${f#"$src"/}
    mod=${mod%%/*}
    mod=${mod%.rs}
    case "$mod" in lib | main | bin) continue ;; esac
    case "$f" in */tests.rs | */tests/*) continue ;; esac
    awk -v mod="$mod" '
      /^[[:space:]]*\/\// { next }
      /^[[:space:]]*#\[cfg\(test\)\]/ { cfg = 1; next }
      cfg && /^[[:space:]]*mod [a-z_]+[[:space:]]*\{/ { exit }
      { cfg = 0 }
      {
        line = $0
        # Grouped imports: `crate::{a::X, b::{Y, Z}}`, on one line or several.
        if (group || line ~ /crate::\{/) {
          if (!group) { sub(/.*crate::\{/, "", line); group = 1; depth = 1; at_item = 1 }
          n = length(line)
          for (i = 1; i <= n && group; i++) {
            c = substr(line, i, 1)
            if (depth == 1 && at_item && c ~ /[a-z_]/) {
              rest = substr(line, i)
              match(rest, /^[a-z_0-9]+/)
              print mod, substr(rest, 1, RLENGTH)
              i += RLENGTH - 1
              at_item = 0
            } else if (c == "{") { depth++ }
            else if (c == "}") { depth--; if (depth == 0) group = 0 }
            else if (c == "," && depth == 1) { at_item = 1 }
          }
          next
        }
        if (line ~ /fdc_spill::/) print mod, "fdc_spill"
        while (match(line, /crate::[a-z_0-9]+/)) {
          print mod, substr(line, RSTART + 7, RLENGTH - 7)
          line = substr(line, RSTART + RLENGTH)
        }
      }
    ' "$f"
  done < <(find "$src" -name '*.rs' | sort)
}

# Prints "from to" for the crate-level edges that must not exist: a crate named in code
# (comment lines aside) or as a dependency in Cargo.toml.
crate_names() { # dir crate-regex
  grep -rnE "\b($2)::" "$1/src" 2>/dev/null | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true
  grep -HnE "^($(tr _ - <<<"$2"))[[:space:]]*=" "$1/Cargo.toml" 2>/dev/null || true
}

# The fdc crates each crate must not name (docs/architecture.md 2.1: only the kernel may depend
# on the other fdc crates, and nothing depends on the kernel or the operator).
FORBIDDEN_CRATES_operator='fdc_kernel|fdc_spill|fdc_testenv'
FORBIDDEN_CRATES_common='fdc_kernel|fdc_operator|fdc_spill|fdc_testenv'
FORBIDDEN_CRATES_testenv='fdc_kernel|fdc_operator|fdc_spill'
FORBIDDEN_CRATES_spill='fdc_kernel|fdc_operator|fdc_testenv'

crate_edges() { # root
  local krate forbidden
  for krate in operator common testenv spill; do
    [ -f "$1/$krate/Cargo.toml" ] || continue
    forbidden="FORBIDDEN_CRATES_$krate"
    if [ -n "$(crate_names "$1/$krate" "${!forbidden}")" ]; then
      echo "$krate fdc_crate"
    fi
  done
}

allowed() { # from to
  local row
  [ "$1" = "$2" ] && return 0
  row=$(printf '%s\n' "$RULES" | awk -F': ' -v m="$1" '$1 == m { print $2 }')
  [ -n "$row" ] || return 1 # a module missing from RULES imports nothing until it is added
  [ "$row" = "*" ] && return 0
  case " $row " in *" $2 "*) return 0 ;; esac
  return 1
}

backward() { # from to: prints the B-names when allow-listed
  printf '%s\n' "$ALLOWED_BACKWARD" | awk -v a="$1" -v b="$2" '$1 == a && $2 == b { $1 = ""; $2 = ""; sub(/^ +/, ""); print; found = 1 } END { exit !found }'
}

# Checks the tree at $1 (kernel modules and crates); prints each violation, fails on any.
check() {
  local root=$1 src=$1/kernel/src edges from to bad=0 name unruled=""
  edges=$( (kernel_edges "$src"; crate_edges "$root") | sort -u)
  while read -r from to; do
    [ -n "$from" ] || continue
    if [ "$to" = fdc_crate ]; then
      local forbidden="FORBIDDEN_CRATES_$from"
      echo "check-imports: crate $from names a crate it must not depend on (docs/architecture.md 2.1):" >&2
      crate_names "$root/$from" "${!forbidden}" | head -5 | sed 's/^/  /' >&2
      bad=1
      continue
    fi
    if [ -z "$(printf '%s\n' "$RULES" | awk -F': ' -v m="$from" '$1 == m')" ]; then
      case " $unruled " in *" $from "*) ;; *)
        echo "check-imports: module '$from' is not in the rules; add its row to RULES in $0 (docs/architecture.md 2.5)" >&2
        unruled="$unruled $from"
        ;;
      esac
      bad=1
      continue
    fi
    allowed "$from" "$to" && continue
    backward "$from" "$to" >/dev/null && continue
    echo "check-imports: $from imports $to, which its row does not allow (docs/architecture.md 2.5):" >&2
    grep -rnE "(crate::$to|$to::)" "$src/$from" "$src/$from.rs" 2>/dev/null | head -5 | sed 's/^/  /' >&2 || true
    bad=1
  done <<<"$edges"
  while read -r from to name; do
    [ -n "$from" ] || continue
    if ! grep -qx "$from $to" <<<"$edges"; then
      echo "check-imports: note: allow-listed edge $from -> $to ($name) is gone; remove it from ALLOWED_BACKWARD" >&2
    fi
  done <<<"$ALLOWED_BACKWARD"
  return $bad
}

# A copy of the sources the check reads, in $1.
copy_tree() {
  local dir
  for dir in kernel operator common testenv spill; do
    [ -d "$dir/src" ] || continue
    mkdir -p "$1/$dir"
    cp -r "$dir/src" "$1/$dir/src"
    cp "$dir/Cargo.toml" "$1/$dir/Cargo.toml"
  done
}

# Plants $3 at the end of $2 in a fresh copy and expects a failure naming "$4".
expect_caught() { # tmp file line expected
  local out
  rm -rf "$1/tree"
  copy_tree "$1/tree"
  printf '\n%s\n' "$3" >>"$1/tree/$2"
  if out=$(check "$1/tree" 2>&1); then
    echo "check-imports: self-test: '$3' planted in $2 was not caught" >&2
    return 1
  fi
  if ! grep -q "$4" <<<"$out"; then
    echo "check-imports: self-test: wrong failure for '$3' in $2 (expected '$4'):" >&2
    echo "$out" >&2
    return 1
  fi
}

self_test() {
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  copy_tree "$tmp/tree"
  if ! check "$tmp/tree" 2>/dev/null; then
    echo "check-imports: self-test: the unmodified copy should pass" >&2
    check "$tmp/tree" || true
    return 1
  fi
  expect_caught "$tmp" kernel/src/store/mod.rs 'use crate::ingest::Writer;' "store imports ingest"
  expect_caught "$tmp" kernel/src/auth/mod.rs 'use fdc_spill::SpillHandle;' "auth imports fdc_spill"
  expect_caught "$tmp" spill/src/lib.rs 'use fdc_kernel::ingest;' "crate spill names"
  expect_caught "$tmp" operator/src/lib.rs 'use fdc_kernel::config::Config;' "crate operator names"
  expect_caught "$tmp" common/src/lib.rs 'use fdc_kernel::service;' "crate common names"
  echo "check-imports: self-test ok (planted store -> ingest, auth -> fdc_spill, spill -> fdc_kernel, operator -> fdc_kernel and common -> fdc_kernel imports fail)"
}

case "${1:-}" in
  --check) check "${2:?--check DIR}" ;;
  "")
    self_test
    check .
    echo "check-imports: ok"
    ;;
  *)
    echo "usage: $0 [--check DIR]" >&2
    exit 2
    ;;
esac
