#!/bin/bash
# SPDX-License-Identifier: MIT
# t0092: changes from outside the mount. With the mount up (and its
# kernel's caches warmed by reading everything), a second daemon on another
# mount point of the same store promotes with ln -sfn, writes and seals a
# version, edits a record, registers and renames a model; `mrfs promote
# --mount` goes through that second mount and `mrfs delete --store` works
# on the store itself. The first mount shows each change within one second
# (SPEC, Promises), in its aliases, versions, records, history, latest,
# /serving and @<time>. Then inotify on a model directory reports the
# alias changes made through the mount itself.
. "$(dirname "$0")/lib.sh"

MNT2=$TMP/mnt2
M2=$MNT2/models
LOG2=$TMP/daemon2.log
PID2=
mkdir -p "$MNT2"
: >"$LOG2"

mounted2() { awk -v m="$MNT2" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }

# The second daemon: same store, another mount point.
mount2() {
	local i
	"$MRFS_BIN" mount -f --store "$STORE" "$MNT2" >>"$TMP/daemon2.out" 2>>"$LOG2" &
	PID2=$!
	for ((i = 0; i < 100; i++)); do
		pid_running "$PID2" || bail_out "the second daemon exited: $(tail -n 5 "$LOG2")"
		mounted2 && [ -d "$M2" ] && return 0
		sleep 0.1
	done
	bail_out "the second mount was not live after 10 s"
}

# Unmount the second daemon; it must exit 0 with no sanitizer report.
umount2() {
	local status
	fusermount3 -u "$MNT2" || fusermount3 -uz "$MNT2"
	wait_exit "$PID2" 300 || kill -9 "$PID2"
	wait "$PID2"
	status=$?
	PID2=
	check_eq "the second daemon exits with status 0 after unmount" 0 "$status"
	check_eq "no sanitizer report in the second daemon's log" "" \
		"$(grep -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$LOG2" | head -n 5)"
}

# On any exit: the second mount goes too, then lib.sh's cleanup runs.
cleanup2() {
	if [ -n "$PID2" ]; then
		fusermount3 -u "$MNT2" 2>/dev/null || fusermount3 -uz "$MNT2" 2>/dev/null
		wait_exit "$PID2" 100 || kill -9 "$PID2" 2>/dev/null
		wait "$PID2" 2>/dev/null
	fi
	mounted2 && fusermount3 -uz "$MNT2" 2>/dev/null
}
trap 'st=$?; cleanup2; (exit $st); cleanup' EXIT

now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
now_ns() { date +%s%N; }

# within DESC WANT CMD...: CMD's output (stdout and stderr) becomes WANT
# within one second; polls every 20 ms.
within() {
	local desc=$1 want=$2 seen t0 ms
	shift 2
	t0=$(now_ns)
	while :; do
		seen=$("$@" 2>&1)
		ms=$((($(now_ns) - t0) / 1000000))
		[ "$seen" = "$want" ] && break
		[ $ms -ge 1000 ] && break
		sleep 0.02
	done
	check_eq "$desc (within 1 s; took $ms ms)" "$want" "$seen"
}

