#!/bin/bash
# SPDX-License-Identifier: MIT
# scripts/stress.sh: the full forms of the reliability tests (make stress).
#
#   1. MRFS_STRESS=full tests t0110-crash (200 kill -9 rounds), t0120-stress
#      (60 s), t0130-bitrot (5 stores x 12 flipped bytes) and t0140-fullfs
#      against $MRFS_BUILD/mrfs;
#   2. t0120-stress (60 s) again against a ThreadSanitizer build
#      (build/san-thread/mrfs, made here with `make SANITIZE=thread`): any
#      "WARNING: ThreadSanitizer" in the daemon's log fails it.
#
# Environment: MRFS_BUILD (build), MRFS_MAKE (make), MRFS_STRESS_TSAN=0
# skips step 2; MRFS_CRASH_ROUNDS, MRFS_STRESS_SECONDS override the sizes.
# Exit status 1 when any test failed.
set -u
cd "$(dirname "$0")/.." || exit 1
: "${MRFS_BUILD:=build}" "${MRFS_MAKE:=make}" "${MRFS_STRESS_TSAN:=1}"
export MRFS_STRESS=full
tests=(t0110-crash.sh t0120-stress.sh t0130-bitrot.sh t0140-fullfs.sh)
status=0
t0=$SECONDS

echo "== full reliability tests against $MRFS_BUILD/mrfs"
MRFS_BUILD=$MRFS_BUILD tests/run.sh "${tests[@]}" || status=1

if [ "$MRFS_STRESS_TSAN" != 0 ]; then
	echo
	echo "== t0120-stress against a ThreadSanitizer build"
	if $MRFS_MAKE SANITIZE=thread all >/tmp/mrfs-tsan-build.$$ 2>&1; then
		rm -f /tmp/mrfs-tsan-build.$$
		# halt_on_error=0: the test reads every report from the log
		TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 second_deadlock_stack=1 history_size=4}" \
			MRFS_BUILD=build/san-thread tests/run.sh t0120-stress.sh || status=1
	else
		echo "FAIL make SANITIZE=thread:"
		tail -n 20 /tmp/mrfs-tsan-build.$$
		rm -f /tmp/mrfs-tsan-build.$$
		status=1
	fi
fi
echo
echo "make stress: $([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
exit $status
