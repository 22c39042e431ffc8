/* SPDX-License-Identifier: MIT */
/*
 * The chunk store: a content-addressed store of deduplicated chunks.
 *
 * A store is a directory:
 *
 *     <dir>/            mode 0700
 *     <dir>/data.mdb    the LMDB environment (index and registry)
 *     <dir>/secret      32 random bytes made at creation, mode 0600
 *     <dir>/packs/      append-only pack files of chunk bytes
 *     <dir>/tmp/        scratch files (random writes to drafts)
 *
 * A stream written to the store is cut into chunks by content (a gear
 * hash, FastCDC-style with normalized chunking) and each chunk is keyed by
 * XXH3-128 under a key derived from the store's secret. A chunk already in
 * the index is not written again. The result is a *file*: its size, a
 * digest of its whole content and its chunk list, kept in the index under
 * a 64-bit file id. Files hold references on their chunks.
 *
 * The store is also the only module that talks to LMDB: the registry keeps
 * its own records through the small key/value layer at the end of this
 * header, inside the same transactions, so one commit changes the files
 * and the registry together.
 *
 * Errors are 0 or a negative errno. LMDB's codes are mapped once, here:
 * MDB_NOTFOUND is -ENOENT, MDB_MAP_FULL and MDB_TXN_FULL are -ENOSPC,
 * MDB_CORRUPTED and MDB_PAGE_NOTFOUND are -EIO, anything else unknown is
 * -EIO. A chunk whose bytes do not match its key reads as -EIO.
 *
 * Thread safety: a store may be used from many threads at once. A
 * transaction and a writer belong to one thread at a time. A write
 * transaction excludes other write transactions (LMDB's writer lock).
 */
#ifndef MRFS_STORE_H
#define MRFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Chunking parameters (bytes). */
#define MRFS_CHUNK_MIN (256u * 1024)
#define MRFS_CHUNK_AVG (1024u * 1024)
#define MRFS_CHUNK_MAX (4u * 1024 * 1024)

/* A pack file is closed to appends once it reaches this size. */
#define MRFS_PACK_LIMIT (1024ull * 1024 * 1024)

/* The default LMDB map size: sparse on 64-bit, so large costs nothing. */
#define MRFS_MAP_SIZE_DEFAULT (64ull << 30)

#define MRFS_KEY_LEN	16
#define MRFS_SECRET_LEN 32

struct mrfs_store;
struct mrfs_txn;
struct mrfs_writer;

