#!/bin/bash
# SPDX-License-Identifier: MIT
# t0070: the model's policy, with real users. alice owns model m and
# promotes; bob (no rights) cannot touch the protected production, but may
# keep his own staging where the model directory's mode lets him write;
# carol (the mount's --admin-group) and root may move production; the
# policy lives in /models/m.json, only alice (or admin, root) may change it,
# and promote_from makes production follow staging. A refusal leaves no
# event in the history.
. "$(dirname "$0")/lib.sh"

# --- users: alice, bob, carol (in the admin group), removed on exit --------
. "$(dirname "$0")/users.sh"
make_users alice bob carol:admin

hcounts() { echo "m:$(wc -l <"$M/m/history") all:$(wc -l <"$MNT/history")"; }

# The events of m's history about alias $1, one a line (ln -sfn's own
# temporary alias has events of its own, under its own name).
alias_events() { jq -c --arg a "$1" 'select(.alias == $a)' "$M/m/history"; }

# refused k|d WHO WANT OP ARGS...: WHO's OP fails with WANT (d: the daemon
# refuses and logs it; k: the kernel may refuse by itself), and neither
# m's history nor /history gains an event.
refused() {
	local how=$1 before
	shift
	before=$(hcounts)
	_expect_as "$([ "$how" = d ] && echo 1 || echo 0)" "$@"
	check_eq "... and no event in the history for it" "$before" "$(hcounts)"
}

# The names in model m's directory, one a line.
entries() { ls -A "$M/m"; }

# --- the mount, with allow_other and the admin group --------------------------

ADMIN_OPT=()
if "$MRFS_BIN" mount --help 2>&1 | grep -q -- '--admin-group'; then
	ADMIN_OPT=(--admin-group "$ADM")
fi
check "mrfs mount --help lists --admin-group" sh -c "'$MRFS_BIN' mount --help 2>&1 | grep -q -- --admin-group"
[ ${#ADMIN_OPT[@]} = 0 ] && say "# mount has no --admin-group yet: mounting without it, carol's checks will fail"

mount_multi() { mount_mrfs -o allow_other "${ADMIN_OPT[@]}"; }
mount_multi
as alice test -d "$M" || bail_out "alice cannot reach $M (allow_other, modes of $TMP?)"
mkdir "$TMP/alice" && chown "${U[alice]}" "$TMP/alice" && chmod 700 "$TMP/alice"
mkdir "$TMP/bob" && chown "${U[bob]}" "$TMP/bob" && chmod 700 "$TMP/bob"
mkdir "$TMP/carol" && chown "${U[carol]}" "$TMP/carol" && chmod 700 "$TMP/carol"

say "# alice registers m and logs versions 1..3"
check "alice: mkdir /models/m" as alice mkdir "$M/m"
check_eq "m is owned by alice" "${U[alice]}" "$(stat -c %U "$M/m")"
for n in 1 2 3; do
	check "alice: log and seal version $n" as alice sh -c \
		"mkdir '$M/m/versions/$n' && echo 'weights $n' > '$M/m/versions/$n/w.bin' && chmod a-w '$M/m/versions/$n'"
done
check "m.json's policy protects production by default" \
	jq -e '.policy.protected | index("production") != null' "$M/m.json"
check "alice: ln -s versions/1 production" as alice ln -s versions/1 "$M/m/production"
check_eq "production -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "newest event: alias.set of production to 1, by alice" "alias.set production 1 $(uid_of alice)" \
	"$(last_event '"\(.event) \(.alias) \(.to) \(.uid)"' m)"
check_eq "m is mode 755" 755 "$(stat -c %a "$M/m")"

say "# bob, in alice's 0755 model: the kernel says no"
before=$(entries)
hc=$(hcounts)
check_fails "bob: ln -sfn versions/2 production fails" as bob ln -sfn versions/2 "$M/m/production"
check_eq "... production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "... and nothing left behind in m" "$before" "$(entries)"
check_eq "... and no event in the history" "$hc" "$(hcounts)"
refused k bob EACCES symlink versions/2 "$M/m/staging"
refused k bob EACCES unlink "$M/m/production"
check_eq "production still -> versions/1" versions/1 "$(readlink "$M/m/production")"

say "# alice opens m to everyone (chmod 777): bob has an alias of his own"
check "alice: chmod 777 m" as alice chmod 777 "$M/m"
check_eq "m is mode 777" 777 "$(stat -c %a "$M/m")"
ok_as bob symlink versions/1 "$M/m/staging"
check_eq "newest event: alias.set of staging, by bob's uid" "alias.set staging $(uid_of bob) ${U[bob]}" \
	"$(last_event '"\(.event) \(.alias) \(.uid) \(.user)"' m)"
check "bob: ln -sfn versions/2 staging" as bob ln -sfn versions/2 "$M/m/staging"
check_eq "staging -> versions/2" versions/2 "$(readlink "$M/m/staging")"
check_eq "newest event: alias.move of staging from 1 to 2, by bob" "alias.move staging 1 2 ${U[bob]}" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to) \(.user)"' m)"
check "bob: mv staging qa" as bob mv -T "$M/m/staging" "$M/m/qa"
check "bob: mv qa staging" as bob mv -T "$M/m/qa" "$M/m/staging"
check_eq "staging -> versions/2 again" versions/2 "$(readlink "$M/m/staging")"

say "# bob against the protected production, with write permission on m: the daemon says no"
before=$(entries)
ev=$(alias_events production)
check_fails "bob: ln -sfn versions/2 production fails" as bob ln -sfn versions/2 "$M/m/production"
check_eq "... production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "... and no temporary alias left behind" "$before" "$(entries)"
check_eq "... and no event about production in the history" "$ev" "$(alias_events production)"
ok_as bob symlink versions/2 "$M/m/bobtmp"
refused d bob EACCES rename "$M/m/bobtmp" "$M/m/production"
check_eq "production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "bobtmp is still there" versions/2 "$(readlink "$M/m/bobtmp")"
ok_as bob unlink "$M/m/bobtmp"
refused d bob EACCES unlink "$M/m/production"
check_eq "production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
refused d bob EACCES rename "$M/m/staging" "$M/m/production"
check_eq "production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "staging still -> versions/2" versions/2 "$(readlink "$M/m/staging")"

say "# carol (admin group) and root may move production"
check "carol: ln -sfn versions/2 production" as carol ln -sfn versions/2 "$M/m/production"
check_eq "production -> versions/2" versions/2 "$(readlink "$M/m/production")"
check_eq "newest event: alias.move of production from 1 to 2, by carol" \
	"alias.move production 1 2 $(uid_of carol) ${U[carol]}" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to) \(.uid) \(.user)"' m)"
