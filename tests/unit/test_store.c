/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the chunk store (include/mrfs/store.h). Each test opens a
 * fresh store in a new temporary directory and removes it at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <xxhash.h>

#include "mrfs/store.h"
#include "unit.h"

#define KiB	      (1024ull)
#define MiB	      (1024ull * 1024)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Slack allowed in pack_bytes when nothing new should have been written
 * (room for a pack header or padding, not for a chunk). */
#define PACK_SLACK 4096

/* Uneven write sizes, cycled through by the writers. */
/* clang-format off */
static const size_t uneven[] = {
	1, 7, 65536 + 3, 4093, 1, (1u << 20) + 13, 511,
	3 * MRFS_CHUNK_MAX + 1, 2, MRFS_CHUNK_MIN - 1,
};
/* clang-format on */

/* ---- helpers ------------------------------------------------------------ */

struct tstore {
	char tmp[PATH_MAX]; /* the mkdtemp() directory */
	char dir[PATH_MAX]; /* the store: <tmp>/store, made by mrfs_store_open */
	struct mrfs_store *st;
};

static bool path_join(char *out, size_t size, const char *a, const char *b)
{
	int n = snprintf(out, size, "%s/%s", a, b);

	return n >= 0 && (size_t)n < size;
}

/* Make a temporary directory and open a new store in it. On failure the
 * caller still calls tstore_free. */
static bool tstore_new(struct tstore *t, const struct mrfs_store_options *opts)
{
	memset(t, 0, sizeof(*t));
	if (unit_tmpdir_new(t->tmp, sizeof(t->tmp))) {
		t->tmp[0] = '\0';
		return false;
	}
	if (!CHECK(path_join(t->dir, sizeof(t->dir), t->tmp, "store")))
		return false;
	return CHECK_RC(mrfs_store_open(t->dir, opts, &t->st), 0);
}

/* Close the store and open it again. */
static bool tstore_reopen(struct tstore *t, const struct mrfs_store_options *opts)
{
	mrfs_store_close(t->st);
	t->st = NULL;
	return CHECK_RC(mrfs_store_open(t->dir, opts, &t->st), 0);
}

static void tstore_free(struct tstore *t)
{
	mrfs_store_close(t->st);
	t->st = NULL;
	unit_tmpdir_free(t->tmp);
	t->tmp[0] = '\0';
}

/*
 * Store @len bytes of @buf as a new file: a write transaction, then a
 * writer fed in pieces of the sizes in @pieces (cycled; NULL: one write),
 * finished inside the transaction, then commit. Failures are reported.
 * Returns 0 with *@id set, or the first error.
 */
static int store_buf(struct mrfs_store *st, const uint8_t *buf, size_t len, const size_t *pieces,
		     size_t npieces, uint64_t *id)
{
	struct mrfs_txn *txn;
	struct mrfs_writer *w;
	size_t off = 0, i = 0;
	int rc;

	if (!CHECK_RC(rc = mrfs_txn_begin(st, true, &txn), 0))
		return rc;
	if (!CHECK_RC(rc = mrfs_writer_new(st, &w), 0))
		goto out_abort_txn;
	if (!CHECK_EQ(mrfs_writer_size(w), 0)) {
		rc = -EPROTO;
		goto out_abort_writer;
	}
	while (off < len) {
		size_t n = pieces ? pieces[i++ % npieces] : len;

		if (n > len - off)
			n = len - off;
		if (!CHECK_RC(rc = mrfs_writer_write(w, buf + off, n), 0))
			goto out_abort_writer;
		off += n;
		if (!CHECK_EQ(mrfs_writer_size(w), off)) {
			rc = -EPROTO;
			goto out_abort_writer;
		}
	}
	if (!CHECK_RC(rc = mrfs_writer_finish(w, txn, id), 0))
		goto out_abort_txn;
	CHECK_RC(rc = mrfs_txn_commit(txn), 0);
	return rc;

out_abort_writer:
	mrfs_writer_abort(w);
out_abort_txn:
	mrfs_txn_abort(txn);
	return rc;
}

/* store_buf in the uneven pieces. */
static int store_uneven(struct mrfs_store *st, const uint8_t *buf, size_t len, uint64_t *id)
{
	return store_buf(st, buf, len, uneven, ARRAY_SIZE(uneven), id);
}

/*
 * Store bytes [0, @len) of the stream @seed (unit_fill) as a new file,
 * written in @piece-byte writes before the write transaction begins. Not
 * reported (callers decide what an error means, and threads may call it);
 * *@step names the call that failed. Returns 0 or its error.
 */
static int store_stream(struct mrfs_store *st, uint64_t seed, uint64_t len, size_t piece,
			uint64_t *id, const char **step)
{
	struct mrfs_writer *w;
	struct mrfs_txn *txn;
	uint8_t *buf;
	uint64_t off;
	int rc;

	*step = "malloc";
	buf = malloc(piece);
	if (!buf)
		return -ENOMEM;
	*step = "mrfs_writer_new";
	rc = mrfs_writer_new(st, &w);
	if (rc)
		goto out_free_buf;
	*step = "mrfs_writer_write";
	for (off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;

		unit_fill(seed, off, buf, n);
		rc = mrfs_writer_write(w, buf, n);
		if (rc)
			goto out_abort_writer;
	}
	*step = "mrfs_txn_begin";
	rc = mrfs_txn_begin(st, true, &txn);
	if (rc)
		goto out_abort_writer;
	*step = "mrfs_writer_finish";
	rc = mrfs_writer_finish(w, txn, id);
	if (rc) {
		mrfs_txn_abort(txn);
		goto out_free_buf;
	}
	*step = "mrfs_txn_commit";
	rc = mrfs_txn_commit(txn);
	goto out_free_buf;

out_abort_writer:
	mrfs_writer_abort(w);
out_free_buf:
	free(buf);
	return rc;
}

/* mrfs_store_file_get in its own read transaction; the file, or NULL
 * (reported). */
static struct mrfs_file *get_file(struct mrfs_store *st, uint64_t id)
{
	struct mrfs_file *f = NULL;
	struct mrfs_txn *txn;

	if (!CHECK_RC(mrfs_txn_begin(st, false, &txn), 0))
		return NULL;
	if (!CHECK_RC(mrfs_store_file_get(txn, id, &f), 0))
		f = NULL;
	mrfs_txn_abort(txn);
	return f;
}

/* What mrfs_store_file_get of @id returns, in its own read transaction. */
static int file_get_rc(struct mrfs_store *st, uint64_t id)
{
	struct mrfs_file *f = NULL;
	struct mrfs_txn *txn;
	int rc;

	rc = mrfs_txn_begin(st, false, &txn);
	if (rc)
		return rc;
	rc = mrfs_store_file_get(txn, id, &f);
	if (rc == 0)
		mrfs_file_free(f);
	mrfs_txn_abort(txn);
	return rc;
}

/* Run @op (mrfs_store_file_ref or _unref) on @id in a write transaction
 * and commit it. */
static int file_op_commit(struct mrfs_store *st, int (*op)(struct mrfs_txn *, uint64_t),
			  uint64_t id)
{
	struct mrfs_txn *txn;
	int rc;

	rc = mrfs_txn_begin(st, true, &txn);
	if (rc)
		return rc;
	rc = op(txn, id);
	if (rc) {
		mrfs_txn_abort(txn);
		return rc;
	}
	return mrfs_txn_commit(txn);
}

static bool get_stats(struct mrfs_store *st, struct mrfs_store_stats *s)
{
	memset(s, 0xa5, sizeof(*s));
	return CHECK_RC(mrfs_store_stats(st, s), 0);
}

static void note_stats(const char *what, const struct mrfs_store_stats *s)
{
	NOTE("%s: logical %" PRIu64 " stored %" PRIu64 " chunks %" PRIu64 " dead %" PRIu64
	     " files %" PRIu64 " packs %" PRIu64 " pack_bytes %" PRIu64,
	     what, s->logical_bytes, s->stored_bytes, s->chunks, s->dead_chunks, s->files, s->packs,
	     s->pack_bytes);
}

/* The verify callback's record: every file id reported. */
struct vlog {
	int calls;
	int nids;
	uint64_t ids[64];
};

static void vlog_fn(void *ctx, uint64_t file, const char *what)
{
	struct vlog *v = ctx;

	if (v->calls++ < 10)
		NOTE("verify: file %" PRIu64 ": %s", file, what);
	if (v->nids < (int)ARRAY_SIZE(v->ids))
		v->ids[v->nids++] = file;
}

static bool vlog_has(const struct vlog *v, uint64_t id)
{
	int i;

	for (i = 0; i < v->nids; i++)
		if (v->ids[i] == id)
			return true;
	return false;
}

/* mrfs_store_verify finds nothing, and says nothing. */
static bool verify_clean(struct mrfs_store *st)
{
	struct vlog v = {0};
	bool ok;

	ok = CHECK_RC(mrfs_store_verify(st, vlog_fn, &v), 0);
	ok &= CHECK_EQ(v.calls, 0);
	return ok;
}

