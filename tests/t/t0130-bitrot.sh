#!/bin/bash
# SPDX-License-Identifier: MIT
# t0130: bit rot. On an unmounted store, bytes at random offsets of the
# pack files are flipped (dd conv=notrunc). Each flipped byte is traced,
# from outside mrfs, to the files that hold it (the 32 bytes around it
# are searched for in the source files: pack files hold raw chunk bytes).
# Then, mounted:
#   - every read of a damaged file that touches the flipped byte fails with
#     EIO, whichever way it is reached (versions/N, the production alias,
#     /serving), and again when repeated; no read of any file, damaged or
#     not, ever returns bytes other than the source's (random ranges
#     included): they are exact or EIO;
#   - undamaged files read back exactly;
#   - the daemon logs "read PATH: a chunk does not match its hash (EIO)"
#     for each damaged file read;
# and unmounted, mrfs verify exits non-zero and names exactly the damaged
# files (model, version, path).
# MRFS_STRESS=full (make stress): 5 stores with 12 flips each; else one
# store with 8 flips. MRFS_BITROT_SEED=S repeats a run.
. "$(dirname "$0")/lib.sh"

if [ "${MRFS_STRESS:-}" = full ]; then
	stores=5 flips=12
else
	stores=1 flips=8
fi
seed=${MRFS_BITROT_SEED:-$RANDOM$RANDOM}
say "# $stores store(s), $flips flipped bytes each; seed $seed"
SRC=$TMP/src
mkdir -p "$SRC/v1" "$SRC/v2" "$SRC/v3" "$SRC/v4"
mkdata "$SRC/v1/big.bin" 6000000 big
mkdata "$SRC/v1/small.bin" 200000 small
echo '{"arch": "resnet", "layers": 50}' >"$SRC/v1/config.json"
# v2's big.bin shares v1's first 5 MB (so chunks are shared, deduplicated)
head -c 5000000 "$SRC/v1/big.bin" >"$SRC/v2/big.bin"
mkdata "$SRC/v2/tail" 1000000 tail2
cat "$SRC/v2/tail" >>"$SRC/v2/big.bin"
rm "$SRC/v2/tail"
mkdata "$SRC/v2/other.bin" 2000000 other
cp "$SRC/v1/small.bin" "$SRC/v3/dup.bin" # the same bytes as v1's small.bin
mkdata "$SRC/v3/model.safetensors" 1500000 st
mkdata "$SRC/v4/draft.bin" 900000 draft # v4 stays a draft

cat >"$TMP/rot.py" <<'EOF'
# rot.py flip|read ...: the bit rot of t0130.
import errno, hashlib, json, os, random, sys

def sources(src):
    out = {}
    for v in sorted(os.listdir(src)):
        for r, d, fs in os.walk(os.path.join(src, v)):
            for f in fs:
                full = os.path.join(r, f)
                out["%s/%s" % (v[1:], os.path.relpath(full, os.path.join(src, v)))] = open(full, "rb").read()
    return out

