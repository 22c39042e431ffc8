#!/bin/bash
# SPDX-License-Identifier: MIT
# t0094: the size stat gives for versions/<n>.json is the length of the
# record a read returns, after every change that alters a record: sealing,
# aliases set, moved, renamed and removed (records list their aliases),
# metadata edits, a model rename (records name their model), a delete, and
# across a remount (the daemon keeps each sealed record's length in the
# store so that stat need not render it). A wrong size is what tools that
# trust st_size would cut a record at.
. "$(dirname "$0")/lib.sh"

mount_mrfs

# sizes_ok DESC MODEL: for each N.json of MODEL, stat's size is the length
# of what cat reads (the kernel's copy is dropped by the daemon's watcher,
# so wait for it a moment before judging).
sizes_ok() {
	local desc=$1 dir=$M/$2/versions seen want f i bad
	for ((i = 0; i < 50; i++)); do
		bad=
		for f in "$dir"/*.json; do
			seen=$(stat -c %s "$f")
			want=$(cat "$f" | wc -c) # read: wc -c alone would trust st_size
			[ "$seen" = "$want" ] || bad="$bad $(basename "$f"):stat=$seen,read=$want"
		done
		[ -z "$bad" ] && break
		sleep 0.02
	done
	check_eq "$desc: stat sizes of $2's records are their lengths" "" "${bad# }"
}

src=$TMP/src
mkdir -p "$src"
echo "weights one" >"$src/w.bin"

check "model m with versions 1..3 sealed, 4 a draft" sh -c "
	mkdir '$M/m' &&
	for n in 1 2 3 4; do mkdir \"$M/m/versions/\$n\" && cp '$src/w.bin' \"$M/m/versions/\$n/\"; done &&
	chmod a-w '$M/m/versions/1' '$M/m/versions/2' '$M/m/versions/3'"
sizes_ok "after sealing" m

check "ln -s versions/1 production" ln -s versions/1 "$M/m/production"
check "ln -s versions/2 staging" ln -s versions/2 "$M/m/staging"
sizes_ok "after two aliases" m
check "ln -sfn versions/3 production" ln -sfn versions/3 "$M/m/production"
sizes_ok "after production moved 1 -> 3" m
check "mv staging canary-with-a-longer-name" mv -T "$M/m/staging" "$M/m/canary-with-a-longer-name"
sizes_ok "after an alias renamed" m
check "ln -s versions/4 candidate (seals the draft)" ln -s versions/4 "$M/m/candidate"
sizes_ok "after a draft sealed by an alias" m
check "rm candidate" rm "$M/m/candidate"
sizes_ok "after an alias removed" m

check "a description on versions/2.json" sh -c \
	"jq '.description = \"a much longer description than it had before\"' '$M/m/versions/2.json' >'$TMP/t.json' &&
	cp '$TMP/t.json' '$M/m/versions/2.json'"
sizes_ok "after a metadata edit" m
check "mrfs log --meta through the CLI, then promote" sh -c \
	"'$MRFS_BIN' log m '$src' --mount '$MNT' -m metrics.acc=0.93 >/dev/null &&
	'$MRFS_BIN' promote m 5 --mount '$MNT' >/dev/null"
sizes_ok "after mrfs log and promote" m

check "mv /models/m /models/a-model-with-a-longer-name" mv -T "$M/m" "$M/a-model-with-a-longer-name"
sizes_ok "after the model's rename" a-model-with-a-longer-name

say "# across a remount: the sizes come from the store"
remount
sizes_ok "after a remount" a-model-with-a-longer-name
check "mrfs delete of version 1 (no alias points at it)" \
	"$MRFS_BIN" delete a-model-with-a-longer-name 1 --store "$STORE"
sizes_ok "after a delete" a-model-with-a-longer-name
check "verify is clean" "$MRFS_BIN" verify --store "$STORE"

test_done
