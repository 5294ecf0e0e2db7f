#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Rewrite the OPTIONS section of docs/tripool.1 from the command's option
# table (cli/args.c), as `tripool --help-man` prints it:
#   bash scripts/man-options.sh build/tripool [docs/tripool.1]
# tests/cli/manpage.sh fails when the two differ.
set -eu
T=${1:?usage: man-options.sh TRIPOOL [MANPAGE]}
M=${2:-$(dirname "$0")/../docs/tripool.1}
gen=$(mktemp)
trap 'rm -f "$gen" "$gen.new"' EXIT
"$T" --help-man > "$gen"
# Everything before ".SH OPTIONS", the generated section, everything from
# the next ".SH" on.
awk -v gen="$gen" '
    /^\.SH OPTIONS$/ { while ((getline l < gen) > 0) print l; skip = 1; next }
    skip && /^\.SH / { skip = 0 }
    !skip { print }
' "$M" > "$gen.new"
grep -q '^\.SH OPTIONS$' "$gen.new" || { echo "man-options: no .SH OPTIONS in $M" >&2; exit 1; }
cat "$gen.new" > "$M"
