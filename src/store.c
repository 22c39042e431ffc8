/* SPDX-License-Identifier: MIT */
/*
 * The chunk store: LMDB index, append-only pack files, content-defined
 * chunks keyed by XXH3-128 under the store's secret. See mrfs/store.h.
 *
 * Layout of the index (all in one LMDB environment):
 *   chunks: key[16] -> struct chunk_val (where the bytes are, refcount)
 *   files:  be64 id  -> struct file_hdr + nchunks * (key[16], le32 len)
 *   meta, models, versions, nodes, aliases, events: see mrfs_kv_*.
 *
 * Packs: packs/<id>.pack, appended only by the process that created them
 * (O_EXCL), so two processes never append to one pack. A writer takes a
 * pack for itself from the pool, so one stream's chunks are contiguous.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mrfs/store.h"

#define DERIVED_SECRET_LEN 192
#define FILE_MAGIC	   0x3146524du /* "MRF1" */
#define WRITER_BUF	   (4 * MRFS_CHUNK_MAX)
#define MAX_READERS	   1024

/* Cut masks of the gear hash: bit k of the hash depends only on the last
 * k + 1 bytes, so the masks take high bits (below bit 63, see
 * mrfs_chunk_cut). Harder before the average size (21 bits), easier after
 * it (18 bits): normalized chunking, mean about 1.07 MiB on random data. */
#define MASK_S (((1ull << 21) - 1) << 42)
#define MASK_L (((1ull << 18) - 1) << 44)

enum { DB_CHUNKS = MRFS_DB_COUNT, DB_FILES, DB_ALL };

static const char *const db_names[DB_ALL] = {
    [MRFS_DB_META] = "meta",   [MRFS_DB_MODELS] = "models",   [MRFS_DB_VERSIONS] = "versions",
    [MRFS_DB_NODES] = "nodes", [MRFS_DB_ALIASES] = "aliases", [MRFS_DB_EVENTS] = "events",
    [DB_CHUNKS] = "chunks",    [DB_FILES] = "files",
};

struct chunk_val {
	uint32_t pack;
	uint32_t len;
	uint64_t off;
	uint64_t refs;
};

struct file_hdr {
	uint32_t magic;
	uint32_t nchunks;
	uint64_t size;
	uint64_t refs;
	uint8_t digest[MRFS_KEY_LEN];
};

struct file_ent {
	uint8_t key[MRFS_KEY_LEN];
	uint32_t len;
};

/* A pack open for appending by this process. */
struct wpack {
	uint32_t id;
	int fd;
	uint64_t size;
	uint64_t start;	 /* its size when its writer took it */
	uint64_t kicked; /* bytes up to here are on their way to the disk */
	struct wpack *next;
};

/* Start writeback of a pack every this many bytes, so the fdatasync at
 * the end of a stream waits for little. Measured through the mount (1 GiB,
 * 6 runs each): 1 MiB 1.28-1.30x cp+sync, 8 MiB 1.37-1.43x, 32 MiB 1.33x,
 * none 1.41x; waiting for the step before each kick made it 1.5-1.6x. */
#define WRITEBACK_STEP (1u << 20)
/* Disk space kept allocated past the index's last page (reserve_space):
 * a sixteenth of what it uses, within these bounds. */
#define DB_RESERVE_MIN (1ull << 20)
#define DB_RESERVE_MAX (32ull << 20)

/* The set of chunk keys whose bytes this process has checked. */
struct keyset {
	pthread_rwlock_t lock;
	uint8_t (*slot)[MRFS_KEY_LEN];
	size_t cap; /* power of two, or 0 */
	size_t used;
};

struct mrfs_store {
	char *dir;
	int packs_fd; /* the packs/ directory */
	MDB_env *env;
	MDB_dbi dbi[DB_ALL];
	bool read_only;
	uint8_t secret[DERIVED_SECRET_LEN];

	pthread_mutex_t lock; /* guards everything below */
	int *rfd;	      /* read fds by pack id, -1 when not open */
	uint32_t nrfd;
	struct wpack *pool; /* packs free for a writer */
	uint32_t next_pack;

	struct keyset verified;

	uint64_t reserved;	      /* data.mdb is allocated up to here (see reserve_space) */
	void (*on_commit)(void *ctx); /* after each write transaction */
	void *on_commit_ctx;
};

struct mrfs_txn {
	struct mrfs_store *store;
	MDB_txn *txn;
	bool write;
	int *held; /* fds of full packs its new chunks are in, closed (so
		    * unlocked for gc) only once the index names them */
	uint32_t nheld;
};

static void txn_release(struct mrfs_txn *txn)
{
	for (uint32_t i = 0; i < txn->nheld; i++)
		close(txn->held[i]);
	free(txn->held);
	free(txn);
}

struct wchunk {
	uint8_t key[MRFS_KEY_LEN];
	uint32_t len;
	bool fresh; /* written by this writer, not yet indexed */
	uint32_t pack;
	uint64_t pack_off;
};

/*
 * A writer cuts, keys and stores on a thread of its own once a stream is
 * longer than one hand-off buffer, so that the caller's reading (a FUSE
 * write, a read() of the source) overlaps the chunking: the caller fills
 * `fill`; a full one is handed over through `slot` (one in flight), and the
 * buffer the thread finished comes back for filling.
 */
#define HANDOFF (2u << 20)

struct mrfs_writer {
	struct mrfs_store *store;
	uint8_t *buf;
	size_t len;    /* bytes buffered, not yet cut (the chunking side's) */
	uint64_t size; /* bytes written by the caller */
	int err;
	bool synced;

	/* the hand-off, under mu (the caller's side: fill, fill_len) */
	int terr; /* the chunking thread's first error */
	uint8_t *fill, *slot, *done;
	size_t fill_len, slot_len;
	bool threaded, stop;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	XXH3_state_t digest;
	struct wchunk *chunks;
	uint32_t nchunks, cap;
	struct wpack *pack;  /* current pack, or NULL */
	struct wpack **full; /* packs this writer filled */
	uint32_t nfull;
};

/* ---- errors ----------------------------------------------------------- */

static int mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	default:
		return rc > 0 && rc < 4096 ? -rc : -EIO;
	}
}

/* ---- byte order helpers ------------------------------------------------ */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static bool key_is_zero(const uint8_t *k)
{
	static const uint8_t zero[MRFS_KEY_LEN];
	return memcmp(k, zero, MRFS_KEY_LEN) == 0;
}

void mrfs_digest(const void *buf, size_t len, uint8_t out[MRFS_KEY_LEN])
{
	XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits(buf, len));
}

void mrfs_key_hex(const uint8_t key[MRFS_KEY_LEN], char hex[2 * MRFS_KEY_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < MRFS_KEY_LEN; i++) {
		hex[2 * i] = digits[key[i] >> 4];
		hex[2 * i + 1] = digits[key[i] & 15];
	}
	hex[2 * MRFS_KEY_LEN] = '\0';
}

/* ---- chunking and keys ------------------------------------------------- */

static uint64_t gear[256], gear2[256]; /* gear2[b] = gear[b] << 1 */
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* The gear table is part of the on-disk format: chunk boundaries must not
 * change between versions, so it comes from a fixed seed. */
static void gear_init(void)
{
	uint64_t x = 0x6d7266732d676561ull; /* "mrfs-gea" */
	for (int i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
		gear2[i] = gear[i] << 1;
	}
}

/*
 * The gear hash h = (h << 1) + gear[byte], tested after every byte, but
 * rolled two bytes a step as FastCDC 2020 does: after the first byte of a
 * pair the state is kept shifted left by one ((h << 2) + gear2[a]) and
 * tested with the mask shifted too, then gear[b] completes the pair. The
 * cut points are those of the one-byte loop (the masks leave bit 63 out,
 * which the shifted state loses) with half the dependent shifts.
 */
size_t mrfs_chunk_cut(const uint8_t *buf, size_t len)
{
	size_t end = len < MRFS_CHUNK_MAX ? len : MRFS_CHUNK_MAX;
	size_t normal = end < MRFS_CHUNK_AVG ? end : MRFS_CHUNK_AVG;
	uint64_t h = 0;
	size_t i;

	if (len <= MRFS_CHUNK_MIN)
		return len;
	pthread_once(&gear_once, gear_init);
	for (i = MRFS_CHUNK_MIN; i + 2 <= normal; i += 2) {
		h = (h << 2) + gear2[buf[i]];
		if (!(h & (MASK_S << 1)))
			return i + 1;
		h += gear[buf[i + 1]];
		if (!(h & MASK_S))
			return i + 2;
	}
	for (; i + 2 <= end; i += 2) {
		h = (h << 2) + gear2[buf[i]];
		if (!(h & (MASK_L << 1)))
			return i + 1;
		h += gear[buf[i + 1]];
		if (!(h & MASK_L))
			return i + 2;
	}
	return end;
}

