#!/bin/bash
# SPDX-License-Identifier: MIT
# t0093: ML libraries reading through the mount. numpy memory-maps the
# tensors of a safetensors file (8-byte header length, JSON header, raw
# bytes) through /serving/production/llm/<n>/ and through
# /models/llm/production/ while production flips between three versions:
# every mapping holds exactly the bytes of the one version its header names,
# and a mapping made before the flips still holds them after. torch.save'd
# state_dicts of a small MLP, logged with cp and promoted, load back with
# torch.load through production/, /serving and @<time> equal tensor for
# tensor. Uses Debian's python3-numpy and python3-torch (/usr/bin/python3);
# a part whose import fails is skipped, with the reason.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
FLIPS_FOR=6   # seconds the numpy readers run while production flips

now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

# have MODULE PACKAGE: MODULE imports with $PY (its version in $VERSION);
# else say why this part is skipped.
have() {
	local err
	if err=$("$PY" -c "import $1; print($1.__version__)" 2>&1); then
		VERSION=$err
		return 0
	fi
	say "# SKIP the $1 part: '$PY -c \"import $1\"' failed: $(printf '%s' "$err" | tail -n 1)"
	say "#   apt-cache policy $2 says Installed: $(apt-cache policy "$2" 2>&1 | sed -n 's/^ *Installed: //p')"
	return 1
}

mount_mrfs

# --- numpy: memory-mapped safetensors ----------------------------------------

cat >"$TMP/safetensors.py" <<'EOF'
# Write and read safetensors files with numpy only.
#   safetensors.py make DIR N       DIR/<n>/model.safetensors for n = 1..N
#   safetensors.py read SRC SECONDS STOP PATH...
# "read" opens each PATH over and over until STOP exists (or SECONDS pass);
# a PATH with "{n}" in it is a /serving directory: its one numbered entry
# fills in {n}. Each time it maps every tensor with numpy.memmap and
# compares the bytes with SRC/<v>/model.safetensors, where v is the version
# the header's __metadata__ names (and, for /serving, must equal {n}).
import json, os, struct, sys, time
import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8, "BF16": None}

