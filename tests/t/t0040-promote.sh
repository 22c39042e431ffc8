#!/bin/bash
# SPDX-License-Identifier: MIT
# t0040: promotion. Aliases are symlinks: ln -sfn moves one atomically (a
# reader loading production/weights.bin during a promotion storm always gets
# one complete version), mv renames, rm removes; targets may be spelled
# three ways; bad targets are refused.
. "$(dirname "$0")/lib.sh"

mount_mrfs
check "mkdir /models/clf and /models/other" mkdir "$M/clf" "$M/other"
V=$M/clf/versions
for n in 1 2 3; do
	mkdir -p "$TMP/v$n"
	mkdata "$TMP/v$n/weights.bin" $((200000 + n * 4096)) "weights$n"
	echo "version $n" >"$TMP/v$n/VERSION"
	check "log and seal version $n" sh -c "cp -r '$TMP/v$n' '$V/$n' && chmod a-w '$V/$n'"
done
check "log and seal other's version 1" sh -c "mkdir '$M/other/versions/1' && echo o > '$M/other/versions/1/x' && chmod a-w '$M/other/versions/1'"
cd "$M/clf" || bail_out "cd $M/clf"

say "# ln -s, then ln -sfn twice"
check "ln -s versions/1 production" ln -s versions/1 production
check_eq "newest event: alias.set of production to 1" "alias.set production 1" \
	"$(last_event '"\(.event) \(.alias) \(.to // .version)"' clf)"
check "ln -sfn versions/2 production" ln -sfn versions/2 production
check_eq "readlink production" versions/2 "$(readlink production)"
check "ln -sfn versions/3 production" ln -sfn versions/3 production
check_eq "readlink production answers versions/3" versions/3 "$(readlink production)"
check_eq "newest event: alias.move of production from 2 to 3" "alias.move production 2 3" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to)"' clf)"
check_eq "... in /history too" "alias.move clf production 2 3" \
	"$(last_event '"\(.event) \(.model) \(.alias) \(.from) \(.to)"')"
check_eq "the move was made by ln" ln "$(last_event comm clf)"
check "production/weights.bin is version 3's" cmp "$TMP/v3/weights.bin" production/weights.bin
check_eq "ls -A the model: no temporary alias left behind by ln -sfn" \
	"$(printf '%s\n' history latest production versions)" "$(ls -A)"
check "versions/3.json lists the alias production" jq -e '.aliases | tostring | contains("production")' versions/3.json
check "versions/2.json no longer does" jq -e '.aliases | tostring | contains("production") | not' versions/2.json
check "clf.json lists the alias production" jq -e '.aliases | tostring | contains("production")' "$M/clf.json"
check_eq "the serving view holds exactly version 3" 3 "$(ls "$MNT/serving/production/clf" 2>&1)"
check "the serving view serves version 3's bytes" cmp "$TMP/v3/weights.bin" "$MNT/serving/production/clf/3/weights.bin"

say "# a reader during a promotion storm"
cat >"$TMP/reader.py" <<'EOF'
# reader.py PATH N REF...: open and read PATH N times; every read must be
# exactly one of the REF files. Prints a summary; exit 1 on any bad read.
import hashlib, os, sys, errno
path, n, refs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
known = {hashlib.sha256(open(r, "rb").read()).hexdigest(): r for r in refs}
seen, bad = {}, []
for i in range(n):
    try:
        with open(path, "rb") as f:
            h = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        bad.append("read %d: %s" % (i, errno.errorcode.get(e.errno, e.errno)))
        continue
    if h in known:
        seen[known[h]] = seen.get(known[h], 0) + 1
    else:
        bad.append("read %d: content matches no version" % i)
print("reads per version:", " ".join("%s=%d" % (os.path.basename(os.path.dirname(k)), v)
                                      for k, v in sorted(seen.items())))
print("bad reads: %d" % len(bad))
for b in bad[:20]:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
mark=$(wc -l <history)
python3 "$TMP/reader.py" "$M/clf/production/weights.bin" 1000 "$TMP"/v[123]/weights.bin >"$TMP/reader.out" 2>&1 &
reader=$!
flips=0
t0=$SECONDS
while pid_running "$reader" && [ $((SECONDS - t0)) -lt 50 ]; do
	n=$((flips % 3 + 1))
	ln -sfn "versions/$n" production || echo "ln -sfn versions/$n failed" >>"$TMP/promoter.err"
	flips=$((flips + 1))
	sleep 0.003