void mrfs_store_chunk_key(const struct mrfs_store *store, const void *buf, size_t len,
			  uint8_t key[MRFS_KEY_LEN])
{
	XXH128_hash_t h = XXH3_128bits_withSecret(buf, len, store->secret, sizeof(store->secret));
	XXH128_canonicalFromHash((XXH128_canonical_t *)key, h);
}

/* ---- the verified-key set ---------------------------------------------- */

static size_t key_slot(const uint8_t *key, size_t cap)
{
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	return h & (cap - 1);
}

static bool keyset_has(struct keyset *s, const uint8_t *key)
{
	bool found = false;

	pthread_rwlock_rdlock(&s->lock);
	if (s->cap) {
		for (size_t i = key_slot(key, s->cap);; i = (i + 1) & (s->cap - 1)) {
			if (key_is_zero(s->slot[i]))
				break;
			if (!memcmp(s->slot[i], key, MRFS_KEY_LEN)) {
				found = true;
				break;
			}
		}
	}
	pthread_rwlock_unlock(&s->lock);
	return found;
}

static void keyset_insert_locked(struct keyset *s, const uint8_t *key)
{
	size_t i = key_slot(key, s->cap);

	while (!key_is_zero(s->slot[i])) {
		if (!memcmp(s->slot[i], key, MRFS_KEY_LEN))
			return;
		i = (i + 1) & (s->cap - 1);
	}
	memcpy(s->slot[i], key, MRFS_KEY_LEN);
	s->used++;
}

/* Remember @key as checked. Out of memory only means checking again. */
static void keyset_add(struct keyset *s, const uint8_t *key)
{
	if (key_is_zero(key))
		return;
	pthread_rwlock_wrlock(&s->lock);
	if ((s->used + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		struct keyset old = *s;
		s->slot = calloc(ncap, MRFS_KEY_LEN);
		if (!s->slot) {
			*s = old;
			goto out_unlock;
		}
		s->cap = ncap;
		s->used = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (!key_is_zero(old.slot[i]))
				keyset_insert_locked(s, old.slot[i]);
		free(old.slot);
	}
	keyset_insert_locked(s, key);
out_unlock:
	pthread_rwlock_unlock(&s->lock);
}

/* ---- opening ------------------------------------------------------------ */

const char *mrfs_store_dir(const struct mrfs_store *store)
{
	return store->dir;
}

static int mkdir_mode(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* Read the store's secret, making it when @create. */
static int load_secret(struct mrfs_store *store, bool create)
{
	uint8_t raw[MRFS_SECRET_LEN];
	char path[4096];
	ssize_t n;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/secret", store->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		if (getrandom(raw, sizeof(raw), 0) != sizeof(raw) ||
		    write(fd, raw, sizeof(raw)) != sizeof(raw) || fsync(fd)) {
			rc = -EIO;
			close(fd);
			unlink(path);
			return rc;
		}
		close(fd);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	n = read(fd, raw, sizeof(raw));
	if (n != sizeof(raw))
		rc = -EIO;
	close(fd);
	if (!rc &&
	    XXH3_generateSecret(store->secret, sizeof(store->secret), raw, sizeof(raw)) != XXH_OK)
		rc = -EIO;
	return rc;
}

/* The highest pack id in packs/, so new packs take the next one. */
static int scan_packs(struct mrfs_store *store, uint64_t *count, uint64_t *bytes)
{
	int fd = dup(store->packs_fd);
	DIR *d;
	struct dirent *de;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		unsigned id;
		char tail;
		struct stat st;

		if (sscanf(de->d_name, "%u.pac%c", &id, &tail) != 2 || tail != 'k')
			continue;
		if (id >= store->next_pack)
			store->next_pack = id + 1;
		if (count)
			(*count)++;
		if (bytes && !fstatat(store->packs_fd, de->d_name, &st, 0))
			*bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}

int mrfs_store_open(const char *dir, const struct mrfs_store_options *opts, struct mrfs_store **out)
{
	static const struct mrfs_store_options defaults;
	struct mrfs_store *store;
	char path[4096];
	MDB_txn *txn;
	int rc, dead;
	bool fresh;

	if (!opts)
		opts = &defaults;
	store = calloc(1, sizeof(*store));
	if (!store)
		return -ENOMEM;
	store->packs_fd = -1;
	store->read_only = opts->read_only;
	store->next_pack = 1;
	pthread_mutex_init(&store->lock, NULL);
	pthread_rwlock_init(&store->verified.lock, NULL);
	store->dir = strdup(dir);
	if (!store->dir) {
		rc = -ENOMEM;
		goto out_free;
	}

	if (!opts->read_only) {
		if ((rc = mkdir_mode(dir, 0700)))
			goto out_free;
		snprintf(path, sizeof(path), "%s/packs", dir);
		if ((rc = mkdir_mode(path, 0700)))
			goto out_free;
		snprintf(path, sizeof(path), "%s/tmp", dir);
		if ((rc = mkdir_mode(path, 0700)))
			goto out_free;
	}
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	fresh = access(path, F_OK) != 0;
	if (fresh && opts->read_only) {
		rc = -ENOENT;
		goto out_free;
	}
	if ((rc = load_secret(store, fresh && !opts->read_only)))
		goto out_free;
	snprintf(path, sizeof(path), "%s/packs", dir);
	store->packs_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store->packs_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if ((rc = scan_packs(store, NULL, NULL)))
		goto out_free;

	if ((rc = mdb_err(mdb_env_create(&store->env))))
		goto out_free;
	mdb_env_set_maxdbs(store->env, DB_ALL);
	mdb_env_set_maxreaders(store->env, MAX_READERS);
	if ((rc = mdb_err(mdb_env_set_mapsize(store->env, opts->map_size ? opts->map_size
									 : MRFS_MAP_SIZE_DEFAULT))))
		goto out_env;
	rc = mdb_env_open(store->env, dir, MDB_NOTLS | (opts->read_only ? MDB_RDONLY : 0), 0600);
	if ((rc = mdb_err(rc)))
		goto out_env;
	mdb_reader_check(store->env, &dead);

	rc = mdb_err(mdb_txn_begin(store->env, NULL, opts->read_only ? MDB_RDONLY : 0, &txn));
	if (rc)
		goto out_env;
	for (int i = 0; i < DB_ALL; i++) {
		rc = mdb_err(mdb_dbi_open(txn, db_names[i], opts->read_only ? 0 : MDB_CREATE,
					  &store->dbi[i]));
		if (rc) {
			mdb_txn_abort(txn);
			goto out_env;
		}
	}
	if ((rc = mdb_err(mdb_txn_commit(txn))))
		goto out_env;
	*out = store;
	return 0;

out_env:
	mdb_env_close(store->env);
out_free:
	if (store->packs_fd >= 0)
		close(store->packs_fd);
	pthread_rwlock_destroy(&store->verified.lock);
	pthread_mutex_destroy(&store->lock);
	free(store->dir);
	free(store);
	return rc;
}

void mrfs_store_close(struct mrfs_store *store)
{
	if (!store)
		return;
	for (struct wpack *p = store->pool, *next; p; p = next) {
		next = p->next;
		close(p->fd);
		free(p);
	}
	for (uint32_t i = 0; i < store->nrfd; i++)
		if (store->rfd[i] >= 0)
			close(store->rfd[i]);
	free(store->rfd);
	mdb_env_close(store->env);
	close(store->packs_fd);
	free(store->verified.slot);
	pthread_rwlock_destroy(&store->verified.lock);
	pthread_mutex_destroy(&store->lock);
	free(store->dir);
	free(store);
}

uint64_t mrfs_store_last_txnid(struct mrfs_store *store)
{
	MDB_envinfo info;

	if (mdb_env_info(store->env, &info))
		return 0;
	return info.me_last_txnid;
}

/* ---- transactions ------------------------------------------------------ */

/*
 * LMDB grows its data file when a commit writes its new pages. On a full
 * disk that write can fail half-way, and LMDB then refuses every later
 * transaction (MDB_PANIC, which reads as EIO). So the store keeps some
 * room allocated past LMDB's last page, and a write transaction that cannot
 * have it is refused with ENOSPC before LMDB writes anything. (A single
 * transaction larger than the room, on a disk that fills meanwhile, can
 * still meet the old failure.) Called holding LMDB's write lock; a
 * filesystem without fallocate is left as it was.
 */
static int reserve_space(struct mrfs_store *store)
{
	MDB_envinfo info;
	MDB_stat st;
	uint64_t used, room;
	int fd;

	if (mdb_env_info(store->env, &info) || mdb_env_stat(store->env, &st) ||
	    mdb_env_get_fd(store->env, &fd))
		return 0;
	used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	room = used / 16 < DB_RESERVE_MIN   ? DB_RESERVE_MIN
	       : used / 16 > DB_RESERVE_MAX ? DB_RESERVE_MAX
					    : used / 16;
	if (used + room / 2 <= store->reserved)
		return 0;
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)used, (off_t)room))
		return errno == ENOSPC ? -ENOSPC : 0;
	store->reserved = used + room;
	return 0;
}

