#!/bin/bash
# SPDX-License-Identifier: MIT
# t0100: the command line. A user logs two versions of a model with metrics
# and git lineage (dirty, then clean), promotes them, lists and filters
# them, shows them (and where production pointed between the promotions),
# diffs them, reads the history, deletes a version (refused while an alias
# points at it), reclaims its space with gc, and has verify name the model,
# version and file a corrupted pack byte belongs to. Usage errors exit 2
# with one line on stderr.
. "$(dirname "$0")/lib.sh"

export MRFS_MOUNT=$MNT MRFS_STORE=$STORE

# cli ARGS...: run mrfs; stdout in $OUT, stderr in $ERR, exit status in $RC.
cli() {
	"$MRFS_BIN" "$@" >"$TMP/cli.out" 2>"$TMP/cli.err"
	RC=$?
	OUT=$(cat "$TMP/cli.out")
	ERR=$(cat "$TMP/cli.err")
}

# expect_status STATUS ARGS...: mrfs ARGS exits STATUS; a failure says so
# in exactly one line on stderr.
expect_status() {
	local want=$1 desc
	shift
	desc="mrfs $*"
	desc=${desc//"$TMP"/\$TMP}
	cli "$@"
	if [ "$RC" != "$want" ]; then
		fail "$desc exits $want" "seen: exit status $RC" "stdout: $(head -n 5 "$TMP/cli.out")" \
			"stderr: $(head -n 5 "$TMP/cli.err")"
		return 1
	fi
	if [ "$want" != 0 ] && [ "$(wc -l <"$TMP/cli.err")" != 1 ]; then
		fail "$desc exits $want with one line on stderr" \
			"seen: $(wc -l <"$TMP/cli.err") lines:" "$(head -n 5 "$TMP/cli.err")"
		return 1
	fi
	pass "$desc exits $want${ERR:+: $ERR}"
}

# A time between two events, as RFC 3339 UTC.
now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

mount_mrfs

say "# usage errors: exit status 2, one line on stderr"
expect_status 2
expect_status 2 frobnicate
expect_status 2 log
expect_status 2 log resnet
expect_status 2 log 'bad name' "$TMP"
expect_status 2 log resnet "$TMP" -m novalue
expect_status 2 log resnet "$TMP" -m version=3
expect_status 2 log resnet "$TMP" --alias latest
expect_status 2 log resnet "$TMP" --bogus
expect_status 2 promote resnet
expect_status 2 promote resnet vx
expect_status 2 promote resnet 1 history
expect_status 2 ls --where acc
expect_status 2 ls --where 'note>abc'
expect_status 2 show
expect_status 2 show resnet:
expect_status 2 show resnet:production --at yesterday
expect_status 2 show resnet:v1 --at 2026-01-01T00:00:00Z
expect_status 2 diff resnet 1
expect_status 2 history -n many
expect_status 2 history -n 0
expect_status 2 history --since never
expect_status 2 delete resnet
expect_status 2 delete resnet vx
expect_status 2 stats extra
expect_status 2 help nosuch
check_eq "usage errors print nothing on stdout" "" "$OUT"

say "# init and a missing store"
expect_status 1 stats --store "$TMP/nostore"
check_fails "... which stats does not create" test -e "$TMP/nostore"
expect_status 0 init --store "$TMP/newstore"
check "init made a store" test -f "$TMP/newstore/data.mdb"
check "... that stats reads" sh -c "'$MRFS_BIN' stats --json --store '$TMP/newstore' | jq -e '.files == 0'"

say "# help"
expect_status 0 --help
for c in log promote ls show diff history verify gc stats delete mount; do
	check "mrfs --help names $c" grep -q "^  $c" "$TMP/cli.out"
done
cli help log
help_log=$OUT
check "mrfs help log describes --git" grep -q -- "--git DIR" "$TMP/cli.out"
cli log --help
check_eq "mrfs log --help is mrfs help log" "$help_log" "$OUT"
expect_status 0 show -h

say "# the mount is found in /proc/mounts, or named"
if [ "$(awk '$3 == "fuse.mrfs"' /proc/mounts | wc -l)" = 1 ]; then
	check "mrfs ls finds the only mount in /proc/mounts" env -u MRFS_MOUNT "$MRFS_BIN" ls
else
	say "# (skipped finding the mount in /proc/mounts: other mrfs mounts are there)"
fi
check "mrfs ls --mount DIR" env -u MRFS_MOUNT "$MRFS_BIN" ls --mount "$MNT"

say "# runtime errors: exit status 1, one line"
expect_status 1 ls --mount "$TMP"
expect_status 1 show nosuch
expect_status 1 log resnet "$TMP/nonexistent"
check_fails "a failed log registers nothing" test -e "$M/resnet"

say "# a training run leaves a directory and a dirty git work tree"
out=$TMP/run1
mkdir -p "$out/sub"
mkdata "$out/weights.bin" 3000000 weights
mkdata "$out/sub/extra.bin" 200000 extra
echo '{"layers": 50}' >"$out/config.json"
chmod 0640 "$out/config.json"
touch -d '2024-01-02 03:04:05' "$out/config.json"
ln -s weights.bin "$out/model.bin"
repo=$TMP/repo
mkdir -p "$repo"
git -C "$repo" init -q
git -C "$repo" config user.email ci@example.com
git -C "$repo" config user.name ci
echo 'print("train")' >"$repo/train.py"
git -C "$repo" add train.py
git -C "$repo" commit -q -m init
git -C "$repo" remote add origin https://bob:s3cret@git.example.com/ml/resnet.git
echo 'print("lr 0.001")' >>"$repo/train.py"
commit1=$(git -C "$repo" rev-parse HEAD)

say "# log version 1 with metadata and lineage"
expect_status 0 log resnet "$out" -m metrics.acc=0.91 -m params.lr=0.001 -m note=baseline --git "$repo"
check_eq "log prints MODEL:vN" "resnet:v1" "$OUT"
V1=$M/resnet/versions/1
check "the files arrived" cmp "$out/weights.bin" "$V1/weights.bin"
check "... in subdirectories too" cmp "$out/sub/extra.bin" "$V1/sub/extra.bin"
check_eq "the symlink arrived as a symlink" weights.bin "$(readlink "$V1/model.bin")"
check_eq "modes are kept" 640 "$(stat -c %a "$V1/config.json")"
check_eq "mtimes are kept" "$(stat -c %Y "$out/config.json")" "$(stat -c %Y "$V1/config.json")"
check_eq "the version is sealed" sealed "$(jq -r .state "$V1.json")"
check_eq "... and has no write bits" 0 "$(($(stat -c 0%a "$V1") & 0222))"
check "metrics.acc is the number 0.91" jq -e '.metrics.acc == 0.91' "$V1.json"
check "params.lr is the number 0.001" jq -e '.params.lr == 0.001' "$V1.json"
check "note is the string baseline" jq -e '.note == "baseline"' "$V1.json"
check_eq "lineage.code.commit is HEAD" "$commit1" "$(jq -r .lineage.code.commit "$V1.json")"
check_eq "lineage.code.branch" "$(git -C "$repo" symbolic-ref --short HEAD)" \
	"$(jq -r .lineage.code.branch "$V1.json")"
check_eq "lineage.code.repo is origin without its credentials" \
	https://git.example.com/ml/resnet.git "$(jq -r .lineage.code.repo "$V1.json")"
check "lineage.code.dirty is true" jq -e '.lineage.code.dirty == true' "$V1.json"
check "lineage.code.patch holds the uncommitted change" \
	jq -e '.lineage.code.patch | contains("+print(\"lr 0.001\")")' "$V1.json"
check_eq "the events of the log, made by mrfs" \
	"model.create version.create metadata.update version.seal mrfs" \
	"$(jq -rs '(map(.event) | join(" ")) + " " + (map(.comm) | unique | join(","))' "$M/resnet/history")"

say "# log version 2: same weights, new config, a new file, a clean tree"
git -C "$repo" commit -q -a -m "lr 0.001"
git -C "$repo" remote remove origin
out2=$TMP/run2
mkdir -p "$out2"
cp "$out/weights.bin" "$out2/weights.bin"
echo '{"layers": 101}' >"$out2/config.json"
mkdata "$out2/head.bin" 5000000 head2
echo '{"description": "deeper", "metrics": {"f1": 0.8}, "files": "ignored"}' >"$TMP/meta.json"
stats1=$("$MRFS_BIN" stats --json)
expect_status 0 log resnet "$out2" --meta "$TMP/meta.json" -m metrics.acc=0.95 --git "$repo" --alias staging
check_eq "log --alias prints resnet:v2" "resnet:v2" "$OUT"
V2=$M/resnet/versions/2
check_eq "--alias staging points there" versions/2 "$(readlink "$M/resnet/staging")"
check "--meta merged description and metrics, -m added acc" \
	jq -e '.description == "deeper" and .metrics.f1 == 0.8 and .metrics.acc == 0.95' "$V2.json"
check "a managed member in --meta was left out" jq -e '.files | type == "array"' "$V2.json"
check "a clean tree: dirty false, no patch" \
	jq -e '.lineage.code.dirty == false and (.lineage.code | has("patch") | not)' "$V2.json"
check_eq "without a remote, repo is the work tree's path" "$(cd "$repo" && pwd -P)" \
	"$(jq -r .lineage.code.repo "$V2.json")"
stats2=$("$MRFS_BIN" stats --json)
logical=$(($(jq .logical_bytes <<<"$stats2") - $(jq .logical_bytes <<<"$stats1")))
stored=$(($(jq .stored_bytes <<<"$stats2") - $(jq .stored_bytes <<<"$stats1")))
check "stats: the shared weights were stored once (logical +$logical, stored +$stored)" \
	test $((logical - stored)) -ge 3000000

say "# log FILEs side by side, unsealed"
mkdata "$TMP/a.bin" 1000 a
echo b >"$TMP/b.txt"
expect_status 0 log bert "$TMP/a.bin" "$TMP/b.txt" --no-seal
check_eq "files side by side in the version root" "a.bin b.txt" "$(ls "$M/bert/versions/1" | xargs)"
check_eq "--no-seal leaves a draft" draft "$(jq -r .state "$M/bert/versions/1.json")"

say "# a log that fails leaves nothing behind"
mkdir -p "$TMP/d1" "$TMP/d2"
echo 1 >"$TMP/d1/same"
echo 2 >"$TMP/d2/same"
expect_status 1 log bert "$TMP/d1" "$TMP/d2"
check_eq "the failed draft was removed" 1 "$(ls "$M/bert/versions" | grep -cv json)"
expect_status 1 log fresh "$TMP/d1" "$TMP/d2"
check_fails "a failed log of a new model leaves no model" test -e "$M/fresh"
truncate -s 8G "$TMP/sparse.bin"
"$MRFS_BIN" log bert "$TMP/sparse.bin" >"$TMP/int.out" 2>"$TMP/int.err" &
logger=$!
for ((i = 0; i < 100; i++)); do
	[ -e "$M/bert/versions/3/sparse.bin" ] && break
	sleep 0.1
done
sleep 0.2
kill -INT $logger
wait $logger
check_eq "SIGINT stops a log with status 130" 130 "$?"
check "... saying the draft was removed" grep -q "interrupted: bert:v3 removed" "$TMP/int.err"
check_fails "... and it was" test -e "$M/bert/versions/3"
rm -f "$TMP/sparse.bin"

say "# promote"
expect_status 0 promote resnet 1
check_eq "promote prints the move" "resnet:production -> v1" "$OUT"
check_eq "production -> versions/1" versions/1 "$(readlink "$M/resnet/production")"
sleep 0.2
T1=$(now_rfc3339)
sleep 0.2
expect_status 0 promote resnet v2
check_eq "promote says where it was" "resnet:production -> v2 (was v1)" "$OUT"
check_eq "newest event: alias.move of production from 1 to 2" "alias.move production 1 2 mrfs" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to) \(.comm)"' resnet)"
check_eq "no temporary alias left behind" "history latest production staging versions" \
	"$(ls -A "$M/resnet" | xargs)"
