#!/bin/bash
# SPDX-License-Identifier: MIT
# t0080: permissions, with real users. The store is private to the daemon's
# user; models belong to their creator and the kernel enforces their modes
# (bob cannot write into alice's draft unless she lets him); chown and chmod
# of a model persist; nobody, not even root, can write a history, and the
# uid, user, pid and command of an event are the real caller's; aliases
# cannot lead out of the mount, while a symlink inside a draft is just a
# symlink.
. "$(dirname "$0")/lib.sh"

# --- users: alice and bob, removed on exit ------------------------------------
. "$(dirname "$0")/users.sh"
make_users alice bob

# whoami.py TARGET LINK: print this process's pid and comm, then make the
# symlink LINK -> TARGET.
cat >"$TMP/whoami.py" <<'EOF'
import os, sys
comm = open("/proc/self/comm").read().strip()
print(os.getpid(), comm, flush=True)
os.symlink(sys.argv[1], sys.argv[2])
EOF

# Both histories' contents, as checksums.
hsums() { md5sum "$M/m/history" "$MNT/history" | cut -d' ' -f1 | tr '\n' ' '; }

mount_multi() { mount_mrfs -o allow_other; }
mount_multi
as alice test -d "$M" || bail_out "alice cannot reach $M (allow_other, modes of $TMP?)"
mkdir "$TMP/bob" && chown "${U[bob]}" "$TMP/bob" && chmod 700 "$TMP/bob"

say "# the store is private"
check_eq "the store directory is mode 700" 700 "$(stat -c %a "$STORE")"
check_eq "its secret is mode 600" 600 "$(stat -c %a "$STORE/secret")"
expect_as_k bob EACCES read "$STORE/secret"

say "# alice's draft: bob may not write into it unless its modes let him"
V=$M/m/versions
check "alice: mkdir /models/m and draft versions/1 with a file f" as alice sh -c \
	"mkdir '$M/m' && mkdir '$V/1' && echo alice > '$V/1/f'"
check_eq "m, versions/1 and f belong to alice" "${U[alice]} ${U[alice]} ${U[alice]}" \
	"$(stat -c %U "$M/m" "$V/1" "$V/1/f" | tr '\n' ' ' | sed 's/ $//')"
before=$(hsums)
expect_as_k bob EACCES create "$V/1/g" bob
expect_as_k bob EACCES overwrite "$V/1/f" bob
expect_as_k bob EACCES append "$V/1/f" bob
expect_as_k bob EACCES truncate "$V/1/f" 0
expect_as_k bob EACCES unlink "$V/1/f"
expect_as_k bob EACCES mkdir "$V/1/sub"
expect_as_k bob EACCES mkdir "$V/2"
expect_as_k bob EPERM chmod "$V/1/f" 666
expect_as_k bob EPERM chown "$M/m" "$(uid_of bob)" -1
check_eq "f is still alice's text" alice "$(cat "$V/1/f")"
check_eq "ls versions/1: only f" f "$(ls -A "$V/1")"
check_eq "no event in either history for bob's attempts" "$before" "$(hsums)"
check "alice: chmod 666 versions/1/f" as alice chmod 666 "$V/1/f"
ok_as bob write "$V/1/f" bob
check_eq "f is bob's text now" bob "$(cat "$V/1/f")"
check "alice: chmod 777 versions/1" as alice chmod 777 "$V/1"
check_eq "versions/1 is mode 777 and still a draft" "777 draft" \
	"$(stat -c %a "$V/1") $(jq -r .state "$V/1.json")"
ok_as bob create "$V/1/g" "bob's file"
check_eq "g belongs to bob" "${U[bob]}" "$(stat -c %U "$V/1/g")"

say "# chown and chmod of a model persist"
check "alice: mkdir /models/m2, seal versions/1 and 2, ln -s versions/1 production" as alice sh -c \
	"mkdir '$M/m2' && mkdir '$M/m2/versions/1' && echo one > '$M/m2/versions/1/w' && chmod a-w '$M/m2/versions/1' &&
	 mkdir '$M/m2/versions/2' && echo two > '$M/m2/versions/2/w' && chmod a-w '$M/m2/versions/2' &&
	 ln -s versions/1 '$M/m2/production'"
