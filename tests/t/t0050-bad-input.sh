#!/bin/bash
# SPDX-License-Identifier: MIT
# t0050: every refusal of SPEC's tables, each with its errno, a line in the
# daemon's log and nothing changed; the daemon survives all of it.
. "$(dirname "$0")/lib.sh"

mount_mrfs

# refuse ERR OP ARGS...: OP fails with ERR, the daemon logs it, and the
# tree, the records and the history are as they were.
_refuse() {
	local how=$1 before after
	shift
	before=$(snapshot)
	"$how" "$@"
	after=$(snapshot)
	if [ "$before" != "$after" ]; then
		fail "nothing changed after: $*" "difference (- before, + after):" \
			"$(diff -u <(printf '%s\n' "$before") <(printf '%s\n' "$after") | tail -n +3 | head -n 30)"
	fi
}
refuse() { _refuse expect_errno "$@"; }
refuse_k() { _refuse expect_errno_k "$@"; }

say "# the registry to be attacked"
check "model m: versions 1, 2 sealed, production -> 2, staging -> 1, draft 3" sh -c "
	mkdir '$M/m' && mkdir '$M/m/versions/1' && echo one > '$M/m/versions/1/f' && chmod a-w '$M/m/versions/1' &&
	mkdir '$M/m/versions/2' && echo two > '$M/m/versions/2/f' && ln -s versions/2 '$M/m/production' &&
	ln -s versions/1 '$M/m/staging' && mkdir '$M/m/versions/3' && echo three > '$M/m/versions/3/f'"
check "model n: version 1 sealed" sh -c "mkdir -p '$M/n/versions/1' && echo n > '$M/n/versions/1/f' && chmod a-w '$M/n/versions/1'"
check "model k: no versions" mkdir "$M/k"
check "model d: only a draft" sh -c "mkdir -p '$M/d/versions/1' && echo d > '$M/d/versions/1/f'"
check_eq "the registry is as built" "$(printf '%s\n' d d.json k k.json m m.json n n.json)" "$(ls "$M")"

l64=$(printf 'a%.0s' {1..64})
l65=$(printf 'b%.0s' {1..65})

say "# model names"
refuse EINVAL mkdir "$M/$l65"
refuse EINVAL mkdir "$M/.hidden"
refuse EINVAL mkdir "$M/-dash"
refuse EINVAL mkdir "$M/a b"
refuse EINVAL mkdir "$M/a:b"
refuse EINVAL mkdir "$M/a*b"
refuse EINVAL mkdir "$M/a@b"
refuse EINVAL mkdir "$M/caf$(printf '\xc3\xa9')"
refuse EINVAL mkdir "$M/model.json"
refuse EINVAL mkdir "$M/..json"
refuse_k ENOENT mkdir "$M/ghost/sub"
refuse EINVAL rename "$M/k" "$M/k k"
refuse EINVAL rename "$M/k" "$M/.k"
refuse EINVAL rename "$M/k" "$M/kk.json"
refuse EINVAL rename "$M/k" "$M/$l65"
check "a 64-character name is fine: mkdir" mkdir "$M/$l64"
check "... and rmdir (no versions)" rmdir "$M/$l64"
check "letters, digits, . _ - are fine: mkdir A.b_c-9" mkdir "$M/A.b_c-9"
check "... and rmdir" rmdir "$M/A.b_c-9"
check_eq "newest event: model.delete of A.b_c-9" "model.delete A.b_c-9" "$(last_event '"\(.event) \(.model)"')"

say "# alias names"
refuse EINVAL symlink versions/1 "$M/m/$l65"
refuse EINVAL symlink versions/1 "$M/m/.hidden"
refuse EINVAL symlink versions/1 "$M/m/-dash"
refuse EINVAL symlink versions/1 "$M/m/a b"
refuse EINVAL symlink versions/1 "$M/m/a:b"
refuse EINVAL symlink versions/1 "$M/m/prod.json"
refuse EINVAL rename "$M/m/staging" "$M/m/sta ging"
refuse EINVAL rename "$M/m/staging" "$M/m/staging.json"
refuse "EINVAL|EPERM" symlink versions/1 "$M/d/latest"
check_eq "the refused alias did not seal d's draft" draft "$(jq -r .state "$M/d/versions/1.json")"
refuse "EPERM|EINVAL" rename "$M/m/staging" "$M/m/latest"
refuse "EPERM|EINVAL" rename "$M/m/staging" "$M/m/history"
refuse_k "EISDIR|EPERM|EINVAL" rename "$M/m/staging" "$M/m/versions"
refuse_k "EEXIST|EPERM|EINVAL" symlink versions/1 "$M/m/history"
refuse_k "EEXIST|EPERM|EINVAL" symlink versions/1 "$M/m/versions"
refuse_k "EEXIST|EPERM|EINVAL" symlink versions/1 "$M/m/latest"
check "a 64-character alias is fine" ln -s versions/1 "$M/m/$l64"
check "... and rm" rm "$M/m/$l64"

say "# version numbers"
for bad in abc 0 -1 1.5 1e3 +4 " 4" 4a 0x10 4.json; do
	refuse EINVAL mkdir "$M/m/versions/$bad"