expect_status 0 promote resnet 2
check_eq "promoting to where it is changes nothing" "alias.move production 1 2" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to)"' resnet)"
expect_status 1 promote resnet 9
check "... naming the missing version" grep -q "no version 9" "$TMP/cli.err"
expect_status 1 promote nosuch 1

say "# ls"
expect_status 0 ls
check_eq "ls: a header and one row per model" "MODEL bert resnet" "$(awk '{ print $1 }' "$TMP/cli.out" | xargs)"
check "ls: resnet has 2 versions, latest v2, aliases" \
	grep -qE '^resnet +2 +v2 +production=v2,staging=v2 +'"$(id -un)"' ' "$TMP/cli.out"
check "ls: bert has a draft and no latest" grep -qE '^bert +1 \(1 draft\) +- ' "$TMP/cli.out"
expect_status 0 ls resnet
check "ls resnet: v1, sealed, its size and files, no alias, its metric" \
	grep -qE '^v1 +sealed +3.1 MiB +4 .* - +0.91$' "$TMP/cli.out"
check "ls resnet: v2 with its aliases and latest" \
	grep -qE '^v2 +sealed +.* production,staging,latest +0.95$' "$TMP/cli.out"
check "ls resnet: the metric's column" grep -qE '^VERSION .* metrics.acc$' "$TMP/cli.out"
check_eq "ls --json: model records" "bert resnet" "$("$MRFS_BIN" ls --json | jq -r '.[].name' | xargs)"
check_eq "ls resnet --json: version records" "1 2" "$("$MRFS_BIN" ls resnet --json | jq -r '.[].version' | xargs)"
check_eq "ls --where metrics.acc>0.93 (all models)" "resnet:2" \
	"$("$MRFS_BIN" ls --where 'metrics.acc>0.93' --json | jq -r '.[] | "\(.model):\(.version)"' | xargs)"
