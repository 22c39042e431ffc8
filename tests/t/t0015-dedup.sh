#!/bin/bash
# SPDX-License-Identifier: MIT
# t0015: a team logs checkpoints that share most of their bytes. The store
# keeps shared chunks once, and every file still reads back byte for byte,
# cold and warm, whole, in random pieces and through mmap, even where one
# read spans chunks stored far apart (a reply made of several pack pieces).
. "$(dirname "$0")/lib.sh"

mount_mrfs
src=$TMP/src
mkdir -p "$src"
mkdata "$src/a.bin" $((9 << 20)) alpha
mkdata "$src/b.bin" $((7 << 20)) beta
cat "$src/a.bin" "$src/b.bin" >"$src/ab.bin"
cat "$src/b.bin" "$src/a.bin" >"$src/ba.bin"
printf 'tail' | cat "$src/ab.bin" - >"$src/ab-tail.bin"

check "mkdir a model" mkdir "$M/lm"
check "log a.bin and b.bin as version 1" sh -c "mkdir '$M/lm/versions/1' && cp '$src/a.bin' '$src/b.bin' '$M/lm/versions/1/'"
check "seal version 1" chmod a-w "$M/lm/versions/1"
check "log ab, ba and ab-tail as version 2" sh -c "mkdir '$M/lm/versions/2' && cp '$src/ab.bin' '$src/ba.bin' '$src/ab-tail.bin' '$M/lm/versions/2/'"
check "seal version 2" chmod a-w "$M/lm/versions/2"

say "# the store kept the shared chunks once"
umount_mrfs
stats=$("$MRFS_BIN" stats --store "$STORE" --json)
logical=$(jq -r '.logical_bytes' <<<"$stats")
stored=$(jq -r '.stored_bytes' <<<"$stats")
check_eq "logical bytes are the five files (9+7+16+16+16 MiB + 4)" $(((64 << 20) + 4)) "$logical"
check "stored bytes stay under a.bin + b.bin + 6 chunks' worth ($stored)" \
	test "$stored" -lt $(((16 << 20) + (6 << 20)))
check "verify is clean" "$MRFS_BIN" verify --store "$STORE"
mount_mrfs

say "# every file reads back, cold, warm, in pieces and mapped"
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
for f in a.bin b.bin; do
	check "cold: versions/1/$f" cmp "$src/$f" "$M/lm/versions/1/$f"
done
for f in ab.bin ba.bin ab-tail.bin; do
	check "cold: versions/2/$f" cmp "$src/$f" "$M/lm/versions/2/$f"
	check "warm: versions/2/$f" cmp "$src/$f" "$M/lm/versions/2/$f"
done
cat >"$TMP/pieces.py" <<'PY'
# pieces.py REF FILE: random preads of FILE (sizes up to 3 MiB, across chunk
# boundaries) and an mmap of it must equal REF.
import mmap, os, random, sys
ref, path = open(sys.argv[1], "rb").read(), sys.argv[2]
fd = os.open(path, os.O_RDONLY)
rng = random.Random(15)
for i in range(300):
    off = rng.randrange(0, len(ref))
    n = rng.choice([1, 4096, 131072 + 7, 1 << 20, 3 << 20])
    got = os.pread(fd, n, off)
    if got != ref[off:off + n]:
        sys.exit("pread %d at %d differs" % (n, off))
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    if len(m) != len(ref) or m[:] != ref:
        sys.exit("mmap differs")
print("300 preads and an mmap agree")
PY
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
check "ba.bin in random pieces and mapped" python3 "$TMP/pieces.py" "$src/ba.bin" "$M/lm/versions/2/ba.bin"
check "ab-tail.bin in random pieces and mapped" python3 "$TMP/pieces.py" "$src/ab-tail.bin" "$M/lm/versions/2/ab-tail.bin"
test_done
