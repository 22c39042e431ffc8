/* SPDX-License-Identifier: MIT */
/*
 * bench_store: time the chunk store on real files.
 *
 *     bench_store STOREDIR FILE...
 *         Open (or create) the store in STOREDIR and ingest each FILE as
 *         one stream: read() in 1 MiB pieces into a writer, then finish it
 *         in a write transaction and commit. One line per file:
 *
 *         ingest NAME BYTES SECONDS grew PACK_BYTES stored STORED_BYTES
 *                index MDB_BYTES chunks NEW_CHUNKS
 *                read SECONDS write SECONDS finish SECONDS
 *
 *         NAME is the file's base name without its extension, SECONDS the
 *         wall time from open(FILE) to the commit, then the store's
 *         growth: pack file bytes, indexed chunk bytes, data.mdb size and
 *         indexed chunks; then where the time went: in read(), in
 *         mrfs_writer_write (chunking, keying, pack writes) and in
 *         finishing (fdatasync, indexing, commit). Then one line for the
 *         whole store:
 *
 *         store files N chunks N stored BYTES packs N pack_bytes BYTES
 *
 *     bench_store --chunk FILE [MAX_BYTES]
 *         Load FILE (its first MAX_BYTES, default 1 GiB) into memory and
 *         time, on one core, content-defined chunking alone, keying alone
 *         and both together, best of three passes each:
 *
 *         chunk cut|key|both BYTES SECONDS GBPS chunks N avg BYTES
 *
 *         GBPS is in 10^9 bytes per second. The key needs a store: a
 *         temporary one is made under $TMPDIR (or /tmp) and removed.
 *
 * Exit status 0, or 1 with a message on stderr when anything fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mrfs/store.h>

#define PIECE  (1u << 20)
#define PASSES 3

/* Where the time of one ingest went, in seconds. */
struct phases {
	double read, write, finish;
};

/* Where the chunk passes leave a byte of every key, so none is skipped. */
static volatile uint8_t sink;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what, const char *arg, int rc)
{
	fprintf(stderr, "bench_store: %s %s: %s\n", what, arg ? arg : "",
		strerror(rc < 0 ? -rc : rc));
	exit(1);
}

/* The size of @dir/data.mdb, 0 when it cannot be read. */
static uint64_t mdb_size(const char *dir)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &st) < 0)
		return 0;
	return st.st_size;
}

/* Base name of @path without its last extension, into @out. */
static void short_name(const char *path, char *out, size_t size)
{
	const char *base = strrchr(path, '/');
	char *dot;

	snprintf(out, size, "%s", base ? base + 1 : path);
	dot = strrchr(out, '.');
	if (dot && dot != out)
		*dot = '\0';
}

/* Stream @path into a new file of @store. *@bytes is its length. */
static int ingest(struct mrfs_store *store, const char *path, uint64_t *bytes, uint64_t *id,
		  struct phases *ph)
{
	struct mrfs_writer *w;
	struct mrfs_txn *txn;
	char *buf;
	ssize_t n;
	double t;
	int fd, rc, err;

	*bytes = 0;
	*ph = (struct phases){0};
	buf = malloc(PIECE);
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out_free_buf;
	}
	rc = mrfs_writer_new(store, &w);
	if (rc)
		goto out_close;
	for (;;) {
		t = now();
		n = read(fd, buf, PIECE);
		err = errno;
		ph->read += now() - t;
		if (n < 0 && err == EINTR)
			continue;
		if (n < 0) {
			rc = -err;
			goto out_abort_writer;
		}
		if (n == 0)
			break;
		t = now();
		rc = mrfs_writer_write(w, buf, n);
		ph->write += now() - t;
		if (rc)
			goto out_abort_writer;
	}
	*bytes = mrfs_writer_size(w);
	t = now();
	rc = mrfs_txn_begin(store, true, &txn);
	if (rc)
		goto out_abort_writer;
	rc = mrfs_writer_finish(w, txn, id);
	if (rc) {
		mrfs_txn_abort(txn);
		goto out_close;
	}
	rc = mrfs_txn_commit(txn);
	ph->finish = now() - t;
	goto out_close;

out_abort_writer:
	mrfs_writer_abort(w);
out_close:
	close(fd);
out_free_buf:
	free(buf);
	return rc;
}

/* Check that file @id of @store has @bytes bytes in whole chunks. */
static int check_file(struct mrfs_store *store, uint64_t id, uint64_t bytes)
{
	struct mrfs_file *f;
	struct mrfs_txn *txn;
	uint64_t sum = 0;
	uint32_t i;
	int rc;

	rc = mrfs_txn_begin(store, false, &txn);
	if (rc)
		return rc;
	rc = mrfs_store_file_get(txn, id, &f);
	mrfs_txn_abort(txn);
	if (rc)
		return rc;
	for (i = 0; i < f->nchunks; i++) {
		if (f->chunks[i].off != sum)
			rc = -EIO;
		sum += f->chunks[i].len;
	}
	if (f->size != bytes || sum != bytes)
		rc = -EIO;
	mrfs_file_free(f);
	return rc;
}