expect_status 0 ls --where 'metrics.acc>0.93'
check_eq "... as a table naming MODEL:vN" "resnet:v2" "$(awk 'NR > 1 { print $1 }' "$TMP/cli.out" | xargs)"
check_eq "ls resnet --where metrics.acc>=0.91" "v1 v2" \
	"$("$MRFS_BIN" ls resnet --where 'metrics.acc >= 0.91' | awk 'NR > 1 { print $1 }' | xargs)"
check_eq "ls --where note==baseline" "v1" \
	"$("$MRFS_BIN" ls resnet --where 'note==baseline' | awk 'NR > 1 { print $1 }' | xargs)"
check_eq "ls --where lineage.code.dirty==false" "v2" \
	"$("$MRFS_BIN" ls resnet --where 'lineage.code.dirty==false' | awk 'NR > 1 { print $1 }' | xargs)"
check_eq "ls --where with no match: no rows" "" \
	"$("$MRFS_BIN" ls --where 'metrics.acc<0.5' | awk 'NR > 1')"

say "# show"
expect_status 0 show resnet:v1
check_eq "show resnet:v1 starts with the reference" resnet:v1 "$(head -n 1 "$TMP/cli.out")"
check "... lists its files" grep -qE '^ +0640 .* config.json$' "$TMP/cli.out"
check "... and its metrics" grep -qE '^ +metrics.acc +0.91$' "$TMP/cli.out"
check "... and its lineage" grep -q "lineage.code.commit  *$commit1" "$TMP/cli.out"
for ref in resnet:2 resnet:v2 resnet:production resnet:latest resnet; do
	check_eq "show $ref --json is version 2" 2 "$("$MRFS_BIN" show "$ref" --json | jq .version)"