int mrfs_txn_begin(struct mrfs_store *store, bool write, struct mrfs_txn **out)
{
	struct mrfs_txn *t;
	int rc;

	if (write && store->read_only)
		return -EROFS;
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->store = store;
	t->write = write;
	t->held = NULL;
	t->nheld = 0;
	rc = mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc == MDB_MAP_RESIZED) {
		/* another process grew the map: adopt its size */
		mdb_env_set_mapsize(store->env, 0);
		rc = mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	}
	if (rc) {
		free(t);
		return mdb_err(rc);
	}
	if (write && (rc = reserve_space(store))) {
		mdb_txn_abort(t->txn);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void mrfs_store_on_commit(struct mrfs_store *store, void (*fn)(void *ctx), void *ctx)
{
	store->on_commit_ctx = ctx;
	store->on_commit = fn;
}

int mrfs_txn_commit(struct mrfs_txn *txn)
{
	struct mrfs_store *store = txn->store;
	bool write = txn->write;
	int rc = mdb_err(mdb_txn_commit(txn->txn));

	txn_release(txn);
	if (!rc && write && store->on_commit)
		store->on_commit(store->on_commit_ctx);
	return rc;
}

void mrfs_txn_abort(struct mrfs_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_abort(txn->txn);
	txn_release(txn);
}

/* ---- packs ----------------------------------------------------------- */

static void pack_name(char *buf, size_t size, uint32_t id)
{
	snprintf(buf, size, "%010" PRIu32 ".pack", id);
}

/* A read fd of pack @id, opened on first use and kept. */
static int pack_fd(struct mrfs_store *store, uint32_t id)
{
	int fd;

	pthread_mutex_lock(&store->lock);
	if (id >= store->nrfd) {
		uint32_t n = id + 64;
		int *a = realloc(store->rfd, n * sizeof(*a));
		if (!a) {
			pthread_mutex_unlock(&store->lock);
			return -ENOMEM;
		}
		for (uint32_t i = store->nrfd; i < n; i++)
			a[i] = -1;
		store->rfd = a;
		store->nrfd = n;
	}
	fd = store->rfd[id];
	if (fd < 0) {
		char name[32];
		pack_name(name, sizeof(name), id);
		fd = openat(store->packs_fd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		else
			store->rfd[id] = fd;
	}
	pthread_mutex_unlock(&store->lock);
	return fd;
}

/* Take a pack with room from the pool, or make a new one. */
static int pack_take(struct mrfs_store *store, struct wpack **out)
{
	struct wpack *p;
	char name[32];

	pthread_mutex_lock(&store->lock);
	while ((p = store->pool)) {
		struct stat st;

		store->pool = p->next;
		/* still ours (locked since it was made) and still there */
		if (!flock(p->fd, LOCK_EX | LOCK_NB) && !fstat(p->fd, &st) && st.st_nlink) {
			pthread_mutex_unlock(&store->lock);
			p->start = p->size;
			*out = p;
			return 0;
		}
		close(p->fd);
		free(p);
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		pthread_mutex_unlock(&store->lock);
		return -ENOMEM;
	}
	for (;;) {
		p->id = store->next_pack++;
		pack_name(name, sizeof(name), p->id);
		p->fd = openat(store->packs_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (p->fd >= 0 || errno != EEXIST)
			break;
		/* another process made this one: take the next id */
	}
	pthread_mutex_unlock(&store->lock);
	if (p->fd < 0) {
		int rc = -errno;
		free(p);
		return rc;
	}
	/* held while a writer appends: gc leaves locked packs alone */
	flock(p->fd, LOCK_EX | LOCK_NB);
	/* the new name must survive a crash along with the bytes */
	if (fsync(store->packs_fd)) {
		int rc = -errno;
		close(p->fd);
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/*
 * Forget what the taker of @p appended: nothing in the index names those
 * bytes (chunks are indexed only when a stream finishes), so a stream that
 * fails or is dropped gives its space back at once. A pack this writer
 * started is removed whole.
 */
static void pack_rewind(struct mrfs_store *store, struct wpack *p, bool retired)
{
	if (p->size == p->start)
		return;
	if (retired && p->start == 0) {
		char name[32];
		pack_name(name, sizeof(name), p->id);
		unlinkat(store->packs_fd, name, 0);
	} else if (ftruncate(p->fd, (off_t)p->start)) {
		return; /* garbage, for gc */
	}
	p->size = p->start;
	if (p->kicked > p->size)
		p->kicked = p->size;
}

/* Give @p back: to the pool while it has room, else close it. */
static void pack_give(struct mrfs_store *store, struct wpack *p)
{
	if (p->size >= MRFS_PACK_LIMIT) {
		close(p->fd);
		free(p);
		return;
	}
	/*
	 * Stays locked while idle in the pool: the index entries naming what
	 * the writer appended may not be committed yet (the caller commits
	 * after mrfs_writer_finish), and gc must not collect a pack under them.
	 */
	pthread_mutex_lock(&store->lock);
	p->next = store->pool;
	store->pool = p;
	pthread_mutex_unlock(&store->lock);
}

static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pread_all(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -EIO;
		}
		if (n == 0)
			return -EIO; /* the pack is shorter than the index says */
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- writing ------------------------------------------------------------ */

int mrfs_writer_new(struct mrfs_store *store, struct mrfs_writer **out)
{
	struct mrfs_writer *w;

	if (store->read_only)
		return -EROFS;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->store = store;
	w->buf = malloc(WRITER_BUF);
	w->fill = malloc(HANDOFF);
	if (!w->buf || !w->fill) {
		free(w->buf);
		free(w->fill);
		free(w);
		return -ENOMEM;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	XXH3_128bits_reset(&w->digest);
	*out = w;
	return 0;
}

uint64_t mrfs_writer_size(const struct mrfs_writer *w)
{
	return w->size;
}

static bool writer_has_fresh(const struct mrfs_writer *w, const uint8_t *key, struct wchunk *found)
{
	for (uint32_t i = 0; i < w->nchunks; i++) {
		if (w->chunks[i].fresh && !memcmp(w->chunks[i].key, key, MRFS_KEY_LEN)) {
			*found = w->chunks[i];
			return true;
		}
	}
	return false;
}

/* Whether the index has chunk @c; if so, fill in where its bytes are. */
static bool chunk_indexed(struct mrfs_store *store, struct wchunk *c)
{
	MDB_txn *txn;
	MDB_val k = {MRFS_KEY_LEN, c->key}, v;
	struct chunk_val cv;
	bool found;

	if (mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))
		return false; /* write it again: only costs space */
	found = mdb_get(txn, store->dbi[DB_CHUNKS], &k, &v) == 0 && v.mv_size == sizeof(cv);
	if (found) {
		memcpy(&cv, v.mv_data, sizeof(cv));
		c->pack = cv.pack;
		c->pack_off = cv.off;
	}
	mdb_txn_abort(txn);
	return found;
}

/* Key one chunk and, unless the store has it, append it to a pack. */
static int writer_emit(struct mrfs_writer *w, const uint8_t *data, uint32_t len)
{
	struct mrfs_store *store = w->store;
	struct wchunk c = {.len = len};
	int rc;

	if (w->nchunks == w->cap) {
		uint32_t ncap = w->cap ? w->cap * 2 : 64;
		struct wchunk *a = realloc(w->chunks, ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		w->chunks = a;
		w->cap = ncap;
	}
	mrfs_store_chunk_key(store, data, len, c.key);
	XXH3_128bits_update(&w->digest, data, len);

	if (writer_has_fresh(w, c.key, &c)) {
		c.fresh = false; /* indexed by its first occurrence */
		goto out_add;
	}
	if (chunk_indexed(store, &c))
		goto out_add;
	if (w->pack && w->pack->size + len > MRFS_PACK_LIMIT && w->pack->size) {
		struct wpack **a = realloc(w->full, (w->nfull + 1) * sizeof(*a));
		if (!a)
			return -ENOMEM;
		w->full = a;
		w->full[w->nfull++] = w->pack;
		w->pack = NULL;
	}
	if (!w->pack && (rc = pack_take(store, &w->pack)))
		return rc;
	if ((rc = pwrite_all(w->pack->fd, data, len, w->pack->size))) {
		/* a short write leaves garbage the next append overwrites */
		return rc;
	}
	c.fresh = true;
	c.pack = w->pack->id;
	c.pack_off = w->pack->size;
	w->pack->size += len;
	if (w->pack->size - w->pack->kicked >= WRITEBACK_STEP) {
		sync_file_range(w->pack->fd, (off_t)w->pack->kicked,
				(off_t)(w->pack->size - w->pack->kicked), SYNC_FILE_RANGE_WRITE);
		w->pack->kicked = w->pack->size;
	}
out_add:
	w->chunks[w->nchunks++] = c;
	return 0;
}

/*
 * Where the first chunk of a stream ends when the stream starts with a
 * known header: a safetensors file (8-byte little-endian length, then a
 * JSON header) is cut after its header, so a header that grows or changes
 * costs one small chunk and leaves the tensors' chunks as they were.
 * Returns 0 when the content gives no such hint.
 */
static size_t header_cut(const uint8_t *buf, size_t len)
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

/* Cut and emit chunks of the buffer; with @final, everything buffered. */
static int writer_drain(struct mrfs_writer *w, bool final)
{
	size_t pos = 0;
	int rc = 0;

	while (w->len - pos >= MRFS_CHUNK_MAX || (final && pos < w->len)) {
		size_t n = 0;
		if (w->nchunks == 0 && pos == 0)
			n = header_cut(w->buf, w->len);
		if (!n)
			n = mrfs_chunk_cut(w->buf + pos, w->len - pos);
		if ((rc = writer_emit(w, w->buf + pos, (uint32_t)n)))
			break;
		pos += n;
	}
	memmove(w->buf, w->buf + pos, w->len - pos);
	w->len -= pos;
	return rc;
}

/* The chunking side: buffer @len bytes, cutting whenever the buffer fills. */
static int writer_feed(struct mrfs_writer *w, const uint8_t *p, size_t len)
{
	int rc;

	while (len) {
		size_t n = WRITER_BUF - w->len;
		if (n > len)
			n = len;
		memcpy(w->buf + w->len, p, n);
		w->len += n;
		p += n;
		len -= n;
		if (w->len == WRITER_BUF && (rc = writer_drain(w, false)))
			return rc;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct mrfs_writer *w = arg;
	int rc = 0;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		uint8_t *b;
		size_t n;

		while (!w->slot && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->slot)
			break;
		b = w->slot;
		n = w->slot_len;
		pthread_mutex_unlock(&w->mu);
		if (!rc)
			rc = writer_feed(w, b, n); /* after an error: only drain */
		pthread_mutex_lock(&w->mu);
		if (rc && !w->terr)
			w->terr = rc;
		w->slot = NULL;
		w->done = b;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Hand the filled buffer to the chunking thread (starting it the first
 * time) and take back an empty one. */
static int writer_handoff(struct mrfs_writer *w)
{
	int rc;

	if (!w->threaded) {
		w->done = malloc(HANDOFF);
		if (!w->done)
			return writer_feed(w, w->fill, w->fill_len); /* no second buffer */
		if (pthread_create(&w->thread, NULL, writer_main, w)) {
			free(w->done);
			w->done = NULL;
			return writer_feed(w, w->fill, w->fill_len);
		}
		w->threaded = true;
	}
	pthread_mutex_lock(&w->mu);
	while (w->slot)
		pthread_cond_wait(&w->cv, &w->mu);
	rc = w->terr;
	w->slot = w->fill;
	w->slot_len = w->fill_len;
	w->fill = w->done;
	w->done = NULL;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	w->fill_len = 0;
	return rc;
}

/* Everything written reaches the chunking side, and its thread ends. */
static int writer_join(struct mrfs_writer *w)
{
	int rc;

	if (!w->threaded) {
		rc = w->fill_len ? writer_feed(w, w->fill, w->fill_len) : 0;
		w->fill_len = 0;
		return rc;
	}
	if (w->fill_len)
		writer_handoff(w);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->threaded = false;
	free(w->done);
	w->done = NULL;
	return w->terr;
}

int mrfs_writer_write(struct mrfs_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc;

	if (w->err)
		return w->err;
	if (w->synced)
		return -EINVAL;
	while (len) {
		size_t n = HANDOFF - w->fill_len;
		if (n > len)
			n = len;
		memcpy(w->fill + w->fill_len, p, n);
		w->fill_len += n;
		w->size += n;
		p += n;
		len -= n;
		if (w->fill_len == HANDOFF && (rc = writer_handoff(w))) {
			w->err = rc;
			return rc;
		}
	}
	return 0;
}

/* Free @w; unless @keep (its file was recorded in @txn), take back its
 * pack bytes. */
static void writer_free(struct mrfs_writer *w, bool keep, struct mrfs_txn *txn)
{
	int *held = NULL;

	/* gc skips locked packs: a full one stays locked until @txn ends */
	if (keep && w->nfull &&
	    (held = realloc(txn->held, (txn->nheld + w->nfull) * sizeof(*held))))
		txn->held = held;
	if (w->threaded) {
		w->fill_len = 0; /* dropped: what was handed over is enough */
		writer_join(w);
	}
	if (w->pack) {
		if (!keep)
			pack_rewind(w->store, w->pack, false);
		pack_give(w->store, w->pack);
	}
	for (uint32_t i = 0; i < w->nfull; i++) {
		if (!keep)
			pack_rewind(w->store, w->full[i], true);
		if (held)
			txn->held[txn->nheld++] = w->full[i]->fd;
		else
			close(w->full[i]->fd); /* no memory: as before */
		free(w->full[i]);
	}
	free(w->full);
	free(w->chunks);
	free(w->buf);
	free(w->fill);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

int mrfs_writer_spill(struct mrfs_writer *w, int fd)
{
	uint64_t off = 0;
	int rc = writer_join(w);

	if (!rc)
		rc = w->err;
	for (uint32_t i = 0; !rc && i < w->nchunks; i++) {
		const struct wchunk *c = &w->chunks[i];
		uint8_t *buf = malloc(c->len);
		int pfd = pack_fd(w->store, c->pack);

		if (!buf) {
			rc = -ENOMEM;
		} else if (pfd < 0) {
			rc = pfd;
		} else if (!(rc = pread_all(pfd, buf, c->len, c->pack_off))) {
			rc = pwrite_all(fd, buf, c->len, off);
			off += c->len;
		}
		free(buf);
	}
	if (!rc)
		rc = pwrite_all(fd, w->buf, w->len, off);
	writer_free(w, false, NULL);
	return rc;
}

void mrfs_writer_abort(struct mrfs_writer *w)
{
	if (w)
		writer_free(w, false, NULL);
}

/* Take a reference on chunk @c in the index, adding it when new. */
static int chunk_ref(struct mrfs_txn *txn, const struct wchunk *c)
{
	struct mrfs_store *store = txn->store;
	MDB_val k = {MRFS_KEY_LEN, (void *)c->key}, v;
	struct chunk_val cv;
	int rc = mdb_get(txn->txn, store->dbi[DB_CHUNKS], &k, &v);

	if (rc == 0) {
		memcpy(&cv, v.mv_data, sizeof(cv));
		cv.refs++;
	} else if (rc == MDB_NOTFOUND && c->fresh) {
		cv = (struct chunk_val){
		    .pack = c->pack, .len = c->len, .off = c->pack_off, .refs = 1};
	} else if (rc == MDB_NOTFOUND) {
		/* it was indexed when written and is gone now (collected) */
		return -EAGAIN;
	} else {
		return mdb_err(rc);
	}
	v.mv_size = sizeof(cv);
	v.mv_data = &cv;
	return mdb_err(mdb_put(txn->txn, store->dbi[DB_CHUNKS], &k, &v, 0));
}

static int put_file(struct mrfs_txn *txn, uint64_t id, const struct file_hdr *h,
		    const struct wchunk *chunks)
{
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb}, v;
	size_t len = sizeof(*h) + (size_t)h->nchunks * sizeof(struct file_ent);
	uint8_t *p;
	int rc;

	put_be64(kb, id);
	v.mv_size = len;
	rc = mdb_put(txn->txn, txn->store->dbi[DB_FILES], &k, &v, MDB_RESERVE);
	if (rc)
		return mdb_err(rc);
	p = v.mv_data;
	memcpy(p, h, sizeof(*h));
	p += sizeof(*h);
	for (uint32_t i = 0; i < h->nchunks; i++, p += sizeof(struct file_ent)) {
		struct file_ent e = {.len = chunks[i].len};
		memcpy(e.key, chunks[i].key, MRFS_KEY_LEN);
		memcpy(p, &e, sizeof(e));
	}
	return 0;
}

int mrfs_writer_sync(struct mrfs_writer *w)
{
	int rc = w->err;

	if (w->synced || rc)
		return rc;
	rc = writer_join(w);
	if (!rc)
		rc = writer_drain(w, true);
	/* the bytes reach the disk before any index entry names them */
	if (!rc && w->pack && fdatasync(w->pack->fd))
		rc = -errno;
	for (uint32_t i = 0; !rc && i < w->nfull; i++)
		if (fdatasync(w->full[i]->fd))
			rc = -errno;
	w->synced = !rc;
	w->err = rc;
	return rc;
}

int mrfs_writer_finish(struct mrfs_writer *w, struct mrfs_txn *txn, uint64_t *id)
{
	struct file_hdr h = {.magic = FILE_MAGIC};
	XXH128_hash_t d;
	int rc = mrfs_writer_sync(w);

	for (uint32_t i = 0; !rc && i < w->nchunks; i++)
		rc = chunk_ref(txn, &w->chunks[i]);
	if (!rc)
		rc = mrfs_kv_next_id(txn, "file", id);
	if (!rc) {
		h.nchunks = w->nchunks;
		h.size = w->size;
		h.refs = 1;
		d = XXH3_128bits_digest(&w->digest);
		XXH128_canonicalFromHash((XXH128_canonical_t *)h.digest, d);
		rc = put_file(txn, *id, &h, w->chunks);
	}
	writer_free(w, rc == 0, txn);
	return rc;
}

int mrfs_store_put(struct mrfs_store *store, struct mrfs_txn *txn, const void *buf, size_t len,
		   uint64_t *id)
{
	struct mrfs_writer *w;
	int rc = mrfs_writer_new(store, &w);

	if (rc)
		return rc;
	if ((rc = mrfs_writer_write(w, buf, len))) {
		mrfs_writer_abort(w);
		return rc;
	}
	return mrfs_writer_finish(w, txn, id);
}

/* ---- files -------------------------------------------------------------- */

static int get_file_raw(struct mrfs_txn *txn, uint64_t id, struct file_hdr *h, MDB_val *v)
{
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb};
	int rc;

	put_be64(kb, id);
	rc = mdb_get(txn->txn, txn->store->dbi[DB_FILES], &k, v);
	if (rc)
		return mdb_err(rc);
	if (v->mv_size < sizeof(*h))
		return -EIO;
	memcpy(h, v->mv_data, sizeof(*h));
	if (h->magic != FILE_MAGIC ||
	    v->mv_size != sizeof(*h) + (size_t)h->nchunks * sizeof(struct file_ent))
		return -EIO;
	return 0;
}

static void file_ent_at(const MDB_val *v, uint32_t i, struct file_ent *e)
{
	memcpy(e, (const uint8_t *)v->mv_data + sizeof(struct file_hdr) + (size_t)i * sizeof(*e),
	       sizeof(*e));
}

int mrfs_store_file_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_file **out)
{
	struct mrfs_store *store = txn->store;
	struct file_hdr h;
	struct mrfs_file *f;
	MDB_val v;
	uint64_t off = 0;
	int rc = get_file_raw(txn, id, &h, &v);

	if (rc)
		return rc;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->chunks = calloc(h.nchunks ? h.nchunks : 1, sizeof(*f->chunks));
	if (!f->chunks) {
		free(f);
		return -ENOMEM;
	}
	f->id = id;
	f->size = h.size;
	f->nchunks = h.nchunks;
	memcpy(f->digest, h.digest, MRFS_KEY_LEN);
	for (uint32_t i = 0; i < h.nchunks; i++) {
		struct mrfs_chunk *c = &f->chunks[i];
		struct file_ent e;
		struct chunk_val cv;
		MDB_val k = {MRFS_KEY_LEN, NULL}, cvv;

		file_ent_at(&v, i, &e);
		memcpy(c->key, e.key, MRFS_KEY_LEN);
		c->len = e.len;
		c->off = off;
		off += e.len;
		k.mv_data = c->key;
		rc = mdb_get(txn->txn, store->dbi[DB_CHUNKS], &k, &cvv);
		if (rc || cvv.mv_size != sizeof(cv)) {
			rc = rc && rc != MDB_NOTFOUND ? mdb_err(rc) : -EIO;
			goto out_free;
		}
		memcpy(&cv, cvv.mv_data, sizeof(cv));
		if (cv.len != e.len) {
			rc = -EIO;
			goto out_free;
		}
		c->pack = cv.pack;
		c->pack_off = cv.off;
	}
	if (off != h.size) {
		rc = -EIO;
		goto out_free;
	}
	*out = f;
	return 0;

out_free:
	mrfs_file_free(f);
	return rc;
}

int mrfs_store_file_info(struct mrfs_txn *txn, uint64_t id, uint64_t *size,
			 uint8_t digest[MRFS_KEY_LEN])
{
	struct file_hdr h;
	MDB_val v;
	int rc = get_file_raw(txn, id, &h, &v);

	if (rc)
		return rc;
	*size = h.size;
	memcpy(digest, h.digest, MRFS_KEY_LEN);
	return 0;
}

void mrfs_file_free(struct mrfs_file *f)
{
	if (!f)
		return;
	free(f->chunks);
	free(f);
}

static int file_set_refs(struct mrfs_txn *txn, uint64_t id, uint64_t refs)
{
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb}, v;
	struct file_hdr h;
	int rc = get_file_raw(txn, id, &h, &v);
	uint8_t *copy;

	if (rc)
		return rc;
	/* the value lives in the map: copy it before changing it */
	copy = malloc(v.mv_size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, v.mv_data, v.mv_size);
	h.refs = refs;
	memcpy(copy, &h, sizeof(h));
	put_be64(kb, id);
	v.mv_data = copy;
	rc = mdb_err(mdb_put(txn->txn, txn->store->dbi[DB_FILES], &k, &v, 0));
	free(copy);
	return rc;
}

int mrfs_store_file_ref(struct mrfs_txn *txn, uint64_t id)
{
	struct file_hdr h;
	MDB_val v;
	int rc = get_file_raw(txn, id, &h, &v);

	return rc ? rc : file_set_refs(txn, id, h.refs + 1);
}

static int chunk_unref(struct mrfs_txn *txn, const uint8_t *key)
{
	struct mrfs_store *store = txn->store;
	MDB_val k = {MRFS_KEY_LEN, (void *)key}, v;
	struct chunk_val cv;
	int rc = mdb_get(txn->txn, store->dbi[DB_CHUNKS], &k, &v);

	if (rc)
		return rc == MDB_NOTFOUND ? -EIO : mdb_err(rc);
	memcpy(&cv, v.mv_data, sizeof(cv));
	if (cv.refs)
		cv.refs--;
	v.mv_size = sizeof(cv);
	v.mv_data = &cv;
	return mdb_err(mdb_put(txn->txn, store->dbi[DB_CHUNKS], &k, &v, 0));
}

int mrfs_store_file_unref(struct mrfs_txn *txn, uint64_t id)
{
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb}, v;
	struct file_hdr h;
	struct file_ent *ents;
	int rc = get_file_raw(txn, id, &h, &v);

	if (rc)
		return rc;
	if (h.refs > 1)
		return file_set_refs(txn, id, h.refs - 1);
	ents = malloc((h.nchunks ? h.nchunks : 1) * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	for (uint32_t i = 0; i < h.nchunks; i++)
		file_ent_at(&v, i, &ents[i]);
	put_be64(kb, id);
	rc = mdb_err(mdb_del(txn->txn, txn->store->dbi[DB_FILES], &k, NULL));
	for (uint32_t i = 0; !rc && i < h.nchunks; i++)
		rc = chunk_unref(txn, ents[i].key);
	free(ents);
	return rc;
}

uint32_t mrfs_file_chunk_at(const struct mrfs_file *f, uint64_t off)
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

/* ---- reading ------------------------------------------------------------ */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

struct scratch {
	uint8_t *buf;
	size_t cap;
};

static void scratch_free(void *p)
{
	struct scratch *s = p;
	free(s->buf);
	free(s);
}

static void scratch_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

/* A per-thread buffer of at least @len bytes for checking chunks. */
static uint8_t *scratch(size_t len)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_init);
	s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		pthread_setspecific(scratch_key, s);
	}
	if (s->cap < len) {
		free(s->buf);
		s->buf = malloc(len);
		s->cap = s->buf ? len : 0;
	}
	return s->buf;
}

/*
 * The fd of the pack holding chunk @c. A pack that is gone was collected
 * after @c was located: find where gc moved the chunk and update @c.
 */
static int chunk_fd(struct mrfs_store *store, struct mrfs_chunk *c)
{
	MDB_txn *txn;
	MDB_val k = {MRFS_KEY_LEN, c->key}, v;
	struct chunk_val cv;
	int fd = pack_fd(store, c->pack);

	if (fd != -ENOENT)
		return fd;
	if (mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))
		return -EIO;
	if (mdb_get(txn, store->dbi[DB_CHUNKS], &k, &v) || v.mv_size != sizeof(cv)) {
		mdb_txn_abort(txn);
		return -EIO;
	}
	memcpy(&cv, v.mv_data, sizeof(cv));
	mdb_txn_abort(txn);
	if (cv.pack == c->pack || cv.len != c->len)
		return -EIO;
	c->pack = cv.pack;
	c->pack_off = cv.off;
	fd = pack_fd(store, c->pack);
	return fd < 0 ? -EIO : fd;
}

/* Read chunk @c whole into @buf and check it against its key. */
static int chunk_read_check(struct mrfs_store *store, struct mrfs_chunk *c, uint8_t *buf)
{
	uint8_t key[MRFS_KEY_LEN];
	int fd = chunk_fd(store, c);
	int rc;

	if (fd < 0)
		return fd;
	if ((rc = pread_all(fd, buf, c->len, c->pack_off)))
		return rc;
	mrfs_store_chunk_key(store, buf, c->len, key);
	if (memcmp(key, c->key, MRFS_KEY_LEN))
		return -EIO;
	keyset_add(&store->verified, c->key);
	return 0;
}

/* Read in this many bytes at a time when checking a chunk for a splice:
 * the daemon's many threads each keep one such buffer. */
#define CHECK_STEP (256u << 10)

/* Make sure chunk @c has been checked once; returns its pack's fd. */
static int chunk_checked_fd(struct mrfs_store *store, struct mrfs_chunk *c)
{
	XXH3_state_t st;
	uint8_t key[MRFS_KEY_LEN], *buf;
	int fd = chunk_fd(store, c), rc;

	if (fd < 0 || keyset_has(&store->verified, c->key))
		return fd;
	buf = scratch(CHECK_STEP);
	if (!buf)
		return -ENOMEM;
	XXH3_128bits_reset_withSecret(&st, store->secret, sizeof(store->secret));
	for (uint32_t off = 0; off < c->len; off += CHECK_STEP) {
		uint32_t n = c->len - off < CHECK_STEP ? c->len - off : CHECK_STEP;
		if ((rc = pread_all(fd, buf, n, c->pack_off + off)))
			return rc;
		XXH3_128bits_update(&st, buf, n);
	}
	XXH128_canonicalFromHash((XXH128_canonical_t *)key, XXH3_128bits_digest(&st));
	if (memcmp(key, c->key, MRFS_KEY_LEN))
		return -EIO;
	keyset_add(&store->verified, c->key);
	return fd;
}

ssize_t mrfs_store_read(struct mrfs_store *store, const struct mrfs_file *f, uint64_t off,
			size_t len, void *buf)
{
	uint8_t *out = buf;
	size_t done = 0;

	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	for (uint32_t i = mrfs_file_chunk_at(f, off); done < len; i++) {
		struct mrfs_chunk c = f->chunks[i];
		uint64_t in = off + done - c.off;
		size_t n = c.len - in;
		int rc;

		if (n > len - done)
			n = len - done;
		if (!keyset_has(&store->verified, c.key) && in == 0 && n == c.len) {
			/* the whole chunk: check it in place */
			if ((rc = chunk_read_check(store, &c, out + done)))
				return rc;
		} else {
			int fd = chunk_checked_fd(store, &c);
			if (fd < 0)
				return fd;
			if ((rc = pread_all(fd, out + done, n, c.pack_off + in)))
				return rc;
		}
		done += n;
	}
	return (ssize_t)done;
}

int mrfs_store_segments(struct mrfs_store *store, const struct mrfs_file *f, uint64_t off,
			size_t len, struct mrfs_segment *segs, int max, int *n)
{
	size_t done = 0;

	*n = 0;
	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	for (uint32_t i = mrfs_file_chunk_at(f, off); done < len && *n < max; i++) {
		struct mrfs_chunk c = f->chunks[i];
		uint64_t in = off + done - c.off;
		size_t k = c.len - in;
		int fd = chunk_checked_fd(store, &c);
		struct mrfs_segment *prev = *n ? &segs[*n - 1] : NULL;

		if (fd < 0)
			return fd;
		if (k > len - done)
			k = len - done;
		if (prev && prev->fd == fd && (uint64_t)prev->off + prev->len == c.pack_off + in) {
			prev->len += k; /* contiguous in the pack: one segment */
		} else {
			segs[*n] = (struct mrfs_segment){fd, (off_t)(c.pack_off + in), k};
			(*n)++;
		}
		done += k;
	}
	return 0;
}

/* ---- verify and stats --------------------------------------------------- */

/*
 * Call @fn for each well-formed entry of the chunk index, in key order,
 * inside @txn. @fn returns 0 to go on, or a negative errno to stop with.
 */
typedef int (*chunk_fn)(void *ctx, const uint8_t *key, const struct chunk_val *cv);

static int chunks_walk(struct mrfs_store *store, MDB_txn *txn, chunk_fn fn, void *ctx)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, frc = 0;

	if ((rc = mdb_err(mdb_cursor_open(txn, store->dbi[DB_CHUNKS], &cur))))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct chunk_val cv;
		if (v.mv_size != sizeof(cv) || k.mv_size != MRFS_KEY_LEN)
			continue;
		memcpy(&cv, v.mv_data, sizeof(cv));
		if ((frc = fn(ctx, k.mv_data, &cv)))
			break;
	}
	mdb_cursor_close(cur);
	if (frc)
		return frc;
	return rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
}

