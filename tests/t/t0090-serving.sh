#!/bin/bash
# SPDX-License-Identifier: MIT
# t0090: the serving view and time travel. A user logs three versions of
# resnet laid out as TensorFlow Serving and Triton expect and promotes them
# one after the other: /serving/production/resnet/ always holds exactly the
# one numbered directory production points at (with the version's root
# config.pbtxt beside it), the old number disappears, the model directory's
# mtime moves with the alias, drafts never show, nothing in /serving or in
# an @<time> directory can be changed, a removed alias leaves /serving, and
# a second model with the same alias shows beside the first. @<time> answers
# where each alias pointed between the promotions.
. "$(dirname "$0")/lib.sh"

S=$MNT/serving

# An RFC 3339 UTC time with nanoseconds, and the clock in nanoseconds.
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
now_ns() { date +%s%N; }
mtime_ns() { python3 -c 'import os, sys; print(os.lstat(sys.argv[1]).st_mtime_ns)' "$1"; }

# The shape of a directory: relative paths, types, file sizes and bytes.
tree_of() {
	(cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %s ' -exec sh -c 'md5sum < "$1" | cut -c1-32' sh {} \; \) \
		-o -printf '%P %y\n' | sort)
}

# The whole serving view: every path with its type and permission bits.
serving_picture() { (cd "$S" && find . -printf '%p %y %m\n' | sort); }

# lines A B...: the arguments, one a line (an expected listing).
lines() { printf '%s\n' "$@"; }

# promote_at ALIAS N: ln -sfn versions/N ALIAS in resnet, with a pause on
# both sides so that times taken around it fall clearly before or after.
# Sets B and A to the clock (ns) just before and after.
promote() {
	local model=$1 alias=$2 n=$3
	sleep 0.05
	B=$(now_ns)
	ln -sfn "versions/$n" "$M/$model/$alias" || fail "ln -sfn versions/$n $model/$alias" "seen: it failed"
	A=$(now_ns)
	sleep 0.05
}

# check_mtime_between DESC PATH: PATH's mtime lies in [B, A].
check_mtime_between() {
	local mt
	mt=$(mtime_ns "$2")
	if [ -n "$mt" ] && [ "$mt" -ge "$B" ] && [ "$mt" -le "$A" ]; then
		pass "$1"
	else
		fail "$1" "expected: an mtime in [$B, $A] (the ln -sfn)" "seen: '$mt'"
	fi
}

mount_mrfs

say "# three versions in the SavedModel layout; 1 and 3 have a config.pbtxt"
for n in 1 2 3 4 5; do
	mkdir -p "$TMP/r$n/variables"
	mkdata "$TMP/r$n/saved_model.pb" $((30000 + n * 1000)) "pb$n"
	mkdata "$TMP/r$n/variables/variables.data-00000-of-00001" $((200000 + n * 4096)) "var$n"
	printf 'index %s\n' "$n" >"$TMP/r$n/variables/variables.index"
done
printf 'name: "resnet"\nplatform: "tensorflow_savedmodel"\n# version 1\n' >"$TMP/r1/config.pbtxt"
mkdir -p "$TMP/r2/assets"
printf 'name: "not-at-the-root"\n' >"$TMP/r2/assets/config.pbtxt"
printf 'name: "resnet"\nplatform: "tensorflow_savedmodel"\nmax_batch_size: 8\n# version 3\n' >"$TMP/r3/config.pbtxt"
mkdir "$TMP/r3/assets"
printf 'name: "resnet"\n# version 4\n' >"$TMP/r4/config.pbtxt"
printf 'name: "resnet"\n# version 5, a draft\n' >"$TMP/r5/config.pbtxt"

check "mkdir /models/resnet" mkdir "$M/resnet"
for n in 1 2 3; do
	check "log and seal resnet version $n" sh -c "cp -r '$TMP/r$n' '$M/resnet/versions/$n' && chmod a-w '$M/resnet/versions/$n'"
done

say "# before any alias"
check_eq "ls -A /serving is empty" "" "$(ls -A "$S" 2>&1)"
check_eq "/serving/production does not exist" ENOENT "$(errno_of read "$S/production/resnet/1/saved_model.pb")"
check_fails "stat /serving/production fails" stat "$S/production"
T0=$(now)

say "# ln -s versions/1 production"
promote resnet production 1
T1=$(now)
check_eq "ls -A /serving" production "$(ls -A "$S" 2>&1)"
check_eq "ls -A /serving/production" resnet "$(ls -A "$S/production" 2>&1)"
check_eq "ls -A /serving/production/resnet: version 1 and its config.pbtxt" \
	"$(lines 1 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"
check_eq "/serving/production/resnet/1 holds exactly version 1's files and bytes" \
	"$(tree_of "$TMP/r1")" "$(tree_of "$S/production/resnet/1")"
check "config.pbtxt is version 1's" cmp "$TMP/r1/config.pbtxt" "$S/production/resnet/config.pbtxt"
check_mtime_between "the model directory's mtime is the time of the ln -s" "$S/production/resnet"
check_mtime_between "so is the version directory's (a fresh mtime)" "$S/production/resnet/1"
mt1=$(mtime_ns "$S/production/resnet")
check_eq "no directory in /serving has a write bit" "" "$(find "$S" -type d -perm /222 2>&1)"

# A server holds version 1's weights open while the alias moves on.
exec 3<"$S/production/resnet/1/variables/variables.data-00000-of-00001"

say "# ln -sfn versions/2 production (no config.pbtxt at its root)"
promote resnet production 2
T2=$(now)
check_eq "ls -A /serving/production/resnet: only 2 (its assets/config.pbtxt is not at the root)" \
	2 "$(ls -A "$S/production/resnet" 2>&1)"
check_eq "the old number is gone" ENOENT "$(errno_of read "$S/production/resnet/1/saved_model.pb")"
check_fails "stat /serving/production/resnet/1 fails" stat "$S/production/resnet/1"
check_eq "config.pbtxt is gone" ENOENT "$(errno_of read "$S/production/resnet/config.pbtxt")"
check_eq "/serving/production/resnet/2 holds exactly version 2's files" \
	"$(tree_of "$TMP/r2")" "$(tree_of "$S/production/resnet/2")"
check_mtime_between "the model directory's mtime moved with the alias" "$S/production/resnet"
check_mtime_between "version 2's directory has a fresh mtime" "$S/production/resnet/2"
check "the open handle on version 1's weights still reads version 1's bytes" \
	sh -c "cmp '$TMP/r1/variables/variables.data-00000-of-00001' - <&3"
exec 3<&-

say "# ln -sfn versions/3 production, from a shell whose cwd is /serving/production/resnet"
# A server that changed into its model directory keeps polling "." : the
# directory is still there, so "." must show the new version.
cd "$S/production/resnet" || bail_out "cd $S/production/resnet"
promote resnet production 3
T3=$(now)
check_eq "ls -A . (the cwd) lists the new version 3 and config.pbtxt" "$(lines 3 config.pbtxt)" "$(ls -A . 2>&1)"
check "./config.pbtxt is version 3's" cmp "$TMP/r3/config.pbtxt" ./config.pbtxt
cd /
check_eq "ls -A /serving/production/resnet: 3 and config.pbtxt" \
	"$(lines 3 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"
check_eq "/serving/production/resnet/3 holds exactly version 3's files (the empty assets/ too)" \
	"$(tree_of "$TMP/r3")" "$(tree_of "$S/production/resnet/3")"
check "config.pbtxt is version 3's" cmp "$TMP/r3/config.pbtxt" "$S/production/resnet/config.pbtxt"
check "/serving/production/resnet/config.pbtxt and 3/config.pbtxt agree" \
	cmp "$S/production/resnet/config.pbtxt" "$S/production/resnet/3/config.pbtxt"
check "the model directory's mtime is newer than after the first promotion" \
	test "$(mtime_ns "$S/production/resnet")" -gt "$mt1"

say "# drafts never appear"
check "a draft versions/4 (cp -r, not sealed)" cp -r "$TMP/r4" "$M/resnet/versions/4"
check_eq "versions/4 is a draft" draft "$(jq -r .state "$M/resnet/versions/4.json")"
check_eq "/serving/production/resnet still lists 3 and config.pbtxt only" \
	"$(lines 3 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"
check_eq "/serving/production/resnet/4 does not exist" ENOENT "$(errno_of read "$S/production/resnet/4/saved_model.pb")"
check "config.pbtxt is still version 3's, not the draft's" cmp "$TMP/r3/config.pbtxt" "$S/production/resnet/config.pbtxt"
check "a model with only a draft: mkdir /models/wip, versions/1 a draft" \
	sh -c "mkdir '$M/wip' && cp -r '$TMP/r1' '$M/wip/versions/1'"
check_eq "nothing of the drafts anywhere in /serving" "" \
	"$(find "$S" \( -name wip -o -name 4 -o -path '*/4/*' \) 2>&1)"
promote resnet production 4
check_eq "ln -sfn versions/4 production sealed the draft" sealed "$(jq -r .state "$M/resnet/versions/4.json")"
check_eq "now /serving/production/resnet holds 4 and config.pbtxt" \
	"$(lines 4 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"
check_eq "/serving/production/resnet/4 holds exactly version 4's files" \
	"$(tree_of "$TMP/r4")" "$(tree_of "$S/production/resnet/4")"
T4=$(now)
check "a new draft versions/5 with its own config.pbtxt" cp -r "$TMP/r5" "$M/resnet/versions/5"
check "config.pbtxt is version 4's, not the draft 5's" cmp "$TMP/r4/config.pbtxt" "$S/production/resnet/config.pbtxt"
check_eq "and 5 does not appear" "$(lines 4 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"

say "# nothing in /serving can change"
P=$S/production/resnet
before=$(snapshot)
sbefore=$(serving_picture)
expect_errno EROFS mkdir "$S/canary"
expect_errno EROFS mkdir "$S/production/canary"
expect_errno EROFS mkdir "$P/5"
expect_errno EROFS mkdir "$P/4/canary"
expect_errno EROFS mkdir "$P/4/variables/canary"
expect_errno EROFS create "$P/4/canary"
expect_errno EROFS create "$P/canary"
expect_errno EROFS symlink versions/3 "$S/production/canary"
expect_errno EROFS symlink ../3 "$P/canary"
expect_errno EROFS unlink "$P/config.pbtxt"
expect_errno EROFS unlink "$P/4/saved_model.pb"
expect_errno EROFS unlink "$P/4/variables/variables.index"
expect_errno EROFS rmdir "$P/4/variables"
expect_errno EROFS rmdir "$P/4"
expect_errno EROFS rmdir "$P"
expect_errno EROFS rmdir "$S/production"
expect_errno EROFS rename "$P/4" "$P/5"
expect_errno EROFS rename "$P/4/saved_model.pb" "$P/4/canary"
expect_errno EROFS rename "$P" "$S/production/canary"
expect_errno EROFS rename "$S/production" "$S/canary"
expect_errno EROFS rename "$P/config.pbtxt" "$M/resnet/versions/5/canary"
expect_errno EROFS rename "$M/resnet/versions/5/config.pbtxt" "$P/canary"
expect_errno EROFS utime "$P/4/saved_model.pb"
expect_errno EROFS utime "$P/config.pbtxt"
expect_errno EROFS utime "$P/4"
expect_errno EROFS utime "$P"
expect_errno EROFS utime "$S/production"
expect_errno EROFS chmod "$P/4" 0777
expect_errno EROFS truncate "$P/4/saved_model.pb" 0
expect_errno_k 'EROFS|EACCES' overwrite "$P/config.pbtxt" x
check_fails "touch /serving/production/resnet/4/saved_model.pb fails" touch "$P/4/saved_model.pb"
check_fails "rm -rf /serving/production fails" rm -rf "$S/production"
check_fails "mv /serving/production/resnet/4 /serving/production/resnet/6 fails" mv "$P/4" "$P/6"
check_fails "mkdir -p /serving/staging/resnet/1 fails" mkdir -p "$S/staging/resnet/1"
check_eq "the refusals changed nothing in the registry" "$before" "$(snapshot)"
check_eq "... nor in /serving" "$sbefore" "$(serving_picture)"
check "version 4's bytes are intact" diff -r "$TMP/r4" "$P/4"

say "# time travel"
cd "$M/resnet" || bail_out "cd $M/resnet"
check_eq "@T0 (before the first alias): production does not exist" ENOENT "$(errno_of readlink "@$T0/production")"
check_eq "ls -A @T0/ is empty" "" "$(ls -A "@$T0/" 2>&1)"
check_eq "readlink @T1/production" ../versions/1 "$(readlink "@$T1/production" 2>&1)"
check_eq "readlink @T2/production" ../versions/2 "$(readlink "@$T2/production" 2>&1)"
check_eq "readlink @T3/production" ../versions/3 "$(readlink "@$T3/production" 2>&1)"
check_eq "readlink @T4/production" ../versions/4 "$(readlink "@$T4/production" 2>&1)"
check "@T1/production/saved_model.pb reads version 1's bytes" cmp "$TMP/r1/saved_model.pb" "@$T1/production/saved_model.pb"
check "@T2/production/ is version 2's tree" diff -r "$TMP/r2" "@$T2/production/"
check_eq "ls -A @T2/ lists production" production "$(ls -A "@$T2/" 2>&1)"
check_eq "a time in 2000: ENOENT" ENOENT "$(errno_of readlink "@2000-01-01T00:00:00Z/production")"
check_eq "a time in 2100 answers where production points now" ../versions/4 "$(readlink "@2100-01-01T00:00:00Z/production" 2>&1)"
check_eq "an alias that never existed: ENOENT" ENOENT "$(errno_of readlink "@$T4/canary")"
check_eq "@ followed by no time: ENOENT" ENOENT "$(errno_of readlink "@yesterday/production")"

check "ln -s versions/2 staging" ln -s versions/2 staging
sleep 0.05
T5=$(now)
sleep 0.05
check "rm staging" rm staging
sleep 0.05
T6=$(now)
check_eq "ls -A @T5/: both aliases of that moment" "$(lines production staging)" "$(ls -A "@$T5/" 2>&1)"
check_eq "readlink @T5/staging" ../versions/2 "$(readlink "@$T5/staging" 2>&1)"
check_eq "@T6/staging: ENOENT (removed by then)" ENOENT "$(errno_of readlink "@$T6/staging")"
check_eq "ls -A @T6/: production only" production "$(ls -A "@$T6/" 2>&1)"
check_eq "@T4/staging: ENOENT (not yet made)" ENOENT "$(errno_of readlink "@$T4/staging")"
check_eq "the @ entries are not listed in the model directory" "$(lines history latest production versions)" "$(ls -A 2>&1)"
check_eq "find does not wander into the past" "" "$(find . -maxdepth 1 -name '@*' 2>&1)"

say "# nothing in an @<time> directory can change"
before=$(snapshot)
expect_errno EROFS mkdir "@$T5/canary"
expect_errno EROFS symlink versions/1 "@$T5/canary"
expect_errno EROFS unlink "@$T5/staging"
expect_errno EROFS rename "@$T5/staging" "@$T5/canary"
expect_errno EROFS rename "@$T5/staging" "$M/resnet/canary"
expect_errno EROFS rename "$M/resnet/production" "@$T5/canary"
expect_errno EROFS create "@$T5/canary"
expect_errno EROFS lutime "@$T5/production"
expect_errno EROFS utime "@$T5"
expect_errno EROFS chmod "@$T5" 0777
expect_errno EROFS rmdir "@$T5"
expect_errno EROFS rename "@$T5" "$M/resnet/canary"
check_fails "ln -sfn versions/1 @T5/production fails" ln -sfn versions/1 "@$T5/production"
check_fails "touch -h @T5/production fails" touch -h "@$T5/production"
check_eq "the refusals changed nothing" "$before" "$(snapshot)"
check_eq "@T5 still answers as before" "$(lines production staging)" "$(ls -A "@$T5/" 2>&1)"
cd /

say "# a second model with the same alias"
check "mkdir /models/bert, versions 1 and 2 sealed" sh -c "mkdir '$M/bert' &&
	cp -r '$TMP/r1' '$M/bert/versions/1' && chmod a-w '$M/bert/versions/1' &&
	cp -r '$TMP/r2' '$M/bert/versions/2' && chmod a-w '$M/bert/versions/2'"
promote bert production 2
check_eq "ls -A /serving/production: both models" "$(lines bert resnet)" "$(ls -A "$S/production" 2>&1)"
check_eq "bert serves its version 2" 2 "$(ls -A "$S/production/bert" 2>&1)"
check_eq "resnet still serves its version 4" "$(lines 4 config.pbtxt)" "$(ls -A "$S/production/resnet" 2>&1)"
check "bert's bytes" diff -r "$TMP/r2" "$S/production/bert/2"
check_eq "ls -A /serving: production only" production "$(ls -A "$S" 2>&1)"
promote bert staging 1
check_eq "ls -A /serving: production and staging" "$(lines production staging)" "$(ls -A "$S" 2>&1)"
check_eq "ls -A /serving/staging: bert only" bert "$(ls -A "$S/staging" 2>&1)"
check_eq "/serving/staging/resnet does not exist" ENOENT "$(errno_of read "$S/staging/resnet/4/saved_model.pb")"
check_eq "bert's staging: 1 and config.pbtxt" "$(lines 1 config.pbtxt)" "$(ls -A "$S/staging/bert" 2>&1)"
check "mv -T /models/bert /models/albert" mv -T "$M/bert" "$M/albert"
check_eq "/serving/production follows the rename" "$(lines albert resnet)" "$(ls -A "$S/production" 2>&1)"
check_eq "/serving/production/bert is gone" ENOENT "$(errno_of read "$S/production/bert/2/saved_model.pb")"
check "/serving/production/albert/2 holds version 2" diff -r "$TMP/r2" "$S/production/albert/2"

say "# a removed alias leaves /serving"
check "rm /models/resnet/production" rm "$M/resnet/production"
check_eq "ls -A /serving/production: albert only" albert "$(ls -A "$S/production" 2>&1)"
check_eq "/serving/production/resnet is gone" ENOENT "$(errno_of read "$S/production/resnet/config.pbtxt")"
check_fails "stat /serving/production/resnet fails" stat "$S/production/resnet"
check "mv -T albert/staging albert/production" mv -T "$M/albert/staging" "$M/albert/production"
check_eq "staging is gone from /serving" production "$(ls -A "$S" 2>&1)"
check_eq "/serving/staging does not exist" ENOENT "$(errno_of read "$S/staging/albert/1/saved_model.pb")"
check_eq "/serving/production/albert holds staging's version 1" "$(lines 1 config.pbtxt)" "$(ls -A "$S/production/albert" 2>&1)"
check "rm /models/albert/production" rm "$M/albert/production"
check_eq "no alias left: ls -A /serving is empty" "" "$(ls -A "$S" 2>&1)"
check_fails "stat /serving/production fails" stat "$S/production"
check_eq "the past keeps the removed alias: @T4/production" ../versions/4 "$(readlink "$M/resnet/@$T4/production" 2>&1)"
check_eq "but not now" ENOENT "$(errno_of readlink "$M/resnet/@$(now)/production")"

test_done
