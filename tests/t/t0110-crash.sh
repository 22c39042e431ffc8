#!/bin/bash
# SPDX-License-Identifier: MIT
# t0110: kill -9 at random moments. Each round, three users work on three
# models at once (cp into drafts, seal with chmod a-w, promote with
# ln -sfn, edit versions/N.json with jq, rm -r drafts, mrfs delete, and
# now and then mrfs gc) while the daemon is killed with SIGKILL at a random
# instant. Then, on the dead store and after a remount:
#   - mrfs verify is clean;
#   - the versions and their states are what the users saw succeed (the
#     one operation each user had in flight may have happened or not);
#   - every sealed version reads back exactly the files copied into it
#     (sha256 of the sources) and its record lists them;
#   - no draft file is half-visible: a file whose cp was acknowledged has
#     its whole content; the file a cp was writing when the daemon died is
#     absent, empty or complete, never a prefix or other bytes;
#   - every alias points at a sealed version, and aliases are what the
#     users set (ln's temporary Cu?????? name may be left by a promotion
#     in flight: it must point at that promotion's target);
#   - latest is the highest sealed version;
#   - /history numbers its events 1..N with no gap, each model's history is
#     its part of /history, and replaying its alias and version events
#     gives the aliases and versions seen;
#   - user metadata is the last edit acknowledged (or the one in flight);
#   - no operation failed before the kill.
# MRFS_STRESS=full (make stress): 200 rounds; else 20. MRFS_CRASH_ROUNDS=N
# and MRFS_CRASH_SEED=S override.
. "$(dirname "$0")/lib.sh"

if [ "${MRFS_STRESS:-}" = full ]; then
	rounds=${MRFS_CRASH_ROUNDS:-200}
else
	rounds=${MRFS_CRASH_ROUNDS:-20}
fi
seed=${MRFS_CRASH_SEED:-$RANDOM$RANDOM}
models=(m0 m1 m2)
STATE=$TMP/state
mkdir -p "$STATE" "$TMP/pool"
say "# $rounds rounds, seed $seed (MRFS_CRASH_SEED=$seed repeats them)"
RANDOM=$seed

# The files users copy: empty, tiny, one chunk, several chunks, a
# safetensors-like header, and a small directory (cp -r).
mkdata "$TMP/pool/tiny.txt" 13 tiny
: >"$TMP/pool/empty"
mkdata "$TMP/pool/small.bin" 65537 small
mkdata "$TMP/pool/one-chunk.bin" 700000 one
mkdata "$TMP/pool/multi.bin" 5300000 multi
python3 -c '
import json, struct, random, sys
h = json.dumps({"w": {"dtype": "F32", "shape": [1000, 300], "data_offsets": [0, 1200000]}}).encode()
r = random.Random(7)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + r.randbytes(1200000))
' "$TMP/pool/model.safetensors"
mkdir -p "$TMP/pool/dir/sub"
mkdata "$TMP/pool/dir/a.bin" 300000 dira
mkdata "$TMP/pool/dir/sub/b.bin" 1100000 dirb

cat >"$TMP/crash.py" <<'EOF'
# crash.py drive|check ...: the users of t0110 and the checker of what they left.
import hashlib, json, os, random, re, subprocess, sys, time

TEMP_ALIAS = re.compile(r"^Cu[A-Za-z0-9]{6}$")
ALIASES = ("production", "staging")

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)

EMPTY = hashlib.sha256(b"").hexdigest()

def load(state_dir, model):
    p = os.path.join(state_dir, model + ".json")
    if not os.path.exists(p):
        return {"max": 0, "versions": {}, "aliases": {}, "pending": None, "failed": None, "seq": 0}
    with open(p) as f:
        return json.load(f)