def flip(store, src, n, seed, out):
    """Flip n bytes at random offsets of the packs; trace each to the files holding it."""
    rng = random.Random(seed)
    srcs = sources(src)
    packs = sorted(os.path.join(store, "packs", p) for p in os.listdir(os.path.join(store, "packs")))
    sizes = [os.path.getsize(p) for p in packs]
    pristine = {p: open(p, "rb").read() for p in packs}
    def occurrences(window):
        n = 0
        for data in pristine.values():
            i = data.find(window)
            while i >= 0:
                n += 1
                i = data.find(window, i + 1)
        return n
    done = set()
    flips = []
    while len(flips) < n:
        pack = rng.choices(packs, sizes)[0]
        off = rng.randrange(os.path.getsize(pack))
        if (pack, off) in done:
            continue
        done.add((pack, off))
        with open(pack, "rb") as f:
            f.seek(max(0, off - 32))
            before = f.read(off - max(0, off - 32) + 1)   # up to the byte itself
            f.seek(off)
            after = f.read(33)                              # the byte and what follows
        holders = {}
        ambiguous = False
        for window, at in ((before, len(before) - 1), (after, 0)):
            if len(window) < 24:
                continue
            for name, data in srcs.items():
                i = data.find(window)
                if i >= 0 and data.find(window, i + 1) < 0:
                    holders[name] = i + at
            if holders:
                # stored more than once (v2's big.bin repeats v1's first 5 MB, and the
                # chunk where they part is stored for each): which file uses the
                # flipped copy is not known from outside
                ambiguous = occurrences(window) > 1
                break
        if not holders:
            # a file too small for the windows: look for all of it around the byte
            with open(pack, "rb") as f:
                f.seek(max(0, off - 64))
                region = f.read(off - max(0, off - 64) + 65)
            at0 = off - max(0, off - 64)
            for name, data in srcs.items():
                if 0 < len(data) <= 64:
                    i = region.find(data)
                    while i >= 0:
                        if i <= at0 < i + len(data):
                            holders[name] = at0 - i
                        i = region.find(data, i + 1)
        old = after[0]
        new = old ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else old ^ 0xff
        flips.append({"pack": os.path.basename(pack), "off": off, "old": old, "new": new,
                      "files": holders, "ambiguous": ambiguous})
        # dd conv=notrunc, as an admin would
        os.system("printf '\\%s' | dd of='%s' bs=1 seek=%d conv=notrunc status=none"
                  % (format(new, "03o"), pack, off))
        with open(pack, "rb") as f:
            f.seek(off)
            if f.read(1)[0] != new:
                print("flip at %s:%d did not take" % (pack, off), file=sys.stderr)
                sys.exit(1)
    json.dump(flips, open(out, "w"))

def read_range(path, off, size):
    """The bytes, or the errno name."""
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(off)
            out = b""
            while len(out) < size:
                b = f.read(min(size - len(out), 1 << 20))
                if not b:
                    break
                out += b
            return out
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def reads(mnt, src, flipsfile, seed, model):
    """Read every file in every way; print one line per problem, then the figures."""
    rng = random.Random(seed)
    srcs = sources(src)
    flips = json.load(open(flipsfile))
    damaged = {}     # file -> offsets of flipped bytes it surely holds
    maybe = {}       # file -> offsets of flipped bytes it may hold (stored twice)
    for fl in flips:
        for name, at in fl["files"].items():
            (maybe if fl["ambiguous"] else damaged).setdefault(name, []).append(at)
    unattributed = sum(1 for fl in flips if not fl["files"])
    def may_fail(name):
        return name in damaged or name in maybe or unattributed
    m = os.path.join(mnt, "models", model)
    prod = os.readlink(os.path.join(m, "production")).split("/")[1]
    fig = {"eio": 0, "exact": 0, "wrong": 0, "failed_files": []}
    for name, data in sorted(srcs.items()):
        v, rel = name.split("/", 1)
        paths = [os.path.join(m, "versions", v, rel)]
        if v == prod:
            paths += [os.path.join(m, "production", rel),
                      os.path.join(mnt, "serving", "production", model, v, rel)]
        whole = [read_range(p, 0, len(data) + 1) for p in paths]
        for p, got in zip(paths, whole):
            if isinstance(got, bytes):
                if got == data:
                    fig["exact"] += 1
                    if name in damaged:
                        print("problem\t%s: read whole, exactly, though byte(s) %s of it were flipped" % (
                            p, damaged[name]))
                else:
                    fig["wrong"] += 1
                    print("problem\t%s: read whole, %d bytes, other than the source's (never wrong data)" % (p, len(got)))
            elif got == "EIO":
                fig["eio"] += 1
                if not may_fail(name):
                    print("problem\t%s: EIO, but no flipped byte is in it" % p)
            else:
                print("problem\t%s: read whole: %s (expected the bytes or EIO)" % (p, got))
        if any(g == "EIO" for g in whole):
            fig["failed_files"].append(name)
        if len(set(map(lambda g: g if isinstance(g, str) else "ok", whole))) > 1:
            print("problem\t%s: read whole, the ways to it disagree: %s" % (
                name, [g if isinstance(g, str) else "bytes" for g in whole]))
        # the flipped bytes themselves, twice, and random ranges
        for at in damaged.get(name, []) + maybe.get(name, []):
            sure = at in damaged.get(name, [])
            for attempt in (1, 2):
                got = read_range(paths[0], at, 1)
                if got == "EIO":
                    fig["eio"] += 1
                elif got == data[at:at + 1] and not sure:
                    fig["exact"] += 1   # the file uses the other copy
                else:
                    print("problem\t%s: reading byte %d (flipped), attempt %d: %s, not EIO" % (
                        paths[0], at, attempt,
                        ("the source's byte" if got == data[at:at + 1] else "another byte")
                        if isinstance(got, bytes) else got))
        for k in range(6):
            off = rng.randrange(len(data)) if data else 0
            size = rng.choice((1, 4096, 131072, 1 << 20))
            got = read_range(paths[0], off, size)
            if isinstance(got, bytes):
                if got != data[off:off + size]:
                    fig["wrong"] += 1
                    print("problem\t%s: %d bytes at %d read other bytes than the source's" % (paths[0], size, off))
                else:
                    fig["exact"] += 1
            elif got == "EIO":
                fig["eio"] += 1
                if not may_fail(name):
                    print("problem\t%s: %d bytes at %d: EIO, but no flipped byte is in the file" % (paths[0], size, off))
            else:
                print("problem\t%s: %d bytes at %d: %s" % (paths[0], size, off, got))
    print("damaged\t" + " ".join(sorted(damaged)))
    print("maybe\t" + " ".join(sorted(set(maybe) - set(damaged))))
    print("failed\t" + " ".join(sorted(fig["failed_files"])))
    print("figures\t%d reads EIO, %d exact, %d wrong; %d flips traced to files (%d of them to bytes "
          "stored twice), %d to no file" % (fig["eio"], fig["exact"], fig["wrong"], len(flips) - unattributed,
                                            sum(1 for fl in flips if fl["ambiguous"]), unattributed))