done
wait "$reader"
rc=$?
say "# $flips promotions during the reads; $(head -n 1 "$TMP/reader.out")"
check_eq "every one of the 1000 reads was one complete version (never ENOENT, never a mix)" \
	"0 0 bad reads" "$rc $(sed -n 's/^bad reads: //p' "$TMP/reader.out") bad reads" ||
	sed 's/^/    /' "$TMP/reader.out"
check_eq "the promoter's ln -sfn never failed" "" "$(cat "$TMP/promoter.err" 2>/dev/null)"
check "the reader saw more than one version (the promotions were visible)" \
	test "$(grep -o '=[0-9]*' "$TMP/reader.out" | wc -l)" -ge 2
last=$((flips > 0 ? (flips - 1) % 3 + 1 : 3))
check_eq "production ends where the last ln -sfn put it" "versions/$last" "$(readlink production)"
check_eq "one alias.move per promotion" "$flips" \
	"$(tail -n +$((mark + 1)) history | jq -r 'select(.event == "alias.move" and .alias == "production") | .event' | wc -l)"
check_eq "still no temporary alias left behind" "$(printf '%s\n' history latest production versions)" "$(ls -A)"

say "# mv staging production; rm production"
ln -sfn versions/3 production
check "ln -s versions/1 staging" ln -s versions/1 staging
check "mv -T staging production" mv -T staging production
check_eq "production takes staging's target" versions/1 "$(readlink production)"
check_fails "staging is gone" test -L staging
check "history: alias.move of production from 3 to 1" \
	jq -se 'any(.[-3:][]; .event == "alias.move" and .alias == "production" and .from == 3 and .to == 1)' history
check "production/VERSION reads version 1" test "$(cat production/VERSION)" = "version 1"
check "rm production" rm production
check_fails "production is gone" test -L production
check_eq "newest event: alias.delete of production" "alias.delete production" "$(last_event '"\(.event) \(.alias)"' clf)"
check "versions/1.json no longer lists production" jq -e '.aliases | tostring | contains("production") | not' versions/1.json
check_fails "the serving view of production no longer shows clf" ls "$MNT/serving/production/clf/1"

say "# three spellings of a target; readlink always answers versions/n"
check "ln -s ./versions/1 a1" ln -s ./versions/1 a1
check_eq "readlink a1" versions/1 "$(readlink a1)"
check "ln -s $M/clf/versions/2 a2 (absolute, inside the mount)" ln -s "$M/clf/versions/2" a2
check_eq "readlink a2" versions/2 "$(readlink a2)"
check "a2/VERSION reads version 2" test "$(cat a2/VERSION)" = "version 2"
check "ln -sfn ./versions/3 a1" ln -sfn ./versions/3 a1
check_eq "readlink a1 after the move" versions/3 "$(readlink a1)"

say "# refused targets"
before=$(snapshot)
expect_errno EINVAL symlink ../other/versions/1 "$M/clf/bad"
expect_errno EINVAL symlink "$M/other/versions/1" "$M/clf/bad"
expect_errno EINVAL symlink "$TMP/v1" "$M/clf/bad"
expect_errno EINVAL symlink versions "$M/clf/bad"
expect_errno EINVAL symlink versions/1/VERSION "$M/clf/bad"
expect_errno EINVAL symlink versions/1.json "$M/clf/bad"
expect_errno EINVAL symlink latest "$M/clf/bad"
expect_errno ENOENT symlink versions/9 "$M/clf/bad"
expect_errno ENOENT symlink ./versions/9 "$M/clf/bad"
expect_errno ENOENT symlink "$M/clf/versions/9" "$M/clf/bad"
expect_errno_k EEXIST symlink versions/2 "$M/clf/a1"
check_fails "ln -s (without -f) onto an existing alias fails" ln -s versions/2 a1
expect_errno EXDEV rename "$M/clf/a1" "$M/other/a1"
check_eq "the refusals changed nothing" "$before" "$(snapshot)"
check_eq "a1 still answers versions/3" versions/3 "$(readlink a1)"
check "ln -sfn to a missing version fails" sh -c "! ln -sfn versions/9 a1"
check_eq "... and a1 is unchanged" versions/3 "$(readlink a1)"
check_eq "... and no temporary alias is left" "$(printf '%s\n' a1 a2 history latest versions)" "$(ls -A)"

cd /
test_done