def save(state_dir, model, st):
    p = os.path.join(state_dir, model + ".json")
    with open(p + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(p + ".tmp", p)

def pool_files(pool):
    out = {}
    for root, dirs, files in os.walk(pool):
        for f in files:
            full = os.path.join(root, f)
            out[os.path.relpath(full, pool)] = sha(full)
    return out

# ---- the users ------------------------------------------------------------

def drive(state_dir, model, seed, mnt, store, mrfs, pool, rnd, gc):
    rng = random.Random(seed)
    st = load(state_dir, model)
    st["pending"] = None
    st["failed"] = None
    mdir = os.path.join(mnt, "models", model)
    sums = pool_files(pool)
    stop = os.path.join(state_dir, "stop")

    def run(op, argv, **kw):
        """Run one user command with the operation marked in flight."""
        st["pending"] = op
        st["seq"] += 1
        op["seq"] = st["seq"]
        save(state_dir, model, st)
        t0 = time.time()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
            rc, err = p.returncode, (p.stdout + p.stderr).strip()
        except subprocess.TimeoutExpired:
            rc, err = -1, "timed out after 30 s"
        if rc != 0:
            st["failed"] = {"time": time.time(), "start": t0, "op": op, "rc": rc, "err": err[-600:]}
            save(state_dir, model, st)
            sys.exit(0)
        return True

    def done():
        st["pending"] = None
        save(state_dir, model, st)

    while not os.path.exists(stop):
        vs = st["versions"]
        drafts = [n for n, v in vs.items() if v["state"] == "draft"]
        sealed = [n for n, v in vs.items() if v["state"] == "sealed"]
        aliased = set(str(n) for n in st["aliases"].values())
        choices = [("mkdir", 3 if len(drafts) < 2 else 0.2), ("cp", 8 if drafts else 0),
                   ("seal", 3 if drafts else 0), ("promote", 3 if sealed or drafts else 0),
                   ("unalias", 0.5 if st["aliases"] else 0), ("meta", 2 if vs else 0),
                   ("rmdraft", 1 if drafts else 0),
                   ("delete", 1 if set(sealed) - aliased else 0), ("gc", 0.3 if gc else 0)]
        kind = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
        if kind == "mkdir":
            n = st["max"] + 1
            run({"op": "mkdir", "n": n}, ["mkdir", os.path.join(mdir, "versions", str(n))])
            st["max"] = n
            vs[str(n)] = {"state": "draft", "files": {}, "meta": None, "checked": False}
        elif kind == "cp":
            n = rng.choice(drafts)
            src = rng.choice(["tiny.txt", "empty", "small.bin", "one-chunk.bin", "multi.bin",
                              "model.safetensors", "dir"])
            name = "%s-%d" % (src.replace("/", "_"), st["seq"] + 1)
            dst = os.path.join(mdir, "versions", n, name)
            if src == "dir":
                files = {name + "/" + k[len("dir/"):]: s for k, s in sums.items() if k.startswith("dir/")}
                argv = ["cp", "-r", os.path.join(pool, "dir"), dst]
            else:
                files = {name: sums[src]}
                argv = ["cp", os.path.join(pool, src), dst]
            run({"op": "cp", "n": n, "files": files}, argv)
            vs[n]["files"].update(files)
        elif kind == "seal":
            n = rng.choice(drafts)
            run({"op": "seal", "n": n}, ["chmod", "a-w", os.path.join(mdir, "versions", n)])
            vs[n]["state"] = "sealed"
            vs[n]["checked"] = False
        elif kind == "promote":
            alias = rng.choice(ALIASES)
            n = rng.choice(drafts) if drafts and (not sealed or rng.random() < 0.15) else rng.choice(sealed)
            run({"op": "promote", "alias": alias, "n": n, "old": st["aliases"].get(alias),
                 "was": vs[n]["state"]},
                ["ln", "-sfn", "versions/" + n, os.path.join(mdir, alias)])
            st["aliases"][alias] = n
            if vs[n]["state"] == "draft":
                vs[n]["state"] = "sealed"
                vs[n]["checked"] = False
        elif kind == "unalias":
            alias = rng.choice(sorted(st["aliases"]))
            run({"op": "unalias", "alias": alias, "old": st["aliases"][alias]},
                ["rm", os.path.join(mdir, alias)])
            del st["aliases"][alias]
        elif kind == "meta":
            n = rng.choice(sorted(vs))
            value = {"round": rnd, "op": st["seq"] + 1, "note": "edit %d" % rng.randrange(10**6)}
            rec = os.path.join(mdir, "versions", n + ".json")
            tmp = os.path.join(state_dir, "edit-" + model + ".tmp")
            run({"op": "meta", "n": n, "value": value, "old": vs[n]["meta"]},
                ["sh", "-c", 'jq --argjson v "$1" ".crash = \\$v" "$2" > "$3" && cp "$3" "$2"',
                 "sh", json.dumps(value), rec, tmp])
            vs[n]["meta"] = value
        elif kind == "rmdraft":
            n = rng.choice(drafts)
            run({"op": "rmdraft", "n": n}, ["rm", "-r", os.path.join(mdir, "versions", n)])
            del vs[n]
        elif kind == "delete":
            n = rng.choice(sorted(set(sealed) - aliased))
            run({"op": "delete", "n": n}, [mrfs, "delete", model, n, "--store", store])
            del vs[n]
        elif kind == "gc":
            run({"op": "gc"}, [mrfs, "gc", "--store", store])
        done()

# ---- the checker ---------------------------------------------------------------

def files_of(root):
    out = {}
    for r, dirs, files in os.walk(root):
        for f in files:
            full = os.path.join(r, f)
            out[os.path.relpath(full, root)] = full
    return out

def check(state_dir, mnt, kill_time, final, seed, models):
    rng = random.Random(seed)
    problems = []
    def bad(cat, msg):
        problems.append((cat, msg))
    stats = {"sealed_read": 0, "bytes_read": 0}

    # /history: seq 1..N, each model's history is its part of it
    with open(os.path.join(mnt, "history")) as f:
        hist = [json.loads(l) for l in f if l.strip()]
    seqs = [e["seq"] for e in hist]
    if seqs != list(range(1, len(seqs) + 1)):
        gaps = [s for a, s in zip([0] + seqs, seqs) if s != a + 1][:5]
        bad("history", "/history seq is not 1..%d: first breaks at %s" % (len(seqs), gaps))

    for model in models:
        st = load(state_dir, model)
        pend = st.get("pending")
        failed = st.get("failed")
        mdir = os.path.join(mnt, "models", model)
        if failed and failed["time"] < kill_time:
            bad("errors", "%s: %s failed %.3f s before the kill (exit %s): %s" % (
                model, json.dumps(failed["op"]), kill_time - failed["time"], failed["rc"], failed["err"]))
        pn = pend["n"] if pend and "n" in pend else None
        pop = pend["op"] if pend else None

        with open(os.path.join(mdir, "history")) as f:
            mh = [json.loads(l) for l in f if l.strip()]
        mine = [e for e in hist if e.get("model") == model]
        if mh != mine:
            bad("history", "%s/history (%d events) is not its part of /history (%d)" % (model, len(mh), len(mine)))

        # versions and their states
        seen = {}
        for name in os.listdir(os.path.join(mdir, "versions")):
            if name.endswith(".json"):
                continue
            with open(os.path.join(mdir, "versions", name + ".json")) as f:
                rec = json.load(f)
            seen[name] = rec
        want = st["versions"]
        for n in sorted(set(seen) | set(want), key=int):
            if n in want and n not in seen:
                if not (pn == n and pop in ("rmdraft", "delete")):
                    bad("versions", "%s: version %s (%s) is gone" % (model, n, want[n]["state"]))
                continue
            if n in seen and n not in want:
                if not (pop == "mkdir" and pn == int(n)):
                    bad("versions", "%s: version %s appeared (%s)" % (model, n, seen[n]["state"]))
                continue
            ws, ss = want[n]["state"], seen[n]["state"]
            if ws != ss:
                # the operation in flight is not in the state: it may have happened
                ok = pn == n and ws == "draft" and ss == "sealed" and pop in ("seal", "promote")
                if not ok:
                    bad("versions", "%s: version %s is %s, not %s" % (model, n, ss, ws))

        # replay of the version events
        rv = {}
        for e in mh:
            if e["event"] == "version.create":
                rv[str(e["version"])] = "draft"
            elif e["event"] == "version.seal":
                rv[str(e["version"])] = "sealed"
            elif e["event"] == "version.delete":
                rv.pop(str(e["version"]), None)
        if rv != {n: r["state"] for n, r in seen.items()}:
            bad("history", "%s: the version events replay to %s, the versions are %s" % (
                model, rv, {n: r["state"] for n, r in seen.items()}))

        # content: sealed versions exactly; drafts without half-written files
        for n, rec in seen.items():
            vdir = os.path.join(mdir, "versions", n)
            have = files_of(vdir)
            wfiles = dict(want[n]["files"]) if n in want else {}
            inflight = pend["files"] if pop == "cp" and pn == n else {}
            removing = pop == "rmdraft" and pn == n
            sample = final or not want.get(n, {}).get("checked") or rng.random() < 0.1
            if rec["state"] == "sealed":
                listed = sorted((x["path"], x["size"]) for x in rec.get("files", []))
                if sorted(have) != sorted(x[0] for x in listed):
                    bad("sealed", "%s: sealed version %s: the record lists %s, the directory has %s" % (
                        model, n, [x[0] for x in listed], sorted(have)))
            if rec["state"] == "sealed" and not sample:
                continue
            for rel in sorted(set(have) | set(wfiles)):
                if rel not in have:
                    if not removing and rel not in inflight:
                        bad("sealed" if rec["state"] == "sealed" else "drafts",
                            "%s: %s version %s: %s is missing" % (model, rec["state"], n, rel))
                    continue
                h = sha(have[rel])
                size = os.path.getsize(have[rel])
                stats["bytes_read"] += size
                if rel in wfiles:
                    if h != wfiles[rel]:
                        bad("sealed" if rec["state"] == "sealed" else "drafts",
                            "%s: %s version %s: %s has other bytes (%d bytes, sha256 %s..)" % (
                                model, rec["state"], n, rel, size, h[:12]))
                elif rel in inflight:
                    if h != inflight[rel] and h != EMPTY:
                        bad("drafts", "%s: version %s: %s, being copied at the kill, is half-visible "
                            "(%d bytes, neither empty nor the whole source)" % (model, n, rel, size))
                else:
                    bad("sealed" if rec["state"] == "sealed" else "drafts",
                        "%s: %s version %s: %s appeared (%d bytes)" % (model, rec["state"], n, rel, size))
            if rec["state"] == "sealed":
                stats["sealed_read"] += 1

        # aliases: what was set, pointing at sealed versions
        aliases = {}
        for name in os.listdir(mdir):
            p = os.path.join(mdir, name)
            if name != "latest" and os.path.islink(p):
                aliases[name] = os.readlink(p)
        for name, target in sorted(aliases.items()):
            m = re.fullmatch(r"versions/([0-9]+)", target)
            if not m or m.group(1) not in seen:
                bad("aliases", "%s: alias %s -> %s, not an existing version" % (model, name, target))
            elif seen[m.group(1)]["state"] != "sealed":
                bad("aliases", "%s: alias %s -> %s, a %s" % (model, name, target, seen[m.group(1)]["state"]))
        for name in sorted(set(aliases) | set(st["aliases"])):
            got = aliases.get(name)
            exp = st["aliases"].get(name)
            exp = "versions/" + exp if exp else None
            if got == exp:
                continue
            # the operation in flight (not in the state) may have happened
            if pop == "promote" and pend["alias"] == name and got == "versions/" + pend["n"]:
                continue
            if pop == "promote" and TEMP_ALIAS.match(name) and got == "versions/" + pend["n"] and exp is None:
                continue
            if pop == "unalias" and pend["alias"] == name and got is None:
                continue
            bad("aliases", "%s: alias %s -> %s, expected %s" % (model, name, got, exp))

        # replay of the alias events
        ra = {}
        for e in mh:
            ev, a = e["event"], e.get("alias")
            if ev in ("alias.move", "alias.delete") and ra.get(a) != e.get("from"):
                bad("history", "%s: seq %d %s of %s from %s, but it pointed at %s" % (
                    model, e["seq"], ev, a, e.get("from"), ra.get(a)))
            if ev in ("alias.set", "alias.move"):
                ra[a] = e["to"]
            elif ev == "alias.delete":
                ra.pop(a, None)
        if {a: "versions/%d" % v for a, v in ra.items()} != aliases:
            bad("history", "%s: the alias events replay to %s, readlink says %s" % (model, ra, aliases))

        # latest
        sealed_ns = [int(n) for n, r in seen.items() if r["state"] == "sealed"]
        try:
            latest = os.readlink(os.path.join(mdir, "latest"))
        except FileNotFoundError:
            latest = None
        exp = "versions/%d" % max(sealed_ns) if sealed_ns else None
        if latest != exp:
            bad("latest", "%s: latest -> %s, expected %s" % (model, latest, exp))

        # user metadata
        for n, rec in seen.items():
            if n not in want:
                continue
            got = rec.get("crash")
            exp = want[n]["meta"]
            if got != exp and not (pop == "meta" and pn == n and got == pend["value"]):
                bad("metadata", "%s: version %s: .crash is %s, expected %s" % (model, n, got, exp))

        # the state from now on: what is there
        nst = {"max": max([st["max"]] + [int(n) for n in seen]), "versions": {}, "aliases": {},
               "pending": None, "failed": None, "seq": st["seq"]}
        for n, rec in seen.items():
            old = want.get(n, {}).get("files", {})
            files = {rel: old.get(rel) or sha(full)
                     for rel, full in files_of(os.path.join(mdir, "versions", n)).items()}
            nst["versions"][n] = {"state": rec["state"], "files": files, "meta": rec.get("crash"),
                                  "checked": rec["state"] == "sealed"}
        for name, target in aliases.items():
            if TEMP_ALIAS.match(name):
                os.unlink(os.path.join(mdir, name))   # what ln would have done
            else:
                nst["aliases"][name] = target.split("/")[1]
        save(state_dir, model, nst)
    for cat, msg in problems:
        print("%s\t%s" % (cat, msg))
    print("stats\tsealed versions read: %d, bytes read: %d" % (stats["sealed_read"], stats["bytes_read"]))
    print("done\t")

if __name__ == "__main__":
    if sys.argv[1] == "drive":
        a = sys.argv[2:]
        drive(a[0], a[1], int(a[2]), a[3], a[4], a[5], a[6], int(a[7]), a[8] == "1")
    else:
        a = sys.argv[2:]
        check(a[0], a[1], float(a[2]), a[3] == "1", a[4], a[5:])
EOF

categories=(errors versions sealed drafts aliases latest history metadata)
describe() {
	case $1 in
	errors) echo "no operation failed before the kill" ;;
	versions) echo "the versions and their states are those acknowledged" ;;
	sealed) echo "sealed versions read back their files exactly (and their records list them)" ;;
	drafts) echo "draft files are whole or (the one in flight) absent or empty" ;;
	aliases) echo "aliases are those set and point at sealed versions" ;;
	latest) echo "latest is the highest sealed version" ;;
	history) echo "history: seq 1..N, per-model part, replays to the aliases and versions" ;;
	metadata) echo "user metadata is the last edit acknowledged" ;;
	esac
}

