#!/bin/bash
# SPDX-License-Identifier: MIT
# t0120: many users at once. 8 writers log versions into 3 models (half
# with `mrfs log`, half by hand: mkdir versions/N at the model's
# next_version, cp -r, chmod a-w, taking the next number when another
# writer won the race), 8 readers hash production/* in loops (through the
# alias, and through the version readlink names), and a promoter moves
# production and staging (ln -sfn, mrfs promote) among the sealed
# versions. Afterwards:
#   - no user saw an unexpected error (a writer losing a version number
#     race to another, EEXIST or EINVAL on mkdir, is expected);
#   - every file a reader hashed through production/ is that file of a
#     sealed version production pointed at (never a mix, a prefix, or
#     another model's bytes), and every version read by its number was read
#     whole and exactly;
#   - readers never found production missing once it existed;
#   - /history numbers its events 1..N and replays to the aliases seen;
#   - every version logged reads back exactly, and mrfs verify is clean.
# MRFS_STRESS=full (make stress): 60 s, else 10 s; MRFS_STRESS_SECONDS=N
# overrides. make stress also runs it against build/san-thread/mrfs
# (MRFS_BUILD=build/san-thread): any ThreadSanitizer report fails it.
. "$(dirname "$0")/lib.sh"

if [ "${MRFS_STRESS:-}" = full ]; then
	seconds=${MRFS_STRESS_SECONDS:-60}
else
	seconds=${MRFS_STRESS_SECONDS:-10}
fi
seed=${MRFS_STRESS_SEED:-$RANDOM$RANDOM}
models=(s0 s1 s2)
W=$TMP/work
mkdir -p "$W"
say "# $seconds s, 8 writers, 8 readers, 1 promoter on ${models[*]}; seed $seed"

cat >"$TMP/stress.py" <<'EOF'
# stress.py ROLE ...: a writer, a reader, the promoter, or the checker of t0120.
import errno, hashlib, json, os, random, re, subprocess, sys, time

FILES = ("weights.bin", "config.json", "tok/vocab.txt")

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)

def log_error(work, who, what):
    with open(os.path.join(work, "errors"), "a") as f:
        f.write("%s %.3f %s\n" % (who, time.time(), what.replace("\n", " | ")[:800]))

def stopped(work):
    return os.path.exists(os.path.join(work, "stop"))

def writer(work, i, model, how, mnt, mrfs, seed):
    rng = random.Random(seed)
    me = "writer%d(%s,%s)" % (i, model, how)
    mdir = os.path.join(mnt, "models", model)
    k = races = 0
    while not stopped(work):
        k += 1
        src = os.path.join(work, "w%d" % i, "v%d" % k)
        os.makedirs(os.path.join(src, "tok"))
        with open(os.path.join(src, "weights.bin"), "wb") as f:
            f.write(os.urandom(rng.choice((4096, 65536, 300000, 1100000, rng.randrange(1, 2500000)))))
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump({"writer": i, "k": k, "token": os.urandom(8).hex()}, f)
        with open(os.path.join(src, "tok", "vocab.txt"), "w") as f:
            f.write("\n".join(os.urandom(4).hex() for _ in range(rng.randrange(1, 2000))))
        sums = {p: sha(os.path.join(src, p)) for p in FILES}
        if how == "log":
            p = subprocess.run([mrfs, "log", model, src, "--mount", mnt], capture_output=True, text=True)
            m = re.fullmatch(r"%s:v([0-9]+)\n" % re.escape(model), p.stdout)
            if p.returncode != 0 or not m:
                log_error(work, me, "mrfs log %s: exit %d: %s %s" % (model, p.returncode, p.stdout, p.stderr))
                break
            n = int(m.group(1))
        else:
            while True:
                try:
                    with open(mdir + ".json") as f:
                        n = json.load(f)["next_version"]
                    os.mkdir(os.path.join(mdir, "versions", str(n)))
                    break
                except OSError as e:
                    if e.errno in (errno.EEXIST, errno.EINVAL):
                        races += 1     # another writer took n, or a higher one
                        continue
                    log_error(work, me, "mkdir %s/versions/%s: %s" % (model, n, e))
                    return
            vdir = os.path.join(mdir, "versions", str(n))
            p = subprocess.run("cp -r '%s'/. '%s' && chmod a-w '%s'" % (src, vdir, vdir),
                               shell=True, capture_output=True, text=True)
            if p.returncode != 0:
                log_error(work, me, "cp -r/chmod a-w %s:v%d: exit %d: %s" % (model, n, p.returncode, p.stderr))
                break
        with open(os.path.join(work, "manifest"), "a") as f:
            f.write(json.dumps({"model": model, "n": n, "files": sums, "writer": i}) + "\n")
        subprocess.run(["rm", "-r", src])
        time.sleep(rng.uniform(0.05, 0.25))
    with open(os.path.join(work, "races"), "a") as f:
        f.write("%d\n" % races)

