#!/bin/bash
# SPDX-License-Identifier: MIT
# t0140: a full disk. The store lives on a 64 MiB tmpfs (mounted by the
# test, unmounted from its EXIT trap; root only, else skipped).
#   1. cp of a file larger than the free space into a draft fails with
#      ENOSPC (and the daemon logs it); the file is left absent or empty
#      (what we see is reported), never a prefix; the draft's other files
#      and the sealed versions are intact; the daemon keeps serving;
#      mrfs verify is clean;
#   2. after rm -r of the draft and mrfs gc, the space is back and a new
#      version of 24 MiB logs, seals and reads back;
#   3. the disk filled by something else (a filler file leaving ~200 KiB),
#      small changes that make the LMDB file grow (new versions, files,
#      metadata edits, aliases) fail with ENOSPC (not EIO), as do, later,
#      changes that only grow the index (it keeps room reserved), nothing
#      half-done is left (each change happened whole or not at all), the
#      store verifies; after the filler is removed everything works again.
# LMDB's own map size cannot be made small from outside: mrfs mount has no
# option for it (MRFS_MAP_SIZE_DEFAULT, 64 GiB), so MDB_MAP_FULL is left
# to the unit tests (tests/unit, a tiny map through the store API); here
# the LMDB file hits the end of the filesystem instead.
. "$(dirname "$0")/lib.sh"

SMALL=$TMP/small
mkdir -p "$SMALL"
fullfs_cleanup() {
	local status=$?
	if [ -n "$DAEMON_PID" ] && daemon_alive; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
		wait_exit "$DAEMON_PID" 100 || kill -9 "$DAEMON_PID" 2>/dev/null
	fi
	if mountpoint -q "$SMALL"; then
		umount "$SMALL" 2>/dev/null || umount -l "$SMALL"
	fi
	(exit $status)
	cleanup
}
trap fullfs_cleanup EXIT
if ! mount -t tmpfs -o size=64m,mode=0700 tmpfs "$SMALL" 2>"$TMP/mount.err"; then
	say "# SKIP: cannot mount a 64 MiB tmpfs (root only): $(cat "$TMP/mount.err")"
	# shellcheck disable=SC2034 # read by lib.sh's cleanup: a deliberate end
	TEST_DONE=1
	exit 0
fi
STORE=$SMALL/store
free_kib() { df -k --output=avail "$SMALL" | tail -n 1 | tr -d ' '; }
say "# store on a 64 MiB tmpfs: $(free_kib) KiB free"

mkdir -p "$TMP/v1" "$TMP/v3"
mkdata "$TMP/v1/weights.bin" 2000000 w1
echo '{"layers": 12}' >"$TMP/v1/config.json"
mkdata "$TMP/huge.bin" $((100 * 1024 * 1024)) huge
mkdata "$TMP/v3/weights.bin" $((24 * 1024 * 1024)) w3

mount_mrfs
check "version 1 logged and sealed, production -> 1" sh -c "
	mkdir '$M/full' && cp -r '$TMP/v1' '$M/full/versions/1' && ln -s versions/1 '$M/full/production'"
check "a draft versions/2 with one small file" sh -c "mkdir '$M/full/versions/2' && cp '$TMP/v1/config.json' '$M/full/versions/2/'"

say "# 1. cp of 100 MiB into the draft, with $(free_kib) KiB free"
before=$(log_lines)
cp "$TMP/huge.bin" "$M/full/versions/2/huge.bin" 2>"$TMP/cp.err"
rc=$?
check_fails "cp of a file larger than the free space fails" test $rc -eq 0
check "... with ENOSPC (cp: $(head -c 200 "$TMP/cp.err"))" grep -q "No space left on device" "$TMP/cp.err"
check "the daemon logged the ENOSPC" sh -c "tail -n +$((before + 1)) '$LOG' | grep -q ENOSPC"
check "the daemon is alive" daemon_alive
if [ -e "$M/full/versions/2/huge.bin" ]; then
	seen="present, $(stat -c %s "$M/full/versions/2/huge.bin") bytes"
