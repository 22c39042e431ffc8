# SPDX-License-Identifier: MIT
# tests/t/lib.sh: what every integration test sources (after git's t/test-lib.sh).
#
# Gives the script a private temp dir $TMP (removed on exit), a store
# $STORE, a mount point $MNT and $M=$MNT/models; mounts mrfs in the
# foreground (in the background of this shell) with its stderr in $LOG,
# unmounts from an EXIT trap whatever happens, and fails the test on any
# sanitizer report in the daemon's log.
#
#   mount_mrfs / umount_mrfs / remount / mrfs_kill9
#   check DESC CMD...               CMD must succeed
#   check_fails DESC CMD...         CMD must fail
#   check_eq DESC EXPECTED SEEN     strings must be equal
#   errno_of OP ARGS...             run one operation, print OK or the errno name;
#                                   OP: mkdir rmdir unlink rename symlink link chmod
#                                   chown lchown utime lutime truncate openw create
#                                   write overwrite append mkfifo mknod setxattr
#                                   readlink read (see op.py below)
#   expect_errno ERR[|ERR2] OP ARGS...   OP must fail with ERR and the daemon must log it
#   expect_errno_k ERR[|ERR2] OP ARGS... the same, for refusals the kernel may answer
#                                   itself (EEXIST on an existing name): no log line needed
#   last_event FIELD|EXPR [MODEL]   FIELD (or jq EXPR) of the newest event of MODEL's
#                                   history (or of /history)
#   events [MODEL]                  the event names of a history, one a line
#   snapshot                        a text picture of the whole tree and the history
#   mkdata FILE SIZE [SEED]         SIZE bytes of seeded pseudo-random data
#   daemon_alive, pid_running PID   is the daemon (a process) still running
#   test_done                       unmount, summarise, exit non-zero on any failure
#
# Environment: MRFS_BIN (the binary, exported by tests/run.sh),
# MRFS_TEST_KEEP=1 keeps $TMP, MRFS_TEST_VERBOSE=1 traces the commands.

set -u
export LC_ALL=C
umask 022

if [ -z "${MRFS_BIN:-}" ]; then
	MRFS_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/${MRFS_BUILD:-build}/mrfs"
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mrfs-$TEST_NAME.XXXXXX") || exit 1
STORE=$TMP/store
MNT=$TMP/mnt
M=$MNT/models
LOG=$TMP/daemon.log
mkdir -p "$MNT"
: >"$LOG"

DAEMON_PID=
TEST_COUNT=0
TEST_FAIL=0
TEST_FAILED=()
TEST_DONE=
SAN_REPORTED=

[ -n "${MRFS_TEST_VERBOSE:-}" ] && set -x

say() { printf '%s\n' "$*"; }

# The daemon log's tail, indented, for failure reports.
log_tail() {
	local n=${1:-15}
	if [ -s "$LOG" ]; then
		say "  daemon log (last $n lines of $(wc -l <"$LOG")):"
		tail -n "$n" "$LOG" | sed 's/^/  | /'
	else
		say "  daemon log: empty"
	fi
}

pass() {
	TEST_COUNT=$((TEST_COUNT + 1))
	say "ok $TEST_COUNT - $1"
}

# fail DESC [DETAIL...]: one failed assertion, with what was expected and seen.
fail() {
	TEST_COUNT=$((TEST_COUNT + 1))
	TEST_FAIL=$((TEST_FAIL + 1))
	TEST_FAILED+=("$TEST_COUNT - $1")
	say "not ok $TEST_COUNT - $1"
	shift
	local line
	for line in "$@"; do
		say "$line" | sed 's/^/  /'
	done
	if [ -n "$DAEMON_PID" ] && ! daemon_alive; then
		# Everything after this would fail for the same reason.
		wait "$DAEMON_PID"
		say "  the daemon has died (exit status $?)"
		DAEMON_PID=
		cd /
		check_sanitizer && log_tail 40
		is_mounted && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
		TEST_DONE=1
		say "Bail out! the daemon died; $TEST_FAIL of $TEST_COUNT checks failed:"
		printf '#   not ok %s\n' "${TEST_FAILED[@]}"
		exit 1
	fi
	log_tail 10
}

# Stop the script: the rest of it cannot mean anything (no mount, say).
bail_out() {
	say "Bail out! $*"
	log_tail 40
	exit 1
}

check() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		pass "$desc"
		return 0
	fi
	fail "$desc" "command: $*" "expected: exit status 0" "seen: exit status $rc" \
		"output: $(printf '%s' "$out" | tail -n 15)"
	return 1
}

check_fails() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		pass "$desc"
		return 0
	fi
	fail "$desc" "command: $*" "expected: failure" "seen: exit status 0" \
		"output: $(printf '%s' "$out" | tail -n 15)"
	return 1
}

check_eq() {
	local desc=$1 want=$2 seen=$3
	if [ "$want" = "$seen" ]; then
		pass "$desc"
		return 0
	fi
	if [ "$(printf '%s\n' "$want" | wc -l)" -gt 1 ] || [ "$(printf '%s\n' "$seen" | wc -l)" -gt 1 ]; then
		fail "$desc" "difference (- expected, + seen):" \
			"$(diff -u <(printf '%s\n' "$want") <(printf '%s\n' "$seen") | tail -n +3 | head -n 40)"
	else
		fail "$desc" "expected: '$want'" "seen:     '$seen'"
	fi
	return 1
}

# --- the daemon ---------------------------------------------------------

is_mounted() {
	awk -v m="$MNT" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# True while $1 is a live (not zombie) process.
pid_running() {
	local st
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

daemon_alive() { pid_running "$DAEMON_PID"; }

log_lines() { wc -l <"$LOG"; }

# Fail (once) if the daemon's log holds a sanitizer report.
check_sanitizer() {
	[ -n "$SAN_REPORTED" ] && return 1
	if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer|ERROR: MemorySanitizer' "$LOG"; then
		SAN_REPORTED=1
		TEST_COUNT=$((TEST_COUNT + 1))
		TEST_FAIL=$((TEST_FAIL + 1))
		TEST_FAILED+=("$TEST_COUNT - no sanitizer report in the daemon log")
		say "not ok $TEST_COUNT - no sanitizer report in the daemon log"
		say "  daemon log:"
		sed 's/^/  | /' "$LOG" | head -n 200
		return 1
	fi
	return 0
}

# Start the daemon and wait until the mount is live (/models exists).
mount_mrfs() {
	local i status
	[ -x "$MRFS_BIN" ] || bail_out "MRFS_BIN=$MRFS_BIN is not an executable"
	is_mounted && bail_out "$MNT is already mounted"
	say "# mount: $MRFS_BIN mount -f $* --store $STORE $MNT"
	echo "--- mount $(date +%T.%N)" >>"$TMP/daemon.out"
	"$MRFS_BIN" mount -f "$@" --store "$STORE" "$MNT" >>"$TMP/daemon.out" 2>>"$LOG" &
	DAEMON_PID=$!
	for ((i = 0; i < 100; i++)); do
		if ! pid_running "$DAEMON_PID"; then
			wait "$DAEMON_PID"
			status=$?
			DAEMON_PID=
			check_sanitizer
			bail_out "the daemon exited (status $status) before the mount was live"
		fi
		if is_mounted && [ -d "$M" ]; then
			return 0
		fi
		sleep 0.1
	done
	bail_out "the mount was not live after 10 s (mounted: $(is_mounted && echo yes || echo no), $M: $(ls -d "$M" 2>&1))"
}

# Wait up to $2 tenths of a second for pid $1 to exit; 0 if it did.
wait_exit() {
	local i
	for ((i = 0; i < $2; i++)); do
		pid_running "$1" || return 0
		sleep 0.1
	done
	return 1
}

# Unmount and wait for the daemon to exit; fail on a hang, on a non-zero
# exit status, or on a sanitizer report.
umount_mrfs() {
	local i status ok=0
	[ -n "$DAEMON_PID" ] || bail_out "umount_mrfs: no daemon to unmount"
	if ! daemon_alive; then
		wait "$DAEMON_PID"
		status=$?
		fail "the daemon is still running before unmount" "seen: it had exited with status $status"
		DAEMON_PID=
		is_mounted && fusermount3 -uz "$MNT"
		check_sanitizer
		return 1
	fi
	for ((i = 0; i < 50; i++)); do
		fusermount3 -u "$MNT" 2>"$TMP/fusermount.err" && {
			ok=1
			break
		}
		sleep 0.1
	done
	if [ $ok = 0 ]; then
		fail "fusermount3 -u $MNT" "seen: $(cat "$TMP/fusermount.err")" \
			"open files: $(ls -l /proc/[0-9]*/cwd 2>/dev/null | grep -F "$MNT" | head -n 5)"
		fusermount3 -uz "$MNT"
	fi
	# The leak checker may take a while at exit under ASan.
	if ! wait_exit "$DAEMON_PID" 300; then
		fail "the daemon exits after unmount" "seen: still running after 30 s; killed with SIGKILL"
		kill -9 "$DAEMON_PID" 2>/dev/null
	fi
	wait "$DAEMON_PID"
	status=$?
	DAEMON_PID=
	check_sanitizer || return 1
	if [ "$status" -ne 0 ]; then
		fail "the daemon exits with status 0 after unmount" "seen: status $status"
		return 1
	fi
	is_mounted && {
		fail "$MNT is no longer mounted after unmount"
		return 1
	}
	return 0
}

remount() {
	umount_mrfs
	mount_mrfs
}

# Kill the daemon with SIGKILL, then clean up the dead mount as a user
# would (fusermount3 -u).
mrfs_kill9() {
	[ -n "$DAEMON_PID" ] || bail_out "mrfs_kill9: no daemon"
	say "# kill -9 $DAEMON_PID"
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
	is_mounted && bail_out "$MNT still mounted after kill -9 and fusermount3 -u"
	echo "--- daemon killed with SIGKILL" >>"$LOG"
}

# verify_store DESC: mrfs verify on the store (unmounted) must be clean.
verify_store() {
	local out rc
	out=$("$MRFS_BIN" verify --store "$STORE" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		pass "$1"
	else
		fail "$1" "mrfs verify --store: exit $rc" "$(printf '%s\n' "$out" | tail -n 15)"
	fi
}

# --- system calls with their errno -----------------------------------------

cat >"$TMP/op.py" <<'EOF'
# op.py OP ARGS...: do one operation, print OK (or OK <result>) or the errno name.
import errno, os, sys

def write(path, data, flags):
    fd = os.open(path, flags, 0o644)
    try:
        if data:
            os.write(fd, data.encode())
    finally:
        os.close(fd)

op, a = sys.argv[1], sys.argv[2:]
W = os.O_WRONLY
ops = {
    "mkdir": lambda: os.mkdir(a[0], int(a[1], 8) if len(a) > 1 else 0o755),
    "rmdir": lambda: os.rmdir(a[0]),
    "unlink": lambda: os.unlink(a[0]),
    "rename": lambda: os.rename(a[0], a[1]),
    "symlink": lambda: os.symlink(a[0], a[1]),
    "link": lambda: os.link(a[0], a[1], follow_symlinks=False),
    "chmod": lambda: os.chmod(a[0], int(a[1], 8)),
    "chown": lambda: os.chown(a[0], int(a[1]), int(a[2])),
    "lchown": lambda: os.lchown(a[0], int(a[1]), int(a[2])),
    "utime": lambda: os.utime(a[0], (0, 0)),
    "lutime": lambda: os.utime(a[0], (0, 0), follow_symlinks=False),
    "truncate": lambda: os.truncate(a[0], int(a[1])),
    "openw": lambda: os.close(os.open(a[0], W)),
    "create": lambda: write(a[0], a[1] if len(a) > 1 else "", W | os.O_CREAT | os.O_EXCL),
    "write": lambda: write(a[0], a[1] if len(a) > 1 else "x", W | os.O_CREAT | os.O_TRUNC),
    "overwrite": lambda: write(a[0], a[1] if len(a) > 1 else "x", W),
    "append": lambda: write(a[0], a[1] if len(a) > 1 else "x", W | os.O_APPEND),
    "mkfifo": lambda: os.mkfifo(a[0]),
    "mknod": lambda: os.mknod(a[0], 0o644 | __import__("stat").S_IFREG),
    "setxattr": lambda: os.setxattr(a[0], a[1], a[2].encode()),
    "readlink": lambda: os.readlink(a[0]),
    "read": lambda: len(open(a[0], "rb").read()),
    "stat": lambda: "%o %d" % (os.stat(a[0]).st_mode & 0o7777, os.stat(a[0]).st_size),
}
try:
    r = ops[op]()
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
    sys.exit(0)
print("OK" if r is None else "OK %s" % r)
EOF

errno_of() { python3 "$TMP/op.py" "$@"; }

# _expect_with LOG WHO WANT OP ARGS...: OP fails with WANT (A|B: either),
# done by WHO (users.sh's errno_as) or, WHO empty, by the test itself; with
# LOG=1 the daemon must log the refusal too.
_expect_with() {
	local needlog=$1 who=$2 want=$3 desc got before i
	shift 3
	desc="${who:+$who: }$* fails with $want"
	desc=${desc//"$MNT"/}
	before=$(log_lines)
	if [ -n "$who" ]; then
		got=$(errno_as "$who" "$@" 2>&1)
	else
		got=$(errno_of "$@" 2>&1)
	fi
	got=${got%% *}
	if ! [[ "|$want|" == *"|$got|"* ]]; then
		fail "$desc" "expected: $want" "seen: $got"
		return 1
	fi
	if [ "$needlog" = 1 ]; then
		for ((i = 0; i < 20; i++)); do
			[ "$(log_lines)" -gt "$before" ] && break
			sleep 0.05
		done
		if [ "$(log_lines)" -le "$before" ]; then
			fail "$desc, with a daemon log line" "expected: a new line in the daemon log for the refusal" \
				"seen: errno $got but no new log line"
			return 1
		fi
	fi
	[[ $want == *"|"* ]] && desc="$desc ($got)"
	pass "$desc"
}

# _expect_errno LOG WANT OP ARGS...
_expect_errno() {
	local needlog=$1
	shift
	_expect_with "$needlog" "" "$@"
}

expect_errno() { _expect_errno 1 "$@"; }
expect_errno_k() { _expect_errno 0 "$@"; }

# --- registry helpers ---------------------------------------------------------

# history file of model $1, or /history
history_of() {
	if [ -n "${1:-}" ]; then
		printf '%s\n' "$M/$1/history"
	else
		printf '%s\n' "$MNT/history"
	fi
}

# last_event FIELD|JQ-EXPR [MODEL]
last_event() {
	local h f=$1
	h=$(history_of "${2:-}")
	[[ $f =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && f=".$f"
	tail -n 1 "$h" | jq -r "$f"
}

events() {
	jq -r .event <"$(history_of "${1:-}")"
}

# The whole tree (type, size for files, link targets), the sidecars'
# managed state and the history, as text to compare before and after.
snapshot() {
	(
		cd "$MNT" || exit 1
		find . -path ./serving -prune -o \( -type f -printf '%p f %s\n' \) \
			-o \( -type l -printf '%p l %l\n' \) -o -printf '%p %y\n' | sort
		find ./models -name '*.json' -type f -exec md5sum {} + | sort -k2
		md5sum history
	)
}

# A file of $2 bytes of seeded pseudo-random data (same seed, same bytes).
mkdata() {
	python3 -c '
import random, sys
r = random.Random(sys.argv[2]); n = int(sys.argv[3])
with open(sys.argv[1], "wb") as f:
    while n > 0:
        k = min(n, 1 << 20); f.write(r.randbytes(k)); n -= k
' "$1" "${3:-$1}" "$2"
}

# --- the end ------------------------------------------------------------------

cleanup() {
	local status=$?
	set +x
	# Finish the cleanup whatever happens to stdout (| head) or to us.
	trap '' PIPE INT TERM HUP
	cd /
	exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
	if [ -n "$DAEMON_PID" ] && daemon_alive; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
		wait_exit "$DAEMON_PID" 100 || kill -9 "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	is_mounted && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
	[ -f "$LOG" ] && ! check_sanitizer && status=1
	if [ -z "$TEST_DONE" ]; then
		say "# $TEST_NAME stopped before test_done (status $status)"
		[ "$status" = 0 ] && status=1
	fi
	if [ -n "${MRFS_TEST_KEEP:-}" ]; then
		say "# kept $TMP"
	else
		rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }
	fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

test_done() {
	if [ -n "$DAEMON_PID" ]; then
		if daemon_alive; then
			umount_mrfs
		else
			fail "the daemon is alive at the end of the test" "seen: it exited"
			wait "$DAEMON_PID" 2>/dev/null
			DAEMON_PID=
		fi
	fi
	check_sanitizer
	TEST_DONE=1
	if [ $TEST_FAIL -eq 0 ]; then
		say "# $TEST_NAME: all $TEST_COUNT checks passed"
		exit 0
	fi
	say "# $TEST_NAME: $TEST_FAIL of $TEST_COUNT checks failed:"
	printf '#   not ok %s\n' "${TEST_FAILED[@]}"
	exit 1
}