def manifest(work):
    out = []
    try:
        with open(os.path.join(work, "manifest")) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out

def reader(work, i, models, mnt, seed):
    rng = random.Random(seed)
    me = "reader%d" % i
    seen_prod = set()
    obs = {}
    reads = nbytes = 0
    while not stopped(work):
        model = rng.choice(models)
        mdir = os.path.join(mnt, "models", model)
        prod = os.path.join(mdir, "production")
        try:
            if rng.random() < 0.5:
                for p in FILES:
                    h = sha(os.path.join(prod, p))
                    key = json.dumps(["A", model, None, p, h])
                    obs[key] = obs.get(key, 0) + 1
                    reads += 1
            else:
                t = os.readlink(prod)
                m = re.fullmatch(r"versions/([0-9]+)", t)
                if not m:
                    log_error(work, me, "readlink %s/production: %r" % (model, t))
                    continue
                n = int(m.group(1))
                vdir = os.path.join(mdir, t)
                names = sorted(os.path.relpath(os.path.join(r, f), vdir)
                               for r, d, fs in os.walk(vdir) for f in fs)
                if names != sorted(FILES):
                    log_error(work, me, "%s:v%d holds %s" % (model, n, names))
                for p in FILES:
                    h = sha(os.path.join(vdir, p))
                    key = json.dumps(["B", model, n, p, h])
                    obs[key] = obs.get(key, 0) + 1
                    reads += 1
            seen_prod.add(model)
        except FileNotFoundError as e:
            if model in seen_prod:
                log_error(work, me, "production of %s went missing: %s" % (model, e))
            else:
                time.sleep(0.02)   # not promoted yet
        except OSError as e:
            log_error(work, me, "%s: %s" % (model, e))
    with open(os.path.join(work, "reads-%d" % i), "w") as f:
        json.dump(obs, f)

def promoter(work, models, mnt, mrfs, seed):
    rng = random.Random(seed)
    moves = 0
    while not stopped(work):
        vs = {}
        for e in manifest(work):
            vs.setdefault(e["model"], []).append(e["n"])
        if not vs:
            time.sleep(0.05)
            continue
        model = rng.choice(sorted(vs))
        n = rng.choice(sorted(vs[model])[-8:])
        alias = "production" if rng.random() < 0.8 else "staging"
        if rng.random() < 0.7:
            argv = ["ln", "-sfn", "versions/%d" % n, os.path.join(mnt, "models", model, alias)]
        else:
            argv = [mrfs, "promote", model, str(n), alias, "--mount", mnt]
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            log_error(work, "promoter", "%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stderr))
        else:
            moves += 1
        time.sleep(rng.uniform(0.01, 0.06))
    with open(os.path.join(work, "moves"), "w") as f:
        f.write("%d\n" % moves)

def check(work, mnt, models):
    problems = []
    man = manifest(work)
    by_n = {(e["model"], e["n"]): e["files"] for e in man}
    by_sha = {}
    for e in man:
        for p, h in e["files"].items():
            by_sha[(e["model"], p, h)] = e["n"]
    if len(by_n) != len(man):
        problems.append("two writers were given the same version number")
    with open(os.path.join(mnt, "history")) as f:
        hist = [json.loads(l) for l in f if l.strip()]
    if [e["seq"] for e in hist] != list(range(1, len(hist) + 1)):
        problems.append("/history seq is not 1..%d" % len(hist))
    prod_targets = {}
    for model in models:
        ra = {}
        for e in hist:
            if e.get("model") != model:
                continue
            if e["event"] in ("alias.set", "alias.move"):
                ra[e["alias"]] = e["to"]
                if e["alias"] == "production":
                    prod_targets.setdefault(model, set()).add(e["to"])
            elif e["event"] == "alias.delete":
                ra.pop(e["alias"], None)
        mdir = os.path.join(mnt, "models", model)
        links = {a: os.readlink(os.path.join(mdir, a)) for a in os.listdir(mdir)
                 if a != "latest" and os.path.islink(os.path.join(mdir, a))}
        if links != {a: "versions/%d" % v for a, v in ra.items()}:
            problems.append("%s: the alias events replay to %s, readlink says %s" % (model, ra, links))
    reads = bad = 0
    for f in sorted(os.listdir(work)):
        if not f.startswith("reads-"):
            continue
        with open(os.path.join(work, f)) as fh:
            obs = json.load(fh)
        for key, count in obs.items():
            mode, model, n, p, h = json.loads(key)
            reads += count
            if mode == "A":
                v = by_sha.get((model, p, h))
                if v is None:
                    bad += count
                    problems.append("%s: %s read production/%s as bytes of no version logged (sha256 %s..)" % (
                        f, model, p, h[:12]))
                elif v not in prod_targets.get(model, ()):
                    problems.append("%s: %s read production/%s as v%d's, but production never pointed there" % (
                        f, model, p, v))
            else:
                want = by_n.get((model, n), {}).get(p)
                if want != h:
                    bad += count
                    problems.append("%s: %s:v%d/%s read other bytes (sha256 %s.., expected %s)" % (
                        f, model, n, p, h[:12], (want or "no such version")[:12]))
    # every version logged, read back now
    for (model, n), files in sorted(by_n.items()):
        for p, h in files.items():
            try:
                got = sha(os.path.join(mnt, "models", model, "versions", str(n), p))
            except OSError as e:
                got = str(e)
            if got != h:
                problems.append("%s:v%d/%s reads back other bytes now" % (model, n, p))
    for p in problems[:40]:
        print("problem\t" + p)
    print("figures\t%d versions logged, %d file reads checked (%d bad), %d history events" % (
        len(man), reads, bad, len(hist)))

if __name__ == "__main__":
    role, a = sys.argv[1], sys.argv[2:]
    if role == "writer":
        writer(a[0], int(a[1]), a[2], a[3], a[4], a[5], a[6])
    elif role == "reader":
        reader(a[0], int(a[1]), a[2].split(","), a[3], a[4])
    elif role == "promoter":
        promoter(a[0], a[1].split(","), a[2], a[3], a[4])
    else:
        check(a[0], a[1], a[2].split(","))
EOF

mount_mrfs
for m in "${models[@]}"; do
	mkdir "$M/$m" || bail_out "mkdir $M/$m"
done
pids=()
for ((i = 0; i < 8; i++)); do
	how=$([ $((i % 2)) = 0 ] && echo log || echo hand)
	python3 "$TMP/stress.py" writer "$W" "$i" "${models[i % 3]}" "$how" "$MNT" "$MRFS_BIN" "$seed-w$i" \
		>>"$TMP/users.log" 2>&1 &
	pids+=($!)
done
for ((i = 0; i < 8; i++)); do
	python3 "$TMP/stress.py" reader "$W" "$i" "$(
		IFS=,
		echo "${models[*]}"
	)" "$MNT" "$seed-r$i" >>"$TMP/users.log" 2>&1 &
	pids+=($!)
