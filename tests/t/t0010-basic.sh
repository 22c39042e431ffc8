#!/bin/bash
# SPDX-License-Identifier: MIT
# t0010: a user registers a model, logs a training output with cp -r, reads
# it back, seals it with chmod a-w and finds it as latest; the records and
# the history tell what happened.
. "$(dirname "$0")/lib.sh"

mount_mrfs

# The training output: nested directories, empty, tiny, page+1, a few MiB
# and one ~20 MiB random file.
src=$TMP/out
mkdir -p "$src/a/b/c" "$src/tokenizer"
: >"$src/empty"
printf x >"$src/one"
mkdata "$src/a/b/c/page.bin" 4097
mkdata "$src/a/mid.bin" $((3 << 20))
mkdata "$src/tokenizer/vocab.txt" $((1 << 20)) vocab
mkdata "$src/weights.bin" $(((20 << 20) + 12345))
printf '{"arch": "resnet50", "classes": 1000}\n' >"$src/config.json"
echo "trained on imagenet" >"$src/a/b/README"
files=$(cd "$src" && find . -type f -printf '%P\n' | sort)
tree_of() { (cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %s\n' \) -o -printf '%P %y\n' | sort); }

say "# register the model"
check "mkdir /models/resnet" mkdir "$M/resnet"
check "/models/resnet is a directory" test -d "$M/resnet"
check_eq "ls /models shows resnet and its record" "$(printf 'resnet\nresnet.json')" "$(ls "$M")"
check "/models/resnet.json is a JSON object" jq -e 'type == "object"' "$M/resnet.json"
check_eq "resnet.json: name" resnet "$(jq -r .name "$M/resnet.json")"
check_eq "newest event of the model: model.create" model.create "$(last_event event resnet)"
check_fails "no sealed version yet: readlink latest fails" readlink "$M/resnet/latest"

say "# log version 1 with cp -r"
V=$M/resnet/versions
check "cp -r out/ /models/resnet/versions/1" cp -r "$src" "$V/1"
check "versions/1 is a directory" test -d "$V/1"
check "diff -r out versions/1" diff -r "$src" "$V/1"
for f in $files; do
	check "cmp $f" cmp "$src/$f" "$V/1/$f"
done
check_eq "ls versions/1 shows the logged names" "$(ls -A "$src")" "$(ls -A "$V/1")"
check_eq "ls versions/1/a/b shows the nested names" "$(ls -A "$src/a/b")" "$(ls -A "$V/1/a/b")"
check_eq "find: same tree, types and sizes" "$(tree_of "$src")" "$(tree_of "$V/1")"
check_eq "stat: weights.bin size" $(((20 << 20) + 12345)) "$(stat -c %s "$V/1/weights.bin")"
check_eq "ls versions shows 1 and 1.json" "$(printf '1\n1.json')" "$(ls "$V")"
check "versions/1.json is a JSON object" jq -e 'type == "object"' "$V/1.json"
check_eq "versions/1.json: state is draft" draft "$(jq -r .state "$V/1.json")"
check_eq "versions/1.json: model, version" "resnet 1" "$(jq -r '"\(.model) \(.version)"' "$V/1.json")"
check_fails "a draft is not latest: readlink latest fails" readlink "$M/resnet/latest"
check_eq "newest event: version.create" version.create "$(last_event event resnet)"

say "# seal it"
check "chmod a-w versions/1" chmod a-w "$V/1"
check_eq "versions/1.json: state is sealed" sealed "$(jq -r .state "$V/1.json")"
mode=$(stat -c %a "$V/1")
check "versions/1 shows no write permission (mode $mode)" test $((0$mode & 0222)) -eq 0
want=$(cd "$src" && find . -type f -printf '%P %s\n' | sort)
seen=$(jq -r '.files[] | "\(.path | ltrimstr("./") | ltrimstr("/")) \(.size)"' "$V/1.json" | sort)
check_eq "versions/1.json: files list every path with its size" "$want" "$seen"
total=$(cd "$src" && find . -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
check_eq "versions/1.json: size is the sum of the files" "$total" "$(jq -r .size "$V/1.json")"
check "versions/1.json: every file has a digest, the version too" \
	jq -e '(.digest | type == "string" and length > 0) and all(.files[]; .digest | type == "string" and length > 0)' "$V/1.json"
check "versions/1.json: different contents, different digests" \
	jq -e '[.files[] | select(.size > 1) | .digest] | length == (unique | length)' "$V/1.json"
check "versions/1.json: created and sealed by uid 0" \
	jq -e '.created.uid == 0 and .sealed.uid == 0 and (.sealed.time | type == "string")' "$V/1.json"
check_eq "readlink latest answers versions/1" versions/1 "$(readlink "$M/resnet/latest")"
check "latest/weights.bin reads the logged bytes" cmp "$src/weights.bin" "$M/resnet/latest/weights.bin"
check "diff -r out latest/ after sealing" diff -r "$src" "$M/resnet/latest/"

say "# the history"
check_eq "model history: model.create, version.create, version.seal" \
	"$(printf 'model.create\nversion.create\nversion.seal')" "$(events resnet)"
check_eq "/history: the same events for resnet" \
	"$(printf 'model.create\nversion.create\nversion.seal')" \
	"$(jq -r 'select(.model == "resnet") | .event' "$MNT/history")"
check_eq "version events name version 1" "$(printf '1\n1')" \
	"$(jq -r 'select(.event | startswith("version.")) | .version' "$M/resnet/history")"
check "/history: seq strictly increasing" jq -se 'map(.seq) as $s | $s == ($s | unique) and all($s[]; type == "number")' "$MNT/history"
check "history: every event has an RFC 3339 UTC time, uid 0, user root and a pid" \
	jq -se 'all(.[]; (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$"))
		and .uid == 0 and .user == "root" and (.pid | type == "number" and . > 0))' "$M/resnet/history"
check_eq "history: comm is the command that did it (mkdir, cp, chmod)" "$(printf 'mkdir\ncp\nchmod')" \
	"$(jq -r .comm "$M/resnet/history")"

say "# everything is still there after a remount (no page cache)"
remount
check "diff -r out versions/1 after remount" diff -r "$src" "$V/1"
check_eq "readlink latest after remount" versions/1 "$(readlink "$M/resnet/latest")"
check_eq "state after remount" sealed "$(jq -r .state "$V/1.json")"

test_done
