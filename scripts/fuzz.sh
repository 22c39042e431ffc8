#!/bin/bash
# SPDX-License-Identifier: MIT
# scripts/fuzz.sh [TARGET...]: replay, then fuzz, the libFuzzer targets of
# tests/fuzz/ (built by `make fuzz` into $MRFS_BUILD/fuzz/fuzz_TARGET).
#
# For each target (json time names record chunker, or those named):
#  1. replay every input of tests/fuzz/regressions/TARGET/ (crashes found
#     before) and of tests/fuzz/corpus/TARGET/ (the seeds): each must run
#     clean;
#  2. unless FUZZ_TIME=0, fuzz for FUZZ_TIME seconds (default 60), in fork
#     mode so that one crash does not end the run, from the seeds and what
#     earlier runs kept in $MRFS_BUILD/fuzz/corpus/TARGET; crashes, leaks and
#     timeouts go to $MRFS_BUILD/fuzz/findings/TARGET/ and are summarised,
#     grouped by the property or sanitizer report they raise.
# Exit status 1 when a replay failed or the fuzzing found anything.
#
# Environment: MRFS_BUILD (build), FUZZ_TIME (60), FUZZ_JOBS (fork
# workers, 1), FUZZ_ARGS (more libFuzzer options). CI: make fuzz FUZZ_TIME=10
set -u
cd "$(dirname "$0")/.." || exit 1
: "${MRFS_BUILD:=build}" "${FUZZ_TIME:=60}" "${FUZZ_JOBS:=1}" "${FUZZ_ARGS:=}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		t=$(basename "$f" .c)
		targets+=("${t#fuzz_}")
	done
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mrfs-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export FUZZ_TMPDIR=$scratch

# Per target: the longest input worth trying (names: targets past 4 KiB).
max_len() {
	case $1 in
	names) echo 8192 ;;
	json | record) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

# What an input makes the target say: its property or sanitizer line.
what_breaks() { # BIN INPUT
	"$1" "$2" 2>&1 | grep -a -m1 -E '==FUZZ== [^ ]+: property|SUMMARY: |ERROR: LeakSanitizer|ERROR: libFuzzer' |
		sed -E 's/^==[0-9]+== ?//; s/ in $//' | cut -c1-200
}

bad=0
summary=()
for t in "${targets[@]}"; do
	bin=$MRFS_BUILD/fuzz/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "FAIL $t: $bin is not built (make fuzz builds it)"
		bad=1
		continue
	fi
	echo "== $t"
	replayed=0 failed=0
	for f in tests/fuzz/regressions/"$t"/* tests/fuzz/corpus/"$t"/*; do
		[ -f "$f" ] || continue
		replayed=$((replayed + 1))
		if ! "$bin" -runs=1 "$f" >"$scratch/replay.log" 2>&1; then
			failed=$((failed + 1))
			echo "FAIL replay $f"
			grep -a -m3 -E '==FUZZ==|SUMMARY|ERROR' "$scratch/replay.log" | sed 's/^/    | /' | cut -c1-240
		fi
	done
	echo "   replayed $replayed inputs: $((replayed - failed)) clean, $failed failing"
	[ $failed -eq 0 ] || bad=1
	line="$t: replay $((replayed - failed))/$replayed clean"

	if [ "$FUZZ_TIME" -gt 0 ]; then
		work=$MRFS_BUILD/fuzz/corpus/$t
		found=$MRFS_BUILD/fuzz/findings/$t
		mkdir -p "$work" "$found"
		touch "$scratch/stamp"
		echo "   fuzzing for ${FUZZ_TIME}s: $bin (findings in $found)"
		# shellcheck disable=SC2086
		"$bin" -fork="$FUZZ_JOBS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
			-max_total_time="$FUZZ_TIME" -timeout=60 -max_len="$(max_len "$t")" \
			-artifact_prefix="$found/" $FUZZ_ARGS "$work" "tests/fuzz/corpus/$t" \
			>"$scratch/$t.log" 2>&1
		status=$?
		runs=$(grep -a -oE '^#[0-9]+' "$scratch/$t.log" | tail -n 1 | tr -d '#')
		cov=$(grep -a -oE 'cov: [0-9]+' "$scratch/$t.log" | tail -n 1)
		new=$(find "$found" -type f -newer "$scratch/stamp" | wc -l)
		echo "   exit $status, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(find "$work" -type f | wc -l), new findings: $new"
		line="$line; fuzzed ${FUZZ_TIME}s, ${runs:-?} runs, $new new findings"
		if [ "$new" -gt 0 ]; then
			bad=1
			# group the findings by what they break (the first 40 are run again)
			find "$found" -type f -newer "$scratch/stamp" | head -n 40 | while read -r f; do
				printf '%s\t%s\n' "$(what_breaks "$bin" "$f")" "$f"
			done | sort | awk -F'\t' '{ n[$1]++; if (!($1 in ex)) ex[$1] = $2 }
				END { for (k in n) printf "    %4d x %s\n           e.g. %s\n", n[k], k, ex[k] }'
			echo "   keep one as a regression: cp FILE tests/fuzz/regressions/$t/WHAT-IT-BREAKS"
		elif [ $status -ne 0 ]; then
			echo "   libFuzzer failed:"
			tail -n 5 "$scratch/$t.log" | sed 's/^/    | /'
			bad=1
		fi
	fi
	summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $bad