static int sum_len_cb(void *ctx, const uint8_t *key, const struct chunk_val *cv)
{
	(void)key;
	*(uint64_t *)ctx += cv->len;
	return 0;
}

struct vchunk {
	uint8_t key[MRFS_KEY_LEN];
	struct chunk_val cv;
	uint64_t counted;
	bool bad;
};

static int vchunk_cmp(const void *a, const void *b)
{
	return memcmp(a, b, MRFS_KEY_LEN);
}

static void report(mrfs_verify_fn fn, void *ctx, uint64_t file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(mrfs_verify_fn fn, void *ctx, uint64_t file, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fn(ctx, file, line);
}

int mrfs_store_verify(struct mrfs_store *store, mrfs_verify_fn fn, void *ctx)
{
	return mrfs_store_verify_progress(store, fn, ctx, NULL, NULL);
}

int mrfs_store_verify_progress(struct mrfs_store *store, mrfs_verify_fn fn, void *ctx,
			       mrfs_progress_fn progress, void *pctx)
{
	uint64_t done = 0, total = 0;
	struct vchunk *all = NULL;
	size_t n = 0, cap = 0;
	uint8_t *buf = NULL;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, problems = 0;
	char hex[2 * MRFS_KEY_LEN + 1];

	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))))
		return rc;
	buf = malloc(MRFS_CHUNK_MAX);
	if (!buf) {
		rc = -ENOMEM;
		goto out_abort;
	}

	/* every chunk's bytes against its key */
	if (progress && (rc = chunks_walk(store, txn, sum_len_cb, &total)))
		goto out_abort;
	if ((rc = mdb_err(mdb_cursor_open(txn, store->dbi[DB_CHUNKS], &cur))))
		goto out_abort;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct vchunk *c;
		struct mrfs_chunk mc;

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			struct vchunk *a = realloc(all, ncap * sizeof(*a));
			if (!a) {
				rc = ENOMEM;
				break;
			}
			all = a;
			cap = ncap;
		}
		c = &all[n++];
		memset(c, 0, sizeof(*c));
		if (k.mv_size != MRFS_KEY_LEN || v.mv_size != sizeof(c->cv)) {
			report(fn, ctx, 0, "malformed chunk index entry");
			problems++;
			n--;
			continue;
		}
		memcpy(c->key, k.mv_data, MRFS_KEY_LEN);
		memcpy(&c->cv, v.mv_data, sizeof(c->cv));
		memcpy(mc.key, c->key, MRFS_KEY_LEN);
		mc.len = c->cv.len;
		mc.pack = c->cv.pack;
		mc.pack_off = c->cv.off;
		if (progress) {
			done += mc.len;
			progress(pctx, done, total);
		}
		if (mc.len > MRFS_CHUNK_MAX || chunk_read_check(store, &mc, buf)) {
			mrfs_key_hex(c->key, hex);
			report(fn, ctx, 0,
			       "chunk %s (pack %" PRIu32 " offset %" PRIu64 " length %" PRIu32
			       "): bytes do not match the key",
			       hex, c->cv.pack, c->cv.off, c->cv.len);
			c->bad = true;
			problems++;
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		rc = mdb_err(rc);
		goto out_abort;
	}

	/* every file's references against the index */
	if ((rc = mdb_err(mdb_cursor_open(txn, store->dbi[DB_FILES], &cur))))
		goto out_abort;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct file_hdr h;
		uint64_t id = 0, sum = 0;
		bool bad = false;

		for (size_t i = 0; i < k.mv_size; i++)
			id = id << 8 | ((const uint8_t *)k.mv_data)[i];
		if (v.mv_size < sizeof(h)) {
			report(fn, ctx, id, "file %" PRIu64 ": malformed record", id);
			problems++;
			continue;
		}
		memcpy(&h, v.mv_data, sizeof(h));
		if (h.magic != FILE_MAGIC ||
		    v.mv_size != sizeof(h) + (size_t)h.nchunks * sizeof(struct file_ent)) {
			report(fn, ctx, id, "file %" PRIu64 ": malformed record", id);
			problems++;
			continue;
		}
		for (uint32_t i = 0; i < h.nchunks; i++) {
			struct file_ent e;
			struct vchunk *c;

			file_ent_at(&v, i, &e);
			sum += e.len;
			c = n ? bsearch(e.key, all, n, sizeof(*all), vchunk_cmp) : NULL;
			mrfs_key_hex(e.key, hex);
			if (!c) {
				report(fn, ctx, id,
				       "file %" PRIu64 ": chunk %s is missing from the index", id,
				       hex);
				problems++;
				continue;
			}
			c->counted++;
			if (c->bad && !bad) {
				report(fn, ctx, id,
				       "file %" PRIu64 ": chunk %s at offset %" PRIu64
				       " is damaged",
				       id, hex, sum - e.len);
				problems++;
				bad = true;
			}
		}
		if (sum != h.size) {
			report(fn, ctx, id,
			       "file %" PRIu64 ": chunks add up to %" PRIu64
			       " bytes, the file has %" PRIu64,
			       id, sum, h.size);
			problems++;
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		rc = mdb_err(rc);
		goto out_abort;
	}

	/* every chunk's reference count against the files that use it */
	for (size_t i = 0; i < n; i++) {
		if (all[i].counted == all[i].cv.refs)
			continue;
		mrfs_key_hex(all[i].key, hex);
		report(fn, ctx, 0,
		       "chunk %s: reference count %" PRIu64 ", files use it %" PRIu64 " times", hex,
		       all[i].cv.refs, all[i].counted);
		problems++;
	}
	rc = problems;