# Everything the first mount's kernel could have cached about clf.
warm() {
	ls -laR "$M/clf" "$MNT/serving" >/dev/null 2>&1
	cat "$M"/clf/versions/*.json "$M/clf.json" "$M/clf/history" "$MNT/history" >/dev/null 2>&1
	for l in "$M"/clf/*; do readlink "$l"; done >/dev/null 2>&1
	find "$M/clf/versions/" -type f -exec cat {} + >/dev/null 2>&1
}

state_of() { jq -r .state "$1" 2>&1; }
lsA() { ls -A "$1" 2>&1; }
latest_event() { tail -n 1 "$1" | jq -r "$2" 2>&1; }

mount_mrfs
for n in 1 2 3 4; do
	mkdir -p "$TMP/v$n/sub"
	mkdata "$TMP/v$n/weights.bin" $((150000 + n * 1000)) "w$n"
	echo "version $n" >"$TMP/v$n/sub/VERSION"
done
check "through the first mount: clf with versions 1 and 2 sealed, production -> 1" sh -c "
	mkdir '$M/clf' && cp -r '$TMP/v1' '$M/clf/versions/1' && chmod a-w '$M/clf/versions/1' &&
	cp -r '$TMP/v2' '$M/clf/versions/2' && chmod a-w '$M/clf/versions/2' &&
	ln -s versions/1 '$M/clf/production'"
mount2
say "# second mount: $MRFS_BIN mount -f --store $STORE $MNT2 (pid $PID2)"
check_eq "the second mount sees production -> versions/1" versions/1 "$(readlink "$M2/clf/production" 2>&1)"
check "the second mount reads version 2's bytes" diff -r "$TMP/v2" "$M2/clf/versions/2"

say "# ln -sfn through the second mount"
warm
T1=$(now)
sleep 0.05
check "second mount: ln -sfn versions/2 production" ln -sfn versions/2 "$M2/clf/production"
within "first mount: readlink production" versions/2 readlink "$M/clf/production"
within "first mount: production/weights.bin is version 2's" "" cmp "$TMP/v2/weights.bin" "$M/clf/production/weights.bin"
within "first mount: /serving/production/clf holds 2" 2 lsA "$MNT/serving/production/clf"
within "first mount: the history's newest event is the alias.move 1 -> 2" "alias.move 1 2" \
	latest_event "$M/clf/history" '"\(.event) \(.from) \(.to)"'
within "first mount: /history's too" "alias.move clf 1 2" latest_event "$MNT/history" '"\(.event) \(.model) \(.from) \(.to)"'
within "first mount: versions/2.json lists production" true \
	jq '.aliases | tostring | contains("production")' "$M/clf/versions/2.json"
sleep 0.05
T2=$(now)
check_eq "first mount: @T1/production (before the move)" ../versions/1 "$(readlink "$M/clf/@$T1/production" 2>&1)"
check_eq "first mount: @T2/production (after it)" ../versions/2 "$(readlink "$M/clf/@$T2/production" 2>&1)"

say "# a version written and sealed through the second mount"
warm
check "second mount: cp -r v3 versions/3 (a draft)" cp -r "$TMP/v3" "$M2/clf/versions/3"
within "first mount: versions/ lists 3" "$(printf '%s\n' 1 1.json 2 2.json 3 3.json)" lsA "$M/clf/versions"
within "first mount: versions/3.json says draft" draft state_of "$M/clf/versions/3.json"
within "first mount: the draft's files are the bytes written" "" diff -r "$TMP/v3" "$M/clf/versions/3"
check_eq "first mount: latest is still versions/2" versions/2 "$(readlink "$M/clf/latest" 2>&1)"
check "second mount: chmod a-w versions/3 (seal)" chmod a-w "$M2/clf/versions/3"
within "first mount: versions/3.json says sealed" sealed state_of "$M/clf/versions/3.json"
within "first mount: latest -> versions/3" versions/3 readlink "$M/clf/latest"
expect_errno EROFS write "$M/clf/versions/3/new.txt" x

say "# mrfs promote --mount SECOND_MOUNT"
warm
sleep 0.05
T3=$(now)
check "mrfs promote clf 3 --mount \$MNT2" "$MRFS_BIN" promote clf 3 --mount "$MNT2"
within "first mount: readlink production" versions/3 readlink "$M/clf/production"
within "first mount: /serving/production/clf holds 3" 3 lsA "$MNT/serving/production/clf"
within "first mount: the newest event is alias.move 2 -> 3 by mrfs" "alias.move 2 3 mrfs" \
	latest_event "$M/clf/history" '"\(.event) \(.from) \(.to) \(.comm)"'
check_eq "first mount: @T3/production (just before the promote)" ../versions/2 "$(readlink "$M/clf/@$T3/production" 2>&1)"
check_eq "first mount: @now/production" ../versions/3 "$(readlink "$M/clf/@$(now)/production" 2>&1)"

say "# records, models and aliases changed through the second mount"
warm
check "second mount: a description on versions/3.json" sh -c \
	"jq '.description = \"from the second mount\"' '$M2/clf/versions/3.json' > '$TMP/t.json' && cp '$TMP/t.json' '$M2/clf/versions/3.json'"
# the kernel may keep a sealed version's record attributes: the size it
# says must follow the edit (a stale one cuts or pads what tools read)
within "first mount: stat of versions/3.json gives the new record's size" \
	"$(cat "$M2/clf/versions/3.json" | wc -c)" stat -c %s "$M/clf/versions/3.json"
within "first mount: versions/3.json has the description" "from the second mount" \
	jq -r .description "$M/clf/versions/3.json"
check "first mount: cp of versions/3.json reads the whole record" sh -c \
	"cp '$M/clf/versions/3.json' '$TMP/r.json' && jq -e .description '$TMP/r.json' >/dev/null"
check "second mount: a description on clf.json" sh -c \
	"jq '.description = \"classifier\"' '$M2/clf.json' > '$TMP/t.json' && cp '$TMP/t.json' '$M2/clf.json'"
within "first mount: clf.json has it" classifier jq -r .description "$M/clf.json"
ls -A "$M" >/dev/null
check "second mount: mkdir /models/bert" mkdir "$M2/bert"
within "first mount: ls /models lists bert" "$(printf '%s\n' bert bert.json clf clf.json)" lsA "$M"
check "second mount: mv /models/bert /models/albert" mv -T "$M2/bert" "$M2/albert"
within "first mount: bert is now albert" "$(printf '%s\n' albert albert.json clf clf.json)" lsA "$M"
check "second mount: ln -s versions/1 staging" ln -s versions/1 "$M2/clf/staging"
within "first mount: /serving lists production and staging" "$(printf '%s\n' production staging)" lsA "$MNT/serving"
within "first mount: readlink staging" versions/1 readlink "$M/clf/staging"
check "second mount: rm staging" rm "$M2/clf/staging"
within "first mount: staging is gone from the model" "$(printf '%s\n' history latest production versions)" lsA "$M/clf"
within "first mount: and from /serving" production lsA "$MNT/serving"

say "# a model's mode changed through the second mount (no event says so)"
warm
stat "$M/clf" "$M/clf/versions" >/dev/null
check "second mount: chmod 0750 clf" chmod 0750 "$M2/clf"
within "first mount: stat clf says 0750" "OK 750 0" errno_of stat "$M/clf"
within "first mount: stat clf/versions says 0750 too" "OK 750 0" errno_of stat "$M/clf/versions"
check "second mount: chmod 0755 clf" chmod 0755 "$M2/clf"
within "first mount: stat clf says 0755" "OK 755 0" errno_of stat "$M/clf"

say "# a record edited through this mount: stat agrees at once"
check "first mount: a note on versions/2.json" sh -c \
	"jq '.note = \"from the first mount\"' '$M/clf/versions/2.json' > '$TMP/t.json' && cp '$TMP/t.json' '$M/clf/versions/2.json'"
check_eq "first mount: stat -c %s of versions/2.json is its length, right after" \
	"$(cat "$M/clf/versions/2.json" | wc -c)" "$(stat -c %s "$M/clf/versions/2.json")"

say "# mrfs delete on the store, with both daemons running"
warm
check "first mount: version 1's bytes are read (and cached)" diff -r "$TMP/v1" "$M/clf/versions/1"
# stat puts the entries and attributes in the kernel's cache, for as long as
# the daemon lets it: the watcher must drop them
check_eq "first mount: stat versions/1 and versions/1.json" "OK OK" \
	"$(errno_of stat "$M/clf/versions/1" | cut -d' ' -f1) $(errno_of stat "$M/clf/versions/1.json" | cut -d' ' -f1)"
check "mrfs delete clf 1 --store \$STORE" "$MRFS_BIN" delete clf 1 --store "$STORE"
within "first mount: stat versions/1 says ENOENT (no cached entry)" ENOENT errno_of stat "$M/clf/versions/1"
within "first mount: stat versions/1.json says ENOENT" ENOENT errno_of stat "$M/clf/versions/1.json"
within "first mount: versions/ no longer lists 1" "$(printf '%s\n' 2 2.json 3 3.json)" lsA "$M/clf/versions"
within "first mount: versions/1 is gone" ENOENT errno_of read "$M/clf/versions/1/weights.bin"
within "first mount: versions/1.json is gone" ENOENT errno_of read "$M/clf/versions/1.json"
within "second mount: versions/1 is gone there too" ENOENT errno_of read "$M2/clf/versions/1/sub/VERSION"
within "first mount: the newest event is version.delete of 1" "version.delete 1" \
	latest_event "$M/clf/history" '"\(.event) \(.version)"'
check_fails "mrfs delete clf 3 --store is refused (production points at it)" \
	"$MRFS_BIN" delete clf 3 --store "$STORE"
check "first mount: version 3 is still there" diff -r "$TMP/v3" "$M/clf/versions/3"
check "second mount: mkdir versions/1 is refused (1 was taken once)" test "$(errno_of mkdir "$M2/clf/versions/1")" = EINVAL

say "# inotify on the model directory sees alias changes made through the mount"
cat >"$TMP/watch.py" <<'EOF'
# watch.py DIR READY STOP: inotify on DIR; writes READY once watching, then
# prints "MASK name" for every event until STOP exists.
import ctypes, os, select, struct, sys
d, ready, stop = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO = 0x100, 0x200, 0x40, 0x80
names = {IN_CREATE: "IN_CREATE", IN_DELETE: "IN_DELETE", IN_MOVED_FROM: "IN_MOVED_FROM",
         IN_MOVED_TO: "IN_MOVED_TO"}
fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
if fd < 0:
    sys.exit("inotify_init1: %s" % os.strerror(ctypes.get_errno()))
wd = libc.inotify_add_watch(fd, d.encode(), IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)
if wd < 0:
    sys.exit("inotify_add_watch: %s" % os.strerror(ctypes.get_errno()))
open(ready, "w").close()
while not os.path.exists(stop):
    if not select.select([fd], [], [], 0.05)[0]:
        continue
    buf = os.read(fd, 65536)
    i = 0
    while i < len(buf):
        w, mask, cookie, n = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
        i += 16 + n
        for bit, s in names.items():
            if mask & bit:
                print(s, name, flush=True)
EOF
python3 "$TMP/watch.py" "$M/clf" "$TMP/watch.ready" "$TMP/watch.stop" >"$TMP/watch.out" 2>"$TMP/watch.err" &
wpid=$!
for ((i = 0; i < 100; i++)); do
	[ -e "$TMP/watch.ready" ] || ! pid_running $wpid && break
	sleep 0.05
done
check "the watcher is watching $M/clf" test -e "$TMP/watch.ready"
cd "$M/clf" || bail_out "cd $M/clf"
check "ln -s versions/2 staging" ln -s versions/2 staging
check "ln -sfn versions/2 production" ln -sfn versions/2 production
check "mv -T staging canary" mv -T staging canary
check "rm canary" rm canary
check "mrfs promote clf 3 (through this mount)" "$MRFS_BIN" promote clf 3 --mount "$MNT"
cd /
sleep 0.3
touch "$TMP/watch.stop"
wait_exit $wpid 50 || kill $wpid
wait $wpid
check_eq "the watcher had no error" "" "$(cat "$TMP/watch.err")"
w=$(cat "$TMP/watch.out")
check "ln -s staging: IN_CREATE staging" grep -qx 'IN_CREATE staging' <<<"$w"
check "ln -sfn production: IN_MOVED_TO production (or IN_CREATE production)" \
	grep -qxE 'IN_(MOVED_TO|CREATE) production' <<<"$w"
check "mv staging canary: IN_MOVED_FROM staging" grep -qx 'IN_MOVED_FROM staging' <<<"$w"
check "mv staging canary: IN_MOVED_TO canary" grep -qx 'IN_MOVED_TO canary' <<<"$w"
check "rm canary: IN_DELETE canary" grep -qx 'IN_DELETE canary' <<<"$w"
check "mrfs promote: a second event naming production" \
	test "$(grep -cxE 'IN_(MOVED_TO|CREATE) production' <<<"$w")" -ge 2
say "# inotify events: $(tr '\n' ',' <<<"$w")"
check_eq "production -> versions/3 at the end" versions/3 "$(readlink "$M/clf/production")"

umount2
test_done