check "root: ln -sfn versions/3 production" ln -sfn versions/3 "$M/m/production"
check_eq "production -> versions/3" versions/3 "$(readlink "$M/m/production")"
check_eq "newest event: alias.move of production to 3, by root" "alias.move production 3 0" \
	"$(last_event '"\(.event) \(.alias) \(.to) \(.uid)"' m)"
check "root: ln -sfn versions/1 production" ln -sfn versions/1 "$M/m/production"
check_eq "production -> versions/1" versions/1 "$(readlink "$M/m/production")"

say "# alice protects staging too, through m.json"
check "alice: jq '.policy.protected += [\"staging\"]' m.json > t && cp t m.json" as alice sh -c \
	"jq '.policy.protected += [\"staging\"]' '$M/m.json' > '$TMP/alice/m.json' && cp '$TMP/alice/m.json' '$M/m.json'"
check_eq "m.json: policy.protected is production, staging" '["production","staging"]' \
	"$(jq -c '.policy.protected' "$M/m.json")"
check_eq "newest event: policy.update with the new policy, by alice" \
	"policy.update [\"production\",\"staging\"] ${U[alice]}" \
	"$(last_event '"\(.event) \(.policy.protected | tojson) \(.user)"' m)"
check_eq "... in /history too" "policy.update m" "$(last_event '"\(.event) \(.model)"')"
ok_as bob symlink versions/1 "$M/m/bobtmp"
refused d bob EACCES rename "$M/m/bobtmp" "$M/m/staging"
ok_as bob unlink "$M/m/bobtmp"
refused d bob EACCES unlink "$M/m/staging"
check_eq "staging still -> versions/2" versions/2 "$(readlink "$M/m/staging")"
ev=$(alias_events staging)
check_fails "bob: ln -sfn versions/1 staging fails" as bob ln -sfn versions/1 "$M/m/staging"
check_eq "... staging still -> versions/2" versions/2 "$(readlink "$M/m/staging")"
check_eq "... and no event about staging in the history" "$ev" "$(alias_events staging)"

say "# bob cannot change the policy through m.json (EACCES at close), but may describe m"
check_eq "m.json is writable by bob (mode follows m's 777 & 0666)" 666 "$(stat -c %a "$M/m.json")"
jq '.policy.protected = []' "$M/m.json" >"$TMP/nopolicy.json"
chmod 644 "$TMP/nopolicy.json"
rec_before=$(cat "$M/m.json")
hc=$(hcounts)
lines=$(log_lines)
check_eq "bob: writing m.json with protected=[] fails at close with EACCES" "close:EACCES" \
	"$(as bob "$PYU" "$TMP/recw.py" "$M/m.json" "$TMP/nopolicy.json")"