def make(d, n):
    for v in range(1, n + 1):
        r = np.random.default_rng(v)
        t = {
            "embed.weight": r.standard_normal((1024, 256), dtype=np.float32),
            "fc.weight": r.standard_normal((256, 256)).astype(np.float16),
            "fc.bias": r.standard_normal(256, dtype=np.float32),
            "mask": r.integers(0, 255, 1001, dtype=np.uint8),
            "steps": np.arange(v, v + 3, dtype=np.int64),
        }
        header, off, blobs = {"__metadata__": {"version": str(v)}}, 0, []
        for name, a in t.items():
            b = a.tobytes()
            dt = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.uint8: "U8"}[a.dtype.type]
            header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        os.makedirs(os.path.join(d, str(v)))
        with open(os.path.join(d, str(v), "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def header_of(f):
    n = struct.unpack("<Q", os.pread(f.fileno(), 8, 0))[0]
    return n, json.loads(os.pread(f.fileno(), n, 8))

def tensors(f):
    """Every tensor of open file f, memory-mapped, and its header's version."""
    n, h = header_of(f)
    out = {}
    for name, t in h.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        a = np.memmap(f, dtype=DT[t["dtype"]], mode="r", offset=8 + n + b, shape=tuple(t["shape"]))
        if a.nbytes != e - b:
            raise ValueError("%s: %d bytes mapped, %d in the header" % (name, a.nbytes, e - b))
        out[name] = a
    return h["__metadata__"]["version"], out

def read(src, seconds, stop, paths):
    ref = {}
    for v in os.listdir(src):
        with open(os.path.join(src, v, "model.safetensors"), "rb") as f:
            _, t = tensors(f)
            ref[v] = {k: a.tobytes() for k, a in t.items()}
    stats = {p: {} for p in paths}
    bad, missing, retries, maps = [], [], 0, 0
    # a mapping made now must hold the same bytes after all the flips
    with open(paths[-1], "rb") as f:
        held_v, held = tensors(f)
    t_end = time.time() + seconds
    probes = 0
    while time.time() < t_end and not os.path.exists(stop):
        # a loader first checks that the file is there: production must
        # never be missing, however the flips fall
        for i in range(20):
            for p in paths:
                d = os.path.dirname(p.split("{n}")[0]) if "{n}" in p else p
                try:
                    os.stat(d)
                    probes += 1
                except FileNotFoundError:
                    missing.append("stat %s: ENOENT during a flip" % d)
        for p in paths:
            path, want = p, None
            try:
                if "{n}" in p:
                    nums = [x for x in os.listdir(os.path.dirname(p.split("{n}")[0])) if x.isdigit()]
                    if len(nums) != 1:
                        bad.append("%s: numbered entries %s" % (p, nums))
                        continue
                    want = nums[0]
                    path = p.replace("{n}", want)
                with open(path, "rb") as f:
                    v, t = tensors(f)
                    maps += len(t)
                    if want is not None and v != want:
                        bad.append("%s: the header says version %s" % (path, v))
                    elif v not in ref:
                        bad.append("%s: unknown version %r" % (path, v))
                    elif sorted(t) != sorted(ref[v]):
                        bad.append("%s: tensors %s" % (path, sorted(t)))
                    else:
                        diff = [k for k in t if t[k].tobytes() != ref[v][k]]
                        if diff:
                            bad.append("%s (version %s): tensors differ: %s" % (path, v, diff))
                    stats[p][v] = stats[p].get(v, 0) + 1
                    del t
            except FileNotFoundError:
                if want is None:
                    # the alias or /serving/production/llm was missing
                    missing.append("%s: ENOENT during a flip" % path)
                else:
                    retries += 1  # {n} moved on between the listing and the open
            except (OSError, ValueError) as e:
                bad.append("%s: %s" % (path, e))
    if {k: a.tobytes() for k, a in held.items()} != ref[held_v]:
        bad.append("the mapping held through the flips changed")
    for p in paths:
        print("versions %s: %s" % (p, " ".join("v%s=%d" % kv for kv in sorted(stats[p].items()))))
    print("tensors mapped: %d, retries: %d, stat probes: %d" % (maps, retries, probes))
    print("bad: %d" % len(bad))
    for b in bad[:10]:
        print("  " + b)
    print("missing: %d" % len(missing))
    for b in missing[:5]:
        print("  " + b)
    sys.exit(1 if bad or missing else 0)

if sys.argv[1] == "make":
    make(sys.argv[2], int(sys.argv[3]))
else:
    read(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5:])
EOF

if have numpy python3-numpy; then
	say "# numpy $VERSION: safetensors through the mount"
	check "make three safetensors files" "$PY" "$TMP/safetensors.py" make "$TMP/st" 3
	check "mkdir /models/llm; cp -r and seal versions 1, 2, 3" sh -c "mkdir '$M/llm' &&
		for n in 1 2 3; do cp -r '$TMP/st/'\$n '$M/llm/versions/'\$n && chmod a-w '$M/llm/versions/'\$n || exit 1; done"
	check "ln -s versions/1 production" ln -s versions/1 "$M/llm/production"
	check "the logged files are the sources" cmp "$TMP/st/2/model.safetensors" "$M/llm/versions/2/model.safetensors"

	# production flips between the three versions until the readers are done
	(
		i=0
		while [ ! -e "$TMP/flip.stop" ]; do
			i=$((i + 1))
			ln -sfn "versions/$((i % 3 + 1))" "$M/llm/production" || echo "ln -sfn versions/$((i % 3 + 1)) failed" >>"$TMP/flip.err"
			sleep 0.01
		done
		echo $i >"$TMP/flips"
	) &
	flipper=$!
	"$PY" "$TMP/safetensors.py" read "$TMP/st" $FLIPS_FOR "$TMP/flip.stop" \
		"$MNT/serving/production/llm/{n}/model.safetensors" "$M/llm/production/model.safetensors" \
		>"$TMP/np.out" 2>&1
	rc=$?
	touch "$TMP/flip.stop"
	wait $flipper
	say "# $(cat "$TMP/flips" 2>/dev/null) flips; $(sed -n 's/^tensors mapped/tensors mapped/p' "$TMP/np.out")"
	sed -n 's/^versions /# versions read through /p' "$TMP/np.out"
	check_eq "the reader ran to the end" "" "$(grep -v -e '^versions ' -e '^tensors mapped' -e '^bad' -e '^missing' -e '^  ' "$TMP/np.out")"
	check_eq "numpy.memmap: every tensor held the bytes of the version its header names" \
		"bad: 0" "$(grep '^bad:' "$TMP/np.out")" || sed -n '/^bad/,/^missing/p' "$TMP/np.out" | sed 's/^/    /'
	check_eq "production/ and /serving/production/llm were never missing during the flips (ln -sfn is atomic)" \
		"missing: 0" "$(grep '^missing:' "$TMP/np.out")" || sed -n '/^missing/,$p' "$TMP/np.out" | sed 's/^/    /'
	check_eq "the reader's exit status" "$( [ "$(grep -c '^bad: 0\|^missing: 0' "$TMP/np.out")" = 2 ] && echo 0 || echo 1)" "$rc"
	check_eq "the flips' ln -sfn never failed" "" "$(cat "$TMP/flip.err" 2>/dev/null)"
	check "production flipped at least 20 times during the reads" test "$(cat "$TMP/flips" 2>/dev/null || echo 0)" -ge 20
	for p in serving models; do
		check "through $p: the readers mapped more than one version" \
			test "$(grep "^versions .*$p" "$TMP/np.out" | grep -o 'v[0-9]=' | wc -l)" -ge 2
	done
	check "through /serving: every tensor of every version was mapped at least once" \
		test "$(sed -n 's/^tensors mapped: \([0-9]*\).*/\1/p' "$TMP/np.out")" -ge 30
fi

# --- torch: state_dicts through production/ ----------------------------------

cat >"$TMP/mlp.py" <<'EOF'
# mlp.py save SEED FILE [SEED FILE]...: torch.save the state_dict of an MLP
# made with SEED to FILE.
# mlp.py check SEED FILE...: each FILE must torch.load to that state_dict,
# tensor for tensor (torch.equal), and give the same outputs when loaded
# into a fresh MLP.
import sys
import torch
from torch import nn

def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 10))