else
	seen=absent
fi
say "# after the failed cp, versions/2/huge.bin is: $seen"
check "the failed file is absent or empty, never a prefix ($seen)" \
	sh -c "[ ! -e '$M/full/versions/2/huge.bin' ] || [ ! -s '$M/full/versions/2/huge.bin' ]"
check_eq "... and the record agrees (size of huge.bin in 2.json, or none)" \
	"$([ "$seen" = absent ] && echo none || echo 0)" \
	"$(jq -r '[.files[] | select(.path == "huge.bin") | .size] | if length == 0 then "none" else .[0] end' "$M/full/versions/2.json")"
check "the draft's other file is intact" cmp "$TMP/v1/config.json" "$M/full/versions/2/config.json"
check "version 1 reads back exactly" diff -r "$TMP/v1" "$M/full/versions/1"
check_eq "production -> versions/1" versions/1 "$(readlink "$M/full/production")"
umount_mrfs
check "mrfs verify: the store is consistent after ENOSPC" "$MRFS_BIN" verify --store "$STORE"
mount_mrfs
check "after a remount, version 1 reads back exactly" diff -r "$TMP/v1" "$M/full/versions/1"
check "and the draft's small file too" cmp "$TMP/v1/config.json" "$M/full/versions/2/config.json"

say "# 2. free the space: rm -r the draft, mrfs gc"
low=$(free_kib)
check "rm -r versions/2 (the draft)" rm -r "$M/full/versions/2"
check "mrfs gc --store (mounted)" "$MRFS_BIN" gc --store "$STORE"
high=$(free_kib)
say "# free: $low KiB before, $high KiB after rm and gc"
check "gc gave the space back (at least 40 MiB free)" test "$high" -ge $((40 * 1024))
if check "a 24 MiB version logs again (cp -r, chmod a-w)" sh -c "
	cp -r '$TMP/v3' '$M/full/versions/3' && chmod a-w '$M/full/versions/3'"; then
	check "ln -sfn versions/3 production" ln -sfn versions/3 "$M/full/production"
	remount
	check "version 3 reads back exactly after a remount" diff -r "$TMP/v3" "$M/full/versions/3"
fi
check "version 1 reads back exactly" diff -r "$TMP/v1" "$M/full/versions/1"

say "# 3. the disk filled by someone else, LMDB must grow (a fresh store on a fresh tmpfs)"
umount_mrfs
umount "$SMALL" || bail_out "cannot unmount the tmpfs"
mount -t tmpfs -o size=64m,mode=0700 tmpfs "$SMALL" || bail_out "cannot mount the tmpfs again"
mount_mrfs
check "a fresh store: version 1 and 3 logged and sealed, production -> 1" sh -c "
	mkdir '$M/full' && cp -r '$TMP/v1' '$M/full/versions/1' && ln -s versions/1 '$M/full/production' &&
	mkdir '$M/full/versions/3' && cp '$TMP/v1/config.json' '$M/full/versions/3/' && chmod a-w '$M/full/versions/3'"
mkdir -p "$TMP/v3only" && cp "$TMP/v1/config.json" "$TMP/v3only/"
hist_before=$(wc -l <"$MNT/history")
avail=$(free_kib)
fallocate -l $(((avail - 200) * 1024)) "$SMALL/filler" 2>/dev/null ||
	dd if=/dev/zero of="$SMALL/filler" bs=1K count=$((avail - 200)) status=none
