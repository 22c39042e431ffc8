#!/bin/bash
# SPDX-License-Identifier: MIT
# t0030: sealing. chmod a-w or an alias seals a draft; a sealed version
# refuses every change with EROFS and keeps its bytes; a draft with a file
# open for writing cannot be sealed (EBUSY); latest follows sealed versions
# only.
. "$(dirname "$0")/lib.sh"

mount_mrfs
src=$TMP/out
mkdir -p "$src/sub"
mkdata "$src/weights.bin" 500000
echo '{"lr": 0.1}' >"$src/params.json"
echo hello >"$src/sub/file.txt"
check "mkdir /models/gpt" mkdir "$M/gpt"
V=$M/gpt/versions

say "# seal with chmod a-w"
check "cp -r out versions/1" cp -r "$src" "$V/1"
check_eq "versions/1 is a draft" draft "$(jq -r .state "$V/1.json")"
check "chmod a-w versions/1" chmod a-w "$V/1"
check_eq "versions/1 is sealed" sealed "$(jq -r .state "$V/1.json")"
check_eq "newest event: version.seal of 1" "version.seal 1" "$(last_event '"\(.event) \(.version)"' gpt)"
check_eq "latest -> versions/1" versions/1 "$(readlink "$M/gpt/latest")"

say "# seal with ln -s versions/2 production"
check "cp -r out versions/2" cp -r "$src" "$V/2"
echo two >"$V/2/sub/file.txt"
check_eq "versions/2 is a draft" draft "$(jq -r .state "$V/2.json")"
check_eq "latest stays at versions/1 while 2 is a draft" versions/1 "$(readlink "$M/gpt/latest")"
check "ln -s versions/2 production" ln -s versions/2 "$M/gpt/production"
check_eq "readlink production" versions/2 "$(readlink "$M/gpt/production")"
check_eq "versions/2 is sealed by the alias" sealed "$(jq -r .state "$V/2.json")"
check "history: version.seal of 2, then alias.set of production to 2" \
	jq -se '[.[] | select(.event == "version.seal" or .event == "alias.set")] | .[-2:]
		| (.[0].event == "version.seal" and .[0].version == 2 and .[1].event == "alias.set"
		   and .[1].alias == "production" and (.[1].to // .[1].version) == 2)' "$M/gpt/history"
check_eq "latest -> versions/2" versions/2 "$(readlink "$M/gpt/latest")"
check "production/sub/file.txt reads two" test "$(cat "$M/gpt/production/sub/file.txt")" = two

say "# nothing inside a sealed version changes (EROFS)"
S=$V/1
before=$(snapshot)
expect_errno EROFS overwrite "$S/weights.bin" junk
expect_errno EROFS write "$S/weights.bin" junk
expect_errno EROFS append "$S/sub/file.txt" junk
expect_errno EROFS openw "$S/params.json"
expect_errno EROFS create "$S/new.txt" junk
expect_errno EROFS create "$S/sub/new.txt" junk
expect_errno EROFS truncate "$S/weights.bin" 0
expect_errno EROFS truncate "$S/weights.bin" 999999999
expect_errno EROFS unlink "$S/params.json"
expect_errno EROFS unlink "$S/sub/file.txt"
expect_errno EROFS rename "$S/params.json" "$S/renamed.json"
expect_errno EROFS rename "$S/sub" "$S/sub2"
expect_errno EROFS mkdir "$S/newdir"
expect_errno EROFS rmdir "$S/sub"
expect_errno EROFS symlink weights.bin "$S/link"
expect_errno EROFS chmod "$S/weights.bin" 777
expect_errno EROFS chmod "$S/sub" 777
expect_errno EROFS chmod "$S" 755
expect_errno EROFS utime "$S/weights.bin"
expect_errno EROFS mkfifo "$S/fifo"
expect_errno EROFS rename "$V/2/params.json" "$S/params2.json"
check_fails "rm -rf versions/1 fails" rm -rf "$S"
check_fails "echo >> a sealed file fails" sh -c "echo x >> '$S/sub/file.txt'"
check_fails "touch a new file in a sealed version fails" touch "$S/sub/touched"
check_fails "cp a file into a sealed version fails" cp "$src/params.json" "$S/sub/copy.json"
check_eq "the tree, records and history are unchanged" "$before" "$(snapshot)"
check "diff -r out versions/1: the bytes are unchanged" diff -r "$src" "$S"
check_eq "versions/1 is still sealed" sealed "$(jq -r .state "$V/1.json")"
check "a sealed version can be read by several readers at once" \
	sh -c "cmp '$src/weights.bin' '$S/weights.bin' & p=\$!; cmp '$src/weights.bin' '$S/weights.bin' && wait \$p"

say "# no sealing while a file of the draft is open for writing (EBUSY)"
check "cp -r out versions/3" cp -r "$src" "$V/3"
expect_errno EROFS rename "$V/3/params.json" "$S/params2.json"
expect_errno EROFS rename "$S/params.json" "$V/3/params2.json"
check "the draft's file stayed in the draft" cmp "$src/params.json" "$V/3/params.json"
exec 3>"$V/3/partial.bin"
printf 'half' >&3
before=$(snapshot)
expect_errno EBUSY chmod "$V/3" 555
check_eq "versions/3 is still a draft" draft "$(jq -r .state "$V/3.json")"
expect_errno EBUSY symlink versions/3 "$M/gpt/staging"
check_fails "the alias was not created" test -L "$M/gpt/staging"
check_eq "the tree, records and history are unchanged" "$before" "$(snapshot)"
check_eq "latest stays at versions/2" versions/2 "$(readlink "$M/gpt/latest")"
printf ' and the rest' >&3
check "the writer goes on writing" test "$(cat "$V/3/partial.bin")" = "half and the rest"
exec 3>&-
check "closed: chmod a-w versions/3 seals it" chmod a-w "$V/3"
check_eq "versions/3 is sealed" sealed "$(jq -r .state "$V/3.json")"
check_eq "partial.bin sealed with everything written" "half and the rest" "$(cat "$V/3/partial.bin")"
check "cp -r out versions/4" cp -r "$src" "$V/4"
exec 4<"$V/4/weights.bin"
check "a reader does not block sealing: chmod a-w versions/4" chmod a-w "$V/4"
check "and still reads" cmp "$src/weights.bin" /dev/fd/4
exec 4<&-

say "# latest moves to sealed versions only"
check_eq "latest -> versions/4" versions/4 "$(readlink "$M/gpt/latest")"
check "mkdir versions/5 (draft)" mkdir "$V/5"
echo five >"$V/5/only.txt"
check_eq "a newer draft does not move latest" versions/4 "$(readlink "$M/gpt/latest")"
check "latest/ still shows version 4's files" cmp "$src/weights.bin" "$M/gpt/latest/weights.bin"
check "rm -r versions/5 deletes the draft" rm -r "$V/5"
check_fails "versions/5 is gone" test -e "$V/5"
check_fails "versions/5.json is gone" test -e "$V/5.json"
check_eq "newest event: version.delete of 5" "version.delete 5" "$(last_event '"\(.event) \(.version)"' gpt)"
check "mkdir versions/6; chmod a-w versions/6" sh -c "mkdir '$V/6' && echo six > '$V/6/only.txt' && chmod a-w '$V/6'"
check_eq "latest -> versions/6" versions/6 "$(readlink "$M/gpt/latest")"
check_eq "latest/only.txt" six "$(cat "$M/gpt/latest/only.txt")"
check_eq "versions lists 1 2 3 4 6 and their records" \
	"$(printf '%s\n' 1 1.json 2 2.json 3 3.json 4 4.json 6 6.json)" "$(ls "$V")"
check_eq "the seal events, in order" "$(printf '%s\n' 1 2 3 4 6)" \
	"$(jq -r 'select(.event == "version.seal") | .version' "$M/gpt/history")"

test_done