/* Index of the chunk of @f holding byte @off, by our own search. */
static uint32_t chunk_index(const struct mrfs_file *f, uint64_t off)
{
	uint32_t lo = 0, hi = f->nchunks;

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (f->chunks[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Check the chunk list of @f against its invariants and, when @buf is not
 * NULL, against its content: each key is the store's key of its bytes and
 * each cut is where mrfs_chunk_cut cuts, whatever the writes were.
 */
static bool check_layout(struct mrfs_store *st, const struct mrfs_file *f, const uint8_t *buf,
			 uint64_t size)
{
	uint8_t key[MRFS_KEY_LEN];
	uint64_t off = 0;
	bool ok = true;
	uint32_t i;

	ok &= CHECK_EQ(f->size, size);
	ok &= CHECK(f->nchunks == 0 || f->chunks);
	for (i = 0; ok && i < f->nchunks; i++) {
		const struct mrfs_chunk *c = &f->chunks[i];

		ok &= CHECK_EQ(c->off, off);
		ok &= CHECK(c->len >= 1 && c->len <= MRFS_CHUNK_MAX);
		if (i + 1 < f->nchunks)
			ok &= CHECK(c->len >= MRFS_CHUNK_MIN);
		if (ok && buf && off + c->len <= size) {
			mrfs_store_chunk_key(st, buf + off, c->len, key);
			ok &= CHECK_MEM(c->key, key, MRFS_KEY_LEN);
			ok &= CHECK_EQ(mrfs_chunk_cut(buf + off, size - off), c->len);
		}
		off += c->len;
	}
	ok &= CHECK_EQ(off, size);
	if (!ok)
		FAIL("bad layout of file %" PRIu64 " (%" PRIu64 " bytes, %u chunks), at chunk %u",
		     f->id, f->size, f->nchunks, i ? i - 1 : 0);
	return ok;
}

/* @g has the same size, digest and chunks as @f. */
static bool same_content(const struct mrfs_file *f, const struct mrfs_file *g)
{
	bool ok = true;
	uint32_t i;

	ok &= CHECK_EQ(g->size, f->size);
	ok &= CHECK_MEM(g->digest, f->digest, MRFS_KEY_LEN);
	ok &= CHECK_EQ(g->nchunks, f->nchunks);
	for (i = 0; ok && i < f->nchunks; i++) {
		ok &= CHECK_MEM(g->chunks[i].key, f->chunks[i].key, MRFS_KEY_LEN);
		ok &= CHECK_EQ(g->chunks[i].len, f->chunks[i].len);
	}
	return ok;
}

/* @digest is the unseeded XXH3-128 of @buf, in the canonical (big-endian)
 * or the in-memory byte order (the header does not say which). */
static bool check_digest(const uint8_t *digest, const void *buf, size_t len)
{
	XXH128_hash_t h = XXH3_128bits(buf, len);
	XXH128_canonical_t canon;

	XXH128_canonicalFromHash(&canon, h);
	if (!memcmp(digest, canon.digest, MRFS_KEY_LEN) || !memcmp(digest, &h, MRFS_KEY_LEN))
		return true;
	FAIL("the digest of %zu bytes is not their XXH3-128", len);
	return false;
}

/* Bytes a read of [@off, @off + @len) of @f returns. */
static size_t expect_len(const struct mrfs_file *f, uint64_t off, size_t len)
{
	if (off >= f->size)
		return 0;
	return len < f->size - off ? len : (size_t)(f->size - off);
}

/* mrfs_store_read of [@off, @off + @len) gives the bytes of @buf. @out has
 * room for @len bytes. */
static bool check_read(struct mrfs_store *st, const struct mrfs_file *f, const uint8_t *buf,
		       uint64_t off, size_t len, uint8_t *out)
{
	size_t want = expect_len(f, off, len);
	ssize_t n;

	n = mrfs_store_read(st, f, off, len, out);
	if (n != (ssize_t)want) {
		FAIL("mrfs_store_read(off %" PRIu64 ", len %zu) of a %" PRIu64
		     "-byte file returned %zd (%s), expected %zu",
		     off, len, f->size, n, n < 0 ? strerror((int)-n) : "", want);
		return false;
	}
	if (memcmp(out, buf + off, want) != 0) {
		FAIL("mrfs_store_read(off %" PRIu64 ", len %zu): wrong bytes", off, len);
		return CHECK_MEM(out, buf + off, want);
	}
	return true;
}

/*
 * mrfs_store_segments of [@off, @off + @len) with room for @max segments
 * describes a prefix of the range (all of it when @max is enough for the
 * chunks touched) whose bytes, read with pread, are those of @buf. @out
 * has room for @len bytes.
 */
static bool check_segments(struct mrfs_store *st, const struct mrfs_file *f, const uint8_t *buf,
			   uint64_t off, size_t len, int max, uint8_t *out)
{
	size_t want = expect_len(f, off, len), got = 0;
	struct mrfs_segment *segs;
	uint32_t touched = 0;
	bool ok = true;
	int n = -1, i, rc;

	segs = calloc(max, sizeof(*segs));
	if (!CHECK(segs))
		return false;
	if (want)
		touched = chunk_index(f, off + want - 1) - chunk_index(f, off) + 1;
	rc = mrfs_store_segments(st, f, off, len, segs, max, &n);
	if (rc) {
		FAIL("mrfs_store_segments(off %" PRIu64 ", len %zu, max %d) "
		     "returned %d (%s)",
		     off, len, max, rc, strerror(-rc));
		ok = false;
		goto out_free_segs;
	}
	if (!CHECK(n >= 0 && n <= max)) {
		ok = false;
		goto out_free_segs;
	}
	for (i = 0; i < n; i++) {
		ssize_t r;

		if (!CHECK(segs[i].len > 0) || !CHECK(segs[i].off >= 0) ||
		    !CHECK(got + segs[i].len <= want)) {
			ok = false;
			break;
		}
		r = pread(segs[i].fd, out + got, segs[i].len, segs[i].off);
		if (r != (ssize_t)segs[i].len) {
			FAIL("pread of segment %d (fd %d, off %jd, len %zu): %zd "
			     "(%s)",
			     i, segs[i].fd, (intmax_t)segs[i].off, segs[i].len, r,
			     r < 0 ? strerror(errno) : "short");
			ok = false;
			break;
		}
		got += segs[i].len;
	}
	if (ok && (uint32_t)max >= touched)
		ok &= CHECK_EQ(got, want);
	if (ok && want)
		ok &= CHECK(got > 0);
	if (ok && n > 0)
		ok &= CHECK((uint32_t)n <= touched);
	if (ok && memcmp(out, buf + off, got) != 0)
		ok = CHECK_MEM(out, buf + off, got);
	if (!ok)
		FAIL("segments of [%" PRIu64 ", +%zu) of a %" PRIu64
		     "-byte file, max %d: %d segments, %zu bytes",
		     off, len, f->size, max, n, got);
out_free_segs:
	free(segs);
	return ok;
}

/* Read @f through every path: whole, at random ranges, across each chunk
 * boundary, past its end, and as segments. */
static bool check_reads(struct mrfs_store *st, const struct mrfs_file *f, const uint8_t *buf,
			struct unit_rng *rng)
{
	const uint64_t size = f->size;
	size_t cap = size + 64 * KiB;
	bool ok = true;
	uint8_t *out;
	uint32_t i;
	int k;

	if (cap < 3 * MRFS_CHUNK_MAX)
		cap = 3 * MRFS_CHUNK_MAX;
	out = malloc(cap);
	if (!CHECK(out))
		return false;

	/* whole, asking for more than there is */
	ok &= check_read(st, f, buf, 0, size + 4096, out);
	ok &= check_segments(st, f, buf, 0, size + 4096, f->nchunks + 1, out);
	/* at and past the end */
	ok &= check_read(st, f, buf, size, 10, out);
	ok &= check_read(st, f, buf, size + 1, 10, out);
	ok &= check_segments(st, f, buf, size, 10, 4, out);
	if (size >= 10) {
		ok &= check_read(st, f, buf, size - 10, 100, out);
		ok &= check_segments(st, f, buf, size - 10, 100, 4, out);
	}
	/* nothing */
	ok &= check_read(st, f, buf, 0, 0, out);

	/* every chunk: at its first and last byte */
	for (i = 0; ok && i < f->nchunks; i++) {
		const struct mrfs_chunk *c = &f->chunks[i];

		ok &= CHECK_EQ(mrfs_file_chunk_at(f, c->off), i);
		ok &= CHECK_EQ(mrfs_file_chunk_at(f, c->off + c->len - 1), i);
	}

	/* across each boundary, sometimes over several chunks */
	for (i = 1; ok && i < f->nchunks; i++) {
		uint64_t b = f->chunks[i].off;
		uint64_t off = b - 1 - unit_rng_below(rng, 4096);
		size_t len = b - off + 1 + unit_rng_below(rng, 4096);

		if (unit_rng_below(rng, 4) == 0)
			len += unit_rng_below(rng, 2 * MRFS_CHUNK_MAX);
		ok &= check_read(st, f, buf, off, len, out);
		ok &= check_segments(st, f, buf, off, len, 8, out);
		/* room for one: a prefix */
		ok &= check_segments(st, f, buf, off, len, 1, out);
	}

	/* random ranges */
	for (k = 0; ok && k < 60 && size; k++) {
		uint64_t off = unit_rng_below(rng, size);
		size_t len;

		switch (unit_rng_below(rng, 3)) {
		case 0:
			len = 1 + unit_rng_below(rng, 16);
			break;
		case 1:
			len = 1 + unit_rng_below(rng, 128 * KiB);
			break;
		default:
			len = 1 + unit_rng_below(rng, 3 * MRFS_CHUNK_MAX - 1);
			break;
		}
		ok &= CHECK_EQ(mrfs_file_chunk_at(f, off), chunk_index(f, off));
		ok &= check_read(st, f, buf, off, len, out);
		ok &= check_segments(st, f, buf, off, len, 16, out);
	}
	free(out);
	return ok;
}

/* ---- 1. round trips ------------------------------------------------------ */

static void test_roundtrip(void)
{
	static const uint64_t sizes[] = {
	    0,
	    1,
	    MRFS_CHUNK_MIN - 1,
	    MRFS_CHUNK_MIN,
	    MRFS_CHUNK_MIN + 1,
	    MRFS_CHUNK_MAX - 1,
	    MRFS_CHUNK_MAX,
	    MRFS_CHUNK_MAX + 1,
	    40 * MiB + 12345,
	};
	uint8_t digests[ARRAY_SIZE(sizes)][MRFS_KEY_LEN];
	const size_t big = 40 * MiB + 12345;
	struct unit_rng rng;
	struct tstore t;
	uint8_t *buf;
	size_t s, j;

	unit_rng_init(&rng, 100);
	buf = malloc(big);
	if (!CHECK(buf))
		return;
	unit_fill(1, 0, buf, big);
	if (!tstore_new(&t, NULL))
		goto out;

	for (s = 0; s < ARRAY_SIZE(sizes); s++) {
		const uint64_t size = sizes[s];
		struct mrfs_file *f = NULL, *g = NULL;
		uint64_t id = 0, id2 = 0, id3 = 0;
		struct mrfs_txn *txn;
		bool ok;

		if (store_uneven(t.st, buf, size, &id))
			break;
		f = get_file(t.st, id);
		if (!f)
			break;
		ok = CHECK_EQ(f->id, id);
		ok &= check_layout(t.st, f, buf, size);
		if (size == 0)
			ok &= CHECK_EQ(f->nchunks, 0);
		if (ok)
			ok &= check_reads(t.st, f, buf, &rng);
		memcpy(digests[s], f->digest, MRFS_KEY_LEN);

		ok &= check_digest(f->digest, buf, size);

		/* the same content in one write: another file, same digest,
		 * same chunks */
		if (ok && !store_buf(t.st, buf, size, NULL, 0, &id2))
			g = get_file(t.st, id2);
		ok = ok && g && CHECK(id2 != id) && same_content(f, g);
		mrfs_file_free(g);
		g = NULL;

		/* and through mrfs_store_put */
		if (ok && CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0)) {
			if (CHECK_RC(mrfs_store_put(t.st, txn, buf, size, &id3), 0))
				ok &= CHECK_RC(mrfs_txn_commit(txn), 0);
			else
				mrfs_txn_abort(txn);
			g = ok ? get_file(t.st, id3) : NULL;
			ok = ok && g && CHECK(id3 != id && id3 != id2) && same_content(f, g);
		}
		/* different content, different digest */
		for (j = 0; j < s; j++)
			ok &= CHECK(memcmp(digests[j], digests[s], MRFS_KEY_LEN) != 0);
		if (!ok)
			FAIL("round trip of %" PRIu64 " bytes failed", size);
		mrfs_file_free(g);
		mrfs_file_free(f);
		if (!ok)
			break;
	}
	verify_clean(t.st);
out:
	tstore_free(&t);
	free(buf);
}

/* ---- 2. chunking --------------------------------------------------------- */

/* Cut @len bytes of @buf all the way; the number of chunks, their lengths
 * in @cuts (room for @max). */
static size_t cut_all(const uint8_t *buf, size_t len, size_t *cuts, size_t max)
{
	size_t off = 0, n = 0;

	while (off < len && n < max) {
		size_t c = mrfs_chunk_cut(buf + off, len - off);

		cuts[n++] = c;
		if (c == 0)
			break;
		off += c;
	}
	return n;
}

static void test_cut(void)
{
	const size_t len = 40 * MiB, max = len / MRFS_CHUNK_MIN + 2;
	const size_t shift = 12345;
	size_t *c1, *c2, *c3, *c4;
	size_t n1, n2, n3, n4, i, j, off, off4, common;
	uint8_t *buf, *copy;

	buf = malloc(len);
	copy = malloc(len + 1);
	c1 = calloc(max, sizeof(*c1));
	c2 = calloc(max, sizeof(*c2));
	c3 = calloc(max, sizeof(*c3));
	c4 = calloc(max, sizeof(*c4));
	if (!CHECK(buf && copy && c1 && c2 && c3 && c4))
		goto out;
	unit_fill(2, 0, buf, len);

	/* short inputs have no cut point */
	CHECK_EQ(mrfs_chunk_cut(buf, 1), 1);
	CHECK_EQ(mrfs_chunk_cut(buf, MRFS_CHUNK_MIN - 1), MRFS_CHUNK_MIN - 1);
	CHECK_EQ(mrfs_chunk_cut(buf, MRFS_CHUNK_MIN), MRFS_CHUNK_MIN);

	/* the same bytes cut the same, wherever they are in memory */
	n1 = cut_all(buf, len, c1, max);
	n2 = cut_all(buf, len, c2, max);
	memcpy(copy + 1, buf, len);
	n3 = cut_all(copy + 1, len, c3, max);
	CHECK_EQ(n1, n2);
	CHECK_EQ(n1, n3);
	if (CHECK(n1 == n2 && n1 == n3)) {
		CHECK_MEM(c1, c2, n1 * sizeof(*c1));
		CHECK_MEM(c1, c3, n1 * sizeof(*c1));
	}

	/* every chunk within bounds, all of them adding up */
	for (i = 0, off = 0; i < n1; i++) {
		if (i + 1 < n1 && !CHECK(c1[i] >= MRFS_CHUNK_MIN))
			break;
		if (!CHECK(c1[i] >= 1 && c1[i] <= MRFS_CHUNK_MAX))
			break;
		off += c1[i];
	}
	CHECK_EQ(off, len);
	NOTE("%zu chunks of %zu bytes on average", n1, n1 ? len / n1 : 0);
	CHECK(n1 && len / n1 >= 512 * KiB && len / n1 <= 2 * MiB);

	/* a cut depends only on the bytes before it */
	if (CHECK(n1 >= 2)) {
		copy[1 + c1[0] + 10] ^= 0x5a;
		copy[1 + c1[0]] ^= 0x01;
		CHECK_EQ(mrfs_chunk_cut(copy + 1, len), c1[0]);
		CHECK_EQ(mrfs_chunk_cut(copy + 1, c1[0] + 20), c1[0]);
	}

	/* cutting from elsewhere finds the same cut points after a while */
	n4 = cut_all(buf + shift, len - shift, c4, max);
	common = 0;
	for (i = 0, j = 0, off = 0, off4 = shift; i < n1 && j < n4;) {
		if (off + c1[i] == off4 + c4[j]) {
			common++;
			off += c1[i++];
			off4 += c4[j++];
		} else if (off + c1[i] < off4 + c4[j]) {
			off += c1[i++];
		} else {
			off4 += c4[j++];
		}
	}
	NOTE("cutting from byte %zu: %zu of %zu chunk ends shared", shift, common, n4);
	CHECK(common + 2 >= n4);
out:
	free(c4);
	free(c3);
	free(c2);
	free(c1);
	free(copy);
	free(buf);
}

/* ---- 3. identical streams ------------------------------------------------ */

static void test_dedup(void)
{
	const size_t len = 20 * MiB, zlen = 12 * MiB;
	struct mrfs_store_stats s1, s2, s3, s4;
	struct mrfs_file *f1 = NULL, *f2 = NULL, *fz = NULL;
	uint64_t id1 = 0, id2 = 0, idz = 0, distinct_len = 0;
	uint32_t i, k, distinct = 0;
	uint8_t *buf, *zeros = NULL;
	struct tstore t;

	buf = malloc(len);
	if (!CHECK(buf))
		return;
	unit_fill(3, 0, buf, len);
	if (!tstore_new(&t, NULL))
		goto out;

	if (store_uneven(t.st, buf, len, &id1) || !get_stats(t.st, &s1))
		goto out;
	if (store_buf(t.st, buf, len, uneven + 3, ARRAY_SIZE(uneven) - 3, &id2) ||
	    !get_stats(t.st, &s2))
		goto out;
	note_stats("once", &s1);
	note_stats("twice", &s2);
	CHECK(id1 != id2);
	CHECK_EQ(s1.logical_bytes, len);
	CHECK_EQ(s1.stored_bytes, len);
	CHECK_EQ(s1.files, 1);
	CHECK_EQ(s2.files, 2);
	CHECK_EQ(s2.logical_bytes, 2 * len);
	CHECK_EQ(s2.stored_bytes, s1.stored_bytes);
	CHECK_EQ(s2.chunks, s1.chunks);
	CHECK_EQ(s2.dead_chunks, 0);
	CHECK(s1.pack_bytes >= len);
	CHECK(s2.pack_bytes >= s1.pack_bytes);
	CHECK(s2.pack_bytes - s1.pack_bytes <= PACK_SLACK);

	f1 = get_file(t.st, id1);
	f2 = get_file(t.st, id2);
	if (!f1 || !f2)
		goto out;
	CHECK_EQ(f1->nchunks, s1.chunks);
	if (CHECK_EQ(f1->nchunks, f2->nchunks))
		for (i = 0; i < f1->nchunks; i++)
			if (!CHECK_MEM(f1->chunks[i].key, f2->chunks[i].key, MRFS_KEY_LEN))
				break;

	/* a stream repeating one chunk: stored once, referenced right */
	zeros = calloc(1, zlen);
	if (!CHECK(zeros))
		goto out;
	if (store_uneven(t.st, zeros, zlen, &idz) || !get_stats(t.st, &s3))
		goto out;
	fz = get_file(t.st, idz);
	if (!fz || !check_layout(t.st, fz, zeros, zlen))
		goto out;
	for (i = 0; i < fz->nchunks; i++) {
		for (k = 0; k < i; k++)
			if (!memcmp(fz->chunks[k].key, fz->chunks[i].key, MRFS_KEY_LEN))
				break;
		if (k == i) {
			distinct++;
			distinct_len += fz->chunks[i].len;
		}
	}
	note_stats("with zeros", &s3);
	NOTE("%u zero chunks, %u distinct", fz->nchunks, distinct);
	CHECK(distinct <= 2);
	CHECK_EQ(s3.chunks - s2.chunks, distinct);
	CHECK_EQ(s3.stored_bytes - s2.stored_bytes, distinct_len);
	CHECK(s3.pack_bytes - s2.pack_bytes <= distinct_len + PACK_SLACK);
	CHECK_EQ(s3.logical_bytes, 2 * len + zlen);
	check_read(t.st, fz, zeros, 0, zlen, buf);
	verify_clean(t.st);

	/* dropping it leaves exactly its distinct chunks dead */
	if (!CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, idz), 0) || !get_stats(t.st, &s4))
		goto out;
	CHECK_EQ(s4.dead_chunks, distinct);
	CHECK_EQ(s4.chunks, s3.chunks);
	CHECK_EQ(s4.files, 2);
	CHECK_EQ(s4.logical_bytes, 2 * len);
	CHECK_RC(file_get_rc(t.st, idz), -ENOENT);
	verify_clean(t.st);
out:
	mrfs_file_free(fz);
	mrfs_file_free(f2);
	mrfs_file_free(f1);
	tstore_free(&t);
	free(zeros);
	free(buf);
}

