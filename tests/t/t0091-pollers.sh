#!/bin/bash
# SPDX-License-Identifier: MIT
# t0091: model servers polling /serving. Two pollers written here follow
# the documented rules of TensorFlow Serving (every poll, serve the highest
# numbered directory under --model_base_path=/serving/production/clf) and of
# Triton in poll mode (reload a model of --model-repository=/serving/production
# when the newest mtime under its directory changes; serve its highest
# numbered directory). A user promotes 50 new versions, and rolls back a few
# times, while `cp` writes the next version as a draft. Both pollers see
# every promotion within two seconds of the ln -sfn, load exactly the bytes
# that were logged, never load a draft or half a version, and Triton's
# reloads are exactly the promotions (writing drafts moves no mtime). A
# scanner listing the model directory as fast as it can always finds
# exactly one numbered directory.
. "$(dirname "$0")/lib.sh"

N=50                 # new versions, each promoted once
ROLLBACK_EVERY=10    # after every 10th, production goes back two versions, then forward
POLL=0.2             # the pollers' interval (TF Serving's default is 1 s)
LAG=2                # seconds a poller may take to see a promotion

SRC=$TMP/src
OUT=$TMP/poll
mkdir -p "$SRC" "$OUT"
: >"$OUT/promoted"

# Sources: version n has config.pbtxt, model.bin (256 KiB to 1 MiB) and
# sub/vocab.txt, all different from version to version.
python3 - "$SRC" "$N" <<'EOF'
import os, random, sys
src, n = sys.argv[1], int(sys.argv[2])
for v in range(1, n + 2):
    d = os.path.join(src, str(v))
    os.makedirs(os.path.join(d, "sub"))
    r = random.Random(v)
    with open(os.path.join(d, "config.pbtxt"), "w") as f:
        f.write('name: "clf"\nplatform: "onnxruntime_onnx"\n# version %d\n' % v)
    with open(os.path.join(d, "model.bin"), "wb") as f:
        f.write(r.randbytes(r.randrange(256 << 10, 1 << 20)))
    with open(os.path.join(d, "sub", "vocab.txt"), "w") as f:
        f.write("".join("word%d-%d\n" % (v, i) for i in range(r.randrange(10, 500))))
EOF

cat >"$TMP/poller.py" <<'EOF'
# poller.py tf|triton|scan REPO MODEL SRC OUT POLL
#
# tf:     TensorFlow Serving's file system poller: every POLL seconds list
#         REPO/MODEL, take the highest numbered directory; when it differs
#         from the one loaded, load it.
# triton: Triton's poll mode: every POLL seconds take the newest mtime of
#         everything under REPO/MODEL; when it changed, reload the model:
#         its highest numbered directory and REPO/MODEL/config.pbtxt.
# scan:   list REPO/MODEL as fast as possible; every listing must hold
#         exactly one numbered directory, a promoted one.
#
# Loading reads every file and compares it with SRC/<n>/ (what was logged):
# the same paths, the same bytes. A version not yet in OUT/promoted (the
# driver appends to it before each ln -sfn) is a draft showing through.
# Writes "load N TIME ok" or "load N TIME BAD why" lines to OUT/MODE.log,
# "BAD why" lines for anything else wrong; stops when OUT/stop exists.
import os, sys, time

mode, repo, model, src, out, poll = sys.argv[1:6] + [float(sys.argv[6])]
base = os.path.join(repo, model)
log = open(os.path.join(out, mode + ".log"), "w", buffering=1)

def promoted():
    with open(os.path.join(out, "promoted")) as f:
        return {int(l.split()[0]) for l in f if l.strip()}

def files_of(root):
    found = {}
    for d, dirs, files in os.walk(root, onerror=lambda e: (_ for _ in ()).throw(e)):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                found[os.path.relpath(p, root)] = f.read()
    return found

def load(n):
    t = time.time()
    why = None
    if n not in promoted():
        why = "version %d shows before it was promoted (a draft?)" % n
    else:
        try:
            seen = files_of(os.path.join(base, str(n)))
            want = files_of(os.path.join(src, str(n)))
            if mode == "triton":
                with open(os.path.join(base, "config.pbtxt"), "rb") as f:
                    seen["<model>/config.pbtxt"] = f.read()
                want["<model>/config.pbtxt"] = want["config.pbtxt"]
            if sorted(seen) != sorted(want):
                why = "files %s, logged %s" % (sorted(seen), sorted(want))
            else:
                bad = [p for p in want if seen[p] != want[p]]
                if bad:
                    why = "bytes differ from what was logged: %s" % bad
        except OSError as e:
            # the alias moved during the load: TF Serving and Triton retry
            log.write("retry %d %.6f %s\n" % (n, t, e))
            return False
    log.write("load %d %.6f %s\n" % (n, t, "ok" if why is None else "BAD " + why))
    return True