/* Progress of long work: @done of @total units (bytes). */
typedef void (*mrfs_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* One chunk of a file, as the readers see it. */
struct mrfs_chunk {
	uint8_t key[MRFS_KEY_LEN];
	uint64_t off;  /* offset of the chunk inside the file */
	uint32_t len;  /* its length */
	uint32_t pack; /* where its bytes are, filled by mrfs_store_file_get */
	uint64_t pack_off;
};

/*
 * A file: what a stream became. Invariants: chunks[i].off is the sum of the
 * lengths before i, and the lengths add up to size. Made by
 * mrfs_store_file_get (which also locates every chunk), freed with
 * mrfs_file_free.
 */
struct mrfs_file {
	uint64_t id;
	uint64_t size;
	uint8_t digest[MRFS_KEY_LEN]; /* unseeded XXH3-128 of the content */
	uint32_t nchunks;
	struct mrfs_chunk *chunks;
};

/* A piece of a read reply: @len bytes of pack file @fd at @off. */
struct mrfs_segment {
	int fd;
	off_t off;
	size_t len;
};

struct mrfs_store_options {
	uint64_t map_size; /* 0: MRFS_MAP_SIZE_DEFAULT */
	bool read_only;	   /* open the environment MDB_RDONLY */
};

struct mrfs_store_stats {
	uint64_t logical_bytes; /* sum of size x references over all files */
	uint64_t stored_bytes;	/* sum of the lengths of all indexed chunks */
	uint64_t chunks;	/* indexed chunks, referenced or not */
	uint64_t dead_chunks;	/* of those, chunks with no reference */
	uint64_t files;
	uint64_t packs;	     /* pack files in packs/ */
	uint64_t pack_bytes; /* their total size, garbage included */
};

/*
 * Open the store in @dir, creating it (and @dir) when absent. @opts may be
 * NULL for the defaults. Stale LMDB readers of dead processes are cleared.
 * On success *@out is a new store, closed with mrfs_store_close.
 * Errors: -ENOENT (read_only and no store), -EACCES, -EIO (bad secret or
 * corrupt environment), -ENOMEM, and whatever creating @dir returns.
 */
int mrfs_store_open(const char *dir, const struct mrfs_store_options *opts,
		    struct mrfs_store **out);

/* Close @store (NULL is a no-op). No transaction or writer may be open. */
void mrfs_store_close(struct mrfs_store *store);

/* The store's directory (borrowed, valid while the store is open). */
const char *mrfs_store_dir(const struct mrfs_store *store);

/* LMDB's id of the last committed write transaction, from any process. */
uint64_t mrfs_store_last_txnid(struct mrfs_store *store);

/* Have @fn(@ctx) called after every write transaction this process
 * commits (set it before any transaction; @fn NULL: none). */
void mrfs_store_on_commit(struct mrfs_store *store, void (*fn)(void *ctx), void *ctx);

/* ---- transactions ---------------------------------------------------- */

/*
 * Begin a transaction (@write: a write transaction, else read-only).
 * Errors: -ENOSPC, -EIO, -EROFS (write on a read-only store), -EAGAIN
 * (too many readers).
 */
int mrfs_txn_begin(struct mrfs_store *store, bool write, struct mrfs_txn **out);

/* Commit and free @txn. On error the transaction is aborted. -ENOSPC when
 * the map is full: nothing of @txn is kept. */
int mrfs_txn_commit(struct mrfs_txn *txn);

/* Abort and free @txn (NULL is a no-op). */
void mrfs_txn_abort(struct mrfs_txn *txn);

/* ---- writing files ---------------------------------------------------- */

/*
 * Start a new stream. Memory stays under 3 * MRFS_CHUNK_MAX whatever the
 * stream's length. Errors: -ENOMEM, -EIO.
 */
int mrfs_writer_new(struct mrfs_store *store, struct mrfs_writer **out);

/* Append @len bytes of @buf to the stream. Complete chunks go to a pack
 * file now. Errors: -ENOSPC, -EIO; after an error the writer only aborts. */
int mrfs_writer_write(struct mrfs_writer *w, const void *buf, size_t len);

/* Bytes written to the stream so far. */
uint64_t mrfs_writer_size(const struct mrfs_writer *w);

/*
 * End the stream: flush its pack bytes to disk (fdatasync), then inside the
 * write transaction @txn index its new chunks, take a reference on every
 * chunk and record the file. *@id is the new file's id. The file exists
 * only if @txn commits. Frees @w in every case.
 * Errors: -ENOSPC, -EIO.
 */
int mrfs_writer_finish(struct mrfs_writer *w, struct mrfs_txn *txn, uint64_t *id);

/* Cut what is buffered and flush the stream's pack bytes to disk, so that
 * mrfs_writer_finish has only index work left (call it outside the write
 * transaction to keep fsync out of LMDB's writer lock). Errors: -EIO,
 * -ENOSPC. No more writes are accepted after it. */
int mrfs_writer_sync(struct mrfs_writer *w);

/* Copy every byte written so far to @fd from offset 0, then free @w (in
 * every case). For a stream that stops being written in order. Errors:
 * -EIO, -ENOSPC, -ENOMEM. */
int mrfs_writer_spill(struct mrfs_writer *w, int fd);

/* Drop a stream (NULL is a no-op). Bytes already in a pack become garbage. */
void mrfs_writer_abort(struct mrfs_writer *w);

/* Convenience: write @len bytes of @buf as a whole file inside @txn. */
int mrfs_store_put(struct mrfs_store *store, struct mrfs_txn *txn, const void *buf, size_t len,
		   uint64_t *id);

/* ---- files ------------------------------------------------------------ */

/*
 * Load file @id with every chunk located. *@out is new (mrfs_file_free).
 * Errors: -ENOENT (no such file), -EIO (a chunk missing from the index:
 * the store is damaged), -ENOMEM.
 */
int mrfs_store_file_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_file **out);

/* Take one more reference on file @id (it is then deleted once more). */
int mrfs_store_file_ref(struct mrfs_txn *txn, uint64_t id);

/*
 * Drop a reference on file @id; the last one deletes the file and drops its
 * references on its chunks. Chunks left without reference stay in the index
 * (dead) until garbage collection. Errors: -ENOENT, -ENOSPC, -EIO.
 */
int mrfs_store_file_unref(struct mrfs_txn *txn, uint64_t id);

/* Size and content digest of file @id, without loading its chunk list.
 * Errors: -ENOENT, -EIO. */
int mrfs_store_file_info(struct mrfs_txn *txn, uint64_t id, uint64_t *size,
			 uint8_t digest[MRFS_KEY_LEN]);

/* Free @f (NULL is a no-op). */
void mrfs_file_free(struct mrfs_file *f);

/* Index of the chunk of @f holding byte @off (off < f->size). */
uint32_t mrfs_file_chunk_at(const struct mrfs_file *f, uint64_t off);

/*
 * Read up to @len bytes of @f at @off into @buf. Every chunk touched is
 * checked against its key the first time this store reads it. Returns the
 * number of bytes read (short only at end of file), or -EIO (bytes that do
 * not match their key, or a pack that cannot be read).
 */
ssize_t mrfs_store_read(struct mrfs_store *store, const struct mrfs_file *f, uint64_t off,
			size_t len, void *buf);

/*
 * Describe the bytes [@off, @off + @len) of @f as at most @max pack file
 * segments, checking each chunk touched as mrfs_store_read does. *@n is the
 * number of segments filled; they cover a prefix of the range (all of it
 * unless @max was too small or the file ended). The fds belong to the store
 * and stay open until it closes. Errors: -EIO.
 */
int mrfs_store_segments(struct mrfs_store *store, const struct mrfs_file *f, uint64_t off,
			size_t len, struct mrfs_segment *segs, int max, int *n);