check "root: chown bob /models/m2" chown "${U[bob]}" "$M/m2"
check_eq "m2 belongs to bob" "${U[bob]}" "$(stat -c %U "$M/m2")"
check_eq "m2.json: owner.uid is bob's" "$(uid_of bob)" "$(jq -r .owner.uid "$M/m2.json")"
check "alice: chmod 700 /models/m" as alice chmod 700 "$M/m"
check "bob: chmod 750 /models/m2 (his now)" as bob chmod 750 "$M/m2"
umount_mrfs
mount_multi
check_eq "after remount: m2 is bob's, mode 750" "${U[bob]} 750" "$(stat -c '%U %a' "$M/m2")"
check_eq "after remount: m is alice's, mode 700" "${U[alice]} 700" "$(stat -c '%U %a' "$M/m")"
check_eq "m2.json follows m2: bob's, mode 640" "${U[bob]} 640" "$(stat -c '%U %a' "$M/m2.json")"
check_eq "m2's versions/1.json follows m2: bob's, mode 640" "${U[bob]} 640" "$(stat -c '%U %a' "$M/m2/versions/1.json")"
check_eq "m.json follows m: alice's, mode 600" "${U[alice]} 600" "$(stat -c '%U %a' "$M/m.json")"
check "bob, m2's owner now, may move its protected production: ln -sfn versions/2 production" \
	as bob ln -sfn versions/2 "$M/m2/production"
check_eq "m2's production -> versions/2" versions/2 "$(readlink "$M/m2/production")"
expect_as_k bob EACCES read "$V/1/g"
expect_as_k bob EACCES read "$M/m.json"
check "alice: chmod 777 /models/m again" as alice chmod 777 "$M/m"

say "# nobody writes a history, not even root"
before=$(hsums)
for h in "$M/m/history" "$MNT/history"; do
	expect_errno EPERM write "$h" '{"event":"forged"}'
	expect_errno EPERM append "$h" '{"event":"forged"}'
	expect_errno EPERM truncate "$h" 0
	expect_errno EPERM chmod "$h" 666
	expect_errno EPERM unlink "$h"
	expect_errno EPERM rename "$h" "$h.old"
	expect_as_k bob 'EACCES|EPERM' write "$h" '{"event":"forged"}'
	expect_as_k bob 'EACCES|EPERM' append "$h" '{"event":"forged"}'
	expect_as_k bob 'EACCES|EPERM' truncate "$h" 0
	expect_as_k bob 'EACCES|EPERM' chmod "$h" 666
	expect_as_k bob 'EACCES|EPERM' unlink "$h"
done
check_eq "both histories are unchanged" "$before" "$(hsums)"
check_eq "history and /history are still there, mode 444" "444 444" \
	"$(stat -c %a "$M/m/history" "$MNT/history" | tr '\n' ' ' | sed 's/ $//')"

say "# the caller in an event is the real one"
out=$(as bob env USER=root LOGNAME=root SUDO_UID=0 "$PYU" "$TMP/whoami.py" versions/1 "$M/m2/bobs")
read -r pid comm <<<"$out"
check_eq "bob (with USER=root in his environment) made m2/bobs" versions/1 "$(readlink "$M/m2/bobs")"
check_eq "newest event of m2: alias.set of bobs with bob's uid, user, pid and comm" \
	"alias.set bobs $(uid_of bob) ${U[bob]} $pid $comm" \
	"$(last_event '"\(.event) \(.alias) \(.uid) \(.user) \(.pid) \(.comm)"' m2)"
check_eq "... the same in /history" "alias.set m2 $(uid_of bob) ${U[bob]} $pid" \
	"$(last_event '"\(.event) \(.model) \(.uid) \(.user) \(.pid)"')"
