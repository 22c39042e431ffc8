/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the chunker and the store's write and read paths
 * (include/mrfs/store.h): mrfs_chunk_cut, writers, files, reads, segments,
 * reference counts, gc and verify, on a scratch store.
 *
 * The input describes a buffer (chunks are 256 KiB to 4 MiB, far above
 * libFuzzer's input sizes): byte 0 is a mode, bytes 1..3 a length (up to
 * 9 MiB; with mode bits 6 and 7, 17 to 35 MiB, past the writer's 16 MiB buffer;
 * with mode bit 5, at most MIN + 4 KiB), the rest a pattern that is repeated, mixed with a
 * generator seeded by it, or spliced into random bytes; mode bit 4 puts a safetensors header
 * (8-byte little-endian length, then '{') in front.
 *
 * Properties:
 *  - mrfs_chunk_cut: 1 <= cut <= min(len, MAX); len <= MIN gives len; a cut
 *    below len is at least MIN + 1; the same bytes at another address cut
 *    the same; a cut c < len is found again in any prefix longer than c,
 *    and a buffer without a cut point has none in its prefixes either;
 *  - a stream written through a writer in uneven pieces becomes a file of
 *    the right size and digest whose chunks are contiguous and are exactly
 *    the reference cuts (the safetensors header first, then
 *    mrfs_chunk_cut over the rest), whatever the pieces;
 *  - reading it back (whole, at random ranges, as pack segments) gives the
 *    bytes written;
 *  - writing the same bytes again stores nothing new and gives the same
 *    chunk keys;
 *  - a writer spilled to a file gives back every byte written so far;
 *  - after the files are dropped and gc runs, verify finds no problem.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "mrfs/store.h"
#include "fuzz.h"

#define MiB	 (1024u * 1024)
#define MAX_LEN	 (36 * MiB)
#define MAX_CUTS (MAX_LEN / MRFS_CHUNK_MIN + 2)