done
expect_status 1 show resnet:canary
check "... saying there is no such alias" grep -q "no alias 'canary'" "$TMP/cli.err"
expect_status 0 show resnet:production --at "$T1"
check_eq "show --at a time between the promotions: production was v1" \
	"resnet:production at $T1 was resnet:v1" "$(head -n 1 "$TMP/cli.out")"
check_eq "show --at --json: version 1" 1 "$("$MRFS_BIN" show resnet:production --at "$T1" --json | jq .version)"
check_eq "show --at now: version 2" 2 "$("$MRFS_BIN" show resnet:production --at "$(now_rfc3339)" --json | jq .version)"
check_eq "... as the mount's time travel answers" ../versions/1 "$(readlink "$M/resnet/@$T1/production")"
expect_status 1 show resnet:production --at 2020-01-01T00:00:00Z
check "mv resnet resnet50" mv "$M/resnet" "$M/resnet50"
check_eq "show --at follows the rename since" 1 \
	"$("$MRFS_BIN" show resnet:production --at "$T1" --json | jq .version)"
check "mv resnet50 resnet" mv "$M/resnet50" "$M/resnet"

say "# diff"
expect_status 0 diff resnet 1 2
check_eq "diff counts files" "resnet v1 -> v2: 1 added, 2 removed, 1 changed, 1 unchanged" \
	"$(head -n 1 "$TMP/cli.out")"