jq '. + {uid: 0, user: "root", comm: "init", pid: 1}' "$V/1.json" >"$TMP/forged.json"
chmod 644 "$TMP/forged.json"
check_eq "bob: writing versions/1.json with top-level uid/user/comm/pid members works (user metadata)" OK \
	"$(as bob "$PYU" "$TMP/recw.py" "$V/1.json" "$TMP/forged.json")"
check_eq "newest event: metadata.update of version 1 by bob's uid and user, not the document's" \
	"metadata.update 1 $(uid_of bob) ${U[bob]}" \
	"$(last_event '"\(.event) \(.version) \(.uid) \(.user)"' m)"
check_eq "... and its comm is the writer's (python3), not the document's" \
	"$(basename "$PYU")" "$(last_event comm m)"
jq '.created.uid = 0 | .created.user = "root"' "$V/1.json" >"$TMP/forged2.json"
chmod 644 "$TMP/forged2.json"
hc=$(hsums)
rec=$(jq -c .created "$V/1.json")
check_eq "bob: rewriting versions/1.json's created as root's fails at close with EINVAL" "close:EINVAL" \
	"$(as bob "$PYU" "$TMP/recw.py" "$V/1.json" "$TMP/forged2.json")"
check_eq "... created is unchanged (alice's uid)" "$rec $(uid_of alice)" \
	"$(jq -c .created "$V/1.json") $(jq -r .created.uid "$V/1.json")"
check_eq "... and no event" "$hc" "$(hsums)"

say "# aliases cannot lead out of the mount"
check "alice: seal versions/1 of m" as alice chmod a-w "$V/1"
before=$(hsums)
for t in /etc ../../etc ../../../etc/passwd "$TMP" "$MNT/../.." versions/1/../../../../etc "$M/m2/versions/1" "$M/m2"; do
	expect_as alice EINVAL symlink "$t" "$M/m/evil"
done
check_eq "no alias evil, no event" "$before missing" "$(hsums) $(test -L "$M/m/evil" && echo present || echo missing)"
check "alice: an alias inside the mount, by absolute path, is fine" as alice ln -s "$V/1" "$M/m/ok"
check_eq "readlink answers versions/1" versions/1 "$(readlink "$M/m/ok")"

say "# a symlink inside a draft is stored as given, and is only a symlink"
check "alice: draft versions/2 with a file" as alice sh -c "mkdir '$V/2' && echo two > '$V/2/w'"
check "alice: ln -s /etc/passwd versions/2/abs" as alice ln -s /etc/passwd "$V/2/abs"
check "alice: ln -s ../../../../../etc/passwd versions/2/rel" as alice ln -s ../../../../../etc/passwd "$V/2/rel"
check "alice: ln -s w versions/2/near" as alice ln -s w "$V/2/near"
check_eq "readlink answers each as given" "/etc/passwd ../../../../../etc/passwd w" \
	"$(readlink "$V/2/abs") $(readlink "$V/2/rel") $(readlink "$V/2/near")"
check_eq "each is a symbolic link" "symbolic link symbolic link symbolic link" \
	"$(stat -c %F "$V/2/abs" "$V/2/rel" "$V/2/near" | tr '\n' ' ' | sed 's/ $//')"
check "reading abs reads the system's /etc/passwd (ordinary path resolution)" cmp /etc/passwd "$V/2/abs"
check_eq "reading near reads w" two "$(cat "$V/2/near")"
check "alice: seal versions/2" as alice chmod a-w "$V/2"
check_eq "after sealing, readlink still answers each as given" "/etc/passwd ../../../../../etc/passwd w" \
	"$(readlink "$V/2/abs") $(readlink "$V/2/rel") $(readlink "$V/2/near")"
expect_as_k alice EACCES unlink "$V/2/abs"
expect_errno EROFS unlink "$V/2/abs"
check_eq "abs is still there" /etc/passwd "$(readlink "$V/2/abs")"

test_done