/* ---- 4. an insertion near the start -------------------------------------- */

/*
 * In a new store, store A, then B: A with the @del bytes at @at replaced
 * by @ins new ones. Only B's first chunk or two may be new; the rest are
 * A's.
 */
static void check_edit(const uint8_t *a, size_t alen, size_t at, size_t del, size_t ins,
		       struct unit_rng *rng)
{
	const size_t blen = alen - del + ins;
	struct mrfs_file *fa = NULL, *fb = NULL;
	uint64_t ida = 0, idb = 0, unshared_len = 0;
	struct mrfs_store_stats s1, s2;
	uint32_t shared = 0, i;
	struct tstore t;
	uint8_t *b;

	b = malloc(blen);
	if (!CHECK(b))
		return;
	memcpy(b, a, at);
	unit_fill(400 + ins, 0, b + at, ins);
	memcpy(b + at + ins, a + at + del, alen - at - del);
	if (!tstore_new(&t, NULL) || store_uneven(t.st, a, alen, &ida) || !get_stats(t.st, &s1) ||
	    store_buf(t.st, b, blen, uneven + 1, ARRAY_SIZE(uneven) - 1, &idb) ||
	    !get_stats(t.st, &s2))
		goto out;
	fa = get_file(t.st, ida);
	fb = get_file(t.st, idb);
	if (!fa || !fb || !check_layout(t.st, fb, b, blen))
		goto out;