static struct mrfs_store *store;
static uint8_t *buf, *copy, *back;
static size_t cuts[MAX_CUTS], ncuts;
static unsigned iteration;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[PATH_MAX];
	int rc;

	(void)argc, (void)argv;
	snprintf(dir, sizeof(dir), "%s/store", fuzz_tmpdir());
	if ((rc = mrfs_store_open(dir, NULL, &store))) {
		fprintf(stderr, "fuzz_chunker: cannot open %s: %d\n", dir, rc);
		abort();
	}
	buf = malloc(MAX_LEN);
	copy = malloc(MAX_LEN + 64);
	back = malloc(MAX_LEN);
	if (!buf || !copy || !back)
		abort();
	return 0;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t seed_of(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Fill buf from the input; returns the length. */
static size_t make_buffer(const uint8_t *data, size_t size, uint64_t *seed)
{
	unsigned mode = size ? data[0] : 0;
	size_t len = 0, plen;
	const uint8_t *pat;
	uint64_t s;

	for (size_t i = 1; i < 4; i++)
		len = len << 8 | (i < size ? data[i] : 0);
	/* mostly around the chunk sizes, sometimes tiny */
	if (mode & 0x20)
		len %= MRFS_CHUNK_MIN + 4096;
	else if ((mode & 0xc0) == 0xc0)
		len = 17 * MiB + (len * 37) % (18 * MiB);
	else
		len = (len * 37) % (9 * MiB);
	pat = size > 4 ? data + 4 : (const uint8_t *)"";
	plen = size > 4 ? size - 4 : 0;
	s = *seed = seed_of(data, size);
	switch (mode & 3) {
	case 0: /* the pattern repeated (or zeros): few or no cut points */
		for (size_t i = 0; i < len; i++)
			buf[i] = plen ? pat[i % plen] : 0;
		break;
	case 1: /* random bytes */
		for (size_t i = 0; i < len; i += 8) {
			uint64_t r = rng_next(&s);
			memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
		}
		break;
	case 2: /* random bytes with the pattern spliced in here and there */
		for (size_t i = 0; i < len; i += 8) {
			uint64_t r = rng_next(&s);
			memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
		}
		for (size_t k = 0; plen && len && k < 16; k++) {
			size_t at = rng_next(&s) % len, n = plen < len - at ? plen : len - at;
			memcpy(buf + at, pat, n);
		}
		break;
	default: /* random runs of random or constant bytes */
		for (size_t i = 0; i < len;) {
			uint64_t r = rng_next(&s);
			size_t run = 1 + r % (512 * 1024);
			if (run > len - i)
				run = len - i;
			if (r & (1ull << 40))
				memset(buf + i, (int)(r >> 48), run);
			else
				for (size_t k = 0; k < run; k += 8) {
					uint64_t q = rng_next(&s);
					memcpy(buf + i + k, &q, run - k < 8 ? run - k : 8);
				}
			i += run;
		}
		break;
	}
	if ((mode & 0x10) && len >= 9) {
		/* a safetensors header of n bytes, sometimes lying about n */
		uint64_t n = rng_next(&s) % (mode & 0x40 ? (uint64_t)len * 2 : (uint64_t)len - 8);
		for (int i = 0; i < 8; i++)
			buf[i] = (uint8_t)(n >> (8 * i));
		buf[8] = '{';
	}
	return len;
}

/* Cut buf[0..len) from @pos on, checking each cut; the lengths go to cuts[]
 * from index @first. Returns the number of cuts. */
static size_t check_cuts(size_t pos, size_t len, size_t first, uint64_t *seed)
{
	size_t i = first;

	while (pos < len) {
		size_t rest = len - pos, c = mrfs_chunk_cut(buf + pos, rest);
		size_t top = rest < MRFS_CHUNK_MAX ? rest : MRFS_CHUNK_MAX;
		size_t shift = 1 + rng_next(seed) % 63, probe;

		FUZZ_CHECK(c >= 1 && c <= top, "cut %zu of %zu bytes at %zu", c, rest, pos);
		FUZZ_CHECK(rest > MRFS_CHUNK_MIN || c == rest, "%zu bytes (<= MIN) cut at %zu",
			   rest, c);
		FUZZ_CHECK(c == top || c > MRFS_CHUNK_MIN, "a cut at %zu, below MIN", c);
		memcpy(copy + shift, buf + pos, top);
		FUZZ_CHECK(mrfs_chunk_cut(copy + shift, top) == c,
			   "the same %zu bytes at another address cut at %zu, not %zu", top,
			   mrfs_chunk_cut(copy + shift, top), c);
		/* prefixes: a real cut is found again; no cut point, none before
		 * (checked on the first chunks and a sample of the others) */
		for (int k = 0; k < 2 && (i - first < 4 || rng_next(seed) % 4 == 0); k++) {
			if (c < top) {
				probe = c + 1 + rng_next(seed) % (top - c);
				FUZZ_CHECK(mrfs_chunk_cut(buf + pos, probe) == c,
					   "cut at %zu in %zu bytes but at %zu in the first %zu", c,
					   top, mrfs_chunk_cut(buf + pos, probe), probe);
			} else if (c > 1) {
				probe = 1 + rng_next(seed) % (c - 1);
				FUZZ_CHECK(mrfs_chunk_cut(buf + pos, probe) == probe,
					   "no cut in %zu bytes but one at %zu in the first %zu", c,
					   mrfs_chunk_cut(buf + pos, probe), probe);
			}
		}
		FUZZ_CHECK(i < MAX_CUTS, "more than %zu cuts", i);
		cuts[i++] = c;
		pos += c;
	}
	FUZZ_CHECK(pos == len, "cuts add up to %zu, not %zu", pos, len);
	return i;
}

/* The reference cuts of buf[0..len): the safetensors header, then the CDC. */
static size_t ref_header(size_t len)
{
	uint64_t n = 0;

	if (len < 9 || buf[8] != '{')
		return 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | buf[i];
	if (n < 2 || n > MRFS_CHUNK_MAX - 8 || 8 + n > len)
		return 0;
	return (size_t)(8 + n);
}

/* Write buf[0..len) through a writer in uneven pieces; a new file id. */
static uint64_t write_file(size_t len, uint64_t *seed)
{
	struct mrfs_writer *w;
	struct mrfs_txn *txn;
	uint64_t id = 0;
	size_t pos = 0;
	int rc = mrfs_writer_new(store, &w);

	FUZZ_CHECK(rc == 0, "mrfs_writer_new: %d", rc);
	while (pos < len) {
		uint64_t r = rng_next(seed);
		size_t n = r & 1 ? 1 + r % 4096 : 1 + (r >> 8) % (3 * MRFS_CHUNK_MAX);
		if (n > len - pos)
			n = len - pos;
		rc = mrfs_writer_write(w, buf + pos, n);
		FUZZ_CHECK(rc == 0, "mrfs_writer_write(%zu at %zu): %d", n, pos, rc);
		pos += n;
	}
	FUZZ_CHECK(mrfs_writer_size(w) == len, "writer size %" PRIu64 ", not %zu",
		   mrfs_writer_size(w), len);
	if (rng_next(seed) & 1)
		FUZZ_CHECK((rc = mrfs_writer_sync(w)) == 0, "mrfs_writer_sync: %d", rc);
	rc = mrfs_txn_begin(store, true, &txn);
	FUZZ_CHECK(rc == 0, "write transaction: %d", rc);
	rc = mrfs_writer_finish(w, txn, &id);
	FUZZ_CHECK(rc == 0, "mrfs_writer_finish: %d", rc);
	rc = mrfs_txn_commit(txn);
	FUZZ_CHECK(rc == 0, "commit: %d", rc);
	return id;
}

static struct mrfs_file *load(uint64_t id)
{
	struct mrfs_txn *txn;
	struct mrfs_file *f = NULL;
	int rc = mrfs_txn_begin(store, false, &txn);

	FUZZ_CHECK(rc == 0, "read transaction: %d", rc);
	rc = mrfs_store_file_get(txn, id, &f);
	mrfs_txn_abort(txn);
	FUZZ_CHECK(rc == 0 && f, "mrfs_store_file_get(%" PRIu64 "): %d", id, rc);
	return f;
}

static void check_file(const struct mrfs_file *f, size_t len, uint64_t *seed)
{
	uint8_t digest[MRFS_KEY_LEN];
	size_t pos = 0, h = ref_header(len);

	ssize_t n;

	FUZZ_CHECK(f->size == len, "file size %" PRIu64 ", not %zu", f->size, len);
	mrfs_digest(buf, len, digest);
	FUZZ_CHECK(!memcmp(digest, f->digest, MRFS_KEY_LEN),
		   "the file's digest is not the content's");
	if (h) /* the header first, then the CDC from its end */
		ncuts = check_cuts(h, len, 1, seed), cuts[0] = h;
	FUZZ_CHECK(f->nchunks == ncuts, "%u chunks, the cuts say %zu", f->nchunks, ncuts);
	for (uint32_t i = 0; i < f->nchunks; i++) {
		size_t want = cuts[i];
		FUZZ_CHECK(f->chunks[i].off == pos, "chunk %u at %" PRIu64 ", not %zu", i,
			   f->chunks[i].off, pos);
		FUZZ_CHECK(f->chunks[i].len == want,
			   "chunk %u (at %zu) is %u bytes, the cut says %zu", i, pos,
			   f->chunks[i].len, want);
		FUZZ_CHECK(mrfs_file_chunk_at(f, pos) == i, "mrfs_file_chunk_at(%zu) is not %u",
			   pos, i);
		pos += f->chunks[i].len;
	}
	FUZZ_CHECK(pos == len, "the chunks cover %zu bytes of %zu", pos, len);

	memset(back, 0xa5, len);
	n = mrfs_store_read(store, f, 0, len, back);
	FUZZ_CHECK(n == (ssize_t)len, "mrfs_store_read of %zu bytes: %zd", len, n);
	FUZZ_CHECK(!memcmp(back, buf, len), "the bytes read back differ from those written");
	for (int k = 0; k < 4 && len; k++) {
		uint64_t off = rng_next(seed) % len,
			 want = 1 + rng_next(seed) % (2 * MRFS_CHUNK_MAX);
		size_t exp = want < len - off ? want : len - off;
		struct mrfs_segment segs[8];
		int nseg = 0, rc;
		size_t covered = 0;

		n = mrfs_store_read(store, f, off, want, back);
		FUZZ_CHECK(n == (ssize_t)exp, "read %" PRIu64 " at %" PRIu64 ": %zd, not %zu", want,
			   off, n, exp);
		FUZZ_CHECK(!memcmp(back, buf + off, exp), "read at %" PRIu64 " gives other bytes",
			   off);
		rc = mrfs_store_segments(store, f, off, want, segs, 8, &nseg);
		FUZZ_CHECK(rc == 0 && nseg >= 1 && nseg <= 8, "segments at %" PRIu64 ": %d, %d",
			   off, rc, nseg);
		for (int i = 0; i < nseg; i++) {
			ssize_t got = pread(segs[i].fd, back, segs[i].len, segs[i].off);
			FUZZ_CHECK(got == (ssize_t)segs[i].len, "segment %d: pread %zd", i, got);
			FUZZ_CHECK(covered + segs[i].len <= exp &&
				       !memcmp(back, buf + off + covered, segs[i].len),
				   "segment %d holds other bytes", i);
			covered += segs[i].len;
		}
		FUZZ_CHECK(covered == exp || nseg == 8, "segments cover %zu of %zu", covered, exp);
	}
}

static void unref(uint64_t id)
{
	struct mrfs_txn *txn;
	int rc = mrfs_txn_begin(store, true, &txn);

	FUZZ_CHECK(rc == 0, "write transaction: %d", rc);
	rc = mrfs_store_file_unref(txn, id);
	FUZZ_CHECK(rc == 0, "mrfs_store_file_unref: %d", rc);
	FUZZ_CHECK((rc = mrfs_txn_commit(txn)) == 0, "commit: %d", rc);
}

static void check_spill(size_t len, uint64_t *seed)
{
	struct mrfs_writer *w;
	char path[PATH_MAX];
	size_t part = len ? rng_next(seed) % (len + 1) : 0;
	int fd, rc;
	struct stat st;

	snprintf(path, sizeof(path), "%s/spill", fuzz_tmpdir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	FUZZ_CHECK(fd >= 0, "cannot open %s", path);
	FUZZ_CHECK(mrfs_writer_new(store, &w) == 0, "mrfs_writer_new");
	FUZZ_CHECK((rc = mrfs_writer_write(w, buf, part)) == 0, "write %zu: %d", part, rc);
	rc = mrfs_writer_spill(w, fd);
	FUZZ_CHECK(rc == 0, "mrfs_writer_spill: %d", rc);
	FUZZ_CHECK(fstat(fd, &st) == 0 && (size_t)st.st_size == part,
		   "the spilled file has %jd bytes, not %zu", (intmax_t)st.st_size, part);
	FUZZ_CHECK(pread(fd, back, part, 0) == (ssize_t)part && !memcmp(back, buf, part),
		   "the spilled bytes differ from those written");
	close(fd);
	unlink(path);
}

struct problems {
	unsigned n;
	char first[256];
};

static void problem_cb(void *ctx, uint64_t file, const char *what)
{
	struct problems *p = ctx;

	if (!p->n++)
		snprintf(p->first, sizeof(p->first), "file %" PRIu64 ": %s", file, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mrfs_store_stats s1, s2;
	struct mrfs_file *f, *g;
	uint64_t seed, id, id2;
	size_t len = make_buffer(data, size, &seed);

	ncuts = check_cuts(0, len, 0, &seed);
	if (!len)
		return 0;
	id = write_file(len, &seed);
	f = load(id);
	check_file(f, len, &seed);

	/* the same bytes again: deduplicated, the same chunks */
	FUZZ_CHECK(mrfs_store_stats(store, &s1) == 0, "stats");
	id2 = write_file(len, &seed);
	FUZZ_CHECK(mrfs_store_stats(store, &s2) == 0, "stats");
	FUZZ_CHECK(s2.stored_bytes == s1.stored_bytes && s2.chunks == s1.chunks,
		   "writing the same %zu bytes again stored %" PRIu64 " more bytes", len,
		   s2.stored_bytes - s1.stored_bytes);
	g = load(id2);
	FUZZ_CHECK(g->nchunks == f->nchunks, "the same bytes gave %u chunks, then %u", f->nchunks,
		   g->nchunks);
	for (uint32_t i = 0; i < f->nchunks; i++)
		FUZZ_CHECK(!memcmp(f->chunks[i].key, g->chunks[i].key, MRFS_KEY_LEN) &&
			       f->chunks[i].len == g->chunks[i].len,
			   "chunk %u differs between two writes of the same bytes", i);
	mrfs_file_free(g);
	mrfs_file_free(f);
	check_spill(len, &seed);
	unref(id);
	unref(id2);

	if (++iteration % 16 == 0) {
		struct mrfs_gc_stats gs;
		struct problems p = {0, ""};
		int rc = mrfs_store_gc(store, NULL, NULL, &gs);

		FUZZ_CHECK(rc == 0, "mrfs_store_gc: %d", rc);
		rc = mrfs_store_verify(store, problem_cb, &p);
		FUZZ_CHECK(rc == 0 && p.n == 0, "verify after gc: %d, %u problems (%s)", rc, p.n,
			   p.first);
		FUZZ_CHECK(mrfs_store_stats(store, &s1) == 0 && s1.files == 0 &&
			       s1.dead_chunks == 0,
			   "after gc: %" PRIu64 " files, %" PRIu64 " dead chunks", s1.files,
			   s1.dead_chunks);
	}
	return 0;
}