check "... head.bin added" grep -qE '^  \+ +head.bin ' "$TMP/cli.out"
check "... sub/extra.bin removed" grep -qE '^  - +sub/extra.bin ' "$TMP/cli.out"
check "... config.json changed" grep -qE '^  ~ +config.json ' "$TMP/cli.out"
check "... metrics.acc side by side" grep -qE '^  ~ +metrics.acc +0.91 +0.95$' "$TMP/cli.out"
check_fails "... and not the unchanged weights.bin" grep -q 'weights.bin' "$TMP/cli.out"
check "diff --json" sh -c "'$MRFS_BIN' diff resnet v1 production --json | jq -e '.files.unchanged == 1 and .files.added == [\"head.bin\"] and .metadata[\"metrics.acc\"].b == 0.95'"
check "diff --all marks the unchanged file" sh -c "'$MRFS_BIN' diff resnet 1 2 --all | grep -qE '^  = +weights.bin '"

say "# history"
check_eq "history resnet --json is the model's history" "$(cat "$M/resnet/history")" \
	"$("$MRFS_BIN" history resnet --json)"
check_eq "history --alias production" "alias.set alias.move" \
	"$("$MRFS_BIN" history resnet --alias production --json | jq -r .event | xargs)"
check_eq "history --since T1: the move, not the set" "alias.move" \
	"$("$MRFS_BIN" history --since "$T1" --alias production --json | jq -r .event | xargs)"
check "history --since T1: nothing older" sh -c "'$MRFS_BIN' history --since '$T1' --json | jq -se 'length > 0 and all(.time >= \"$T1\")'"
check_eq "history -e alias.move" "alias.move" "$("$MRFS_BIN" history -e alias.move --json | jq -r .event | sort -u)"
check_eq "history -n 1 is the newest event" "$(tail -n 1 "$MNT/history")" "$("$MRFS_BIN" history -n 1 --json)"
expect_status 0 history resnet --alias production
check "the table shows the move" grep -qE '^ *[0-9]+ +[0-9-]+ [0-9:]+ +alias.move +resnet +production v1 -> v2 +'"$(id -un)"' +mrfs$' "$TMP/cli.out"
check_eq "the table has a header and two rows" 3 "$(wc -l <"$TMP/cli.out")"
check_eq "history of a renamed-away name still answers" "model.rename" \
	"$("$MRFS_BIN" history resnet50 --json | jq -r .event | sort -u | xargs)"

