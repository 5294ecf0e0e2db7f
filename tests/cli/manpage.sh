#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 30
# The man page's OPTIONS section is what the option table generates
# (`tripool --help-man`; regenerate with scripts/man-options.sh), and every
# option of the table is in the help of each command that accepts it.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
M=${TP_SRC:?set TP_SRC to the source tree}/docs/tripool.1
fail() { echo "FAIL: $*" >&2; exit 1; }
D=$(mktemp -d /tmp/tp_cli_man.XXXXXX)
trap 'rm -rf "$D"' EXIT
"$T" --help-man > "$D/gen" || fail "--help-man exit $?"
[ "$(head -1 "$D/gen")" = ".SH OPTIONS" ] || fail "--help-man does not start with .SH OPTIONS"
awk '/^\.SH OPTIONS$/ { on = 1 } on && /^\.SH / && !/^\.SH OPTIONS$/ { on = 0 } on' "$M" > "$D/man"
[ -s "$D/man" ] || fail "no OPTIONS section in $M"
diff -u "$D/man" "$D/gen" > "$D/diff" ||
    fail "docs/tripool.1 OPTIONS differs from the option table (run scripts/man-options.sh): $(cat "$D/diff")"
# Each man entry's option names are in the --help of a command that
# accepts it (the prefix "cmd, cmd: " names them; none: every command).
n=0
while IFS= read -r tag && IFS= read -r text; do
    names=$(printf '%s\n' "$tag" | sed -e 's/\\f[BIR]//g' -e 's/\\-/-/g' -e 's/ [A-Z:]*$//')
    cmds=$(printf '%s\n' "$text" | sed -n 's/^\([a-z, ]*\): .*/\1/p' | tr -d ,)
    [ -n "$cmds" ] || cmds="hash compress decompress cp count"
    for c in $cmds; do
        "$T" "$c" --help | grep -qF -- "  $names" || fail "'$names' missing from 'tripool $c --help'"
        n=$((n + 1))
    done
done < <(awk '/^\.TP$/ { getline a; getline b; print a; print b }' "$D/gen")
[ $n -ge 40 ] || fail "only $n option/command pairs checked"
# Limits in the messages and help come from the library's header.
"$T" hash -j 4097 x 2> "$D/e"; [ $? -eq 2 ] || fail "-j 4097 must be a usage error"
grep -qF "bad -j value '4097' (1..4096)" "$D/e" || fail "-j message: $(cat "$D/e")"
"$T" hash --chunk 2K x 2> "$D/e"; [ $? -eq 2 ] || fail "--chunk 2K must be a usage error"
grep -qF "bad --chunk size '2K' (4K..1G)" "$D/e" || fail "--chunk message: $(cat "$D/e")"
"$T" compress -l 0 x 2> "$D/e"; [ $? -eq 2 ] || fail "-l 0 must be a usage error"
grep -qF "bad level '0' (1..22, or negative for fast)" "$D/e" || fail "-l message: $(cat "$D/e")"
"$T" cp -r a b 2> "$D/e"; [ $? -eq 2 ] || fail "cp -r must be a usage error"
grep -qF "unknown option '-r'" "$D/e" || fail "cp -r message: $(cat "$D/e")"
echo "manpage: $n option/command pairs, OPTIONS section matches the table"