def numbered():
    return [int(x) for x in os.listdir(base) if x.isdigit()]

def newest_mtime():
    newest = os.stat(base).st_mtime_ns
    for d, dirs, files in os.walk(base, onerror=lambda e: (_ for _ in ()).throw(e)):
        for name in dirs + files:
            newest = max(newest, os.lstat(os.path.join(d, name)).st_mtime_ns)
    return newest

loaded = None
last_mtime = None
listings = 0
while not os.path.exists(os.path.join(out, "stop")):
    try:
        if mode == "tf":
            nums = numbered()
            if nums and max(nums) != loaded and load(max(nums)):
                loaded = max(nums)
        elif mode == "triton":
            m = newest_mtime()
            if m != last_mtime:
                nums = numbered()
                if nums and load(max(nums)):
                    last_mtime = m
        else:
            nums = numbered()
            listings += 1
            if len(nums) != 1:
                log.write("BAD listing %d: numbered directories %s\n" % (listings, nums))
            elif nums[0] not in promoted():
                log.write("BAD listing %d: version %d before it was promoted\n" % (listings, nums[0]))
    except FileNotFoundError as e:
        # before the first promotion, nothing is there yet
        if mode == "scan" and listings:
            log.write("BAD listing %d: %s\n" % (listings, e))
    except OSError as e:
        log.write("BAD %s\n" % e)
    if mode != "scan":
        time.sleep(poll)
    else:
        time.sleep(0.0005)
if mode == "scan":
    log.write("listings %d\n" % listings)
EOF

mount_mrfs
check "mkdir /models/clf" mkdir "$M/clf"

declare -A pids
for mode in tf triton scan; do
	python3 "$TMP/poller.py" $mode "$MNT/serving/production" clf "$SRC" "$OUT" $POLL 2>"$OUT/$mode.err" &
	pids[$mode]=$!
done

# loads MODE: how many versions MODE has loaded so far.
loads() {
	local c
	c=$(grep -c '^load ' "$OUT/$1.log" 2>/dev/null)
	echo "${c:-0}"
}

# promote N: log the promotion, ln -sfn, and wait (up to LAG + 0.5 s) until
# both pollers have loaded something new.
promotions=0
promote() {
	local n=$1 i
	echo "$n $(date +%s.%N)" >>"$OUT/promoted"
	ln -sfn "versions/$n" "$M/clf/production" || echo "ln -sfn versions/$n failed" >>"$OUT/driver.err"
	promotions=$((promotions + 1))
	for ((i = 0; i < (LAG * 10 + 5) * 2; i++)); do
		[ "$(loads tf)" -ge $promotions ] && [ "$(loads triton)" -ge $promotions ] && return 0
		sleep 0.05
	done
	echo "promotion $promotions (version $n): not loaded by both pollers after $((LAG + 1)) s" >>"$OUT/driver.err"
}

say "# $N promotions while the next version is written as a draft"
t0=$SECONDS
check "log and seal version 1" sh -c "cp -r '$SRC/1' '$M/clf/versions/1' && chmod a-w '$M/clf/versions/1'"
for ((n = 1; n <= N; n++)); do
	# the next version is a draft being written while n is promoted and loaded
	cp -r "$SRC/$((n + 1))" "$M/clf/versions/$((n + 1))" 2>>"$OUT/driver.err" &
	cp_pid=$!
	promote $n
	if [ $((n % ROLLBACK_EVERY)) = 0 ]; then
		promote $((n - 2))
		promote $n
	fi
	wait $cp_pid || echo "cp -r versions/$((n + 1)) failed" >>"$OUT/driver.err"
	[ $n -lt $N ] && { chmod a-w "$M/clf/versions/$((n + 1))" || echo "chmod a-w versions/$((n + 1)) failed" >>"$OUT/driver.err"; }
	daemon_alive || break
done
say "# $promotions promotions in $((SECONDS - t0)) s"
sleep 0.5
touch "$OUT/stop"
for mode in tf triton scan; do
	wait_exit "${pids[$mode]}" 50 || kill "${pids[$mode]}"
	wait "${pids[$mode]}"