say "# delete: refused while aliased, then allowed"
expect_status 1 delete resnet 2
check "... naming the aliases" grep -q "production, staging" "$TMP/cli.err"
check "version 2 is still there" test -d "$V2"
expect_status 0 promote resnet 1
expect_status 0 promote resnet 1 staging
before=$("$MRFS_BIN" stats --json)
expect_status 0 delete resnet v2
check_eq "delete says so" "deleted resnet:v2 (mrfs gc reclaims its space)" "$OUT"
for ((i = 0; i < 30; i++)); do
	[ -e "$V2" ] || break
	sleep 0.1
done
check_fails "the mount no longer shows version 2" test -e "$V2"
check_eq "newest event: version.delete of 2 by mrfs" "version.delete 2 mrfs" \
	"$(last_event '"\(.event) \(.version) \(.comm)"' resnet)"
check_eq "latest moved back to 1" versions/1 "$(readlink "$M/resnet/latest")"
expect_status 0 log resnet "$TMP/b.txt"
check_eq "the next version is 3, not a reused 2" resnet:v3 "$OUT"
expect_status 1 delete resnet 2

say "# the model's policy applies to promote and log --alias"
jq '.policy.promote_from = {"production": "staging"}' "$M/resnet.json" >"$TMP/policy.json"
check "set policy.promote_from: production only from staging" cp "$TMP/policy.json" "$M/resnet.json"
expect_status 1 promote resnet 3
check "... saying it is the policy" grep -q "policy" "$TMP/cli.err"
check_eq "production did not move" versions/1 "$(readlink "$M/resnet/production")"
expect_status 1 log resnet "$TMP/b.txt" --alias production
check_eq "log --alias refused: the version is still logged, and named" resnet:v4 "$OUT"
check_eq "... sealed" sealed "$(jq -r .state "$M/resnet/versions/4.json")"
expect_status 0 promote resnet 3 staging
expect_status 0 promote resnet 3
check_eq "through staging, production moves" versions/3 "$(readlink "$M/resnet/production")"

say "# gc reclaims the deleted version's space"
after_delete=$("$MRFS_BIN" stats --json)
check "after delete, some chunks are unreferenced" jq -e '.dead_chunks > 0' <<<"$after_delete"
expect_status 0 gc
check "gc says what it reclaimed" grep -q "^reclaimed" "$TMP/cli.out"
check "gc while mounted drops the unreferenced chunks" sh -c "'$MRFS_BIN' stats --json | jq -e '.dead_chunks == 0'"
check "version 1 still reads back" cmp "$out/weights.bin" "$V1/weights.bin"
umount_mrfs
expect_status 0 gc --json
after_gc=$("$MRFS_BIN" stats --json)
check "gc shrank the packs (before $(jq .pack_bytes <<<"$before"), after $(jq .pack_bytes <<<"$after_gc"))" \
	test "$(jq .pack_bytes <<<"$after_gc")" -lt "$(jq .pack_bytes <<<"$before")"
check_eq "stats: logical bytes are the same as before gc" "$(jq .logical_bytes <<<"$after_delete")" \
	"$(jq .logical_bytes <<<"$after_gc")"
mount_mrfs
check "version 1 still reads back after gc" cmp "$out/weights.bin" "$V1/weights.bin"

say "# verify names what a damaged pack byte belongs to"
expect_status 0 verify
mkdata "$TMP/victim.bin" 700000 victim
expect_status 0 log victim "$TMP/victim.bin"
umount_mrfs
pack=$(ls -t "$STORE"/packs/*.pack | head -n 1)
size=$(stat -c %s "$pack")
byte=$(od -An -tu1 -j $((size - 1000)) -N1 "$pack" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$pack" bs=1 seek=$((size - 1000)) conv=notrunc status=none
expect_status 1 verify
check "verify names the model, version and file" grep -qE '^  in victim:v1 victim.bin$' "$TMP/cli.out"
check "... and its one line on stderr names them too" grep -q "victim:v1 (victim.bin)" "$TMP/cli.err"
check_fails "... and not an intact version" grep -q "resnet:v1" "$TMP/cli.out"
check "verify --json" sh -c "'$MRFS_BIN' verify --json | jq -e '.ok == false and .affected == [\"victim:v1\"]'"

test_done