	/* the tails are the same chunks */
	while (shared < fa->nchunks && shared < fb->nchunks &&
	       !memcmp(fa->chunks[fa->nchunks - 1 - shared].key,
		       fb->chunks[fb->nchunks - 1 - shared].key, MRFS_KEY_LEN))
		shared++;
	for (i = 0; i < fb->nchunks - shared; i++)
		unshared_len += fb->chunks[i].len;
	NOTE("%zu bytes at %zu replaced by %zu: A has %u chunks, B %u, %u "
	     "shared at the end; %" PRIu64 " bytes of B are new",
	     del, at, ins, fa->nchunks, fb->nchunks, shared, unshared_len);
	CHECK(fb->nchunks - shared <= 2);
	CHECK(fa->nchunks - shared <= 2);
	CHECK(s2.stored_bytes - s1.stored_bytes < 2 * MRFS_CHUNK_MAX + ins);
	CHECK_EQ(s2.stored_bytes - s1.stored_bytes, unshared_len);
	CHECK_EQ(s2.chunks - s1.chunks, fb->nchunks - shared);
	CHECK_EQ(s2.logical_bytes, alen + blen);
	check_reads(t.st, fb, b, rng);
	verify_clean(t.st);
out:
	mrfs_file_free(fb);
	mrfs_file_free(fa);
	tstore_free(&t);
	free(b);
}

static void test_insert(void)
{
	const size_t alen = 20 * MiB;
	struct unit_rng rng;
	uint8_t *a;

	unit_rng_init(&rng, 400);
	a = malloc(alen);
	if (!CHECK(a))
		return;
	unit_fill(4, 0, a, alen);
	/* 100 bytes inserted at 1000 */
	check_edit(a, alen, 1000, 0, 100, &rng);
	/* odd shifts: one byte inserted; three deleted */
	check_edit(a, alen, 1000, 0, 1, &rng);
	check_edit(a, alen, 5000, 3, 0, &rng);
	free(a);
}

/* ---- 5. reference counts ------------------------------------------------- */

static void test_refs(void)
{
	const size_t len = 6 * MiB;
	struct mrfs_store_stats s0, s1, s2, s3, s4, s5;
	uint64_t id = 0, id2 = 0, id3 = 0, id4 = 0;
	struct mrfs_file *f = NULL, *g = NULL;
	struct mrfs_txn *txn;
	struct unit_rng rng;
	struct tstore t;
	uint32_t n;
	uint8_t *buf;

	unit_rng_init(&rng, 500);
	buf = malloc(len);
	if (!CHECK(buf))
		return;
	unit_fill(6, 0, buf, len);
	if (!tstore_new(&t, NULL))
		goto out;

	if (store_uneven(t.st, buf, len, &id))
		goto out;
	f = get_file(t.st, id);
	if (!f || !get_stats(t.st, &s0))
		goto out;
	n = f->nchunks;
	CHECK(n >= 2);
	CHECK_EQ(s0.chunks, n);
	CHECK_EQ(s0.dead_chunks, 0);
	CHECK_EQ(s0.files, 1);
	verify_clean(t.st);

	/* an unref that is aborted changes nothing */
	if (CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0)) {
		CHECK_RC(mrfs_store_file_unref(txn, id), 0);
		CHECK_RC(mrfs_store_file_get(txn, id, &g), -ENOENT);
		mrfs_txn_abort(txn);
	}
	CHECK_RC(file_get_rc(t.st, id), 0);

	/* the last unref deletes the file; its chunks stay, dead */
	if (!CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, id), 0) || !get_stats(t.st, &s1))
		goto out;
	CHECK_RC(file_get_rc(t.st, id), -ENOENT);
	CHECK_EQ(s1.dead_chunks, n);
	CHECK_EQ(s1.chunks, s0.chunks);
	CHECK_EQ(s1.stored_bytes, s0.stored_bytes);
	CHECK_EQ(s1.files, 0);
	CHECK_EQ(s1.logical_bytes, 0);
	verify_clean(t.st);
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, id), -ENOENT);
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_ref, id), -ENOENT);
	CHECK_RC(file_get_rc(t.st, 0), -ENOENT);
	CHECK_RC(file_get_rc(t.st, id + 1000), -ENOENT);
	CHECK_RC(file_get_rc(t.st, UINT64_MAX), -ENOENT);

	/* the same content again revives the chunks without writing them */
	if (store_buf(t.st, buf, len, NULL, 0, &id2) || !get_stats(t.st, &s2))
		goto out;
	CHECK_EQ(s2.dead_chunks, 0);
	CHECK_EQ(s2.chunks, s0.chunks);
	CHECK_EQ(s2.stored_bytes, s0.stored_bytes);
	CHECK_EQ(s2.pack_bytes, s1.pack_bytes);
	CHECK_EQ(s2.files, 1);
	g = get_file(t.st, id2);
	if (g) {
		check_layout(t.st, g, buf, len);
		check_reads(t.st, g, buf, &rng);
	}
	verify_clean(t.st);

	/* one more reference: two unrefs to delete */
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_ref, id2), 0);
	if (get_stats(t.st, &s3)) {
		/* still one file, used twice: logical bytes count each use */
		CHECK_EQ(s3.files, 1);
		CHECK_EQ(s3.logical_bytes, 2 * len);
	}
	verify_clean(t.st);
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, id2), 0);
	CHECK_RC(file_get_rc(t.st, id2), 0);
	if (get_stats(t.st, &s3)) {
		CHECK_EQ(s3.dead_chunks, 0);
		CHECK_EQ(s3.files, 1);
	}
	verify_clean(t.st);
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, id2), 0);
	CHECK_RC(file_get_rc(t.st, id2), -ENOENT);
	if (get_stats(t.st, &s4)) {
		CHECK_EQ(s4.dead_chunks, n);
		CHECK_EQ(s4.files, 0);
	}
	verify_clean(t.st);

	/* two files sharing chunks: dropping one kills nothing */
	if (store_uneven(t.st, buf, len, &id3) || store_buf(t.st, buf, len, NULL, 0, &id4))
		goto out;
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, id3), 0);
	if (get_stats(t.st, &s5)) {
		CHECK_EQ(s5.dead_chunks, 0);
		CHECK_EQ(s5.files, 1);
		CHECK_EQ(s5.pack_bytes, s1.pack_bytes);
	}
	mrfs_file_free(g);
	g = get_file(t.st, id4);
	if (g)
		check_reads(t.st, g, buf, &rng);
	verify_clean(t.st);
out:
	mrfs_file_free(g);
	mrfs_file_free(f);
	tstore_free(&t);
	free(buf);
}

/* ---- 6. bit rot ---------------------------------------------------------- */

/*
 * The pack file in <@dir>/packs holding @want at @off (found by its
 * content, so no pack naming is assumed); its path in @path. Returns the
 * number of regular files in packs/ (@path empty when none matched).
 */
static int find_pack(const char *dir, uint64_t off, const uint8_t *want, size_t len, char *path,
		     size_t size)
{
	char packs[PATH_MAX], p[PATH_MAX];
	struct dirent *de;
	struct stat sb;
	uint8_t *got;
	int count = 0;
	DIR *d;

	path[0] = '\0';
	got = malloc(len);
	if (!got || !path_join(packs, sizeof(packs), dir, "packs"))
		goto out_free;
	d = opendir(packs);
	if (!d)
		goto out_free;
	while ((de = readdir(d))) {
		int fd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!path_join(p, sizeof(p), packs, de->d_name) || stat(p, &sb) ||
		    !S_ISREG(sb.st_mode))
			continue;
		count++;
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (pread(fd, got, len, off) == (ssize_t)len && !memcmp(got, want, len) &&
		    strlen(p) < size)
			memcpy(path, p, strlen(p) + 1);
		close(fd);
	}
	closedir(d);
out_free:
	free(got);
	return count;
}

/* Flip the bits of the byte at @off of file @path. */
static bool flip_byte(const char *path, uint64_t off)
{
	uint8_t c;
	int fd;
	bool ok;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (!CHECK(fd >= 0))
		return false;
	ok = CHECK_EQ(pread(fd, &c, 1, off), 1);
	c ^= 0xff;
	ok = ok && CHECK_EQ(pwrite(fd, &c, 1, off), 1);
	close(fd);
	return ok;
}