out_abort:
	mdb_txn_abort(txn);
	free(buf);
	free(all);
	return rc;
}

static int stats_chunk_cb(void *ctx, const uint8_t *key, const struct chunk_val *cv)
{
	struct mrfs_store_stats *st = ctx;

	(void)key;
	st->chunks++;
	st->stored_bytes += cv->len;
	st->dead_chunks += cv->refs == 0;
	return 0;
}

int mrfs_store_stats(struct mrfs_store *store, struct mrfs_store_stats *st)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	memset(st, 0, sizeof(*st));
	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))))
		return rc;
	if ((rc = chunks_walk(store, txn, stats_chunk_cb, st)))
		goto out_abort;
	if ((rc = mdb_err(mdb_cursor_open(txn, store->dbi[DB_FILES], &cur))))
		goto out_abort;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct file_hdr h;
		if (v.mv_size < sizeof(h))
			continue;
		memcpy(&h, v.mv_data, sizeof(h));
		st->files++;
		st->logical_bytes += h.size * h.refs;
	}
	mdb_cursor_close(cur);
	pthread_mutex_lock(&store->lock);
	rc = scan_packs(store, &st->packs, &st->pack_bytes);
	pthread_mutex_unlock(&store->lock);
out_abort:
	mdb_txn_abort(txn);
	return rc;
}