done
python3 "$TMP/stress.py" promoter "$W" "$(
	IFS=,
	echo "${models[*]}"
)" "$MNT" "$MRFS_BIN" "$seed-p" >>"$TMP/users.log" 2>&1 &
pids+=($!)

t0=$SECONDS
while ((SECONDS - t0 < seconds)); do
	sleep 1
	daemon_alive || break
done
touch "$W/stop"
stuck=0
for p in "${pids[@]}"; do
	for ((i = 0; i < 600; i++)); do
		pid_running "$p" || break
		sleep 0.1
	done
	if pid_running "$p"; then
		stuck=$((stuck + 1))
		say "# stuck: $(ps -o pid,stat,wchan:20,args -p "$p" --ppid "$p" 2>/dev/null | tail -n +2 | tr '\n' ';')"
		kill -9 "$p"
	fi
	wait "$p"
done
check "the daemon survived $seconds s of stress" daemon_alive
check_eq "every user stopped within 60 s of being asked" 0 "$stuck"
check_eq "the users ran without errors of their own (tracebacks)" "" "$(cat "$TMP/users.log")"
check_eq "no user saw an unexpected error" "" "$(head -n 30 "$W/errors" 2>/dev/null)"
check "the promoter moved aliases" test "$(cat "$W/moves" 2>/dev/null || echo 0)" -gt 0
out=$(python3 "$TMP/stress.py" check "$W" "$MNT" "$(
	IFS=,
	echo "${models[*]}"
)" 2>&1)
check_eq "every read was one whole sealed version production pointed at; history replays; versions read back" \
	"" "$(printf '%s\n' "$out" | grep -v '^figures	')"
check "the readers read" test "$(printf '%s\n' "$out" | sed -n 's/^figures\t[0-9]* versions logged, \([0-9]*\) file reads.*/\1/p')" -gt 0
say "# figures: $(printf '%s\n' "$out" | grep '^figures	' | cut -f2), $(cat "$W/moves" 2>/dev/null || echo 0) alias moves, $(awk '{ s += $1 } END { print s + 0 }' "$W/races" 2>/dev/null) version number races lost"
check_eq "no ThreadSanitizer warning in the daemon log" "" "$(grep -m 5 'WARNING: ThreadSanitizer' "$LOG")"
umount_mrfs
verify_store "mrfs verify --store is clean after the stress"
test_done