say "# filler written: $(free_kib) KiB free"
# small changes until one is refused: each must be whole or absent
refused="" i=0
for ((i = 1; i <= 400; i++)); do
	case $((i % 4)) in
	0)
		op="mkdir versions/$((i + 3))"
		out=$(mkdir "$M/full/versions/$((i + 3))" 2>&1)
		;;
	1)
		op="cp into versions/4"
		head -c 3000 /dev/urandom >"$TMP/small.$i"
		out=$({ [ -d "$M/full/versions/4" ] || mkdir "$M/full/versions/4"; } 2>&1 &&
			cp "$TMP/small.$i" "$M/full/versions/4/f$i" 2>&1)
		;;
	2)
		op="metadata edit of 3.json"
		jq --arg v "$(head -c 6000 /dev/urandom | base64 -w0)" '.blob = $v' \
			"$M/full/versions/3.json" >"$TMP/rec.json"
		out=$(cp "$TMP/rec.json" "$M/full/versions/3.json" 2>&1)
		;;
	3)
		op="ln -sfn production"
		out=$(ln -sfn versions/$(((i / 4) % 2 * 2 + 1)) "$M/full/production" 2>&1)
		;;
	esac
	rc=$?
	if [ $rc -ne 0 ] || ! daemon_alive; then
		refused="$op: exit $rc: $out"
		break
	fi
done
say "# $((i - 1)) small changes went through; then: ${refused:-nothing refused}"
check "a change was refused once the disk was full" test -n "$refused"
check "... with ENOSPC, not EIO or another error" sh -c "printf '%s' \"$refused\" | grep -q 'No space left on device'"
check "the daemon survived the full disk" daemon_alive
# the index keeps room of its own (mrfs reserves it ahead): changes that
# only grow the index (promotions: three events each) go on, and once that
# room cannot grow either, they too are refused with ENOSPC (LMDB itself
# never meets the full disk, which would leave it refusing everything)
meta_out="" moves=0
for ((j = 0; j < 3000; j++)); do
	meta_out=$(ln -sfn versions/$((j % 2 * 2 + 1)) "$M/full/production" 2>&1) || break
	moves=$((moves + 1))
	meta_out=""
done
say "# then $moves promotions went through; then: ${meta_out:-nothing refused}"
check "promotions are refused in the end, with ENOSPC" sh -c "printf '%s' \"$meta_out\" | grep -q 'No space left on device'"
check "the daemon survived that too" daemon_alive
check "history has no gap (1..N)" sh -c "jq -s '[.[].seq] == [range(1; length + 1)]' '$MNT/history' | grep -q true"
check "sealed versions read back exactly on the full disk" sh -c "diff -r '$TMP/v3only' '$M/full/versions/3' && diff -r '$TMP/v1' '$M/full/versions/1'"
# files of versions/4: each either whole or not there (the refused cp: absent or empty)
bad=
for f in "$M"/full/versions/4/f*; do
	[ -e "$f" ] || continue
	n=${f##*/f}
	if ! cmp -s "$f" "$TMP/small.$n" && [ -s "$f" ]; then
		bad="$bad ${f##*/}($(stat -c %s "$f") bytes)"
	fi
done
check_eq "every file copied into versions/4 is whole (the refused one absent or empty)" "" "${bad# }"
umount_mrfs
verify_store "mrfs verify: consistent with the disk full"
rm -f "$SMALL/filler"
say "# filler removed: $(free_kib) KiB free"
mount_mrfs
check "the history kept every acknowledged change ($hist_before events before)" test "$(wc -l <"$MNT/history")" -ge "$hist_before"
check "after the filler is gone: a new draft, a file, a seal" sh -c "
	n=\$(jq .next_version '$M/full.json') && mkdir '$M/full/versions/'\$n &&
	cp '$TMP/v1/weights.bin' '$M/full/versions/'\$n/ && chmod a-w '$M/full/versions/'\$n &&
	cmp '$TMP/v1/weights.bin' '$M/full/versions/'\$n/weights.bin"
check "and a metadata edit" sh -c "jq '.note = \"space again\"' '$M/full/versions/3.json' >'$TMP/rec.json' && cp '$TMP/rec.json' '$M/full/versions/3.json' &&
	test \"\$(jq -r .note '$M/full/versions/3.json')\" = 'space again'"
test_done