static void test_bitrot(void)
{
	const size_t alen = 12 * MiB, blen = 2 * MiB;
	struct mrfs_file *fa = NULL, *fb = NULL;
	struct mrfs_segment segs[4];
	char pack[PATH_MAX];
	struct mrfs_chunk c;
	uint64_t ida = 0, idb = 0;
	struct vlog v = {0};
	uint8_t *a, *b, *out;
	struct tstore t;
	int n, rc;
	uint32_t k;

	a = malloc(alen);
	b = malloc(blen);
	out = malloc(alen);
	if (!CHECK(a && b && out))
		goto out_free;
	unit_fill(7, 0, a, alen);
	unit_fill(8, 0, b, blen);
	if (!tstore_new(&t, NULL))
		goto out;
	if (store_uneven(t.st, a, alen, &ida) || store_uneven(t.st, b, blen, &idb))
		goto out;
	fa = get_file(t.st, ida);
	if (!fa || !CHECK(fa->nchunks >= 3))
		goto out;
	k = fa->nchunks / 2;
	c = fa->chunks[k];

	/* damage the middle chunk of A, store closed */
	mrfs_store_close(t.st);
	t.st = NULL;
	CHECK(find_pack(t.dir, c.pack_off, a + c.off, c.len, pack, sizeof(pack)) >= 1);
	if (!CHECK(pack[0]) || !flip_byte(pack, c.pack_off + c.len / 2))
		goto out;
	if (!tstore_reopen(&t, NULL))
		goto out;
	mrfs_file_free(fa);
	fa = get_file(t.st, ida);
	fb = get_file(t.st, idb);
	if (!fa || !fb)
		goto out;

	/* a read of an undamaged part of the damaged chunk is an error */
	CHECK_RC(mrfs_store_read(t.st, fa, c.off + 10, 100, out), -EIO);
	CHECK_RC(mrfs_store_read(t.st, fa, c.off + c.len / 2, 1, out), -EIO);
	CHECK_RC(mrfs_store_read(t.st, fa, c.off + 10, 100, out), -EIO);
	/* so is one that only ends in it */
	CHECK_RC(mrfs_store_read(t.st, fa, c.off - 5, 10, out), -EIO);
	CHECK_RC(mrfs_store_read(t.st, fa, 0, alen, out), -EIO);
	n = -1;
	rc = mrfs_store_segments(t.st, fa, c.off, 1, segs, 4, &n);
	CHECK_RC(rc, -EIO);

	/* the other chunks read right */
	check_read(t.st, fa, a, 0, c.off, out);
	check_read(t.st, fa, a, fa->chunks[k - 1].off, fa->chunks[k - 1].len, out);
	check_read(t.st, fa, a, c.off + c.len, alen - c.off - c.len, out);
	check_segments(t.st, fa, a, 0, fa->chunks[0].len, 4, out);
	check_segments(t.st, fa, a, c.off + c.len, 4096, 4, out);
	check_read(t.st, fb, b, 0, blen, out);
	check_segments(t.st, fb, b, 0, blen, fb->nchunks, out);

	/* verify names A, and not B */
	rc = mrfs_store_verify(t.st, vlog_fn, &v);
	CHECK(rc > 0);
	CHECK(v.calls > 0);
	CHECK(vlog_has(&v, ida));
	CHECK(!vlog_has(&v, idb));
out:
	mrfs_file_free(fb);
	mrfs_file_free(fa);
	tstore_free(&t);
out_free:
	free(out);
	free(b);
	free(a);
}

/* ---- 7. a full map ------------------------------------------------------- */

struct tfile {
	uint64_t id;
	uint64_t seed;
	uint64_t size;
};

/* Every file of @files reads back as its stream. */
static bool check_files(struct mrfs_store *st, const struct tfile *files, size_t n)
{
	uint8_t *exp = NULL;
	size_t i, cap = 0;
	bool ok = true;

	for (i = 0; ok && i < n; i++) {
		struct mrfs_file *f;
		uint8_t *p;

		if (files[i].size > cap) {
			cap = files[i].size;
			p = realloc(exp, cap);
			if (!CHECK(p))
				break;
			exp = p;
		}
		unit_fill(files[i].seed, 0, exp, files[i].size);
		f = get_file(st, files[i].id);
		ok = f && check_layout(st, f, exp, files[i].size);
		if (ok) {
			uint8_t *out = malloc(files[i].size + 1);

			ok = CHECK(out) && check_read(st, f, exp, 0, files[i].size + 1, out);
			free(out);
		}
		mrfs_file_free(f);
		if (!ok)
			FAIL("file %zu of %zu (id %" PRIu64 ") is wrong", i, n, files[i].id);
	}
	free(exp);
	return ok;
}

static void test_mapfull(void)
{
	const uint64_t flen = 4096, max_map = 16 * MiB;
	struct mrfs_store_options opts = {0};
	struct tfile *files = NULL, extra;
	struct mrfs_store_stats s;
	const char *step = "";
	uint64_t map, last = 0;
	struct mrfs_txn *txn;
	struct tstore t;
	size_t n = 0;
	int rc = 0;

	memset(&t, 0, sizeof(t));
	for (map = 64 * KiB; map <= max_map; map *= 2) {
		size_t limit = map / 32;

		opts.map_size = map;
		free(files);
		files = calloc(limit, sizeof(*files));
		if (!CHECK(files))
			goto out;
		if (unit_tmpdir_new(t.tmp, sizeof(t.tmp)) ||
		    !CHECK(path_join(t.dir, sizeof(t.dir), t.tmp, "store")))
			goto out;
		rc = mrfs_store_open(t.dir, &opts, &t.st);
		if (rc) {
			NOTE("map_size %" PRIu64 ": open: %s", map, strerror(-rc));
			tstore_free(&t);
			continue;
		}
		for (n = 0; n < limit; n++) {
			files[n].seed = 7000 + n;
			files[n].size = flen;
			rc = store_stream(t.st, files[n].seed, flen, flen, &files[n].id, &step);
			if (rc)
				break;
		}
		last = files[n < limit ? n : 0].id;
		if (!rc) {
			FAIL("map_size %" PRIu64 ": %zu files did not fill it", map, n);
			goto out;
		}
		if (n >= 8)
			break;
		NOTE("map_size %" PRIu64 ": only %zu files before %s: %s", map, n, step,
		     strerror(-rc));
		tstore_free(&t);
	}
	if (!CHECK(map <= max_map))
		goto out;
	NOTE("map_size %" PRIu64 ": %zu files, then %s: %s", map, n, step, strerror(-rc));
	if (!CHECK_RC(rc, -ENOSPC))
		FAIL("the error came from %s", step);
	if (!strcmp(step, "mrfs_txn_commit"))
		CHECK_RC(file_get_rc(t.st, last), -ENOENT);

	/* the store is still whole, and can begin another write */
	check_files(t.st, files, n);
	if (get_stats(t.st, &s))
		CHECK_EQ(s.files, n);
	verify_clean(t.st);
	if (CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		mrfs_txn_abort(txn);

	/* and after a reopen */
	if (!tstore_reopen(&t, &opts))
		goto out;
	check_files(t.st, files, n);
	verify_clean(t.st);

	/* a larger map takes more */
	if (!tstore_reopen(&t, NULL))
		goto out;
	extra.seed = 8000;
	extra.size = 3 * flen;
	rc = store_stream(t.st, extra.seed, extra.size, flen, &extra.id, &step);
	if (!CHECK_RC(rc, 0))
		FAIL("in a larger map, %s failed", step);
	else
		check_files(t.st, &extra, 1);
	if (get_stats(t.st, &s))
		CHECK_EQ(s.files, n + 1);
	verify_clean(t.st);
out:
	tstore_free(&t);
	free(files);
}

/* ---- 8. reopening -------------------------------------------------------- */

/* Read the whole of small file @path into @buf (room for @size); its
 * length, or -1. */
static ssize_t slurp(const char *path, uint8_t *buf, size_t size)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size);
	close(fd);
	return n;
}

/* Replace the content of file @path with @len bytes of @buf. */
static bool spit(const char *path, const uint8_t *buf, size_t len)
{
	bool ok;
	int fd;

	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, buf, len) == (ssize_t)len;
	return !close(fd) && ok;
}

/* The mode bits of @dir/@name when it is of type @type, else -1. */
static int mode_of(const char *dir, const char *name, mode_t type)
{
	char p[PATH_MAX];
	struct stat sb;

	if (!path_join(p, sizeof(p), dir, name) || lstat(p, &sb) || (sb.st_mode & S_IFMT) != type)
		return -1;
	return sb.st_mode & 07777;
}

/* The number and total size of the regular files in <@dir>/packs. */
static bool packs_on_disk(const char *dir, uint64_t *count, uint64_t *bytes)
{
	char packs[PATH_MAX], p[PATH_MAX];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	*count = *bytes = 0;
	if (!path_join(packs, sizeof(packs), dir, "packs"))
		return false;
	d = opendir(packs);
	if (!CHECK(d))
		return false;
	while ((de = readdir(d))) {
		if (path_join(p, sizeof(p), packs, de->d_name) && !stat(p, &sb) &&
		    S_ISREG(sb.st_mode)) {
			++*count;
			*bytes += sb.st_size;
		}
	}
	closedir(d);
	return true;
}

static bool stats_equal(const struct mrfs_store_stats *a, const struct mrfs_store_stats *b)
{
	bool ok = true;

	ok &= CHECK_EQ(a->logical_bytes, b->logical_bytes);
	ok &= CHECK_EQ(a->stored_bytes, b->stored_bytes);
	ok &= CHECK_EQ(a->chunks, b->chunks);
	ok &= CHECK_EQ(a->dead_chunks, b->dead_chunks);
	ok &= CHECK_EQ(a->files, b->files);
	ok &= CHECK_EQ(a->packs, b->packs);
	ok &= CHECK_EQ(a->pack_bytes, b->pack_bytes);
	return ok;
}