/* ---- key/value records -------------------------------------------------- */

int mrfs_kv_get(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen,
		struct mrfs_val *val)
{
	MDB_val k = {klen, (void *)key}, v;
	int rc = mdb_get(txn->txn, txn->store->dbi[db], &k, &v);

	if (rc)
		return mdb_err(rc);
	val->data = v.mv_data;
	val->len = v.mv_size;
	return 0;
}

int mrfs_kv_put(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen,
		const void *val, size_t vlen)
{
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};

	if (klen == 0 || klen > 511)
		return -EINVAL;
	return mdb_err(mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0));
}

int mrfs_kv_del(struct mrfs_txn *txn, enum mrfs_db db, const void *key, size_t klen)
{
	MDB_val k = {klen, (void *)key};

	return mdb_err(mdb_del(txn->txn, txn->store->dbi[db], &k, NULL));
}

static bool has_prefix(const MDB_val *k, const void *prefix, size_t plen)
{
	return !plen || (k->mv_size >= plen && !memcmp(k->mv_data, prefix, plen));
}

/* Whether key @a (@alen bytes) sorts before key @b, as LMDB orders them. */
static bool key_before(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c < 0 || (c == 0 && alen < blen);
}

int mrfs_kv_scan(struct mrfs_txn *txn, enum mrfs_db db, const void *prefix, size_t plen,
		 const void *from, size_t flen, mrfs_kv_fn fn, void *ctx)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_err(mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur))))
		return rc;
	if (from && plen && key_before(from, flen, prefix, plen))
		from = NULL; /* start at the prefix itself */
	if (from) {
		k.mv_size = flen;
		k.mv_data = (void *)from;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else if (plen) {
		k.mv_size = plen;
		k.mv_data = (void *)prefix;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	while (rc == 0 && has_prefix(&k, prefix, plen)) {
		struct mrfs_val kk = {k.mv_data, k.mv_size};
		struct mrfs_val vv = {v.mv_data, v.mv_size};
		rc = fn(ctx, kk, vv);
		if (rc) {
			mdb_cursor_close(cur);
			return rc < 0 ? rc : 0;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
}

int mrfs_kv_last(struct mrfs_txn *txn, enum mrfs_db db, const void *prefix, size_t plen,
		 struct mrfs_val *key, struct mrfs_val *val)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint8_t next[512];
	size_t nlen = plen;
	int rc;

	if (plen > sizeof(next))
		return -EINVAL;
	if ((rc = mdb_err(mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur))))
		return rc;
	/* the smallest key above every key with the prefix, if any */
	if (plen)
		memcpy(next, prefix, plen);
	while (nlen && next[nlen - 1] == 0xff)
		nlen--;
	if (nlen) {
		next[nlen - 1]++;
		k.mv_size = nlen;
		k.mv_data = next;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	}
	if (rc == 0 && !has_prefix(&k, prefix, plen))
		rc = MDB_NOTFOUND;
	if (rc == 0) {
		key->data = k.mv_data;
		key->len = k.mv_size;
		val->data = v.mv_data;
		val->len = v.mv_size;
	}
	mdb_cursor_close(cur);
	return mdb_err(rc);
}

int mrfs_kv_next_id(struct mrfs_txn *txn, const char *name, uint64_t *id)
{
	char key[64];
	struct mrfs_val v = {NULL, 0};
	uint64_t cur = 0;
	int rc;

	snprintf(key, sizeof(key), "id.%s", name);
	rc = mrfs_kv_get(txn, MRFS_DB_META, key, strlen(key), &v);
	if (rc == 0 && v.len == sizeof(cur))
		memcpy(&cur, v.data, sizeof(cur));
	else if (rc && rc != -ENOENT)
		return rc;
	cur++;
	if ((rc = mrfs_kv_put(txn, MRFS_DB_META, key, strlen(key), &cur, sizeof(cur))))
		return rc;
	*id = cur;
	return 0;
}

/* ---- garbage collection ------------------------------------------------- */

struct gc_pack {
	uint32_t id;
	uint64_t size, live;
};

static int gc_pack_cmp(const void *a, const void *b)
{
	const struct gc_pack *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Drop every unreferenced chunk from the index, in one transaction. */
static int gc_drop_dead(struct mrfs_store *store, uint64_t *dropped)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, 0, &txn))))
		return rc;
	if ((rc = mdb_err(mdb_cursor_open(txn, store->dbi[DB_CHUNKS], &cur)))) {
		mdb_txn_abort(txn);
		return rc;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct chunk_val cv;
		if (v.mv_size != sizeof(cv))
			continue;
		memcpy(&cv, v.mv_data, sizeof(cv));
		if (cv.refs)
			continue;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		(*dropped)++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return mdb_err(rc);
	}
	return mdb_err(mdb_txn_commit(txn));
}

