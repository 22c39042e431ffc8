#!/bin/bash
# SPDX-License-Identifier: MIT
# t0060: the store outlives the daemon. A clean unmount and remount keeps
# everything; kill -9 (also in the middle of a write) keeps sealed
# versions' bytes, aliases and history, and the store goes on working.
. "$(dirname "$0")/lib.sh"

mount_mrfs
for n in 1 2 3; do
	mkdir -p "$TMP/v$n/sub"
	mkdata "$TMP/v$n/weights.bin" $((n * 1500000 + 7)) "w$n"
	echo "version $n" >"$TMP/v$n/sub/VERSION"
done
check "model lm: versions 1, 2 sealed, production -> 2, staging -> 1" sh -c "
	mkdir '$M/lm' && cp -r '$TMP/v1' '$M/lm/versions/1' && chmod a-w '$M/lm/versions/1' &&
	cp -r '$TMP/v2' '$M/lm/versions/2' && ln -s versions/2 '$M/lm/production' &&
	ln -s versions/1 '$M/lm/staging' && ln -sfn versions/1 '$M/lm/production' &&
	ln -sfn versions/2 '$M/lm/production'"
check "a draft versions/3 with closed files" cp -r "$TMP/v3" "$M/lm/versions/3"
check "user metadata on versions/2.json" sh -c "jq '.description = \"kept\"' '$M/lm/versions/2.json' > '$TMP/t' && cp '$TMP/t' '$M/lm/versions/2.json'"
check "a second model, renamed" sh -c "mkdir '$M/tmp' && mkdir '$M/tmp/versions/1' && echo x > '$M/tmp/versions/1/x' && chmod a-w '$M/tmp/versions/1' && mv -T '$M/tmp' '$M/seg'"

# Everything a user can see, bytes included.
picture() {
	snapshot
	(cd "$M" && find . -type f -exec sha256sum {} + | sort -k2)
	for f in production staging latest; do echo "$f -> $(readlink "$M/lm/$f")"; done
	cat "$MNT/history"
}
hist=$(cat "$MNT/history")
before=$(picture)
check "the picture has the files, the aliases and the history" \
	test "$(printf '%s\n' "$before" | grep -c 'weights.bin')" -ge 6 -a "$(printf '%s\n' "$hist" | wc -l)" -ge 10

say "# unmount and mount again"
umount_mrfs
check_fails "unmounted: /models is gone" test -d "$M"
mount_mrfs
check_eq "everything is as it was (tree, bytes, records, aliases, history)" "$before" "$(picture)"
check "diff -r v1 versions/1" diff -r "$TMP/v1" "$M/lm/versions/1"
check "diff -r v3 versions/3 (the draft)" diff -r "$TMP/v3" "$M/lm/versions/3"
check_eq "versions/3 is still a draft" draft "$(jq -r .state "$M/lm/versions/3.json")"
check_eq "the user metadata is still there" kept "$(jq -r .description "$M/lm/versions/2.json")"
check "the draft is still writable" sh -c "echo more > '$M/lm/versions/3/more.txt'"
check "and can be sealed" chmod a-w "$M/lm/versions/3"
check_eq "latest -> versions/3" versions/3 "$(readlink "$M/lm/latest")"
seq1=$(jq -s 'map(.seq) | max' "$MNT/history")
check "ln -sfn versions/3 production" ln -sfn versions/3 "$M/lm/production"
check_eq "the history goes on where it was" "alias.move 2 3" "$(last_event '"\(.event) \(.from) \(.to)"' lm)"
check "new events have higher seq numbers" test "$(last_event seq)" -gt "$seq1"
check "mkdir versions/2 is still refused (the highest version is remembered)" \
	test "$(errno_of mkdir "$M/lm/versions/2")" = EEXIST -a "$(errno_of mkdir "$M/lm/versions/3")" = EEXIST

say "# kill -9 the daemon"
hist=$(cat "$MNT/history")
before=$(picture)
mrfs_kill9
mount_mrfs
check_eq "after kill -9: everything is as it was" "$before" "$(picture)"

say "# kill -9 right after a seal and a promotion"
check "mkdir versions/4, write, seal, promote" sh -c "
	cp -r '$TMP/v1' '$M/lm/versions/4' && chmod a-w '$M/lm/versions/4' && ln -sfn versions/4 '$M/lm/production'"
before=$(picture)
mrfs_kill9
mount_mrfs
check_eq "after kill -9: the seal and the promotion are there" "$before" "$(picture)"
check_eq "production -> versions/4" versions/4 "$(readlink "$M/lm/production")"
check_eq "versions/4 is sealed" sealed "$(jq -r .state "$M/lm/versions/4.json")"
check "versions/4's bytes" diff -r "$TMP/v1" "$M/lm/versions/4"

say "# kill -9 in the middle of writing a draft"
check "mkdir versions/5 with a closed file" sh -c "mkdir '$M/lm/versions/5' && cp '$TMP/v2/weights.bin' '$M/lm/versions/5/done.bin'"
hist=$(cat "$MNT/history")
sealed_before=$(cd "$M/lm" && find versions/1 versions/2 versions/3 versions/4 -type f -exec sha256sum {} + | sort -k2)
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
block = os.urandom(1 << 16)
while True:
    os.write(fd, block)
' "$M/lm/versions/5/partial.bin" 2>/dev/null &
writer=$!
sleep 1
check "the writer is writing" test -s "$M/lm/versions/5/partial.bin"
mrfs_kill9
wait "$writer" 2>/dev/null
mount_mrfs
check_eq "sealed versions' bytes are intact" "$sealed_before" \
	"$(cd "$M/lm" && find versions/1 versions/2 versions/3 versions/4 -type f -exec sha256sum {} + | sort -k2)"
check_eq "the history is intact" "$hist" "$(cat "$MNT/history")"
check_eq "aliases are intact" "versions/4 versions/1" "$(readlink "$M/lm/production") $(readlink "$M/lm/staging")"
check "the closed file of the draft survived" cmp "$TMP/v2/weights.bin" "$M/lm/versions/5/done.bin"
check_eq "versions/5 is still a draft" draft "$(jq -r .state "$M/lm/versions/5.json")"
check "the draft can be finished and sealed" sh -c "rm -f '$M/lm/versions/5/partial.bin' && chmod a-w '$M/lm/versions/5'"
check_eq "latest -> versions/5" versions/5 "$(readlink "$M/lm/latest")"
check "the renamed model kept its version" test "$(cat "$M/seg/versions/1/x")" = x

say "# and once more, cleanly"
before=$(picture)
remount
check_eq "after a last remount, everything is as it was" "$before" "$(picture)"

test_done