/* ---- checking and accounting ----------------------------------------- */

/* Called by mrfs_store_verify for each problem found: @file is the file id
 * concerned (0 when none), @what one line of text. */
typedef void (*mrfs_verify_fn)(void *ctx, uint64_t file, const char *what);

/*
 * Check the whole store: every indexed chunk's bytes against its key, every
 * file's chunks against the index, and every chunk's reference count
 * against the files that use it. Returns the number of problems found
 * (each reported through @fn, which may be NULL), or a negative errno when
 * the check itself could not run.
 */
int mrfs_store_verify(struct mrfs_store *store, mrfs_verify_fn fn, void *ctx);

/* The same, calling @progress as chunks are checked (bytes). */
int mrfs_store_verify_progress(struct mrfs_store *store, mrfs_verify_fn fn, void *ctx,
			       mrfs_progress_fn progress, void *pctx);

struct mrfs_gc_stats {
	uint64_t chunks_dropped; /* unreferenced chunks removed from the index */
	uint64_t packs_rewritten;
	uint64_t packs_removed;
	uint64_t bytes_before, bytes_after; /* of all pack files */
};

/*
 * Collect garbage: drop unreferenced chunks from the index, copy the live
 * chunks of every pack that is at most half live into a new pack,
 * and unlink packs with nothing live left. Safe while a daemon serves the
 * store (open readers keep their pack fds; the index moves in one
 * transaction). @fn may be NULL. Errors: -ENOSPC, -EIO.
 */
int mrfs_store_gc(struct mrfs_store *store, mrfs_progress_fn fn, void *ctx,
		  struct mrfs_gc_stats *st);

/* Fill @st. Errors: -EIO. */
int mrfs_store_stats(struct mrfs_store *store, struct mrfs_store_stats *st);

/* Unseeded XXH3-128 of @buf: the digests records show. */
void mrfs_digest(const void *buf, size_t len, uint8_t out[MRFS_KEY_LEN]);

/* Write the 32 hex digits of @key and a NUL into @hex. */
void mrfs_key_hex(const uint8_t key[MRFS_KEY_LEN], char hex[2 * MRFS_KEY_LEN + 1]);

/* ---- chunking (exposed for tests and benchmarks) --------------------- */

/*
 * The length of the first chunk of @buf[0..@len): where content-defined
 * chunking cuts. When @len < MRFS_CHUNK_MAX and no cut point is found,
 * returns @len (the caller decides whether more data is coming).
 */
size_t mrfs_chunk_cut(const uint8_t *buf, size_t len);

/* The key of a chunk in @store: XXH3-128 under the store's secret. */
void mrfs_store_chunk_key(const struct mrfs_store *store, const void *buf, size_t len,
			  uint8_t key[MRFS_KEY_LEN]);

/* ---- key/value records for the registry ------------------------------ */

/* The named databases of the environment open to the registry. */
enum mrfs_db {
	MRFS_DB_META,	  /* small named values */
	MRFS_DB_MODELS,	  /* registry: models */
	MRFS_DB_VERSIONS, /* registry: versions */
	MRFS_DB_NODES,	  /* registry: files and directories of versions */
	MRFS_DB_ALIASES,  /* registry: aliases */
	MRFS_DB_EVENTS,	  /* registry: history, keyed by big-endian seq */
	MRFS_DB_COUNT
};

/* A value borrowed from LMDB: valid until the transaction ends or, in a
 * write transaction, until the next change. */
struct mrfs_val {
	const void *data;
	size_t len;
};

/* Get the value of @key. Errors: -ENOENT, -EIO. */
int mrfs_kv_get(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen,
		struct mrfs_val *val);

/* Set @key to @val (replacing it). Errors: -ENOSPC, -EIO, -EINVAL (key
 * empty or over 511 bytes). */
int mrfs_kv_put(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen,
		const void *val, size_t vlen);

/* Delete @key. Errors: -ENOENT, -ENOSPC, -EIO. */
int mrfs_kv_del(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen);

/*
 * Call @fn for each record whose key starts with @prefix (@plen may be 0
 * for all), in key order, from the first key >= @from (NULL: from the
 * prefix). @fn returns 0 to go on, 1 to stop, or a negative errno to stop
 * and return it. The records must not be changed during the walk.
 */
typedef int (*mrfs_kv_fn)(void *ctx, struct mrfs_val key, struct mrfs_val val);
int mrfs_kv_scan(struct mrfs_txn *txn, enum mrfs_db db, const void *prefix, size_t plen,
		 const void *from, size_t flen, mrfs_kv_fn fn, void *ctx);

/* The last record of @db whose key starts with @prefix. Errors: -ENOENT. */
int mrfs_kv_last(struct mrfs_txn *txn, enum mrfs_db db, const void *prefix, size_t plen,
		 struct mrfs_val *key, struct mrfs_val *val);

/* Next value of the 64-bit counter @name in MRFS_DB_META (first is 1). */
int mrfs_kv_next_id(struct mrfs_txn *txn, const char *name, uint64_t *id);

#endif /* MRFS_STORE_H */