static void test_reopen(void)
{
	static const char hello[] = "hello, chunk";
	uint8_t k1[MRFS_KEY_LEN], k2[MRFS_KEY_LEN], k3[MRFS_KEY_LEN];
	uint8_t sec1[2 * MRFS_SECRET_LEN], sec2[2 * MRFS_SECRET_LEN];
	struct tfile files[3] = {
	    {.seed = 9, .size = 3 * MiB + 7},
	    {.seed = 10, .size = 100 * KiB},
	    {.seed = 11, .size = 1},
	};
	struct mrfs_store_options ro = {.read_only = true};
	struct mrfs_store_stats s1, s2, s3;
	char secret[PATH_MAX], nothing[PATH_MAX];
	char hex[2 * MRFS_KEY_LEN + 1], want[2 * MRFS_KEY_LEN + 1];
	struct mrfs_store *other = NULL;
	uint64_t t1, t2, count, bytes;
	const char *step = "";
	struct mrfs_txn *txn;
	struct tstore t, u;
	struct stat sb;
	ssize_t slen;
	size_t i;
	int rc;

	memset(&u, 0, sizeof(u));
	if (!tstore_new(&t, NULL))
		goto out;
	CHECK(!strcmp(mrfs_store_dir(t.st), t.dir));
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		rc = store_stream(t.st, files[i].seed, files[i].size, 65536 + 1, &files[i].id,
				  &step);
		if (!CHECK_RC(rc, 0)) {
			FAIL("storing: %s failed", step);
			goto out;
		}
	}
	CHECK(files[0].id != files[1].id && files[1].id != files[2].id &&
	      files[0].id != files[2].id);
	if (!get_stats(t.st, &s1))
		goto out;
	CHECK_EQ(s1.files, 3);
	CHECK_EQ(s1.logical_bytes, 3 * MiB + 7 + 100 * KiB + 1);
	CHECK(s1.packs >= 1);
	CHECK(s1.pack_bytes >= s1.stored_bytes);
	t1 = mrfs_store_last_txnid(t.st);
	CHECK(t1 >= 3);
	mrfs_store_chunk_key(t.st, hello, sizeof(hello), k1);
	mrfs_store_chunk_key(t.st, hello, sizeof(hello) - 1, k2);
	CHECK(memcmp(k1, k2, MRFS_KEY_LEN) != 0);

	/* the directory as documented */
	mrfs_store_close(t.st);
	t.st = NULL;
	CHECK_EQ(mode_of(t.tmp, "store", S_IFDIR), 0700);
	CHECK_EQ(mode_of(t.dir, "secret", S_IFREG), 0600);
	CHECK(mode_of(t.dir, "data.mdb", S_IFREG) >= 0);
	CHECK(mode_of(t.dir, "packs", S_IFDIR) >= 0);
	CHECK(mode_of(t.dir, "tmp", S_IFDIR) >= 0);
	if (!CHECK(path_join(secret, sizeof(secret), t.dir, "secret")))
		goto out;
	slen = slurp(secret, sec1, sizeof(sec1));
	CHECK_EQ(slen, MRFS_SECRET_LEN);
	memset(sec2, 0, sizeof(sec2));
	CHECK(memcmp(sec1, sec2, MRFS_SECRET_LEN) != 0);
	if (packs_on_disk(t.dir, &count, &bytes)) {
		CHECK_EQ(count, s1.packs);
		CHECK_EQ(bytes, s1.pack_bytes);
	}

	/* read-only: everything readable, nothing writable */
	if (CHECK_RC(mrfs_store_open(t.dir, &ro, &t.st), 0)) {
		CHECK_RC(mrfs_txn_begin(t.st, true, &txn), -EROFS);
		check_files(t.st, files, ARRAY_SIZE(files));
		if (get_stats(t.st, &s2))
			stats_equal(&s2, &s1);
		mrfs_store_close(t.st);
		t.st = NULL;
	}
	if (CHECK(path_join(nothing, sizeof(nothing), t.tmp, "nothing"))) {
		CHECK_RC(mrfs_store_open(nothing, &ro, &other), -ENOENT);
		CHECK(stat(nothing, &sb) < 0 && errno == ENOENT);
	}

	/* read-write again: the same files, stats, secret and keys */
	if (!CHECK_RC(mrfs_store_open(t.dir, NULL, &t.st), 0))
		goto out;
	check_files(t.st, files, ARRAY_SIZE(files));
	if (get_stats(t.st, &s2))
		stats_equal(&s2, &s1);
	t2 = mrfs_store_last_txnid(t.st);
	CHECK(t2 >= t1);
	mrfs_store_chunk_key(t.st, hello, sizeof(hello), k3);
	CHECK_MEM(k3, k1, MRFS_KEY_LEN);
	slen = slurp(secret, sec2, sizeof(sec2));
	CHECK_EQ(slen, MRFS_SECRET_LEN);
	CHECK_MEM(sec2, sec1, MRFS_SECRET_LEN);
	rc = store_stream(t.st, 12, 5000, 5000, &files[0].id, &step);
	if (CHECK_RC(rc, 0)) {
		CHECK(mrfs_store_last_txnid(t.st) > t2);
		if (get_stats(t.st, &s3))
			CHECK_EQ(s3.files, 4);
	}

	/* another store has another secret, so other keys */
	if (tstore_new(&u, NULL)) {
		mrfs_store_chunk_key(u.st, hello, sizeof(hello), k3);
		CHECK(memcmp(k3, k1, MRFS_KEY_LEN) != 0);
	}

	/* keys in hex */
	memset(hex, 'x', sizeof(hex));
	mrfs_key_hex(k1, hex);
	for (i = 0; i < MRFS_KEY_LEN; i++)
		snprintf(want + 2 * i, 3, "%02x", k1[i]);
	CHECK_EQ(strlen(hex), 2 * MRFS_KEY_LEN);
	if (!CHECK(!strcasecmp(hex, want)))
		FAIL("mrfs_key_hex gave %s, expected %s", hex, want);

	/* a damaged secret is refused; the right one opens again */
	mrfs_store_close(t.st);
	t.st = NULL;
	if (CHECK(spit(secret, sec1, 5))) {
		rc = mrfs_store_open(t.dir, NULL, &t.st);
		CHECK_RC(rc, -EIO);
		if (rc == 0) {
			mrfs_store_close(t.st);
			t.st = NULL;
		}
	}
	if (CHECK(spit(secret, sec1, MRFS_SECRET_LEN)) &&
	    CHECK_RC(mrfs_store_open(t.dir, NULL, &t.st), 0))
		check_files(t.st, files + 1, 2);
out:
	tstore_free(&u);
	tstore_free(&t);
}

/* ---- 9. readers and a writer at once ------------------------------------- */

#define MAX_TFILES 512
#define READ_MAX   (2 * MiB)

struct shared {
	struct mrfs_store *st;
	pthread_mutex_t lock;
	struct tfile files[MAX_TFILES];
	int nfiles;
	double deadline;
	atomic_int stop;
	atomic_long reads;
	atomic_long bytes;
	atomic_long errors;
	char first_error[256];
};

struct reader {
	struct shared *sh;
	int n;
};