check_eq "... m.json is unchanged" "$rec_before" "$(cat "$M/m.json")"
check_eq "... and no event in the history" "$hc" "$(hcounts)"
check "... and the daemon logged the refusal" test "$(log_lines)" -gt "$lines"
check "bob: jq '.description=\"by bob\"' m.json > t && cp t m.json (policy unchanged)" as bob sh -c \
	"jq '.description=\"by bob\"' '$M/m.json' > '$TMP/bob/m.json' && cp '$TMP/bob/m.json' '$M/m.json'"
check_eq "m.json: description by bob, policy unchanged" 'by bob ["production","staging"]' \
	"$(jq -r '"\(.description) \(.policy.protected | tojson)"' "$M/m.json")"
check_eq "newest event: metadata.update by bob" "metadata.update ${U[bob]}" \
	"$(last_event '"\(.event) \(.user)"' m)"

say "# promote_from: production only goes where staging has been"
check "alice: jq '.policy.promote_from = {production: staging}' m.json > t && cp t m.json" as alice sh -c \
	"jq '.policy.promote_from = {\"production\": \"staging\"}' '$M/m.json' > '$TMP/alice/m.json' && cp '$TMP/alice/m.json' '$M/m.json'"
check_eq "newest event: policy.update with promote_from" 'policy.update {"production":"staging"}' \
	"$(last_event '"\(.event) \(.policy.promote_from | tojson)"' m)"
check_eq "production -> 1, staging -> 2; staging has pointed at 1 and 2, never 3" \
	"versions/1 versions/2" "$(readlink "$M/m/production") $(readlink "$M/m/staging")"
before=$(entries)
ev=$(alias_events production)
check_fails "alice: ln -sfn versions/3 production fails" as alice ln -sfn versions/3 "$M/m/production"
check_eq "... production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check_eq "... and no temporary alias left behind" "$before" "$(entries)"
check_eq "... and no event about production in the history" "$ev" "$(alias_events production)"
ok_as alice symlink versions/3 "$M/m/cand"
lines=$(log_lines)
refused d alice EPERM rename "$M/m/cand" "$M/m/production"
check_eq "production still -> versions/1" versions/1 "$(readlink "$M/m/production")"
check "the daemon's log line says why (names staging)" sh -c "tail -n +$((lines + 1)) '$LOG' | grep -q staging"
refused d root EPERM rename "$M/m/cand" "$M/m/production"
check_eq "production still -> versions/1 (root is bound by promote_from too)" versions/1 \
	"$(readlink "$M/m/production")"
ok_as alice unlink "$M/m/cand"
check "alice: ln -sfn versions/2 production (staging is at 2)" as alice ln -sfn versions/2 "$M/m/production"
check_eq "production -> versions/2" versions/2 "$(readlink "$M/m/production")"
check "alice: ln -sfn versions/3 staging" as alice ln -sfn versions/3 "$M/m/staging"
check "alice: ln -sfn versions/1 staging (staging moves on)" as alice ln -sfn versions/1 "$M/m/staging"
check "alice: ln -sfn versions/3 production (staging has pointed at 3)" as alice ln -sfn versions/3 "$M/m/production"
check_eq "production -> versions/3" versions/3 "$(readlink "$M/m/production")"
check_eq "newest event: alias.move of production from 2 to 3, by alice" "alias.move production 2 3 ${U[alice]}" \
	"$(last_event '"\(.event) \(.alias) \(.from) \(.to) \(.user)"' m)"
check_eq "the serving view follows: production of m holds version 3" 3 "$(ls "$MNT/serving/production/m" 2>&1)"

say "# carol (admin group) may change the policy"
check "carol: jq 'del(.policy.promote_from)' m.json > t && cp t m.json" as carol sh -c \
	"jq 'del(.policy.promote_from)' '$M/m.json' > '$TMP/carol/m.json' && cp '$TMP/carol/m.json' '$M/m.json'"
check_eq "newest event: policy.update without promote_from, by carol" "policy.update null ${U[carol]}" \
	"$(last_event '"\(.event) \(.policy.promote_from) \(.user)"' m)"

say "# after a remount, the policy still holds"
umount_mrfs
mount_multi
check_eq "m.json: policy.protected is production, staging" '["production","staging"]' \
	"$(jq -c '.policy.protected' "$M/m.json")"
refused d bob EACCES unlink "$M/m/production"
check_eq "production still -> versions/3" versions/3 "$(readlink "$M/m/production")"

test_done