static int run_ingest(const char *dir, char **files, int nfiles)
{
	struct mrfs_store_stats before, after;
	struct mrfs_store *store;
	uint64_t bytes, id, mdb;
	struct phases ph;
	char name[256];
	double t0, t1;
	int i, rc;

	rc = mrfs_store_open(dir, NULL, &store);
	if (rc)
		die("cannot open store", dir, rc);
	for (i = 0; i < nfiles; i++) {
		rc = mrfs_store_stats(store, &before);
		if (rc)
			die("stats", dir, rc);
		mdb = mdb_size(dir);
		t0 = now();
		rc = ingest(store, files[i], &bytes, &id, &ph);
		t1 = now();
		if (rc)
			die("cannot ingest", files[i], rc);
		rc = mrfs_store_stats(store, &after);
		if (rc)
			die("stats", dir, rc);
		rc = check_file(store, id, bytes);
		if (rc)
			die("bad file record for", files[i], rc);
		short_name(files[i], name, sizeof(name));
		printf("ingest %s %llu %.6f grew %lld stored %lld index %lld chunks %lld"
		       " read %.6f write %.6f finish %.6f\n",
		       name, (unsigned long long)bytes, t1 - t0,
		       (long long)(after.pack_bytes - before.pack_bytes),
		       (long long)(after.stored_bytes - before.stored_bytes),
		       (long long)(mdb_size(dir) - mdb), (long long)(after.chunks - before.chunks),
		       ph.read, ph.write, ph.finish);
		fflush(stdout);
	}
	rc = mrfs_store_stats(store, &after);
	if (rc)
		die("stats", dir, rc);
	printf("store files %llu chunks %llu stored %llu packs %llu pack_bytes %llu\n",
	       (unsigned long long)after.files, (unsigned long long)after.chunks,
	       (unsigned long long)after.stored_bytes, (unsigned long long)after.packs,
	       (unsigned long long)after.pack_bytes);
	mrfs_store_close(store);
	return 0;
}

/* Read up to @max bytes of @path into a new buffer *@out. */
static int load(const char *path, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t want, got = 0;
	ssize_t n;
	int fd, rc = 0;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	want = (uint64_t)st.st_size < max ? (size_t)st.st_size : max;
	buf = malloc(want ? want : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < want) {
		n = read(fd, buf + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			free(buf);
			goto out_close;
		}
		if (n == 0)
			break;
		got += n;
	}
	*out = buf;
	*len = got;
out_close:
	close(fd);
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

enum pass { PASS_CUT, PASS_KEY, PASS_BOTH };

/*
 * One pass over @buf. PASS_CUT records the chunk lengths in @lens (room for
 * @max of them) and their count in *@n; PASS_KEY keys the chunks of @lens;
 * PASS_BOTH cuts and keys as a writer does. Returns the seconds it took.
 */
static double pass(struct mrfs_store *store, enum pass what, const uint8_t *buf, size_t len,
		   uint32_t *lens, size_t max, size_t *n)
{
	uint8_t key[MRFS_KEY_LEN];
	size_t off = 0, i = 0, c;
	double t0 = now();

	while (off < len) {
		if (what == PASS_KEY) {
			c = lens[i];
		} else {
			c = mrfs_chunk_cut(buf + off, len - off);
			if (c == 0 || c > len - off) {
				fprintf(stderr,
					"bench_store: mrfs_chunk_cut returned %zu at %zu of %zu\n",
					c, off, len);
				exit(1);
			}
		}
		if (what != PASS_CUT) {
			mrfs_store_chunk_key(store, buf + off, c, key);
			sink ^= key[0];
		}
		if (what == PASS_CUT && i < max)
			lens[i] = c;
		off += c;
		i++;
	}
	*n = i;
	return now() - t0;
}

static int run_chunk(const char *path, size_t max)
{
	static const char *const names[] = {"cut", "key", "both"};
	char dir[4096], dirs[4096 + 16];
	struct mrfs_store *store;
	const char *tmp;
	uint8_t *buf;
	uint32_t *lens;
	size_t len, n, maxchunks;
	double best, t;
	int rc, what, i;

	rc = load(path, max, &buf, &len);
	if (rc)
		die("cannot read", path, rc);
	if (!len)
		die("empty file", path, EINVAL);
	maxchunks = len / MRFS_CHUNK_MIN + 2;
	lens = calloc(maxchunks, sizeof(*lens));
	if (!lens)
		die("out of memory", NULL, ENOMEM);

	tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/bench_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", dir, errno);
	snprintf(dirs, sizeof(dirs), "%s/store", dir);
	rc = mrfs_store_open(dirs, NULL, &store);
	if (rc)
		die("cannot open store", dirs, rc);

	/* The cut pass goes first: it fills @lens for the key pass. */
	for (what = PASS_CUT; what <= PASS_BOTH; what++) {
		best = 0;
		for (i = 0; i < PASSES; i++) {
			t = pass(store, what, buf, len, lens, maxchunks, &n);
			if (i == 0 || t < best)
				best = t;
		}
		printf("chunk %s %zu %.6f %.3f chunks %zu avg %zu\n", names[what], len, best,
		       len / best / 1e9, n, len / n);
		fflush(stdout);
	}

	mrfs_store_close(store);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(lens);
	free(buf);
	return 0;
}

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: bench_store STOREDIR FILE...\n"
			"       bench_store --chunk FILE [MAX_BYTES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long long max = 1ull << 30;
	char *end;

	if (argc >= 3 && !strcmp(argv[1], "--chunk")) {
		if (argc > 4)
			usage();
		if (argc == 4) {
			errno = 0;
			max = strtoull(argv[3], &end, 0);
			if (errno || *end || !max)
				usage();
		}
		return run_chunk(argv[2], max);
	}
	if (argc < 3 || argv[1][0] == '-')
		usage();
	return run_ingest(argv[1], argv + 2, argc - 2);
}
