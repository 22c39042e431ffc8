#!/bin/bash
# SPDX-License-Identifier: MIT
# t0020: inside a draft, files behave like files on disk: random pwrite()s,
# holes, truncates, rename, unlink, mkdir/rmdir, chmod and times, and the
# copy tools that preserve modes and times (cp -a, rsync -a).
. "$(dirname "$0")/lib.sh"

mount_mrfs
check "mkdir a model and a draft" mkdir -p "$M/bert/versions/1"
D=$M/bert/versions/1
ref=$TMP/ref
mkdir -p "$ref"

say "# random writes, holes and truncates, the same on disk and in the draft"
cat >"$TMP/rw.py" <<'EOF'
# rw.py SEED OPS MNTFILE DISKFILE: the same random operations on both files
# through two open descriptors; reads are compared as they go.
import os, random, sys
seed, nops, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = random.Random(seed)
fa = os.open(a, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
fb = os.open(b, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
size = 0
bad = 0
for i in range(nops):
    k = r.random()
    if k < 0.60:                                    # overwrite or extend
        off = r.randrange(0, size + 1) if size and r.random() < 0.7 else r.randrange(0, size + 300000)
        n = r.choice([1, 7, 512, 4095, 4096, 4097, 65536, 131073, r.randrange(1, 300000)])
        data = r.randbytes(n)
        assert os.pwrite(fa, data, off) == n, "short pwrite in the mount"
        os.pwrite(fb, data, off)
        size = max(size, off + n)
    elif k < 0.70:                                  # hole beyond EOF
        off = size + r.randrange(1, 1 << 21)
        data = r.randbytes(r.randrange(1, 5000))
        os.pwrite(fa, data, off); os.pwrite(fb, data, off)
        size = off + len(data)
    elif k < 0.80:                                  # truncate down
        size = r.randrange(0, size + 1)
        os.ftruncate(fa, size); os.ftruncate(fb, size)
    elif k < 0.85:                                  # truncate up
        size = size + r.randrange(1, 1 << 20)
        os.ftruncate(fa, size); os.ftruncate(fb, size)
    else:                                           # read back while open
        off = r.randrange(0, size + 10)
        n = r.randrange(1, 200000)
        x, y = os.pread(fa, n, off), os.pread(fb, n, off)
        if x != y:
            bad += 1
            print("op %d: pread(%d, %d) differs: %d vs %d bytes" % (i, n, off, len(x), len(y)))
    if os.fstat(fa).st_size != os.fstat(fb).st_size:
        print("op %d: size %d, expected %d" % (i, os.fstat(fa).st_size, os.fstat(fb).st_size))
        bad += 1
os.fsync(fa)
os.close(fa); os.close(fb)
sys.exit(1 if bad else 0)
EOF
check "200 random pwrite/ftruncate/pread on an open file agree with disk" \
	python3 "$TMP/rw.py" seed1 200 "$D/rand.bin" "$ref/rand.bin"
check "after close: cmp rand.bin with the disk copy" cmp "$ref/rand.bin" "$D/rand.bin"
check_eq "after close: same size" "$(stat -c %s "$ref/rand.bin")" "$(stat -c %s "$D/rand.bin")"
check "a second file, another seed, reopened for more writes" \
	python3 "$TMP/rw.py" seed2 100 "$D/second.bin" "$ref/second.bin"
check "cmp second.bin" cmp "$ref/second.bin" "$D/second.bin"

say "# shell-level writes: append, dd conv=notrunc, truncate(1)"
printf 'hello\n' >"$D/log.txt"
printf 'world\n' >>"$D/log.txt"
check_eq "append with >>" "$(printf 'hello\nworld')" "$(cat "$D/log.txt")"
cp "$ref/rand.bin" "$ref/dd.bin"
cp "$ref/rand.bin" "$D/dd.bin"
for f in "$ref/dd.bin" "$D/dd.bin"; do
	printf 'PATCHED' | dd of="$f" bs=1 seek=100000 conv=notrunc status=none
	truncate -s 777777 "$f"
	truncate -s 1234567 "$f"
done
check "dd conv=notrunc in the middle, then truncate -s down and up" cmp "$ref/dd.bin" "$D/dd.bin"
check_eq "truncated size" 1234567 "$(stat -c %s "$D/dd.bin")"
check "the extended tail reads as zeros" cmp <(head -c $((1234567 - 777777)) /dev/zero) <(tail -c $((1234567 - 777777)) "$D/dd.bin")

say "# rename, unlink, mkdir, rmdir inside the draft"
check "mkdir sub/deeper" mkdir -p "$D/sub/deeper"
check "mv rand.bin sub/deeper/moved.bin" mv "$D/rand.bin" "$D/sub/deeper/moved.bin"
check_fails "the old name is gone" test -e "$D/rand.bin"
check "the new name has the bytes" cmp "$ref/rand.bin" "$D/sub/deeper/moved.bin"
check "mv a directory: sub -> renamed" mv "$D/sub" "$D/renamed"
check "its files moved with it" cmp "$ref/rand.bin" "$D/renamed/deeper/moved.bin"
printf 'old\n' >"$D/victim"
printf 'new\n' >"$D/winner"
check "mv over an existing file replaces it" mv -f "$D/winner" "$D/victim"
check_eq "the replaced file has the new content" new "$(cat "$D/victim")"
check_fails "the source name is gone" test -e "$D/winner"
check "rm victim" rm "$D/victim"
check_fails "unlinked file is gone" test -e "$D/victim"
expect_errno_k ENOTEMPTY rmdir "$D/renamed"
check "rm dd.bin" rm "$D/dd.bin"
check "mkdir empty; rmdir empty" sh -c "mkdir '$D/empty' && rmdir '$D/empty'"
check_fails "rmdir'ed directory is gone" test -e "$D/empty"
exec 3<"$D/second.bin"
check "rm a file that is still open" rm "$D/second.bin"
check "the open descriptor still reads the bytes" sh -c "cmp '$ref/second.bin' - <&3"
exec 3<&-
want=$(printf '%s\n' log.txt renamed renamed/deeper renamed/deeper/moved.bin)
check_eq "the draft holds exactly what is left" "$want" "$(cd "$D" && find . -mindepth 1 -printf '%P\n' | sort)"

say "# chmod and touch -d keep mode and mtime"
printf 'x' >"$D/script.sh"
check "chmod 750 script.sh" chmod 750 "$D/script.sh"
check "touch -d 2020-01-02T03:04:05Z script.sh" touch -d 2020-01-02T03:04:05Z "$D/script.sh"
check_eq "stat: mode 750, mtime 1577934245" "750 1577934245" "$(stat -c '%a %Y' "$D/script.sh")"
check "chmod 700 and touch -d on a directory" sh -c "chmod 700 '$D/renamed/deeper' && touch -d @1500000000 '$D/renamed/deeper'"
check_eq "stat: directory mode 700, mtime 1500000000" "700 1500000000" "$(stat -c '%a %Y' "$D/renamed/deeper")"

say "# cp -a and rsync -a preserve modes and times"
tree=$TMP/tree
mkdir -p "$tree/bin" "$tree/data/raw"
printf 'run\n' >"$tree/bin/run.sh"
chmod 755 "$tree/bin/run.sh"
mkdata "$tree/data/raw/blob" 300000
chmod 600 "$tree/data/raw/blob"
printf 'ro\n' >"$tree/data/readonly.txt"
chmod 444 "$tree/data/readonly.txt"
chmod 750 "$tree/data/raw"
touch -d @1600000000 "$tree/bin/run.sh"
touch -d @1600000001 "$tree/data/raw/blob"
touch -d @1600000002 "$tree/data/readonly.txt"
touch -d @1600000003 "$tree/data/raw" "$tree/data" "$tree/bin"
# path, mode, mtime (and size of files) of everything under $1
attrs() {
	(cd "$1" && find . -mindepth 1 | sort | while read -r p; do
		if [ -f "$p" ]; then stat -c '%n %a %Y %s' "$p"; else stat -c '%n %a %Y %F' "$p"; fi
	done)
}
mkdir "$M/bert/versions/2"
check "cp -a tree/. versions/2/" cp -a "$tree/." "$M/bert/versions/2/"
check_eq "cp -a: modes and mtimes preserved" "$(attrs "$tree")" "$(attrs "$M/bert/versions/2")"
check "cp -a: diff -r" diff -r "$tree" "$M/bert/versions/2"
if command -v rsync >/dev/null; then
	check "rsync -a tree/ versions/3/" rsync -a "$tree/" "$M/bert/versions/3/"
	check_eq "rsync -a: modes and mtimes preserved" "$(attrs "$tree")" "$(attrs "$M/bert/versions/3")"
	check "rsync -a: diff -r" diff -r "$tree" "$M/bert/versions/3"
	check_eq "rsync's temporary files are gone" "" "$(find "$M/bert/versions/3" -name '.*')"
else
	say "# rsync not installed: skipped"
fi

say "# sealing keeps all of it"
before=$(attrs "$D")
check "chmod a-w versions/1" chmod a-w "$D"
check_eq "modes and mtimes unchanged by sealing" "$before" "$(attrs "$D")"
check "log.txt after sealing" test "$(cat "$D/log.txt")" = "$(printf 'hello\nworld')"
check "moved.bin after sealing" cmp "$ref/rand.bin" "$D/renamed/deeper/moved.bin"
check "chmod a-w versions/2" chmod a-w "$M/bert/versions/2"
check_eq "cp -a tree still the same after sealing" "$(attrs "$tree")" "$(attrs "$M/bert/versions/2")"
remount
check_eq "after remount: modes and mtimes of versions/1" "$before" "$(attrs "$D")"
check "after remount: moved.bin" cmp "$ref/rand.bin" "$D/renamed/deeper/moved.bin"
check_eq "after remount: versions/2 attributes" "$(attrs "$tree")" "$(attrs "$M/bert/versions/2")"

test_done