static void shared_error(struct shared *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void shared_error(struct shared *sh, const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&sh->errors, 1);
	pthread_mutex_lock(&sh->lock);
	if (!sh->first_error[0]) {
		va_start(ap, fmt);
		vsnprintf(sh->first_error, sizeof(sh->first_error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&sh->lock);
}

/* Read [@off, +@len) of @tf through @f and compare. */
static void reader_check(struct shared *sh, const struct mrfs_file *f, const struct tfile *tf,
			 uint64_t off, size_t len, bool segments, uint8_t *out, uint8_t *exp)
{
	size_t want = expect_len(f, off, len), got = 0;
	struct mrfs_segment segs[8];
	ssize_t n;
	int i, ns;

	unit_fill(tf->seed, off, exp, want);
	if (!segments) {
		n = mrfs_store_read(sh->st, f, off, len, out);
		if (n != (ssize_t)want) {
			shared_error(sh,
				     "file %" PRIu64 ": read(%" PRIu64
				     ", %zu) returned %zd, expected %zu",
				     tf->id, off, len, n, want);
			return;
		}
		got = want;
	} else {
		n = mrfs_store_segments(sh->st, f, off, len, segs, 8, &ns);
		if (n) {
			shared_error(sh,
				     "file %" PRIu64 ": segments(%" PRIu64 ", %zu) returned %zd",
				     tf->id, off, len, n);
			return;
		}
		for (i = 0; i < ns; i++) {
			if (got + segs[i].len > want ||
			    pread(segs[i].fd, out + got, segs[i].len, segs[i].off) !=
				(ssize_t)segs[i].len) {
				shared_error(
				    sh, "file %" PRIu64 ": bad segment %d of (%" PRIu64 ", %zu)",
				    tf->id, i, off, len);
				return;
			}
			got += segs[i].len;
		}
		if (!ns && want) {
			shared_error(sh, "file %" PRIu64 ": no segments", tf->id);
			return;
		}
	}
	if (memcmp(out, exp, got))
		shared_error(sh, "file %" PRIu64 ": wrong bytes at (%" PRIu64 ", %zu)", tf->id, off,
			     len);
	atomic_fetch_add(&sh->reads, 1);
	atomic_fetch_add(&sh->bytes, got);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct shared *sh = r->sh;
	struct unit_rng rng;
	uint8_t *out, *exp;

	unit_rng_init(&rng, 900 + r->n);
	out = malloc(READ_MAX);
	exp = malloc(READ_MAX);
	if (!out || !exp) {
		shared_error(sh, "reader %d: out of memory", r->n);
		goto out;
	}
	while (!atomic_load(&sh->stop)) {
		struct mrfs_file *f = NULL;
		struct mrfs_txn *txn;
		struct tfile tf;
		int rc, k;

		pthread_mutex_lock(&sh->lock);
		tf = sh->files[unit_rng_below(&rng, sh->nfiles)];
		pthread_mutex_unlock(&sh->lock);
		rc = mrfs_txn_begin(sh->st, false, &txn);
		if (rc) {
			shared_error(sh, "reader %d: txn_begin: %d", r->n, rc);
			break;
		}
		rc = mrfs_store_file_get(txn, tf.id, &f);
		mrfs_txn_abort(txn);
		if (rc) {
			shared_error(sh, "reader %d: file_get(%" PRIu64 "): %d", r->n, tf.id, rc);
			break;
		}
		if (f->size != tf.size)
			shared_error(sh, "file %" PRIu64 ": size %" PRIu64 ", expected %" PRIu64,
				     tf.id, f->size, tf.size);
		for (k = 0; k < 8 && f->size == tf.size; k++) {
			uint64_t off = unit_rng_below(&rng, tf.size);
			size_t len = 1 + unit_rng_below(&rng, k % 2 ? 4096 : READ_MAX);

			reader_check(sh, f, &tf, off, len, k % 4 == 3, out, exp);
		}
		mrfs_file_free(f);
	}
out:
	free(exp);
	free(out);
	return NULL;
}

static void *writer_main(void *arg)
{
	struct shared *sh = arg;
	struct unit_rng rng;
	uint64_t k;

	unit_rng_init(&rng, 999);
	for (k = 0; unit_now() < sh->deadline; k++) {
		struct tfile tf = {
		    .seed = 9000 + k,
		    .size = 1 + unit_rng_below(&rng, 3 * MiB),
		};
		const char *step;
		int rc;

		rc = store_stream(sh->st, tf.seed, tf.size, 65536 + 17, &tf.id, &step);
		if (rc) {
			shared_error(sh, "writer: %s: %d", step, rc);
			break;
		}
		pthread_mutex_lock(&sh->lock);
		if (sh->nfiles < MAX_TFILES)
			sh->files[sh->nfiles++] = tf;
		pthread_mutex_unlock(&sh->lock);
	}
	atomic_store(&sh->stop, 1);
	return NULL;
}

static void test_threads(void)
{
	static const uint64_t sizes[] = {5 * MiB, 3 * MiB + 1, 700 * KiB, 1};
	struct reader readers[4];
	pthread_t rt[4], wt;
	struct shared *sh;
	const char *step;
	struct tstore t;
	int i, nr = 0, nfirst;
	bool writer = false;

	sh = calloc(1, sizeof(*sh));
	if (!CHECK(sh))
		return;
	pthread_mutex_init(&sh->lock, NULL);
	if (!tstore_new(&t, NULL))
		goto out;
	sh->st = t.st;
	for (i = 0; i < (int)ARRAY_SIZE(sizes); i++) {
		struct tfile *tf = &sh->files[i];

		tf->seed = 800 + i;
		tf->size = sizes[i];
		if (!CHECK_RC(store_stream(t.st, tf->seed, tf->size, 1 * MiB, &tf->id, &step), 0))
			goto out;
		sh->nfiles++;
	}
	nfirst = sh->nfiles;

	sh->deadline = unit_now() + 1.5;
	for (i = 0; i < 4; i++) {
		readers[i].sh = sh;
		readers[i].n = i;
		if (!CHECK_RC(pthread_create(&rt[i], NULL, reader_main, &readers[i]), 0))
			break;
		nr++;
	}
	writer = CHECK_RC(pthread_create(&wt, NULL, writer_main, sh), 0);
	if (!writer)
		atomic_store(&sh->stop, 1);
	if (writer)
		pthread_join(wt, NULL);
	for (i = 0; i < nr; i++)
		pthread_join(rt[i], NULL);

	NOTE("%ld reads (%ld MiB), %d files written, %ld errors", atomic_load(&sh->reads),
	     atomic_load(&sh->bytes) >> 20, sh->nfiles - nfirst, atomic_load(&sh->errors));
	if (!CHECK_EQ(atomic_load(&sh->errors), 0))
		FAIL("first error: %s", sh->first_error);
	CHECK(atomic_load(&sh->reads) >= 100);
	CHECK(sh->nfiles - nfirst >= 2);
	check_files(t.st, sh->files, sh->nfiles);
	verify_clean(t.st);
out:
	tstore_free(&t);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

/* ---- 10. the key/value layer --------------------------------------------- */

struct seen {
	int n;
	int stop_at; /* return 1 at this record (0: never) */
	int fail_at; /* return -EBUSY at this record (0: never) */
	char keys[16][32];
	size_t klen[16];
};

static int seen_fn(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct seen *s = ctx;

	if (s->n < 16 && key.len < sizeof(s->keys[0])) {
		memcpy(s->keys[s->n], key.data, key.len);
		s->klen[s->n] = key.len;
	}
	s->n++;
	if (s->fail_at && s->n == s->fail_at)
		return -EBUSY;
	return s->stop_at && s->n == s->stop_at;
}

/* A scan (@what) saw exactly the @n keys of @want, in that order. */
static bool seen_is(const struct seen *s, const char *const *want, int n, const char *what)
{
	bool ok = CHECK_EQ(s->n, n);
	int i;

	for (i = 0; ok && i < n && i < 16; i++) {
		size_t len = strlen(want[i]);

		ok = CHECK_EQ(s->klen[i], len) && CHECK_MEM(s->keys[i], want[i], len);
		if (!ok)
			FAIL("scan: record %d is not \"%s\"", i, want[i]);
	}
	if (!ok)
		FAIL("in the scan %s", what);
	return ok;
}

/* @txn has @key in @db with value @val (a string). */
static bool has_kv(struct mrfs_txn *txn, enum mrfs_db db, const char *key, const char *val)
{
	struct mrfs_val v = {0};
	bool ok;

	ok = CHECK_RC(mrfs_kv_get(txn, db, key, strlen(key), &v), 0);
	ok = ok && CHECK_EQ(v.len, strlen(val));
	ok = ok && CHECK_MEM(v.data, val, v.len);
	if (!ok)
		FAIL("expected %s = %s", key, val);
	return ok;
}

static int put_str(struct mrfs_txn *txn, enum mrfs_db db, const char *key, const char *val)
{
	return mrfs_kv_put(txn, db, key, strlen(key), val, strlen(val));
}

static void be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void test_kv(void)
{
	static const char *const b_all[] = {"b1", "b2", "b\xff\x01", "b\xff\xff"};
	static const char *const all[] = {"b1", "b2", "b\xff\x01", "b\xff\xff", "c1"};
	struct mrfs_val k, v;
	struct mrfs_txn *txn;
	uint8_t big[600], ek[8];
	struct tstore t;
	struct seen s;
	uint64_t id;
	int rc;

	if (!tstore_new(&t, NULL))
		goto out;

	/* counters */
	if (!CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		goto out;
	id = 0;
	CHECK_RC(mrfs_kv_next_id(txn, "t", &id), 0);
	CHECK_EQ(id, 1);
	CHECK_RC(mrfs_kv_next_id(txn, "t", &id), 0);
	CHECK_EQ(id, 2);
	CHECK_RC(mrfs_kv_next_id(txn, "u", &id), 0);
	CHECK_EQ(id, 1);

	/* put, get, replace, delete */
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "a1", "x"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b1", "y1"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b2", "y2"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b\xff\x01", "y3"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b\xff\xff", "y4"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "c1", "z"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_VERSIONS, "b1", "other db"), 0);
	has_kv(txn, MRFS_DB_MODELS, "b1", "y1");
	has_kv(txn, MRFS_DB_VERSIONS, "b1", "other db");
	CHECK_RC(mrfs_kv_get(txn, MRFS_DB_MODELS, "zz", 2, &v), -ENOENT);
	CHECK_RC(mrfs_kv_get(txn, MRFS_DB_NODES, "b1", 2, &v), -ENOENT);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b1", "a longer value"), 0);
	has_kv(txn, MRFS_DB_MODELS, "b1", "a longer value");
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "b1", "y1"), 0);
	CHECK_RC(mrfs_kv_del(txn, MRFS_DB_MODELS, "a1", 2), 0);
	CHECK_RC(mrfs_kv_del(txn, MRFS_DB_MODELS, "a1", 2), -ENOENT);
	CHECK_RC(mrfs_kv_get(txn, MRFS_DB_MODELS, "a1", 2, &v), -ENOENT);
	CHECK_RC(mrfs_kv_del(txn, MRFS_DB_ALIASES, "b1", 2), -ENOENT);

	/* key lengths */
	memset(big, 'k', sizeof(big));
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_NODES, big, 0, "v", 1), -EINVAL);
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_NODES, big, 512, "v", 1), -EINVAL);
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_NODES, big, 511, "v", 1), 0);
	CHECK_RC(mrfs_kv_get(txn, MRFS_DB_NODES, big, 511, &v), 0);
	CHECK_RC(mrfs_kv_del(txn, MRFS_DB_NODES, big, 511), 0);

	/* a scan from below its prefix starts at the prefix */
	CHECK_RC(put_str(txn, MRFS_DB_NODES, "a2", "n"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_NODES, "b1", "n"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_NODES, "b2", "n"), 0);
	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_NODES, "b", 1, "a", 1, seen_fn, &s), 0);
	seen_is(&s, b_all, 2, "prefix b from a (below the prefix)");
	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_NODES, "b", 1, "b3", 2, seen_fn, &s), 0);
	CHECK_EQ(s.n, 0);

	/* events by big-endian sequence number */
	be64(ek, 1);
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_EVENTS, ek, 8, "e1", 2), 0);
	be64(ek, 256);
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_EVENTS, ek, 8, "e256", 4), 0);
	be64(ek, 2);
	CHECK_RC(mrfs_kv_put(txn, MRFS_DB_EVENTS, ek, 8, "e2", 2), 0);
	if (!CHECK_RC(mrfs_txn_commit(txn), 0))
		goto out;

	/* what was committed, in a read transaction */
	if (!CHECK_RC(mrfs_txn_begin(t.st, false, &txn), 0))
		goto out;
	has_kv(txn, MRFS_DB_MODELS, "b1", "y1");
	has_kv(txn, MRFS_DB_MODELS, "c1", "z");
	CHECK(put_str(txn, MRFS_DB_MODELS, "ro", "x") < 0);

	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "b", 1, NULL, 0, seen_fn, &s), 0);
	seen_is(&s, b_all, 4, "prefix b");

	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "", 0, NULL, 0, seen_fn, &s), 0);
	seen_is(&s, all, 5, "of everything");

	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "b", 1, "b2", 2, seen_fn, &s), 0);
	seen_is(&s, b_all + 1, 3, "prefix b from b2");

	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "b\xff", 2, NULL, 0, seen_fn, &s), 0);
	seen_is(&s, b_all + 2, 2, "prefix b\\xff");

	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "b", 1, NULL, 0, seen_fn, &s), 0);
	seen_is(&s, b_all, 2, "stopped at 2");

	memset(&s, 0, sizeof(s));
	s.fail_at = 3;
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "b", 1, NULL, 0, seen_fn, &s), -EBUSY);
	CHECK_EQ(s.n, 3);

	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "a", 1, NULL, 0, seen_fn, &s), 0);
	CHECK_EQ(s.n, 0);
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_MODELS, "d", 1, NULL, 0, seen_fn, &s), 0);
	CHECK_EQ(s.n, 0);
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_ALIASES, "", 0, NULL, 0, seen_fn, &s), 0);
	CHECK_EQ(s.n, 0);

	/* the last record under a prefix */
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "b", 1, &k, &v), 0))
		CHECK(k.len == 3 && !memcmp(k.data, "b\xff\xff", 3) && v.len == 2 &&
		      !memcmp(v.data, "y4", 2));
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "b\xff", 2, &k, &v), 0))
		CHECK(k.len == 3 && !memcmp(k.data, "b\xff\xff", 3));
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "b\xff\xff", 3, &k, &v), 0))
		CHECK(k.len == 3 && !memcmp(k.data, "b\xff\xff", 3));
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "b2", 2, &k, &v), 0))
		CHECK(k.len == 2 && !memcmp(k.data, "b2", 2));
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "", 0, &k, &v), 0))
		CHECK(k.len == 2 && !memcmp(k.data, "c1", 2));
	CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "a", 1, &k, &v), -ENOENT);
	CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "d", 1, &k, &v), -ENOENT);
	CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "c2", 2, &k, &v), -ENOENT);
	CHECK_RC(mrfs_kv_last(txn, MRFS_DB_MODELS, "b3", 2, &k, &v), -ENOENT);
	CHECK_RC(mrfs_kv_last(txn, MRFS_DB_ALIASES, "", 0, &k, &v), -ENOENT);
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_EVENTS, "", 0, &k, &v), 0)) {
		be64(ek, 256);
		CHECK(k.len == 8 && !memcmp(k.data, ek, 8) && v.len == 4 &&
		      !memcmp(v.data, "e256", 4));
	}
	mrfs_txn_abort(txn);

	/* an aborted transaction leaves nothing behind */
	if (!CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		goto out;
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "zz", "1"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_MODELS, "c1", "changed"), 0);
	CHECK_RC(mrfs_kv_del(txn, MRFS_DB_MODELS, "b1", 2), 0);
	CHECK_RC(mrfs_kv_next_id(txn, "t", &id), 0);
	CHECK_EQ(id, 3);
	has_kv(txn, MRFS_DB_MODELS, "zz", "1");
	mrfs_txn_abort(txn);

	if (!CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		goto out;
	CHECK_RC(mrfs_kv_get(txn, MRFS_DB_MODELS, "zz", 2, &v), -ENOENT);
	has_kv(txn, MRFS_DB_MODELS, "c1", "z");
	has_kv(txn, MRFS_DB_MODELS, "b1", "y1");
	CHECK_RC(mrfs_kv_next_id(txn, "t", &id), 0);
	CHECK_EQ(id, 3);
	rc = mrfs_txn_commit(txn);
	CHECK_RC(rc, 0);

	/* and all of it survives a reopen */
	if (!tstore_reopen(&t, NULL) || !CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		goto out;
	has_kv(txn, MRFS_DB_MODELS, "b\xff\x01", "y3");
	has_kv(txn, MRFS_DB_VERSIONS, "b1", "other db");
	CHECK_RC(mrfs_kv_next_id(txn, "t", &id), 0);
	CHECK_EQ(id, 4);
	CHECK_RC(mrfs_kv_next_id(txn, "u", &id), 0);
	CHECK_EQ(id, 2);
	mrfs_txn_abort(txn);
	verify_clean(t.st);
out:
	tstore_free(&t);
}

/* A NULL prefix of length 0, as callers listing everything would pass. */
static void test_kv_null(void)
{
	static const char *const all[] = {"k1", "k2"};
	struct mrfs_val k, v;
	struct mrfs_txn *txn;
	struct tstore t;
	struct seen s;

	if (!tstore_new(&t, NULL) || !CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0))
		goto out;
	CHECK_RC(put_str(txn, MRFS_DB_ALIASES, "k1", "1"), 0);
	CHECK_RC(put_str(txn, MRFS_DB_ALIASES, "k2", "2"), 0);
	memset(&s, 0, sizeof(s));
	CHECK_RC(mrfs_kv_scan(txn, MRFS_DB_ALIASES, NULL, 0, NULL, 0, seen_fn, &s), 0);
	seen_is(&s, all, 2, "NULL prefix");
	if (CHECK_RC(mrfs_kv_last(txn, MRFS_DB_ALIASES, NULL, 0, &k, &v), 0))
		CHECK(k.len == 2 && !memcmp(k.data, "k2", 2));
	mrfs_txn_abort(txn);
out:
	tstore_free(&t);
}

