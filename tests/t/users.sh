# SPDX-License-Identifier: MIT
# users.sh: real users for the tests that check permissions; source it after
# lib.sh, then call make_users.
#
#   make_users NAME[:admin]...  create a user for each NAME (U[NAME] is its
#                               login); ":admin" also puts it in the group
#                               $ADM, made for the test. All are removed on
#                               exit, before lib.sh's cleanup.
#   uid_of NAME                 its uid
#   as WHO CMD...               run CMD as WHO (or root) with a clean
#                               environment and WHO's groups
#   errno_as WHO OP ARGS...     op.py's OP as WHO: OK or the errno name
#   expect_as WHO WANT OP ARGS... WHO's OP fails with WANT (A|B: either), and
#                               the daemon logs a line; expect_as_k: the
#                               kernel may refuse alone (no log line needed)
#   ok_as WHO OP ARGS...        WHO's OP succeeds
#   $TMP/recw.py PATH SRC       writes SRC's bytes over PATH: OK or STEP:ERRNO

declare -A U=()
ADM=
MADE_USERS=()
MADE_GROUP=

drop_users() {
	local u
	for u in "${MADE_USERS[@]}"; do
		userdel "$u" >/dev/null 2>&1 || say "# could not remove user $u"
	done
	[ -n "$MADE_GROUP" ] && { groupdel "$MADE_GROUP" >/dev/null 2>&1 || say "# could not remove group $MADE_GROUP"; }
}
users_on_exit() {
	local status=$?
	drop_users
	(exit $status)
	cleanup
}

make_users() {
	local spec who extra
	[ "$(id -u)" = 0 ] || bail_out "this test creates users: run it as root"
	trap users_on_exit EXIT
	for spec in "$@"; do
		who=${spec%%:*}
		U[$who]=mrfs-t-$who-$$
		extra=()
		if [ "$spec" != "$who" ]; then
			if [ -z "$ADM" ]; then
				ADM=mrfs-t-adm-$$
				groupadd "$ADM" || bail_out "groupadd $ADM"
				MADE_GROUP=$ADM
			fi
			extra=(-G "$ADM")
		fi
		useradd -M -N -s /bin/sh "${extra[@]}" "${U[$who]}" || bail_out "useradd ${U[$who]}"
		MADE_USERS+=("${U[$who]}")
	done
	# other users must reach the mount point and the helper scripts; the
	# store inside $TMP stays as mrfs made it
	chmod 755 "$TMP"
}
uid_of() { id -u "${U[$1]}"; }

# The system's python3, which every user can run (root's may live in /root).
PYU=
for p in /usr/bin/python3 /usr/local/bin/python3 /bin/python3; do
	[ -x "$p" ] && { PYU=$p; break; }
done
[ -n "$PYU" ] || bail_out "no python3 that other users can run"

as() {
	local who=$1
	shift
	if [ "$who" = root ]; then
		env PATH=/usr/local/bin:/usr/bin:/bin LC_ALL=C "$@"
		return
	fi
	setpriv --reuid="${U[$who]}" --regid="$(id -g "${U[$who]}")" --init-groups \
		env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ LC_ALL=C USER="${U[$who]}" "$@"
}

cat >"$TMP/recw.py" <<'PY'
import errno, os, sys
data = open(sys.argv[2], "rb").read()
step = "open"
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
    step = "write"
    try:
        os.write(fd, data)
    except OSError:
        os.close(fd)
        raise
    step = "close"
    os.close(fd)
except OSError as e:
    print("%s:%s" % (step, errno.errorcode.get(e.errno, e.errno)))
    sys.exit(0)
print("OK")
PY

errno_as() {
	local who=$1
	shift
	as "$who" "$PYU" "$TMP/op.py" "$@"
}

# _expect_as LOG WHO WANT OP ARGS...: see lib.sh's _expect_with.
_expect_as() { _expect_with "$@"; }
expect_as() { _expect_as 1 "$@"; }
expect_as_k() { _expect_as 0 "$@"; }

# ok_as WHO OP ARGS...: WHO's OP succeeds.
ok_as() {
	local who=$1 got desc
	shift
	desc="$who: $*"
	desc=${desc//"$MNT"/}
	got=$(errno_as "$who" "$@" 2>&1)
	check_eq "$desc succeeds" OK "${got%% *}"
}