if __name__ == "__main__":
    a = sys.argv[2:]
    if sys.argv[1] == "flip":
        flip(a[0], a[1], int(a[2]), a[3], a[4])
    else:
        reads(a[0], a[1], a[2], a[3], a[4])
EOF

total_flips=0 total_eio=0 total_traced=0 total_damaged=0
for ((s = 1; s <= stores; s++)); do
	model=rot$s
	say "# store $s: model $model"
	if [ $s -gt 1 ]; then
		rm -rf "$STORE"
		: >"$LOG"
	fi
	mount_mrfs
	check "store $s: $model: sealed v1..v3, production -> v2, draft v4" sh -c "
		mkdir '$M/$model' &&
		cp -r '$SRC/v1' '$M/$model/versions/1' && chmod a-w '$M/$model/versions/1' &&
		cp -r '$SRC/v2' '$M/$model/versions/2' && ln -s versions/2 '$M/$model/production' &&
		cp -r '$SRC/v3' '$M/$model/versions/3' && chmod a-w '$M/$model/versions/3' &&
		cp -r '$SRC/v4' '$M/$model/versions/4'"
	remount
	# v2's big.bin shares its first chunks with v1's: its chunks are not
	# contiguous in the pack, so a read spanning them takes two segments
	check "store $s: before the damage, every file reads back exactly (after a remount)" sh -c "
		for v in 1 2 3 4; do (cd '$SRC/v'\$v && find . -type f) | while read -r f; do
			cmp '$SRC/v'\$v/\$f '$M/$model/versions/'\$v/\$f || exit 1
		done || exit 1; done"
	umount_mrfs
	check "store $s: mrfs verify is clean before the damage" "$MRFS_BIN" verify --store "$STORE"

	python3 "$TMP/rot.py" flip "$STORE" "$SRC" "$flips" "$seed$s" "$TMP/flips$s.json" ||
		bail_out "flipping bytes failed"
	say "# flipped: $(jq -c '[.[] | "\(.pack):\(.off) \(.old)->\(.new) in \(.files | keys | join(","))"]' "$TMP/flips$s.json")"

	mount_mrfs
	before=$(log_lines)
	out=$(python3 "$TMP/rot.py" read "$MNT" "$SRC" "$TMP/flips$s.json" "$seed$s" "$model" 2>&1)
	check_eq "store $s: reads are exact or EIO, EIO exactly where bytes were flipped" "" \
		"$(printf '%s\n' "$out" | grep -v -E '^(damaged|maybe|failed|figures)	' | cut -f2- | head -n 30)"
	damaged=$(printf '%s\n' "$out" | sed -n 's/^damaged\t//p')
	maybe=$(printf '%s\n' "$out" | sed -n 's/^maybe\t//p')
	failed=$(printf '%s\n' "$out" | sed -n 's/^failed\t//p')
	say "# store $s: files holding a flipped byte: ${damaged:-none}; maybe (bytes stored twice): ${maybe:-none}"
	say "# store $s: $(printf '%s\n' "$out" | sed -n 's/^figures\t//p')"
	# failed: every file holding a flipped byte, and no file holding none
	if [ -z "$maybe" ] && printf '%s\n' "$out" | grep -q ', 0 to no file$'; then
		check_eq "store $s: the files whose reads fail are those holding a flipped byte" "$damaged" "$failed"
	else
		check "store $s: the files whose reads fail include all those holding a flipped byte" \
			sh -c "for f in $damaged; do case ' $failed ' in *\" \$f \"*) ;; *) echo \$f; exit 1 ;; esac; done"
	fi
	# one log line per damaged file read
	missing=
	for f in $failed; do
		path="/models/$model/versions/${f%%/*}/${f#*/}"
		tail -n +$((before + 1)) "$LOG" | grep -qF "read $path: a chunk does not match its hash (EIO)" ||
			missing="$missing $path"
	done
	check_eq "store $s: the daemon logged 'read PATH: a chunk does not match its hash (EIO)' for each damaged file" \
		"" "${missing# }"
	daemon_alive || bail_out "the daemon died reading damaged data"
	umount_mrfs

	vout=$("$MRFS_BIN" verify --store "$STORE" --json 2>"$TMP/verify.err")
	vrc=$?
	if [ -n "$failed" ]; then
		check_eq "store $s: mrfs verify exits 1 on the damaged store" 1 "$vrc"
	else
		say "# store $s: no flip touched a file; mrfs verify exit status $vrc"
	fi
	named=$(printf '%s\n' "$vout" | jq -r --arg m "$model" \
		'[.problems[].used_by[] | select(.model == $m) | "\(.version)/\(.path)"] | unique | join(" ")' 2>&1)
	check_eq "store $s: mrfs verify names exactly the damaged files (those whose reads fail)" "$failed" "$named"
	check "store $s: mrfs verify (text) names them too" sh -c "
		'$MRFS_BIN' verify --store '$STORE' 2>&1 | tee '$TMP/verify.txt' >/dev/null
		for f in $failed; do grep -qF \"in $model:v\${f%%/*} \${f#*/}\" '$TMP/verify.txt' || { echo \"not named: \$f\"; cat '$TMP/verify.txt'; exit 1; }; done"
	total_flips=$((total_flips + flips))
	total_traced=$((total_traced + $(jq '[.[] | select(.files | length > 0)] | length' "$TMP/flips$s.json")))
	total_damaged=$((total_damaged + $(wc -w <<<"$failed")))
	total_eio=$((total_eio + $(printf '%s\n' "$out" | sed -n 's/^figures\t\([0-9]*\) reads EIO.*/\1/p')))
done
say "# figures: $total_flips bytes flipped in $stores store(s), $total_traced traced to files," \
	"$total_damaged damaged files, $total_eio reads failed with EIO as expected"
test_done
