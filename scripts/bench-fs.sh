#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The mount's speed benchmark (`make bench`, or MRFS_BENCH=fs make bench):
# one run prints a table of figures measured side by side on the same
# machine in the same run, mrfs against the same bytes in a plain file on
# the store's own filesystem, each beside its target.
#
#   read     a generated 1 GiB safetensors file read through
#            /models/m/production/, against the file it was copied from, and
#            through `bindfs -o kernel_cache` on that same file (the peer):
#            sequential read (1 MiB read()s), mmap touching every page in
#            order and in random order, 4 KiB random pread() at queue depth
#            1 (time per read, IOPS, p99), each cold (after dropping the
#            caches) and warm (a second open after a full read); then the
#            daemon's peak RSS (VmHWM)
#   ingest   a new 1 GiB model (mkdir, cp into the draft, chmod a-w, sync)
#            against cp + sync to the same disk; then a variant sharing 95%
#            of its chunks (gen-safetensors.py's head) as the next version
#   meta     a store of MRFS_BENCH_VERSIONS versions of one small file each,
#            built through the mount (timed): ls and stat of a model with
#            10,000 versions against a plain directory of the same
#            entries (10,000 such subdirectories n/ and as many small n.json
#            files), ln -sfn promotion latency, and mount time
#
# Each figure is the median over MRFS_BENCH_RUNS runs (min-max shown); a
# ratio is the median of the per-run ratios mrfs/native. The measuring is
# done by $MRFS_BUILD/bench/bench_fs (tests/bench/bench_fs.c). A missed
# target never fails: the exit status is 0 unless the daemon died or a step
# could not run.
#
# Environment:
#   MRFS_BUILD            build directory (build)
#   MRFS_BIN              the mrfs binary to measure ($MRFS_BUILD/mrfs)
#   MRFS_BENCH_DIR        where data, stores and mounts go (/var/tmp)
#   MRFS_BENCH_RUNS       runs per figure (5)
#   MRFS_BENCH_SIZE       size of the generated model (1G)
#   MRFS_BENCH_OPS        random 4 KiB preads per measurement (20000)
#   MRFS_BENCH_VERSIONS   versions in the mount-time store (100000)
#   MRFS_BENCH_LS_VERSIONS versions of the model that is listed (10000)
#   MRFS_BENCH_PROMOTES   promotions timed per run (100)
#   MRFS_BENCH_PARTS      which parts to run ("read ingest meta")
#
# Run as root: cold figures need `echo 3 > /proc/sys/vm/drop_caches`.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
top=$PWD
build=${MRFS_BUILD:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
mrfs=${MRFS_BIN:-$build/mrfs}
case $mrfs in /*) ;; *) mrfs=$top/$mrfs ;; esac
bin=$build/bench/bench_fs
size=${MRFS_BENCH_SIZE:-1G}
runs=${MRFS_BENCH_RUNS:-5}
root=${MRFS_BENCH_DIR:-/var/tmp}
ops=${MRFS_BENCH_OPS:-20000}
nversions=${MRFS_BENCH_VERSIONS:-100000}
lsversions=${MRFS_BENCH_LS_VERSIONS:-10000}
promotes=${MRFS_BENCH_PROMOTES:-100}
parts=" ${MRFS_BENCH_PARTS:-read ingest meta} "

die() {
	echo "bench-fs.sh: $*" >&2
	exit 1
}

[ -x "$bin" ] || die "$bin is not built (make tools)"
[ -x "$mrfs" ] || die "$mrfs is not built (make)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (apt-get install fuse3)"
for v in runs ops nversions lsversions promotes; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive number"
done
[ "$lsversions" -le "$nversions" ] || nversions=$lsversions
s=${size%B}
s=${s%i}
bytes=$(numfmt --from=iec "$s" 2>/dev/null) || die "MRFS_BENCH_SIZE=$size is not a size (e.g. 128M, 1G)"

mkdir -p "$root"
work=$(mktemp -d "$root/mrfs-bench-fs.XXXXXX")
mounts=() # mount points we mounted (or tried to)
pids=()   # daemons we started

cleanup() {
	local m p i
	set +e
	for m in "${mounts[@]}"; do
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
		fi
	done
	for p in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	chmod -R u+w "$work" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Inputs (2), the read store (1), the ingest store (2.1) and a copy (1).
need=$((bytes * 7 / 1024 + 1024 * 1024))
avail=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt "$need" ] ||
	die "$work: $((avail / 1024)) MiB free, $((need / 1024)) MiB needed (MRFS_BENCH_DIR, MRFS_BENCH_SIZE)"

cpflags=--reflink=never
cp $cpflags /dev/null "$work/probe" 2>/dev/null || cpflags=
rm -f "$work/probe"

cold=yes
if [ "$(id -u)" != 0 ] || [ ! -w /proc/sys/vm/drop_caches ]; then
	cold=
fi
drop_caches() {
	sync
	if [ -n "$cold" ]; then
		echo 3 >/proc/sys/vm/drop_caches
	fi
}

elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'
}

crashed=
results=$work/results
notes=$work/notes
: >"$results"
: >"$notes"

# record TEST TARGET RUN VALUE [ERR]
record() {
	echo "$1 $2 $3 $4 ${5:-0}" >>"$results"
}
note() {
	echo "$*" >>"$notes"
}

alive() {
	[ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# mount_mrfs STORE MNT LOG: mount in the foreground, in the background of
# this shell; sets mpid (the daemon) and mount_s (seconds until it answered).
mount_mrfs() {
	local out=$work/mount.out
	mkdir -p "$2"
	: >"$out"
	mounts+=("$2")
	"$bin" mount "$mrfs" "$1" "$2" "$3" >"$out" &
	mpid=$!
	pids+=("$mpid")
	until grep -q '^mount .*\(seconds\|error\)' "$out"; do
		if ! alive "$mpid"; then
			echo "bench-fs.sh: mrfs exited before mounting $2; its log:" >&2
			tail -n 20 "$3" >&2
			return 1
		fi
		sleep 0.01
	done
	if grep -q '^mount error' "$out"; then
		echo "bench-fs.sh: mounting $2: $(cat "$out"); its log:" >&2
		tail -n 20 "$3" >&2
		return 1
	fi
	mount_s=$(awk '$1 == "mount" { print $3 }' "$out")
}

# umount_mrfs MNT PID: unmount and wait for the daemon to exit.
umount_mrfs() {
	local i
	fusermount3 -u "$1" || fusermount3 -uz "$1" || true
	for ((i = 0; i < 300; i++)); do
		alive "$2" || break
		sleep 0.1
	done
	if alive "$2"; then
		echo "bench-fs.sh: daemon $2 still running 30 s after unmounting $1" >&2
		kill -TERM "$2" 2>/dev/null || true
	fi
	wait "$2" 2>/dev/null || true
}

# check_daemon PID WHAT: note a dead daemon (it crashed)
check_daemon() {
	if ! alive "$1"; then
		crashed=yes
		echo "bench-fs.sh: the mrfs daemon ($1) died during $2" >&2
		note "the mrfs daemon died during $2"
		return 1
	fi
}

hwm_kib() {
	awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

field() { # LINE KEY: the value after KEY in a bench_fs line
	awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) { print $(i + 1); exit } }' <<<"$1"
}

fs=$(df -PT "$work" | awk 'NR == 2 { print $2 " on " $1 }')
echo "mrfs filesystem bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), $(uname -sr)"
echo "mrfs: $mrfs ($(git -C "$top" describe --always --dirty 2>/dev/null || echo '?'))"
echo "disk: $work ($fs), $((avail / 1048576)) GiB free; model ${size} ($bytes bytes); $runs runs"
if [ -n "$cold" ]; then
	echo "caches: dropped before every cold measurement"
else
	echo "caches: NOT dropped (not root): the cold figures are not cold"
fi

if command -v bindfs >/dev/null; then
	peer=bindfs
else
	peer=
	note "bindfs is not installed (apt-get install bindfs): no peer column"
fi

t0=$EPOCHREALTIME
python3 scripts/gen-safetensors.py --size "$bytes" --out "$work/in" base head >"$work/gen"
t1=$EPOCHREALTIME
changed=$(awk '$1 == "changed" { print $4 }' "$work/gen")
echo "inputs: base and head (${changed}% of its bytes redrawn) in $(elapsed "$t0" "$t1") s"
base=$work/in/base.safetensors
head=$work/in/head.safetensors

# ---- read ------------------------------------------------------------------

# read_one TEST TARGET RUN FILE KIND [ARGS...]: prepare (cold or warm), run
# bench_fs KIND FILE ARGS..., record.
read_one() {
	local test=$1 tgt=$2 run=$3 file=$4 kind=$5 line err=0 v
	shift 5
	case $test in
	*_cold) drop_caches ;;
	*_warm) "$bin" seq "$file" >/dev/null || true ;;
	esac
	line=$("$bin" "$kind" "$file" "$@" 2>"$work/stderr") || err=1
	case $kind in
	seq)
		v=$(field "$line" seconds)
		[ "$(field "$line" bytes)" = "$(field "$line" size)" ] || err=1
		record "$test" "$tgt" "$run" "${v:-0}" "$err"
		;;
	mmap)
		v=$(field "$line" seconds)
		record "$test" "$tgt" "$run" "${v:-0}" "$err"
		;;
	pread)
		[ "$(field "$line" short)" = 0 ] || err=1
		v=$(field "$line" seconds)
		record "$test" "$tgt" "$run" "$(awk -v s="${v:-0}" -v n="$ops" 'BEGIN { printf "%.3f", s / n * 1e6 }')" "$err"
		record "${test}_iops" "$tgt" "$run" "$(field "$line" iops)" "$err"
		record "${test}_p99" "$tgt" "$run" "$(field "$line" p99_us)" "$err"
		;;
	esac
	if [ "$err" != 0 ]; then
		echo "    $tgt $test run $run: ${line:-failed} $(head -c 300 "$work/stderr")" >>"$work/errors"
	fi
}

run_read() {
	local store=$work/store mnt=$work/mnt log=$work/daemon-read.log m line err
	local rpid bpid='' bmnt=$work/bind run t tgt file mfile bfile
	echo
	echo "read: logging the model"
	mount_mrfs "$store" "$mnt" "$log" || return 1
	m=$mnt/models/m
	if ! { mkdir "$m" "$m/versions/1" && cp $cpflags "$base" "$m/versions/1/" &&
		chmod a-w "$m/versions/1" && ln -s versions/1 "$m/production"; }; then
		echo "bench-fs.sh: could not log the model through the mount" >&2
		return 1
	fi
	umount_mrfs "$mnt" "$mpid"

	# a fresh daemon: the first read checks every chunk against its key
	mount_mrfs "$store" "$mnt" "$log" || return 1
	rpid=$mpid
	mfile=$m/production/base.safetensors
	drop_caches
	line=$("$bin" seq "$base") && record seq_first native 1 "$(field "$line" seconds)"
	drop_caches
	err=0
	line=$("$bin" seq "$mfile") || err=1
	[ "$(field "$line" bytes)" = "$(field "$line" size)" ] || err=1
	record seq_first mrfs 1 "$(field "$line" seconds)" "$err"
	[ "$err" = 0 ] || echo "    mrfs seq_first: ${line:-failed}" >>"$work/errors"
	check_daemon "$rpid" "the first read" || return 1
	if cmp -s "$base" "$mfile"; then
		echo "read: content through the mount is byte for byte the file logged"
	else
		echo "read: WRONG CONTENT through the mount: $(cmp "$base" "$mfile" 2>&1 | head -n 1)"
		note "content check FAILED: $(cmp "$base" "$mfile" 2>&1 | head -n 1)"
	fi

	if [ -n "$peer" ]; then
		mkdir -p "$bmnt"
		mounts+=("$bmnt")
		bindfs -f -o kernel_cache "$work/in" "$bmnt" 2>"$work/bindfs.log" &
		bpid=$!
		pids+=("$bpid")
		for ((t = 0; t < 200; t++)); do
			mountpoint -q "$bmnt" && break
			sleep 0.05
		done
		mountpoint -q "$bmnt" || {
			note "bindfs did not mount: $(head -n 3 "$work/bindfs.log")"
			peer=
		}
	fi
	bfile=$bmnt/base.safetensors

	echo "read: $runs runs of 8 measurements on native, mrfs${peer:+ and $peer}"
	for ((run = 1; run <= runs; run++)); do
		printf '  run %d:' "$run"
		for t in seq_cold seq_warm mmap_in_cold mmap_in_warm mmap_rand_cold mmap_rand_warm \
			pread_cold pread_warm; do
			for tgt in native mrfs $peer; do
				case $tgt in
				native) file=$base ;;
				mrfs) file=$mfile ;;
				bindfs) file=$bfile ;;
				esac
				case $t in
				seq_*) read_one $t $tgt $run "$file" seq ;;
				mmap_in_*) read_one $t $tgt $run "$file" mmap in ;;
				mmap_rand_*) read_one $t $tgt $run "$file" mmap random $run ;;
				pread_*) read_one $t $tgt $run "$file" pread "$ops" $run ;;
				esac
			done
			check_daemon "$rpid" "$t (run $run)" || return 1
			printf ' %s' "$t"
		done
		echo
	done
	record rss mrfs 1 "$(awk -v k="$(hwm_kib "$rpid")" 'BEGIN { printf "%.1f", k / 1024 }')"
	if [ -n "$bpid" ]; then
		record rss bindfs 1 "$(awk -v k="$(hwm_kib "$bpid")" 'BEGIN { printf "%.1f", k / 1024 }')"
		fusermount3 -u "$bmnt" || true
		wait "$bpid" 2>/dev/null || true
	fi
	umount_mrfs "$mnt" "$rpid"
	if grep -q . "$log"; then
		note "read daemon log: $(wc -l <"$log") lines, e.g. $(head -n 1 "$log")"
	fi
	rm -rf "$store"
}

# ---- ingest ----------------------------------------------------------------

run_ingest() {
	local store=$work/istore mnt=$work/imnt log=$work/daemon-ingest.log run t0 t1 m hwm=0 h
	echo
	echo "ingest: $runs runs, each on a fresh store: base as version 1, head as version 2"
	for ((run = 1; run <= runs; run++)); do
		rm -rf "$store"
		mount_mrfs "$store" "$mnt" "$log" || return 1
		m=$mnt/models/new
		mkdir "$m" || return 1
		drop_caches
		t0=$EPOCHREALTIME
		mkdir "$m/versions/1" && cp $cpflags "$base" "$m/versions/1/" &&
			chmod a-w "$m/versions/1" && sync || return 1
		t1=$EPOCHREALTIME
		record ingest_new mrfs $run "$(elapsed "$t0" "$t1")"
		drop_caches
		t0=$EPOCHREALTIME
		mkdir "$m/versions/2" && cp $cpflags "$head" "$m/versions/2/" &&
			chmod a-w "$m/versions/2" && sync || return 1
		t1=$EPOCHREALTIME
		record ingest_shared mrfs $run "$(elapsed "$t0" "$t1")"
		check_daemon "$mpid" "ingest (run $run)" || return 1
		h=$(hwm_kib "$mpid")
		[ "${h:-0}" -gt "$hwm" ] && hwm=$h
		umount_mrfs "$mnt" "$mpid"
		rm -rf "$store"

		drop_caches
		t0=$EPOCHREALTIME
		cp $cpflags "$base" "$work/copy" && sync
		t1=$EPOCHREALTIME
		record ingest_new native $run "$(elapsed "$t0" "$t1")"
		rm -f "$work/copy"
		drop_caches
		t0=$EPOCHREALTIME
		cp $cpflags "$head" "$work/copy" && sync
		t1=$EPOCHREALTIME
		record ingest_shared native $run "$(elapsed "$t0" "$t1")"
		rm -f "$work/copy"
		awk -v r="$run" '$3 == r && $1 ~ /^ingest_/ { v[$1, $2] = $4 }
			END { printf "  run %d: mrfs %s + %s s, cp+sync %s + %s s\n", r,
				v["ingest_new", "mrfs"], v["ingest_shared", "mrfs"],
				v["ingest_new", "native"], v["ingest_shared", "native"] }' "$results"
	done
	record rss_ingest mrfs 1 "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
}

# ---- meta: versions, promotion, mount time ---------------------------------

run_meta() {
	local store=$work/vstore mnt=$work/vmnt log=$work/daemon-meta.log nat=$work/native-versions
	local left made n run line t0 t1 vpid i k d tgt
	echo
	echo "meta: building a store of $nversions versions through the mount" \
		"(model many: $lsversions, the rest in models of up to 10000)"
	mount_mrfs "$store" "$mnt" "$log" || return 1
	mkdir "$mnt/models/many" || return 1
	t0=$EPOCHREALTIME
	"$bin" mkdirs "$mnt/models/many/versions" 1 "$lsversions" >/dev/null || return 1
	left=$((nversions - lsversions))
	k=0
	while [ "$left" -gt 0 ]; do
		k=$((k + 1))
		n=$((left < 10000 ? left : 10000))
		mkdir "$mnt/models/bulk$k" || return 1
		"$bin" mkdirs "$mnt/models/bulk$k/versions" 1 "$n" >/dev/null || return 1
		left=$((left - n))
	done
	t1=$EPOCHREALTIME
	check_daemon "$mpid" "building the versions store" || return 1
	made=$(elapsed "$t0" "$t1")
	echo "meta: $nversions versions in $made s ($(awk -v n="$nversions" -v s="$made" \
		'BEGIN { printf "%.0f versions/s, %.1f ms each", n / s, s / n * 1000 }'));" \
		"store $(du -sh "$store" | cut -f1)"
	note "building $nversions versions (mkdir, one 64-byte file, chmod a-w) through the mount took $made s"
	umount_mrfs "$mnt" "$mpid"

	mkdir "$nat" && "$bin" mkdirs "$nat" 1 "$lsversions" >/dev/null || return 1
	# the same entries as versions/: each version and its record <n>.json
	for ((i = 1; i <= lsversions; i++)); do
		printf '{"version":%d}\n' $i >"$nat/$i.json"
	done
	mkdir -p "$work/nat-model/versions/1" "$work/nat-model/versions/2"

	echo "meta: $runs runs of mount (cold, warm), ls, stat, promotion"
	for ((run = 1; run <= runs; run++)); do
		drop_caches
		mount_mrfs "$store" "$mnt" "$log" || return 1
		record mount_cold mrfs $run "$(awk -v s="$mount_s" 'BEGIN { printf "%.3f", s * 1000 }')"
		umount_mrfs "$mnt" "$mpid"
		mount_mrfs "$store" "$mnt" "$log" || return 1
		record mount_warm mrfs $run "$(awk -v s="$mount_s" 'BEGIN { printf "%.3f", s * 1000 }')"
		vpid=$mpid

		for i in cold warm; do
			for tgt in native mrfs; do
				case $tgt in
				native) d=$nat ;;
				mrfs) d=$mnt/models/many/versions ;;
				esac
				if [ $i = cold ]; then
					drop_caches
				else
					"$bin" ls "$d" >/dev/null
				fi
				line=$("$bin" ls "$d") || {
					record ls_$i $tgt $run 0 1
					continue
				}
				record ls_$i $tgt $run "$(awk -v s="$(field "$line" readdir_s)" 'BEGIN { printf "%.3f", s * 1000 }')"
				record stat_$i $tgt $run "$(awk -v s="$(field "$line" stat_s)" 'BEGIN { printf "%.3f", s * 1000 }')"
				[ $i = warm ] && record dirstat $tgt $run "$(field "$line" dirstat_p50_us)"
				[ $tgt = mrfs ] && [ $run = 1 ] && [ $i = warm ] &&
					note "ls of versions/ of a model with $lsversions versions lists $(field "$line" entries) entries (each version and its .json); the native directory as many (n/ and n.json)"
			done
		done
		check_daemon "$vpid" "ls (run $run)" || return 1

		line=$("$bin" promote "$mnt/models/many" versions/1 versions/2 "$promotes") &&
			{
				record promote mrfs $run "$(awk -v u="$(field "$line" p50_us)" 'BEGIN { printf "%.4f", u / 1000 }')"
				record promote_p99 mrfs $run "$(awk -v u="$(field "$line" p99_us)" 'BEGIN { printf "%.4f", u / 1000 }')"
			}
		line=$("$bin" promote "$work/nat-model" versions/1 versions/2 "$promotes") &&
			{
				record promote native $run "$(awk -v u="$(field "$line" p50_us)" 'BEGIN { printf "%.4f", u / 1000 }')"
				record promote_p99 native $run "$(awk -v u="$(field "$line" p99_us)" 'BEGIN { printf "%.4f", u / 1000 }')"
			}
		for tgt in mrfs native; do
			case $tgt in
			mrfs) d=$mnt/models/many ;;
			native) d=$work/nat-model ;;
			esac
			t0=$EPOCHREALTIME
			for ((i = 0; i < 20; i++)); do
				ln -sfn versions/$((i % 2 + 1)) "$d/production"
			done
			t1=$EPOCHREALTIME
			record promote_ln $tgt $run "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 20 * 1000 }')"
		done
		check_daemon "$vpid" "promotion (run $run)" || return 1
		umount_mrfs "$mnt" "$vpid"
		awk -v r="$run" '$3 == r && $1 ~ /^mount_/ { v[$1] = $4 }
			END { printf "  run %d: mount %s ms cold, %s ms warm\n", r,
				v["mount_cold"], v["mount_warm"] }' "$results"
	done
}

for part in read ingest meta; do
	case $parts in *" $part "*) ;; *) continue ;; esac
	if ! run_$part; then
		echo "bench-fs.sh: the $part part stopped early" >&2
		note "the $part part stopped early (see above)"
		crashed=yes
	fi
done

# ---- the table -------------------------------------------------------------

# key|label|unit|kind|target: kind ratio (mrfs/native <= target),
# abs (mrfs median <= target) or info
cat >"$work/rows" <<EOF
seq_cold|sequential read, cold|s|ratio|1.10
seq_warm|sequential read, warm|s|ratio|1.05
seq_first|  cold, first read after mount (1 run)|s|info|
mmap_in_cold|mmap every page in order, cold|s|ratio|1.30
mmap_in_warm|mmap every page in order, warm|s|ratio|2.0
mmap_rand_cold|mmap every page, random order, cold|s|ratio|2.0
mmap_rand_warm|mmap every page, random order, warm|s|info|
pread_cold|4 KiB random pread QD1, cold, per read|us|ratio|1.30
pread_cold_iops|  cold, IOPS|1/s|info|
pread_cold_p99|  cold, p99 latency|us|info|
pread_warm|4 KiB random pread QD1, warm, per read|us|info|
pread_warm_iops|  warm, IOPS|1/s|info|
pread_warm_p99|  warm, p99 latency|us|info|
rss|daemon peak RSS (VmHWM), read part|MiB|abs|100
ingest_new|ingest new $size model, vs cp+sync|s|ratio|1.05
ingest_shared|ingest variant sharing 95%, vs cp+sync|s|ratio|0.60
rss_ingest|daemon peak RSS (VmHWM), ingest|MiB|info|
promote|promotion ln -sfn (3 syscalls), p50|ms|abs|1
promote_p99|  p99|ms|info|
promote_ln|  ln -sfn as a process, mean|ms|info|
ls_cold|ls (readdir) of $lsversions versions, cold|ms|ratio|2.0
ls_warm|ls (readdir) of $lsversions versions, warm|ms|ratio|2.0
stat_cold|stat of every entry, cold|ms|ratio|2.0
stat_warm|stat of every entry, warm|ms|ratio|2.0
dirstat|stat of the versions dir, p50|us|ratio|2.0
mount_cold|mount time, $nversions versions, cold|ms|abs|100
mount_warm|mount time, $nversions versions, warm|ms|info|
EOF

echo
awk -v runs="$runs" -v rowsfile="$work/rows" -v peer="$peer" '
function sort(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] > t; j--)
			a[j + 1] = a[j]
		a[j + 1] = t
	}
}
function median(a, n) {
	sort(a, n)
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# three significant digits or so, short
function num(x) {
	if (x == 0) return "0"
	if (x >= 999500) return sprintf("%.2fM", x / 1e6)
	if (x >= 9995) return sprintf("%.0fk", x / 1000)
	if (x >= 99.95) return sprintf("%.0f", x)
	if (x >= 9.995) return sprintf("%.1f", x)
	if (x >= 0.9995) return sprintf("%.2f", x)
	if (x >= 0.09995) return sprintf("%.3f", x)
	return sprintf("%.2g", x)
}
# "median (min-max)" of test k, target t; sets M[k, t] and n
function cell(k, t,   a, n, r, s) {
	n = 0
	for (r = 1; r <= runs; r++)
		if ((k, t, r) in val)
			a[++n] = val[k, t, r]
	if (!n)
		return "-"
	s = num(median(a, n))
	M[k, t] = median(a, n)
	if (n > 1)
		s = s " (" num(a[1]) "-" num(a[n]) ")"
	if (err[k, t])
		s = s "!"
	return s
}
# per-run ratios of target t to native for test k: "median (min-max)"
function ratio(k, t,   a, n, r, s) {
	n = 0
	for (r = 1; r <= runs; r++)
		if ((k, t, r) in val && (k, "native", r) in val && val[k, "native", r] > 0)
			a[++n] = val[k, t, r] / val[k, "native", r]
	if (!n)
		return "-"
	R[k, t] = median(a, n)
	s = sprintf("%.2f", R[k, t])
	if (n > 1)
		s = s sprintf(" (%.2f-%.2f)", a[1], a[n])
	return s
}
{
	val[$1, $2, $3] = $4
	if ($5 != 0)
		err[$1, $2] = 1
}
END {
	fmt = "%-42s %-4s %-20s %-20s %-18s %-7s %-7s %-10s %s\n"
	printf fmt, "", "unit", "native", "mrfs", "mrfs/native", peer ? peer : "(no peer)", \
	       peer ? "/native" : "", "target", ""
	printf fmt, "", "", "median (min-max)", "median (min-max)", "median (min-max)", \
	       "median", "", "", ""
	while ((getline line < rowsfile) > 0) {
		split(line, f, "|")
		k = f[1]
		nat = cell(k, "native")
		mr = cell(k, "mrfs")
		rt = ratio(k, "mrfs")
		pc = peer ? cell(k, peer) : "-"
		sub(/ \(.*/, "", pc)
		pr = peer ? ratio(k, peer) : "-"
		sub(/ \(.*/, "", pr)
		if (nat == "-" && mr == "-" && pc == "-")
			continue # a part that did not run
		tg = ""
		st = ""
		if (f[4] == "ratio") {
			tg = "<= " f[5]
			if ((k, "mrfs") in R)
				st = R[k, "mrfs"] <= f[5] + 0 ? "met" : "NOT MET"
			else
				st = "no figure"
		} else if (f[4] == "abs") {
			tg = "<= " f[5] " " f[3]
			if ((k, "mrfs") in M)
				st = M[k, "mrfs"] <= f[5] + 0 ? "met" : "NOT MET"
			else
				st = "no figure"
		}
		if (err[k, "mrfs"] && st != "")
			st = "NOT MET (wrong bytes or error)"
		printf fmt, f[2], f[3], nat, mr, rt, pc, pr, tg, st
	}
	print ""
	print "median (min-max) over the runs; ratios are medians of the per-run ratios"
	print "(lower is better); ! marks a figure with a short read, a SIGBUS or a failed step"
}' "$results"

if [ -s "$work/errors" ]; then
	echo
	echo "errors (first 20):"
	head -n 20 "$work/errors"
fi
if [ -s "$notes" ]; then
	echo
	echo "notes:"
	sed 's/^/  /' "$notes"
fi
if [ -n "$crashed" ]; then
	echo
	echo "bench-fs.sh: something crashed or could not run (see above)" >&2
	exit 1
fi
exit 0
