#!/bin/bash
# SPDX-License-Identifier: MIT
# The main job on an embedded default: make a store and a mount point (under
# ./demo, or the paths given), mount, log a small generated model with plain
# cp, seal it, promote it to production with ln -s, and show the result.
#
#   scripts/demo.sh [STORE [MOUNTPOINT]]      (make demo DEMO_ARGS="...")
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
: "${MRFS_BUILD:=build}"
mrfs=$top/$MRFS_BUILD/mrfs
store=$(realpath -m "${1:-$top/demo/store}")
mnt=$(realpath -m "${2:-$top/demo/mnt}")
model=demo-resnet

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

mkdir -p "$mnt"
if mountpoint -q "$mnt"; then
	echo "demo: $mnt is mounted already: unmounting it first"
	fusermount3 -u "$mnt"
fi

step "mrfs mount --store $store $mnt"
"$mrfs" mount --store "$store" "$mnt"
for _ in $(seq 50); do [ -d "$mnt/models" ] && break; sleep 0.1; done

# A small model as a training job would leave it.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 scripts/gen-safetensors.py --size 8M --seed "$RANDOM" --out "$out" base >/dev/null
mv "$out/base.safetensors" "$out/model.safetensors"
cat >"$out/config.json" <<JSON
{"architectures": ["ResNetForImageClassification"], "num_labels": 1000,
 "hidden_sizes": [256, 512, 1024, 2048], "torch_dtype": "bfloat16"}
JSON

cd "$mnt/models"
[ -d "$model" ] || { step "mkdir $mnt/models/$model"; mkdir "$model"; }
n=1
for v in "$model"/versions/*/; do
	[ -d "$v" ] || continue
	v=$(basename "$v")
	[ "$v" -ge "$n" ] && n=$((v + 1))
done

step "cp -r out/ $model/versions/$n        # log version $n"
cp -r "$out" "$model/versions/$n"
step "chmod a-w $model/versions/$n          # seal it: immutable from now on"
chmod a-w "$model/versions/$n"
step "ln -sfn versions/$n $model/production # promote it"
ln -sfn "versions/$n" "$model/production"

step "find $mnt -maxdepth 4 | sort"
find "$mnt" -maxdepth 4 | sort
step "cat $model/versions/$n.json            # the production version's record"
cat "$model/versions/$n.json"
step "tail -n 4 $model/history"
tail -n 4 "$model/history"
step "readlink $model/production; cmp production/model.safetensors"
readlink "$model/production"
cmp "$out/model.safetensors" "$model/production/model.safetensors" &&
	echo "production/model.safetensors reads back byte for byte"

cat <<MSG

mrfs is mounted at $mnt (store: $store).
  ls $mnt/models/$model/                       models, versions, aliases
  cp -r DIR $mnt/models/$model/versions/$((n + 1))   log a new version
  ln -sfn versions/N $mnt/models/$model/production   promote one
  cat $mnt/history                             every change, who and when
Run 'make demo' again to log and promote another version.
Unmount with: $mrfs umount $mnt
MSG