done

check_eq "the driver's cp, chmod and ln -sfn all worked, each promotion seen by both pollers" \
	"" "$(cat "$OUT/driver.err" 2>/dev/null)"
check_eq "versions/$((N + 1)) is still a draft (it was never promoted)" draft "$(jq -r .state "$M/clf/versions/$((N + 1)).json")"
check_eq "production -> versions/$N" "versions/$N" "$(readlink "$M/clf/production")"
check_eq "/serving/production/clf holds $N and config.pbtxt" "$(printf '%s\n' $N config.pbtxt)" \
	"$(ls -A "$MNT/serving/production/clf" 2>&1)"
check_eq "the history has one alias.set or alias.move of production per promotion" $promotions \
	"$(jq -r 'select((.event == "alias.set" or .event == "alias.move") and .alias == "production") | .event' "$M/clf/history" | wc -l)"

# Compare what each poller loaded with the promotions.
cat >"$TMP/judge.py" <<'EOF'
# judge.py OUT MODE LAG: prints one line per verdict, "name: text".
import sys
out, mode, lag = sys.argv[1], sys.argv[2], float(sys.argv[3])
prom = [(int(n), float(t)) for n, t in (l.split() for l in open(out + "/promoted"))]
loads, bad, retries = [], [], 0
for l in open(out + "/" + mode + ".log"):
    w = l.split()
    if w[0] == "load":
        loads.append((int(w[1]), float(w[2])))
        if w[3] != "ok":
            bad.append(l.strip())
    elif w[0] == "retry":
        retries += 1
    elif w[0] == "BAD":
        bad.append(l.strip())
late = []
for i, (n, t) in enumerate(prom):
    if i < len(loads) and loads[i][0] == n and loads[i][1] - t > lag:
        late.append("promotion %d (version %d): seen after %.2f s" % (i + 1, n, loads[i][1] - t))
lags = [l[1] - p[1] for p, l in zip(prom, loads) if p[0] == l[0]]
print("sequence: %s" % (" ".join(str(n) for n, _ in loads) == " ".join(str(n) for n, _ in prom)))
print("late: %s" % ("; ".join(late) or "none"))
print("bad: %s" % ("; ".join(bad[:5]) or "none"))
print("summary: %d loads, %d retries, lag max %.2f s, mean %.2f s" %
      (len(loads), retries, max(lags or [0]), sum(lags) / max(1, len(lags))))
if " ".join(str(n) for n, _ in loads) != " ".join(str(n) for n, _ in prom):
    print("promoted: " + " ".join(str(n) for n, _ in prom))
    print("loaded:   " + " ".join(str(n) for n, _ in loads))
EOF

for mode in tf triton; do
	python3 "$TMP/judge.py" "$OUT" $mode $LAG >"$OUT/$mode.verdict" 2>&1
	say "# $mode: $(sed -n 's/^summary: //p' "$OUT/$mode.verdict")"
	check_eq "$mode poller: no draft, no partial version, no wrong byte ever loaded" \
		"bad: none" "$(grep '^bad:' "$OUT/$mode.verdict")"
	check_eq "$mode poller: every promotion seen within $LAG s" "late: none" "$(grep '^late:' "$OUT/$mode.verdict")"
	check_eq "$mode poller: loaded exactly the promoted versions, in order" "sequence: True" \
		"$(grep '^sequence:' "$OUT/$mode.verdict")" || sed -n 's/^/    /; /promoted:\|loaded:/p' "$OUT/$mode.verdict"
	check_eq "$mode poller: no error on stderr" "" "$(head -n 5 "$OUT/$mode.err")"
done
# Triton reloads whenever the newest mtime moves: one reload per promotion
# (the sequence check above) means drafts, seals and reads moved no mtime.
check "the triton poller loaded as many times as there were promotions ($promotions)" \
	test "$(loads triton)" -eq $promotions
check_eq "scanner: every listing of /serving/production/clf held exactly one promoted version" \
	"" "$(grep '^BAD' "$OUT/scan.log" | head -n 5)"
check "scanner: it listed the directory many times (at least 1000)" \
	test "$(sed -n 's/^listings //p' "$OUT/scan.log")" -ge 1000
say "# scanner: $(sed -n 's/^listings //p' "$OUT/scan.log") listings"

test_done
