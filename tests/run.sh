#!/bin/bash
# SPDX-License-Identifier: MIT
# Run the unit tests ($MRFS_BUILD/tests/test_*) and the integration tests
# (tests/t/t*.sh), then print "N passed, N failed". Arguments: "unit" or
# "integration" to run one kind, or test script names to run only those.
set -u
cd "$(dirname "$0")/.."
: "${MRFS_BUILD:=build}"
export MRFS_BUILD
export MRFS_BIN="$PWD/$MRFS_BUILD/mrfs"
kind=all
case "${1:-}" in unit|integration) kind=$1; shift ;; esac

pass=0 fail=0 failed=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/mrfs-tests.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

run() { # name command...
	local name=$1 log="$logdir/$(basename "$1").log" t0=$SECONDS
	shift
	if "$@" >"$log" 2>&1; then
		pass=$((pass + 1))
		printf 'ok   %-40s %3ds\n' "$name" $((SECONDS - t0))
	else
		fail=$((fail + 1))
		failed+=("$name")
		printf 'FAIL %-40s %3ds\n' "$name" $((SECONDS - t0))
		sed 's/^/    | /' "$log" | tail -n 60
	fi
}

if [ "$kind" != integration ] && [ $# -eq 0 ]; then
	for t in "$MRFS_BUILD"/tests/test_*; do
		[ -x "$t" ] && run "unit/$(basename "$t")" "$t"
	done
fi
if [ "$kind" != unit ]; then
	scripts=("$@")
	[ ${#scripts[@]} -eq 0 ] && scripts=(tests/t/t[0-9]*.sh)
	for t in "${scripts[@]}"; do
		[ -f "$t" ] || t=tests/t/$t
		[ -f "$t" ] && run "$t" bash "$t"
	done
fi
echo
[ $fail -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