# check_state ROUND KILL_TIME FINAL: run the checker, one assertion per kind.
check_state() {
	local out cat
	out=$(python3 "$TMP/crash.py" check "$STATE" "$MNT" "$2" "$3" "$seed$1" "${models[@]}" 2>&1)
	if [ "$(printf '%s\n' "$out" | tail -n 1)" != "done	" ] ||
		printf '%s\n' "$out" | grep -qv -E "^($(
			IFS='|'
			echo "${categories[*]}"
		)|stats|done)	"; then
		fail "round $1: the checker ran to its end" "$(printf '%s\n' "$out" | tail -n 20)"
		return
	fi
	for cat in "${categories[@]}"; do
		check_eq "round $1: $(describe "$cat")" "" "$(printf '%s\n' "$out" | grep -a "^$cat	" | cut -f2- | head -n 20)"
	done
	printf '%s\n' "$out" | grep '^stats	' | sed 's/^stats	/# /'
}

mount_mrfs
for m in "${models[@]}"; do
	mkdir "$M/$m" || bail_out "mkdir $M/$m"
done

kills=0
for ((r = 1; r <= rounds; r++)); do
	rm -f "$STATE/stop"
	pids=()
	for ((k = 0; k < ${#models[@]}; k++)); do
		python3 "$TMP/crash.py" drive "$STATE" "${models[k]}" "$seed$r$k" "$MNT" "$STORE" \
			"$MRFS_BIN" "$TMP/pool" "$r" "$([ $k = 0 ] && echo 1 || echo 0)" \
			>>"$TMP/drivers.log" 2>&1 &
		pids+=($!)
	done
	# a random instant: mostly within the first 1.2 s, sometimes at once
	if ((RANDOM % 8 == 0)); then
		delay=0.0$((RANDOM % 10))
	else
		delay=$((RANDOM % 12)).$((RANDOM % 10))
		delay=$(echo "$delay" | awk '{ print $1 / 10 }')
	fi
	sleep "$delay"
	kill_time=$(date +%s.%N)
	daemon_alive || fail "round $r: the daemon is alive before the kill"
	say "# round $r: kill -9 after ${delay}s"
	mrfs_kill9
	kills=$((kills + 1))
	touch "$STATE/stop"
	for p in "${pids[@]}"; do
		for ((i = 0; i < 300; i++)); do
			pid_running "$p" || break
			sleep 0.1
		done
		pid_running "$p" && {
			fail "round $r: a user is stuck after the kill" "$(ps -o pid,args --ppid "$p" 2>/dev/null)"
			kill -9 "$p"
		}
		wait "$p"
	done
	if [ -s "$TMP/drivers.log" ]; then
		fail "round $r: the users ran without an error of their own" "$(tail -n 20 "$TMP/drivers.log")"
		: >"$TMP/drivers.log"
	fi
	verify_store "round $r: after kill -9, mrfs verify --store is clean"
	mount_mrfs
	check_state "$r" "$kill_time" 0
done

say "# a clean unmount, mrfs verify, a remount, and every sealed version read"
umount_mrfs
verify_store "after a clean unmount, mrfs verify --store is clean"
mount_mrfs
check_state final 9999999999 1
ops=$(python3 -c 'import json, sys; print(sum(json.load(open(f))["seq"] for f in sys.argv[1:]))' \
	"$STATE"/m[0-9].json)
say "# figures: $rounds rounds, $kills kills with SIGKILL, $ops operations started"
test_done