/* Writes that end in an abort leave no file and no index entry. */
static void test_aborted(void)
{
	const size_t len = 3 * MiB;
	struct mrfs_store_stats s0, s1;
	struct mrfs_writer *w;
	struct mrfs_file *f = NULL;
	struct mrfs_txn *txn;
	uint64_t id = 0, id2 = 0;
	struct unit_rng rng;
	struct tstore t;
	uint8_t *buf;

	unit_rng_init(&rng, 1100);
	buf = malloc(len);
	if (!CHECK(buf))
		return;
	unit_fill(11, 0, buf, len);
	if (!tstore_new(&t, NULL) || !get_stats(t.st, &s0))
		goto out;
	CHECK_EQ(s0.files, 0);
	CHECK_EQ(s0.chunks, 0);
	CHECK_EQ(s0.logical_bytes, 0);

	/* a stream dropped half way */
	if (CHECK_RC(mrfs_writer_new(t.st, &w), 0)) {
		CHECK_RC(mrfs_writer_write(w, buf, len / 2), 0);
		mrfs_writer_abort(w);
	}
	mrfs_writer_abort(NULL);
	/* a stream finished in a transaction that is aborted */
	if (CHECK_RC(mrfs_txn_begin(t.st, true, &txn), 0)) {
		if (CHECK_RC(mrfs_writer_new(t.st, &w), 0)) {
			CHECK_RC(mrfs_writer_write(w, buf, len), 0);
			CHECK_RC(mrfs_writer_finish(w, txn, &id), 0);
			CHECK_RC(mrfs_store_file_get(txn, id, &f), 0);
			mrfs_file_free(f);
			f = NULL;
		}
		mrfs_txn_abort(txn);
	}
	mrfs_txn_abort(NULL);
	CHECK_RC(file_get_rc(t.st, id), -ENOENT);
	if (get_stats(t.st, &s1)) {
		CHECK_EQ(s1.files, 0);
		CHECK_EQ(s1.chunks, 0);
		CHECK_EQ(s1.stored_bytes, 0);
		CHECK_EQ(s1.logical_bytes, 0);
	}
	verify_clean(t.st);

	/* the same content stored for real is whole */
	if (store_uneven(t.st, buf, len, &id2))
		goto out;
	f = get_file(t.st, id2);
	if (f && check_layout(t.st, f, buf, len))
		check_reads(t.st, f, buf, &rng);
	verify_clean(t.st);
	mrfs_file_free(f);
	mrfs_file_free(NULL);
out:
	tstore_free(&t);
	free(buf);
}

/*
 * Garbage collection: after the only file of a pack is dropped and a second
 * file shares nothing with it, gc removes the dead chunks and the pack; a
 * pack half live is rewritten and its file still reads back, from a record
 * located before gc too (the old pack is gone: reads find the new place).
 */
static void test_gc(void)
{
	const size_t len = 6 * MiB;
	struct mrfs_store_stats s0, s1, s2;
	struct mrfs_gc_stats gs;
	struct mrfs_file *old = NULL, *f = NULL;
	struct unit_rng rng;
	uint64_t a, b, c;
	struct tstore t;
	uint8_t *ba = malloc(len), *bb = malloc(len), *bc = malloc(len);

	unit_rng_init(&rng, 1200);
	if (!CHECK(ba && bb && bc))
		goto out_free;
	unit_fill(21, 0, ba, len);
	unit_fill(22, 0, bb, len);
	unit_fill(23, 0, bc, len);
	if (!tstore_new(&t, NULL))
		goto out;
	/* a and b in the first pack, c in a pack of its own later */
	if (store_uneven(t.st, ba, len, &a) || store_uneven(t.st, bb, len, &b))
		goto out;
	old = get_file(t.st, b);
	if (!tstore_reopen(&t, NULL) || store_uneven(t.st, bc, len, &c))
		goto out;
	if (!get_stats(t.st, &s0))
		goto out;
	CHECK_EQ(s0.packs, 2);

	/* nothing dead yet: gc keeps everything */
	if (CHECK_RC(mrfs_store_gc(t.st, NULL, NULL, &gs), 0)) {
		CHECK_EQ(gs.chunks_dropped, 0);
		CHECK_EQ(gs.packs_removed, 0);
		CHECK_EQ(gs.bytes_after, gs.bytes_before);
	}
	/* drop a: the first pack is under half live and gets rewritten */
	CHECK_RC(file_op_commit(t.st, mrfs_store_file_unref, a), 0);
	if (!get_stats(t.st, &s1))
		goto out;
	CHECK(s1.dead_chunks > 0);
	if (CHECK_RC(mrfs_store_gc(t.st, NULL, NULL, &gs), 0)) {
		CHECK_EQ(gs.chunks_dropped, s1.dead_chunks);
		CHECK_EQ(gs.packs_rewritten, 1);
		CHECK_EQ(gs.packs_removed, 1);
		CHECK(gs.bytes_after + len / 2 < gs.bytes_before);
	}
	if (get_stats(t.st, &s2)) {
		CHECK_EQ(s2.dead_chunks, 0);
		CHECK_EQ(s2.files, 2);
		CHECK_EQ(s2.stored_bytes, 2 * len);
		CHECK(s2.pack_bytes < s0.pack_bytes);
	}
	verify_clean(t.st);
	f = get_file(t.st, b);
	if (f && check_layout(t.st, f, bb, len))
		check_reads(t.st, f, bb, &rng);
	/* a record located before gc still reads: the chunks are found anew */
	if (old)
		check_reads(t.st, old, bb, &rng);
	f = (mrfs_file_free(f), get_file(t.st, c));
	if (f)
		check_reads(t.st, f, bc, &rng);
out:
	tstore_free(&t);
out_free:
	mrfs_file_free(old);
	mrfs_file_free(f);
	free(ba);
	free(bb);
	free(bc);
}

int main(void)
{
	unit_init();
	UNIT_RUN(test_roundtrip, "roundtrip sizes");
	UNIT_RUN(test_cut, "chunk cuts");
	UNIT_RUN(test_dedup, "identical streams stored once");
	UNIT_RUN(test_insert, "insertion near the start");
	UNIT_RUN(test_refs, "reference counts");
	UNIT_RUN(test_bitrot, "bit rot");
	UNIT_RUN(test_mapfull, "map full");
	UNIT_RUN(test_reopen, "reopen");
	UNIT_RUN(test_threads, "readers and a writer");
	UNIT_RUN(test_kv, "key/value layer");
	UNIT_RUN(test_aborted, "aborted writes");
	UNIT_RUN(test_gc, "garbage collection");
	UNIT_RUN(test_kv_null, "key/value layer, NULL prefix");
	return unit_done("test_store");
}