struct survey {
	struct gc_pack *packs;
	size_t n;
};

static int survey_cb(void *ctx, const uint8_t *key, const struct chunk_val *cv)
{
	struct survey *sv = ctx;
	struct gc_pack want = {.id = cv->pack}, *p;

	(void)key;
	p = sv->n ? bsearch(&want, sv->packs, sv->n, sizeof(*p), gc_pack_cmp) : NULL;
	if (p)
		p->live += cv->len;
	return 0;
}

/* Live bytes per pack file, from the index and packs/. */
static int gc_survey(struct mrfs_store *store, struct gc_pack **out, size_t *n)
{
	struct gc_pack *packs = NULL;
	size_t cnt = 0, cap = 0;
	MDB_txn *txn;
	int fd = dup(store->packs_fd), rc;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		unsigned id;
		char tail;
		struct stat st;

		if (sscanf(de->d_name, "%u.pac%c", &id, &tail) != 2 || tail != 'k' ||
		    fstatat(store->packs_fd, de->d_name, &st, 0))
			continue;
		if (cnt == cap) {
			struct gc_pack *a = realloc(packs, (cap = cap ? 2 * cap : 64) * sizeof(*a));
			if (!a) {
				closedir(d);
				free(packs);
				return -ENOMEM;
			}
			packs = a;
		}
		packs[cnt++] = (struct gc_pack){id, (uint64_t)st.st_size, 0};
	}
	closedir(d);
	if (cnt)
		qsort(packs, cnt, sizeof(*packs), gc_pack_cmp);
	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))))
		goto out_free;
	rc = chunks_walk(store, txn, survey_cb, &(struct survey){packs, cnt});
	mdb_txn_abort(txn);
	if (rc)
		goto out_free;
	*out = packs;
	*n = cnt;
	return 0;