done
refuse_k EEXIST mkdir "$M/m/versions/1"
refuse_k EEXIST mkdir "$M/m/versions/3"
check "rm -r versions/3 (a draft)" rm -r "$M/m/versions/3"
refuse EINVAL mkdir "$M/m/versions/3"
check "mkdir versions/5 (above every version so far)" mkdir "$M/m/versions/5"
refuse EINVAL mkdir "$M/m/versions/4"
refuse_k EEXIST mkdir "$M/m/versions/5"
check "mkdir versions/6" mkdir "$M/m/versions/6"
check_eq "versions of m" "$(printf '%s\n' 1 1.json 2 2.json 5 5.json 6 6.json)" "$(ls "$M/m/versions")"

say "# latest, history and /history are read-only"
refuse EPERM unlink "$M/m/latest"
refuse EPERM rename "$M/m/latest" "$M/m/other"
refuse EPERM lutime "$M/m/latest"
refuse EPERM lchown "$M/m/latest" 1 1
check_fails "rm -f latest fails" rm -f "$M/m/latest"
check_fails "ln -sfn versions/1 latest fails" ln -sfn versions/1 "$M/m/latest"
check_eq "latest still answers versions/2" versions/2 "$(readlink "$M/m/latest")"
check_eq "no temporary alias left behind by the failed ln -sfn" \
	"$(printf '%s\n' history latest production staging versions)" "$(ls -A "$M/m")"
for h in "$M/m/history" "$MNT/history"; do
	refuse EPERM openw "$h"
	refuse EPERM write "$h" '{"event":"forged"}'
	refuse EPERM append "$h" '{"event":"forged"}'
	refuse EPERM truncate "$h" 0
	refuse EPERM unlink "$h"
	refuse EPERM rename "$h" "$h-old"
	refuse EPERM chmod "$h" 666
	refuse EPERM utime "$h"
	refuse EPERM link "$h" "$h-link"
done
check_fails "echo forged >> /history fails" sh -c "echo '{\"event\":\"forged\"}' >> '$MNT/history'"
check_eq "no forged event anywhere" "" "$(grep forged "$MNT/history" "$M/m/history")"

say "# hard links"
check "mkdir versions/7 with a file" sh -c "mkdir '$M/m/versions/7' && echo seven > '$M/m/versions/7/f'"
refuse EPERM link "$M/m/versions/7/f" "$M/m/versions/7/g"
refuse EPERM link "$M/m/versions/1/f" "$M/m/versions/7/g"
refuse EPERM link "$M/m/production" "$M/m/prod2"
refuse EPERM link "$M/m/versions/7/f" "$M/k/g"
check_fails "ln (hard) fails" ln "$M/m/versions/7/f" "$M/m/versions/7/h"

say "# models: rmdir, mkdir, mv"
refuse ENOTEMPTY rmdir "$M/m"
refuse ENOTEMPTY rmdir "$M/n"
refuse ENOTEMPTY rmdir "$M/d"
refuse_k EEXIST mkdir "$M/m"
refuse_k EEXIST mkdir "$M/k"
refuse EEXIST rename "$M/m" "$M/n"
refuse EEXIST rename "$M/k" "$M/n"
refuse EEXIST rename "$M/n" "$M/k"
check_fails "mv -T /models/k /models/n fails" mv -T "$M/k" "$M/n"
check "mv /models/k /models/k2 renames" mv -T "$M/k" "$M/k2"
check_eq "newest event: model.rename" model.rename "$(last_event event)"
check_eq "k2.json: name k2" k2 "$(jq -r .name "$M/k2.json")"
check_fails "k.json is gone" test -e "$M/k.json"

say "# aliases across models"
refuse EXDEV rename "$M/m/staging" "$M/n/staging"
refuse EXDEV rename "$M/m/production" "$M/n/production"
check "the alias stayed: readlink m/staging" test "$(readlink "$M/m/staging")" = versions/1

say "# records refuse what is not a JSON object or changes a managed member (EINVAL at close)"
R=$M/m/versions/1.json
refuse EINVAL write "$R" '[1, 2]'
refuse EINVAL write "$R" 'not json'
refuse EINVAL write "$R" '"a string"'
refuse EINVAL write "$R" '{"state": "draft"}'
refuse EINVAL write "$R" '{"version": 9}'
refuse EINVAL write "$R" "$(jq -c '.model = "other"' "$R")"
refuse EINVAL write "$M/m.json" '{"name": "zzz"}'
refuse EINVAL write "$M/m.json" '[]'
check_eq "versions/1.json is still the sealed record of m:1" "m 1 sealed" "$(jq -r '"\(.model) \(.version) \(.state)"' "$R")"
check "jq '.metrics.acc=0.93' 1.json > t && cp t 1.json (user metadata on a sealed version)" \
	sh -c "jq '.metrics.acc = 0.93' '$R' > '$TMP/t' && cp '$TMP/t' '$R'"
check_eq "the metric is in the record" 0.93 "$(jq -r .metrics.acc "$R")"
check_eq "newest event: metadata.update" metadata.update "$(last_event event m)"

say "# the daemon survived"
check "the daemon is alive" daemon_alive
check "ls -R the mount" ls -R "$MNT"
check "every history line is a JSON object" jq -se 'all(.[]; type == "object")' "$MNT/history"
check "after all that, mkdir /models/z and a version work" \
	sh -c "mkdir -p '$M/z/versions/1' && echo z > '$M/z/versions/1/f' && chmod a-w '$M/z/versions/1'"

test_done