op = sys.argv[1]
if op == "save":
    for seed, f in zip(sys.argv[2::2], sys.argv[3::2]):
        torch.save(mlp(int(seed)).state_dict(), f)
    sys.exit(0)
seed, files = int(sys.argv[2]), sys.argv[3:]
want = mlp(seed)
x = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
bad = 0
for f in files:
    sd = torch.load(f)
    ref = want.state_dict()
    if sorted(sd) != sorted(ref):
        print("%s: keys %s, want %s" % (f, sorted(sd), sorted(ref)))
        bad += 1
        continue
    diff = [k for k in ref if not torch.equal(sd[k], ref[k])]
    if diff:
        print("%s: tensors differ: %s" % (f, diff))
        bad += 1
        continue
    m = mlp(seed + 1000)
    m.load_state_dict(sd)
    with torch.no_grad():
        if not torch.equal(m(x), want(x)):
            print("%s: outputs differ" % f)
            bad += 1
sys.exit(1 if bad else 0)
EOF

if have torch python3-torch; then
	say "# torch $VERSION: state_dicts through production/"
	mkdir -p "$TMP/mlp1" "$TMP/mlp2"
	echo "seed 1" >"$TMP/mlp1/README"
	echo "seed 2" >"$TMP/mlp2/README"
	check "torch.save the state_dicts of two MLPs (seeds 1 and 2)" \
		"$PY" "$TMP/mlp.py" save 1 "$TMP/mlp1/model.pt" 2 "$TMP/mlp2/model.pt"
	check_fails "the two state_dicts differ" cmp -s "$TMP/mlp1/model.pt" "$TMP/mlp2/model.pt"
	check "mkdir /models/mlp; cp -r the first as versions/1" sh -c "mkdir '$M/mlp' && cp -r '$TMP/mlp1' '$M/mlp/versions/1'"
	check "ln -s versions/1 production (seals the draft)" ln -s versions/1 "$M/mlp/production"
	check_eq "versions/1 is sealed" sealed "$(jq -r .state "$M/mlp/versions/1.json")"
	check "torch.load production/model.pt: the seed-1 MLP" "$PY" "$TMP/mlp.py" check 1 "$M/mlp/production/model.pt"
	check_fails "... and not the seed-2 one (the check can tell them apart)" "$PY" "$TMP/mlp.py" check 2 "$M/mlp/production/model.pt"
	sleep 0.05
	T1=$(now)
	sleep 0.05
	check "cp -r the second as versions/2" cp -r "$TMP/mlp2" "$M/mlp/versions/2"
	check "mrfs promote mlp 2 --mount \$MNT" "$MRFS_BIN" promote mlp 2 --mount "$MNT"
	check_eq "production -> versions/2" versions/2 "$(readlink "$M/mlp/production")"
	check "torch.load through production/, /serving/production/mlp/2/ and versions/2/: the seed-2 MLP" \
		"$PY" "$TMP/mlp.py" check 2 "$M/mlp/production/model.pt" "$MNT/serving/production/mlp/2/model.pt" \
		"$M/mlp/versions/2/model.pt"
	check "torch.load through @T1/production (before the promote): the seed-1 MLP" \
		"$PY" "$TMP/mlp.py" check 1 "$M/mlp/@$T1/production/model.pt"
	check "the logged file is byte for byte the saved one" cmp "$TMP/mlp2/model.pt" "$M/mlp/production/model.pt"
fi

test_done