out_free:
	free(packs);
	return rc;
}

/* The chunks still in pack @id: their keys, in pack order. */
struct gc_chunk {
	uint8_t key[MRFS_KEY_LEN];
	struct chunk_val cv;
};

static int gc_chunk_cmp(const void *a, const void *b)
{
	const struct gc_chunk *x = a, *y = b;

	return x->cv.off < y->cv.off ? -1 : x->cv.off > y->cv.off;
}

struct pack_chunks {
	uint32_t id;
	struct gc_chunk *a;
	size_t n, cap;
};

static int pack_chunks_cb(void *ctx, const uint8_t *key, const struct chunk_val *cv)
{
	struct pack_chunks *pc = ctx;

	if (cv->pack != pc->id)
		return 0;
	if (pc->n == pc->cap) {
		size_t ncap = pc->cap ? 2 * pc->cap : 256;
		struct gc_chunk *b = realloc(pc->a, ncap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		pc->a = b;
		pc->cap = ncap;
	}
	memcpy(pc->a[pc->n].key, key, MRFS_KEY_LEN);
	pc->a[pc->n++].cv = *cv;
	return 0;
}

static int gc_chunks_of(struct mrfs_store *store, uint32_t id, struct gc_chunk **out, size_t *n)
{
	struct pack_chunks pc = {.id = id};
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn))))
		return rc;
	rc = chunks_walk(store, txn, pack_chunks_cb, &pc);
	mdb_txn_abort(txn);
	if (rc) {
		free(pc.a);
		return rc;
	}
	if (pc.n)
		qsort(pc.a, pc.n, sizeof(*pc.a), gc_chunk_cmp);
	*out = pc.a;
	*n = pc.n;
	return 0;
}

/*
 * Copy the live chunks of pack @p (locked by us) into a fresh pack, checking
 * each, then move their index entries in one transaction. Entries that
 * changed meanwhile (none should: packs are only appended by their locker)
 * are left alone.
 */
static int gc_rewrite(struct mrfs_store *store, const struct gc_pack *p, uint8_t *buf,
		      mrfs_progress_fn fn, void *ctx, uint64_t *done, uint64_t total)
{
	struct gc_chunk *cs = NULL;
	struct wpack *dst = NULL;
	size_t n = 0;
	MDB_txn *txn;
	int rc = gc_chunks_of(store, p->id, &cs, &n);

	if (rc)
		return rc;
	if (n && (rc = pack_take(store, &dst)))
		goto out_free;
	for (size_t i = 0; i < n && !rc; i++) {
		struct mrfs_chunk c = {
		    .len = cs[i].cv.len, .pack = p->id, .pack_off = cs[i].cv.off};
		memcpy(c.key, cs[i].key, MRFS_KEY_LEN);
		if (c.len > MRFS_CHUNK_MAX || (rc = chunk_read_check(store, &c, buf))) {
			rc = -EIO; /* a damaged chunk stays where verify finds it */
			break;
		}
		if ((rc = pwrite_all(dst->fd, buf, c.len, dst->size)))
			break;
		cs[i].cv.pack = dst->id;
		cs[i].cv.off = dst->size;
		dst->size += c.len;
		*done += c.len;
		if (fn)
			fn(ctx, *done, total);
	}
	if (!rc && dst && fdatasync(dst->fd))
		rc = -errno;
	if (rc)
		goto out_give;
	if ((rc = mdb_err(mdb_txn_begin(store->env, NULL, 0, &txn))))
		goto out_give;
	for (size_t i = 0; i < n && !rc; i++) {
		MDB_val k = {MRFS_KEY_LEN, cs[i].key}, v;
		struct chunk_val cur;
		if (mdb_get(txn, store->dbi[DB_CHUNKS], &k, &v) || v.mv_size != sizeof(cur))
			continue;
		memcpy(&cur, v.mv_data, sizeof(cur));
		if (cur.pack != p->id)
			continue;
		cs[i].cv.refs = cur.refs;
		v.mv_data = &cs[i].cv;
		v.mv_size = sizeof(cs[i].cv);
		rc = mdb_err(mdb_put(txn, store->dbi[DB_CHUNKS], &k, &v, 0));
	}
	if (rc)
		mdb_txn_abort(txn);
	else
		rc = mdb_err(mdb_txn_commit(txn));
out_give:
	if (dst) {
		if (rc)
			pack_rewind(store, dst, false);
		pack_give(store, dst);
	}
out_free:
	free(cs);
	return rc;
}

int mrfs_store_gc(struct mrfs_store *store, mrfs_progress_fn fn, void *ctx,
		  struct mrfs_gc_stats *st)
{
	struct gc_pack *packs = NULL;
	size_t n = 0;
	uint64_t done = 0, total = 0;
	uint8_t *buf;
	int rc;

	memset(st, 0, sizeof(*st));
	if (store->read_only)
		return -EROFS;
	if ((rc = gc_drop_dead(store, &st->chunks_dropped)) || (rc = gc_survey(store, &packs, &n)))
		return rc;
	buf = malloc(MRFS_CHUNK_MAX);
	if (!buf) {
		free(packs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		st->bytes_before += packs[i].size;
		if (packs[i].live * 2 <= packs[i].size)
			total += packs[i].live;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		struct gc_pack *p = &packs[i];
		char name[32];
		int fd;

		if (p->live * 2 > p->size)
			continue;
		pack_name(name, sizeof(name), p->id);
		fd = openat(store->packs_fd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* a pack some process may still append to is not ours to move */
		if (flock(fd, LOCK_EX | LOCK_NB)) {
			close(fd);
			continue;
		}
		if (p->live) {
			rc = gc_rewrite(store, p, buf, fn, ctx, &done, total);
			st->packs_rewritten += !rc;
		}
		if (!rc && !unlinkat(store->packs_fd, name, 0))
			st->packs_removed++;
		close(fd);
	}
	free(buf);
	free(packs);
	if (!rc)
		fsync(store->packs_fd);
	if (!rc) {
		uint64_t count = 0;
		pthread_mutex_lock(&store->lock);
		rc = scan_packs(store, &count, &st->bytes_after);
		pthread_mutex_unlock(&store->lock);
	}
	return rc;
}
