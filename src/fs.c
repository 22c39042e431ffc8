/* SPDX-License-Identifier: MIT */
/*
 * The FUSE driver: translate each low-level request into registry calls
 * and send exactly one reply.
 *
 * Inode numbers are derived from registry ids: the top byte says what the
 * inode is, the rest is the id of the model, alias, node or version. So
 * the driver keeps no inode table, and numbers survive remounts.
 *
 * Writes: a draft file open for writing has a `struct wnode`, shared by
 * every handle on it. Written in order from offset 0 it streams straight
 * into the store's chunker (W_STREAM); any other write turns it into a
 * temporary file in the store's tmp/ (W_TMP). On flush (close) the content
 * is committed to the node in one transaction; until then the version
 * holds the old content, so no half-written file ever enters it.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "mrfs/fs.h"
#include "mrfs/record.h"
#include "mrfs/registry.h"

#define KIND_SHIFT     56
#define ID_MASK	       ((1ull << KIND_SHIFT) - 1)
#define INO(kind, id)  (((uint64_t)(kind) << KIND_SHIFT) | (id))
#define SEALED_TIMEOUT 86400.0
/* Entries that change only with a history event (a sealed version's
 * directory and record, the versions directory): the watcher invalidates
 * them; the timeout bounds what a change without an event (a chmod of the
 * model through another mount) leaves stale. */
#define WATCHED_TIMEOUT 600.0
#define WATCH_POLL_MS	50
#define IO_BLOCK	(1u << 20)
/* Reads of up to 512 KiB: a reply then fits the 1 MiB pipe libfuse may
 * grow to (fs.pipe-max-size), so it is spliced from the pack files; a
 * larger one is copied twice through a fresh buffer. */
#define MAX_READ (512u << 10)
#define MAX_SEGS 16

enum kind {
	K_FIXED = 0,	  /* the root, /models, /history */
	K_MODEL = 1,	  /* /models/<m> */
	K_MODEL_JSON = 2, /* /models/<m>.json */
	K_VERSIONS = 3,	  /* /models/<m>/versions */
	K_MHIST = 4,	  /* /models/<m>/history */
	K_LATEST = 5,	  /* /models/<m>/latest */
	K_ALIAS = 6,	  /* /models/<m>/<alias>, by alias id */
	K_NODE = 7,	  /* a directory, file or symlink of a version */
	K_VJSON = 8,	  /* /models/<m>/versions/<n>.json, by version id */
	K_SALIAS = 9,	  /* /serving/<alias>, by alias name id */
	K_SMODEL = 10,	  /* /serving/<alias>/<m>, by alias name id << 32 | model id */
	K_SNODE = 11,	  /* a directory of a version seen through /serving */
	K_AT = 12,	  /* /models/<m>/@<time>[/<alias>], by entry of fs->at */
};

enum { INO_ROOT = 1, INO_MODELS = 2, INO_HISTORY = 3, INO_SERVING = 4 };

/* A time-travel inode: @<time> of a model (name empty) or an alias in it. */
struct at_entry {
	uint64_t model;
	int64_t time_ns;
	char name[MRFS_NAME_MAX + 1];
};

enum wstate { W_CLEAN, W_STREAM, W_TMP };

struct wnode {
	uint64_t id, vid;
	int refs;	      /* handles using it (under fs->wlock) */
	int writers;	      /* of those, open for writing */
	int active;	      /* writers not flushed since they last wrote */
	pthread_mutex_t lock; /* guards the rest */
	enum wstate state;
	struct mrfs_writer *w; /* W_STREAM */
	int fd;		       /* W_TMP */
	uint64_t size;
	uint64_t base;	       /* W_CLEAN: the committed store file */
	struct mrfs_file *cur; /* W_CLEAN: its loaded content, or NULL */
	bool dirty;
	int64_t mtime_ns;
	struct wnode *next;
};

enum htype { H_DIR, H_CONTENT, H_BUF, H_NODE };

struct dent {
	size_t name; /* offset in the handle's names */
	uint64_t ino;
	mode_t type;
};

/*
 * An open file or directory. fi->fh holds its id, not its address: the
 * kernel may send release while a read of an interrupted caller is still
 * being served, so every operation takes a reference through the table and
 * the last one frees the handle.
 */
struct handle {
	uint64_t id;
	int refs;	     /* under fs->hlock */
	struct handle *next; /* in its bucket */
	enum htype type;
	struct mrfs_file *file; /* H_CONTENT: NULL for an empty file */
	char *buf;		/* H_BUF */
	size_t len, cap;
	fuse_ino_t ino;	    /* H_BUF: the record it renders */
	bool dirty;	    /* H_BUF: changed, not yet applied */
	bool written;	    /* H_BUF: written to since it was opened */
	struct dent *dents; /* H_DIR */
	size_t ndents;
	char *names; /* H_DIR: the entries' names, each NUL-ended */
	size_t names_len;
	uint64_t gen;	  /* H_DIR: fs->gen when listed */
	struct wnode *wn; /* H_NODE */
	bool writer, active;
	struct mrfs_node nd; /* H_CONTENT, H_NODE: the node as opened */
};

struct mrfs_fs {
	struct mrfs_store *store;
	struct mrfs_registry *reg;
	char *mountpoint;
	gid_t admin_gid; /* (gid_t)-1: no admin group */
	int tmp_fd;
	pthread_mutex_t wlock;
	struct wnode *wnodes;
	pthread_mutex_t hlock; /* guards the handle table */
	struct handle *handles[256];
	uint64_t next_handle;
	pthread_mutex_t at_lock; /* guards at, nat */
	struct at_entry *at;
	size_t nat, capat;

	/* cache coherence: see "the watcher" */
	struct fuse_session *se;
	pthread_rwlock_t gate;
	uint64_t gen; /* atomic: bumped before each round of invalidations */
	pthread_t watcher;
	bool watching;
	pthread_mutex_t watch_lock; /* guards watch_stop, watch_kicked, known */
	pthread_cond_t watch_cond;
	bool watch_stop, watch_kicked;
	uint64_t seen_txnid, next_seq;	/* the watcher's own */
	uint64_t commits, seen_commits; /* of this process (commits: atomic) */
	uint64_t *known;		/* bitmap: model ids given to the kernel */
	size_t nknown;			/* words of it */
};

/* ---- helpers ------------------------------------------------------------ */

static unsigned kind_of(fuse_ino_t ino)
{
	return (unsigned)(ino >> KIND_SHIFT);
}

static uint64_t id_of(fuse_ino_t ino)
{
	return ino & ID_MASK;
}

static bool is_record(fuse_ino_t ino)
{
	return kind_of(ino) == K_VJSON || kind_of(ino) == K_MODEL_JSON;
}

static struct mrfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct timespec ts_of(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
	return ts;
}

static int64_t ns_of(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Whether the caller is in the mount's --admin-group. */
static bool in_admin_group(fuse_req_t req)
{
	struct mrfs_fs *fs = fs_of(req);
	gid_t groups[256];
	int n;

	if (fs->admin_gid == (gid_t)-1)
		return false;
	if (fuse_req_ctx(req)->gid == fs->admin_gid)
		return true;
	n = fuse_req_getgroups(req, 256, groups);
	for (int i = 0; i < n && i < 256; i++)
		if (groups[i] == fs->admin_gid)
			return true;
	return false;
}

static void who_of(fuse_req_t req, struct mrfs_caller *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct passwd pw, *res = NULL;
	char buf[1024], path[64];
	FILE *f;

	memset(c, 0, sizeof(*c));
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->pid = ctx->pid;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)ctx->pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(c->comm, sizeof(c->comm), f))
			c->comm[strcspn(c->comm, "\n")] = '\0';
		fclose(f);
	}
	if (!getpwuid_r(ctx->uid, &pw, buf, sizeof(buf), &res) && res)
		snprintf(c->user, sizeof(c->user), "%s", pw.pw_name);
	else
		snprintf(c->user, sizeof(c->user), "%u", (unsigned)ctx->uid);
	c->admin = in_admin_group(req);
}

/* ---- paths for the log -------------------------------------------------- */

struct find_name {
	uint64_t id;
	char *out;
	size_t size;
};

static int find_name_cb(void *ctx, const char *name, uint64_t id)
{
	struct find_name *f = ctx;

	if (id != f->id)
		return 0;
	snprintf(f->out, f->size, "%s", name);
	return 1;
}

/* Prepend "/@part" to the path held at the end of @buf (from *@pos). */
static void prepend(char *buf, size_t *pos, const char *part)
{
	size_t n = strlen(part);

	if (n + 1 > *pos)
		return;
	*pos -= n;
	memcpy(buf + *pos, part, n);
	buf[--*pos] = '/';
}

static int at_get(struct mrfs_fs *fs, fuse_ino_t ino, struct at_entry *e);
static void watch_known(struct mrfs_fs *fs, uint64_t id);
static int smodel_alias(struct mrfs_txn *txn, fuse_ino_t ino, uint64_t *model,
			struct mrfs_alias *a);

/* The path of @ino inside the mount, for log lines. */
static void path_of(struct mrfs_fs *fs, fuse_ino_t ino, char *out, size_t size)
{
	char buf[4096], part[MRFS_PATH_NAME_MAX + 16];
	size_t pos = sizeof(buf) - 1;
	struct mrfs_txn *txn;
	uint64_t id = id_of(ino), model = 0;
	struct mrfs_model m;
	struct mrfs_node nd;
	struct mrfs_version v;
	struct mrfs_alias a;

	buf[pos] = '\0';
	if (mrfs_txn_begin(fs->store, false, &txn)) {
		snprintf(out, size, "inode %" PRIu64, (uint64_t)ino);
		return;
	}
	switch (kind_of(ino)) {
	case K_FIXED:
		prepend(buf, &pos,
			ino == INO_MODELS    ? "models"
			: ino == INO_HISTORY ? "history"
			: ino == INO_SERVING ? "serving"
					     : "");
		break;
	case K_SALIAS:
		if (!mrfs_alias_name_by_id(txn, id, part))
			prepend(buf, &pos, part);
		prepend(buf, &pos, "serving");
		break;
	case K_SMODEL:
		if (!smodel_alias(txn, ino, &model, &a) && !mrfs_model_get(txn, model, &m)) {
			prepend(buf, &pos, m.name);
			prepend(buf, &pos, a.name);
		}
		prepend(buf, &pos, "serving");
		model = 0;
		break;
	case K_AT: {
		struct at_entry e;
		char when[64];
		if (at_get(fs, ino, &e))
			break;
		if (*e.name)
			prepend(buf, &pos, e.name);
		mrfs_time_format(e.time_ns, when, sizeof(when));
		snprintf(part, sizeof(part), "@%s", when);
		prepend(buf, &pos, part);
		model = e.model;
		break;
	}
	case K_SNODE: /* named as the version's directory it shows */
	case K_NODE:
		while (!mrfs_node_get(txn, id, &nd) && nd.parent) {
			struct find_name f = {id, part, sizeof(part)};
			part[0] = '\0';
			mrfs_dir_walk(txn, nd.parent, NULL, find_name_cb, &f);
			prepend(buf, &pos, part);
			id = nd.parent;
		}
		/* @id is now the version's root */
		__attribute__((fallthrough));
	case K_VJSON:
		if (!mrfs_version_get(txn, id, &v)) {
			snprintf(part, sizeof(part), "%u%s", v.n,
				 kind_of(ino) == K_VJSON ? ".json" : "");
			prepend(buf, &pos, part);
			model = v.model;
		}
		prepend(buf, &pos, "versions");
		break;
	case K_ALIAS:
		if (!mrfs_alias_by_id(txn, id, &model, &a))
			prepend(buf, &pos, a.name);
		break;
	case K_VERSIONS:
	case K_MHIST:
	case K_LATEST:
		prepend(buf, &pos,
			kind_of(ino) == K_VERSIONS ? "versions"
			: kind_of(ino) == K_MHIST  ? "history"
						   : "latest");
		__attribute__((fallthrough));
	case K_MODEL:
	case K_MODEL_JSON:
		model = id;
		break;
	}
	if (model && !mrfs_model_get(txn, model, &m)) {
		snprintf(part, sizeof(part), "%s%s", m.name,
			 kind_of(ino) == K_MODEL_JSON ? ".json" : "");
		prepend(buf, &pos, part);
		prepend(buf, &pos, "models");
	}
	mrfs_txn_abort(txn);
	snprintf(out, size, "%s", pos < sizeof(buf) - 1 ? buf + pos : "/");
}

/*
 * Reply @rc (negative errno) to @req and, for refusals, log one line:
 * "mrfs: OP PATH: WHY (ENAME)". @name is the entry under @ino, or NULL.
 */
static void fail(fuse_req_t req, int rc, const char *op, fuse_ino_t ino, const char *name,
		 const char *why)
{
	struct mrfs_fs *fs = fs_of(req);
	char path[4096];

	if (rc != -ENOENT || (why && *why)) {
		path_of(fs, ino, path, sizeof(path));
		fprintf(stderr, "mrfs: %s %s%s%s: %s (%s)\n", op, path,
			name ? (strcmp(path, "/") ? "/" : "") : "", name ? name : "",
			why && *why ? why : strerror(-rc), strerrorname_np(-rc));
	}
	fuse_reply_err(req, -rc);
}

/* Whether @ino is in a view nothing can change: /serving, @<time>. */
static bool read_only_view(fuse_ino_t ino)
{
	unsigned k = kind_of(ino);

	return ino == INO_SERVING || k == K_SALIAS || k == K_SMODEL || k == K_SNODE || k == K_AT;
}

/* Refuse a change in a read-only view: true when @req was answered. */
static bool refuse_view(fuse_req_t req, const char *op, fuse_ino_t ino, const char *name)
{
	bool past = kind_of(ino) == K_AT || (kind_of(ino) == K_MODEL && name && name[0] == '@');

	if (!past && !read_only_view(ino))
		return false;
	fail(req, -EROFS, op, ino, name,
	     past ? "the past cannot change" : "the serving view is read-only");
	return true;
}

/* ---- the write table ----------------------------------------------------- */

/* Find the wnode of node @id (under fs->wlock). */
static struct wnode *wnode_find(struct mrfs_fs *fs, uint64_t id)
{
	for (struct wnode *w = fs->wnodes; w; w = w->next)
		if (w->id == id)
			return w;
	return NULL;
}

/* Take a reference on the wnode of @nd, making it (W_CLEAN) if needed. */
static struct wnode *wnode_get(struct mrfs_fs *fs, const struct mrfs_node *nd, bool writer)
{
	struct wnode *w;

	pthread_mutex_lock(&fs->wlock);
	w = wnode_find(fs, nd->id);
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			goto out;
		w->id = nd->id;
		w->vid = nd->version;
		w->state = W_CLEAN;
		w->fd = -1;
		w->size = nd->size;
		w->base = nd->file;
		w->mtime_ns = nd->mtime_ns;
		pthread_mutex_init(&w->lock, NULL);
		w->next = fs->wnodes;
		fs->wnodes = w;
	}
	w->refs++;
	if (writer) {
		w->writers++;
		w->active++;
	}
out:
	pthread_mutex_unlock(&fs->wlock);
	return w;
}

static void wnode_reset(struct wnode *w)
{
	mrfs_writer_abort(w->w);
	w->w = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	mrfs_file_free(w->cur);
	w->cur = NULL;
}

/* Drop a reference; the last one frees @w (its content must be committed
 * or given up by then). */
static void wnode_put(struct mrfs_fs *fs, struct wnode *w, bool writer, bool active)
{
	struct wnode **pp;
	bool last;

	pthread_mutex_lock(&fs->wlock);
	if (writer) {
		w->writers--;
		if (active)
			w->active--;
	}
	last = --w->refs == 0;
	if (last) {
		for (pp = &fs->wnodes; *pp != w; pp = &(*pp)->next)
			;
		*pp = w->next;
	}
	pthread_mutex_unlock(&fs->wlock);
	if (last) {
		wnode_reset(w);
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}

/*
 * Whether a file of version @vid is open for writing: mrfs_busy_fn. A
 * handle whose file was closed (flushed) but whose release has not arrived
 * yet is given a moment: close() returns before the kernel sends release,
 * so `cp f versions/3/ && chmod a-w versions/3` must not see it busy.
 */
static bool version_busy(void *ctx, uint64_t vid)
{
	struct mrfs_fs *fs = ctx;

	for (int tries = 0;; tries++) {
		int writers = 0, active = 0;

		pthread_mutex_lock(&fs->wlock);
		for (struct wnode *w = fs->wnodes; w; w = w->next) {
			if (w->vid == vid) {
				writers += w->writers;
				active += w->active;
			}
		}
		pthread_mutex_unlock(&fs->wlock);
		if (active || (writers && tries == 40))
			return true;
		if (!writers)
			return false;
		usleep(5000);
	}
}

static int tmp_open(struct mrfs_fs *fs)
{
	int fd = openat(fs->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
}

/* Load the committed content of a W_CLEAN wnode. */
static int wnode_load(struct mrfs_fs *fs, struct wnode *w)
{
	struct mrfs_txn *txn;
	int rc;

	if (w->cur || !w->base)
		return 0;
	if ((rc = mrfs_txn_begin(fs->store, false, &txn)))
		return rc;
	rc = mrfs_store_file_get(txn, w->base, &w->cur);
	mrfs_txn_abort(txn);
	return rc;
}

/* Turn @w into W_TMP, keeping its bytes (under w->lock). */
static int wnode_to_tmp(struct mrfs_fs *fs, struct wnode *w)
{
	int fd, rc = 0;

	if (w->state == W_TMP)
		return 0;
	fd = tmp_open(fs);
	if (fd < 0)
		return fd;
	if (w->state == W_STREAM) {
		rc = mrfs_writer_spill(w->w, fd);
		w->w = NULL;
	} else if (w->base && !(rc = wnode_load(fs, w))) {
		uint8_t *buf = malloc(IO_BLOCK);
		uint64_t off = 0;
		if (!buf)
			rc = -ENOMEM;
		while (!rc && off < w->cur->size) {
			ssize_t n = mrfs_store_read(fs->store, w->cur, off, IO_BLOCK, buf);
			if (n <= 0)
				rc = n < 0 ? (int)n : -EIO;
			else if (pwrite(fd, buf, (size_t)n, (off_t)off) != n)
				rc = -errno;
			off += n > 0 ? (uint64_t)n : 0;
		}
		free(buf);
	}
	if (!rc && ftruncate(fd, (off_t)w->size))
		rc = -errno;
	if (rc) {
		close(fd);
		if (w->state == W_STREAM) {
			/* the stream is gone: what the node held is what remains */
			w->state = W_CLEAN;
			w->dirty = false;
		}
		return rc;
	}
	mrfs_file_free(w->cur);
	w->cur = NULL;
	w->state = W_TMP;
	w->fd = fd;
	return 0;
}

/* Make @w an empty stream (truncation to 0, or a first write). */
static int wnode_restart(struct mrfs_fs *fs, struct wnode *w)
{
	struct mrfs_writer *nw;
	int rc = mrfs_writer_new(fs->store, &nw);

	if (rc)
		return rc;
	wnode_reset(w);
	w->w = nw;
	w->state = W_STREAM;
	w->size = 0;
	w->dirty = true;
	return 0;
}

static int wnode_truncate(struct mrfs_fs *fs, struct wnode *w, uint64_t size)
{
	int rc;

	if (size == w->size)
		return 0;
	if (size == 0)
		return wnode_restart(fs, w);
	if ((rc = wnode_to_tmp(fs, w)))
		return rc;
	if (ftruncate(w->fd, (off_t)size))
		return -errno;
	w->size = size;
	w->dirty = true;
	w->mtime_ns = mrfs_now_ns();
	return 0;
}

static int wnode_write(struct mrfs_fs *fs, struct wnode *w, const void *buf, size_t len,
		       uint64_t off)
{
	int rc;

	if (w->state == W_CLEAN && w->size == 0 && off == 0 && (rc = wnode_restart(fs, w)))
		return rc;
	if (w->state == W_STREAM && off == w->size) {
		if ((rc = mrfs_writer_write(w->w, buf, len))) {
			/* the stream is lost: the node keeps its old content */
			mrfs_writer_abort(w->w);
			w->w = NULL;
			w->state = W_CLEAN;
			w->dirty = false;
			w->size = 0;
			return rc;
		}
	} else {
		ssize_t n;
		if ((rc = wnode_to_tmp(fs, w)))
			return rc;
		n = pwrite(w->fd, buf, len, (off_t)off);
		if (n < 0)
			return -errno;
		len = (size_t)n;
	}
	if (off + len > w->size)
		w->size = off + len;
	w->dirty = true;
	w->mtime_ns = mrfs_now_ns();
	return (int)len;
}

static ssize_t wnode_read(struct mrfs_fs *fs, struct wnode *w, void *buf, size_t len, uint64_t off)
{
	int rc;

	if (off >= w->size)
		return 0;
	if (len > w->size - off)
		len = (size_t)(w->size - off);
	if (w->state == W_CLEAN) {
		if ((rc = wnode_load(fs, w)))
			return rc;
		return w->cur ? mrfs_store_read(fs->store, w->cur, off, len, buf) : 0;
	}
	if ((rc = wnode_to_tmp(fs, w)))
		return rc;
	ssize_t n = pread(w->fd, buf, len, (off_t)off);
	return n < 0 ? -errno : n;
}

/* Commit @w's content to its node (under w->lock). */
static int wnode_commit(struct mrfs_fs *fs, struct wnode *w, struct mrfs_err *err)
{
	struct mrfs_writer *nw = NULL;
	struct mrfs_node nd;
	int rc = 0;

	if (!w->dirty)
		return 0;
	if (w->state == W_STREAM) {
		nw = w->w;
		w->w = NULL;
	} else if (w->state == W_TMP) {
		uint8_t *buf = malloc(IO_BLOCK);
		uint64_t off = 0;
		if (!buf)
			return -ENOMEM;
		rc = mrfs_writer_new(fs->store, &nw);
		while (!rc && off < w->size) {
			ssize_t n = pread(w->fd, buf, IO_BLOCK, (off_t)off);
			if (n <= 0)
				rc = n < 0 ? -errno : -EIO;
			else
				rc = mrfs_writer_write(nw, buf, (size_t)n);
			off += n > 0 ? (uint64_t)n : 0;
		}
		free(buf);
		if (rc) {
			mrfs_writer_abort(nw);
			return rc; /* the temporary file stays for another try */
		}
	} else {
		/* dirty and clean: a truncation of an empty file, or a new mtime */
		if ((rc = mrfs_writer_new(fs->store, &nw)))
			return rc;
	}
	rc = mrfs_node_commit(fs->reg, w->id, nw, w->mtime_ns, &nd, err);
	wnode_reset(w);
	w->state = W_CLEAN;
	w->dirty = false;
	if (rc) {
		/* given up: show what the node still holds */
		struct mrfs_txn *txn;
		if (!mrfs_txn_begin(fs->store, false, &txn)) {
			if (!mrfs_node_get(txn, w->id, &nd)) {
				w->base = nd.file;
				w->size = nd.size;
				w->mtime_ns = nd.mtime_ns;
			}
			mrfs_txn_abort(txn);
		}
		return rc;
	}
	w->base = nd.file;
	w->size = nd.size;
	return 0;
}

/* ---- handles ------------------------------------------------------------------ */

static struct handle *handle_new(enum htype type)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (h)
		h->type = type;
	return h;
}

/* Free @h and what it holds (it is in no table). */
static void handle_destroy(struct mrfs_fs *fs, struct handle *h)
{
	if (!h)
		return;
	if (h->wn)
		wnode_put(fs, h->wn, h->writer, h->active);
	free(h->dents);
	free(h->names);
	free(h->buf);
	mrfs_file_free(h->file);
	free(h);
}

/* Enter @h in the table (one reference: the open) and hand it to @fi. */
static void handle_open(struct mrfs_fs *fs, struct handle *h, struct fuse_file_info *fi)
{
	pthread_mutex_lock(&fs->hlock);
	h->id = ++fs->next_handle;
	h->refs = 1;
	h->next = fs->handles[h->id % 256];
	fs->handles[h->id % 256] = h;
	pthread_mutex_unlock(&fs->hlock);
	fi->fh = h->id;
}

/* The handle of @fi with a reference taken, or NULL (already released).
 * With @close, it also leaves the table: release's job. */
static struct handle *handle_get(struct mrfs_fs *fs, struct fuse_file_info *fi, bool close)
{
	struct handle **pp, *h;

	pthread_mutex_lock(&fs->hlock);
	for (pp = &fs->handles[fi->fh % 256]; (h = *pp) && h->id != fi->fh; pp = &h->next)
		;
	if (h) {
		if (close)
			*pp = h->next; /* the table's reference passes to the caller */
		else
			h->refs++;
	}
	pthread_mutex_unlock(&fs->hlock);
	return h;
}

static void handle_put(struct mrfs_fs *fs, struct handle *h)
{
	bool last;

	pthread_mutex_lock(&fs->hlock);
	last = --h->refs == 0;
	pthread_mutex_unlock(&fs->hlock);
	if (last)
		handle_destroy(fs, h);
}

/* ---- the serving view and time travel ------------------------------------------ */

/* The time-travel entry for (@model, @time_ns, @name): its inode number.
 * Entries are few (one per name looked up) and kept for the mount's life. */
static int at_ino(struct mrfs_fs *fs, uint64_t model, int64_t time_ns, const char *name,
		  fuse_ino_t *ino)
{
	size_t i;
	int rc = 0;

	pthread_mutex_lock(&fs->at_lock);
	for (i = 0; i < fs->nat; i++)
		if (fs->at[i].model == model && fs->at[i].time_ns == time_ns &&
		    !strcmp(fs->at[i].name, name))
			break;
	if (i == fs->nat) {
		if (fs->nat == fs->capat) {
			size_t ncap = fs->capat ? fs->capat * 2 : 16;
			struct at_entry *a = realloc(fs->at, ncap * sizeof(*a));
			if (!a) {
				rc = -ENOMEM;
				goto out;
			}
			fs->at = a;
			fs->capat = ncap;
		}
		fs->at[i].model = model;
		fs->at[i].time_ns = time_ns;
		snprintf(fs->at[i].name, sizeof(fs->at[i].name), "%s", name);
		fs->nat++;
	}
	*ino = INO(K_AT, i + 1);
out:
	pthread_mutex_unlock(&fs->at_lock);
	return rc;
}

static int at_get(struct mrfs_fs *fs, fuse_ino_t ino, struct at_entry *e)
{
	uint64_t i = id_of(ino);
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->at_lock);
	if (i >= 1 && i <= fs->nat) {
		*e = fs->at[i - 1];
		rc = 0;
	}
	pthread_mutex_unlock(&fs->at_lock);
	return rc;
}

/*
 * /serving/<alias>/<m> is named by its alias name and model, not by the
 * alias's id (which moves with rename): a poller sitting in the directory
 * keeps seeing the alias as it moves.
 */
static int smodel_ino(uint64_t name_id, uint64_t model, fuse_ino_t *ino)
{
	if (name_id >= (1ull << 24) || model >= (1ull << 32))
		return -EOVERFLOW;
	*ino = INO(K_SMODEL, name_id << 32 | model);
	return 0;
}

static int smodel_alias(struct mrfs_txn *txn, fuse_ino_t ino, uint64_t *model, struct mrfs_alias *a)
{
	char name[MRFS_NAME_MAX + 1];
	int rc = mrfs_alias_name_by_id(txn, id_of(ino) >> 32, name);

	*model = id_of(ino) & 0xffffffffu;
	return rc ? rc : mrfs_alias_get(txn, *model, name, a);
}

struct find_alias {
	const char *name;
	struct mrfs_alias found;
	bool ok;
};

static int find_alias_cb(void *ctx, const struct mrfs_alias *a)
{
	struct find_alias *f = ctx;

	if (strcmp(a->name, f->name))
		return 0;
	f->found = *a;
	f->ok = true;
	return 1;
}

/* What alias @name of @model pointed at at @time_ns. -ENOENT: nothing. */
static int alias_at(struct mrfs_txn *txn, uint64_t model, int64_t time_ns, const char *name,
		    uint32_t *n)
{
	struct find_alias f = {.name = name};
	int rc = mrfs_aliases_at(txn, model, time_ns, find_alias_cb, &f);

	if (rc)
		return rc;
	if (!f.ok)
		return -ENOENT;
	*n = f.found.version;
	return 0;
}

struct has_alias {
	const char *name;
	bool found;
};

static int has_alias_cb(void *ctx, uint64_t model, const struct mrfs_alias *a)
{
	struct has_alias *h = ctx;

	(void)model;
	if (strcmp(a->name, h->name))
		return 0;
	h->found = true;
	return 1;
}

/* The newest time an alias moved to version @n of @model (0: none). */
struct newest_move {
	uint32_t n;
	int64_t time_ns;
};

static int newest_move_cb(void *ctx, const struct mrfs_alias *a)
{
	struct newest_move *m = ctx;

	if (a->version == m->n && a->time_ns > m->time_ns)
		m->time_ns = a->time_ns;
	return 0;
}

/* ---- attributes -------------------------------------------------------------- */

/* When this mount started: the time of the directories mrfs makes up. */
static struct timespec started;

static void fixed_dir(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	st->st_atim = st->st_mtim = st->st_ctim = started;
	st->st_ino = ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
}

static void symlink_attr(struct stat *st, fuse_ino_t ino, const struct mrfs_model *m, uint32_t n,
			 int64_t time_ns)
{
	char target[32];

	st->st_ino = ino;
	st->st_mode = S_IFLNK | 0777;
	st->st_nlink = 1;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_size = snprintf(target, sizeof(target), "versions/%u", n);
	st->st_mtim = st->st_ctim = st->st_atim = ts_of(time_ns);
}

/* The size of a generated record. */
static int record_size(struct mrfs_txn *txn, fuse_ino_t ino, off_t *size)
{
	char *text = NULL;
	size_t len = 0;
	uint64_t n = 0;
	int rc;

	if (kind_of(ino) == K_VJSON) {
		rc = mrfs_version_record_size(txn, id_of(ino), &n);
		*size = (off_t)n;
		return rc;
	}
	rc = mrfs_model_record(txn, id_of(ino), &text, &len);
	free(text);
	*size = (off_t)len;
	return rc;
}

/*
 * Attributes of @ino into @st, and how long the kernel may keep them
 * (*@timeout). Returns 0, -ENOENT, -EIO.
 */
static int attr_of(struct mrfs_fs *fs, struct mrfs_txn *txn, fuse_ino_t ino, struct stat *st,
		   double *timeout)
{
	struct mrfs_model m;
	struct mrfs_version v;
	struct mrfs_node nd;
	struct mrfs_alias a;
	uint64_t id = id_of(ino), model;
	int rc;

	memset(st, 0, sizeof(*st));
	*timeout = 0;
	st->st_blksize = IO_BLOCK;
	switch (kind_of(ino)) {
	case K_FIXED:
		*timeout = ino == INO_HISTORY ? 0 : SEALED_TIMEOUT;
		if (ino == INO_ROOT) {
			fixed_dir(st, ino, 0755);
			st->st_nlink = 3;
		} else if (ino == INO_MODELS) {
			/* anyone may register a model; only its owner removes it */
			fixed_dir(st, ino, 01777);
		} else if (ino == INO_HISTORY) {
			fixed_dir(st, ino, 0444);
			st->st_mode = S_IFREG | 0444;
			st->st_nlink = 1;
			st->st_size = (off_t)mrfs_history_size(txn, 0);
		} else if (ino == INO_SERVING) {
			fixed_dir(st, ino, 0555);
		} else {
			return -ENOENT;
		}
		return 0;
	case K_SALIAS: {
		char name[MRFS_NAME_MAX + 1];
		if ((rc = mrfs_alias_name_by_id(txn, id, name)))
			return rc;
		fixed_dir(st, ino, 0555);
		return 0;
	}
	case K_SMODEL:
		if ((rc = smodel_alias(txn, ino, &model, &a)))
			return rc;
		fixed_dir(st, ino, 0555);
		/* pollers see the alias move as a change of this directory */
		st->st_mtim = st->st_ctim = ts_of(a.time_ns);
		return 0;
	case K_AT: {
		struct at_entry e;
		uint32_t n;
		if ((rc = at_get(fs, ino, &e)) || (rc = mrfs_model_get(txn, e.model, &m)))
			return rc;
		if (!*e.name) {
			fixed_dir(st, ino, 0555);
			st->st_uid = m.uid;
			st->st_gid = m.gid;
			st->st_mtim = st->st_ctim = ts_of(e.time_ns);
			return 0;
		}
		if ((rc = alias_at(txn, e.model, e.time_ns, e.name, &n)))
			return rc;
		symlink_attr(st, ino, &m, n, e.time_ns);
		st->st_size += 3; /* "../" */
		return 0;
	}
	case K_MODEL:
	case K_VERSIONS:
	case K_MHIST:
	case K_MODEL_JSON:
	case K_LATEST:
		if ((rc = mrfs_model_get(txn, id, &m)))
			return rc;
		st->st_ino = ino;
		st->st_uid = m.uid;
		st->st_gid = m.gid;
		st->st_mtim = ts_of(m.mtime_ns);
		st->st_ctim = ts_of(m.ctime_ns);
		st->st_atim = st->st_mtim;
		st->st_nlink = 1;
		if (kind_of(ino) == K_MODEL) {
			st->st_mode = S_IFDIR | m.mode;
			st->st_nlink = 3;
			*timeout = WATCHED_TIMEOUT;
		} else if (kind_of(ino) == K_VERSIONS) {
			st->st_mode = S_IFDIR | m.mode;
			st->st_nlink = 2;
			*timeout = WATCHED_TIMEOUT;
		} else if (kind_of(ino) == K_MHIST) {
			st->st_mode = S_IFREG | 0444;
			st->st_size = (off_t)m.hist_bytes;
		} else if (kind_of(ino) == K_MODEL_JSON) {
			/* writable by those who may write the model */
			st->st_mode = S_IFREG | (m.mode & 0666);
			return record_size(txn, ino, &st->st_size);
		} else {
			if (!m.latest)
				return -ENOENT;
			symlink_attr(st, ino, &m, m.latest, m.mtime_ns);
		}
		return 0;
	case K_ALIAS:
		if ((rc = mrfs_alias_by_id(txn, id, &model, &a)) ||
		    (rc = mrfs_model_get(txn, model, &m)))
			return rc;
		symlink_attr(st, ino, &m, a.version, a.time_ns);
		return 0;
	case K_VJSON:
		if ((rc = mrfs_version_get(txn, id, &v)) || (rc = mrfs_model_get(txn, v.model, &m)))
			return rc;
		st->st_ino = ino;
		st->st_mode = S_IFREG | (m.mode & 0666);
		st->st_nlink = 1;
		st->st_uid = m.uid;
		st->st_gid = m.gid;
		st->st_mtim = st->st_ctim = st->st_atim =
		    ts_of(v.sealed.time_ns ? v.sealed.time_ns : v.created.time_ns);
		/* a draft's record changes with every file written */
		if (v.state == MRFS_SEALED)
			*timeout = WATCHED_TIMEOUT;
		return record_size(txn, ino, &st->st_size);
	case K_SNODE:
	case K_NODE:
		if ((rc = mrfs_node_get(txn, id, &nd)) ||
		    (rc = mrfs_version_get(txn, nd.version, &v)))
			return rc;
		if (kind_of(ino) == K_SNODE && (!S_ISDIR(nd.mode) || v.state != MRFS_SEALED))
			return -ENOENT;
		st->st_ino = ino;
		st->st_mode = nd.mode;
		st->st_nlink = nd.nlink;
		st->st_uid = nd.uid;
		st->st_gid = nd.gid;
		st->st_size = (off_t)nd.size;
		st->st_atim = ts_of(nd.atime_ns);
		st->st_mtim = ts_of(nd.mtime_ns);
		st->st_ctim = ts_of(nd.ctime_ns);
		if (kind_of(ino) == K_SNODE) {
			st->st_mode &= ~(mode_t)0222;
			if (id == v.id) {
				/* a version appears in /serving when an alias moves to it */
				struct newest_move mv = {v.n, 0};
				mrfs_aliases_walk(txn, v.model, NULL, newest_move_cb, &mv);
				if (mv.time_ns > nd.mtime_ns)
					st->st_mtim = st->st_ctim = ts_of(mv.time_ns);
			} else {
				*timeout = SEALED_TIMEOUT;
			}
		} else if (v.state == MRFS_SEALED) {
			/* immutable: the kernel may keep it (modes stay as logged); a
			 * version's own directory goes when the version is deleted */
			*timeout = id != v.id ? SEALED_TIMEOUT : WATCHED_TIMEOUT;
		} else if (S_ISREG(nd.mode)) {
			struct wnode *w;
			pthread_mutex_lock(&fs->wlock);
			w = wnode_find(fs, id);
			if (w) {
				st->st_size = (off_t)w->size;
				st->st_mtim = ts_of(w->mtime_ns);
			}
			pthread_mutex_unlock(&fs->wlock);
		}
		st->st_blocks = (st->st_size + 511) / 512;
		return 0;
	}
	return -ENOENT;
}

/* Reply with the entry @ino under @parent (0: a new entry, just made). */
static void reply_entry(fuse_req_t req, struct mrfs_fs *fs, struct mrfs_txn *txn, fuse_ino_t parent,
			fuse_ino_t ino)
{
	struct fuse_entry_param e;
	double timeout;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = attr_of(fs, txn, ino, &e.attr, &timeout);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = ino;
	e.attr_timeout = e.entry_timeout = timeout;
	switch (kind_of(ino)) {
	case K_FIXED:
		e.entry_timeout = SEALED_TIMEOUT; /* /history: the name stays */
		break;
	case K_MODEL:
		watch_known(fs, id_of(ino));
		break;
	case K_MHIST:
	case K_MODEL_JSON:
		/* there while the model is (the watcher drops its names) */
		e.entry_timeout = WATCHED_TIMEOUT;
		break;
	}
	/* /serving/<alias>/<m>/config.pbtxt is an immutable file, but which one
	 * the name means changes when the alias moves */
	if (kind_of(parent) == K_SMODEL)
		e.entry_timeout = 0;
	fuse_reply_entry(req, &e);
}

/* Look up @name in @parent: its inode number. */
static int lookup_ino(struct mrfs_fs *fs, struct mrfs_txn *txn, fuse_ino_t parent, const char *name,
		      fuse_ino_t *ino)
{
	struct mrfs_model m;
	struct mrfs_version v;
	struct mrfs_node nd;
	struct mrfs_alias a;
	char buf[MRFS_NAME_MAX + 8];
	size_t len = strlen(name);
	uint32_t n;
	int rc;

	switch (kind_of(parent)) {
	case K_FIXED:
		if (parent == INO_ROOT && !strcmp(name, "models"))
			*ino = INO_MODELS;
		else if (parent == INO_ROOT && !strcmp(name, "history"))
			*ino = INO_HISTORY;
		else if (parent == INO_ROOT && !strcmp(name, "serving"))
			*ino = INO_SERVING;
		else if (parent == INO_SERVING) {
			struct has_alias h = {name, false};
			uint64_t nid;
			if ((rc = mrfs_alias_name_id(txn, name, &nid)) ||
			    (rc = mrfs_aliases_all(txn, has_alias_cb, &h)))
				return rc;
			if (!h.found)
				return -ENOENT;
			*ino = INO(K_SALIAS, nid);
		} else if (parent != INO_MODELS)
			return -ENOENT;
		else if (len > 5 && len <= MRFS_NAME_MAX + 5 && !strcmp(name + len - 5, ".json")) {
			memcpy(buf, name, len - 5);
			buf[len - 5] = '\0';
			if ((rc = mrfs_model_by_name(txn, buf, &m)))
				return rc;
			*ino = INO(K_MODEL_JSON, m.id);
		} else {
			if ((rc = mrfs_model_by_name(txn, name, &m)))
				return rc;
			*ino = INO(K_MODEL, m.id);
		}
		return 0;
	case K_MODEL:
		if ((rc = mrfs_model_get(txn, id_of(parent), &m)))
			return rc;
		if (!strcmp(name, "versions")) {
			*ino = INO(K_VERSIONS, m.id);
		} else if (!strcmp(name, "history")) {
			*ino = INO(K_MHIST, m.id);
		} else if (!strcmp(name, "latest")) {
			if (!m.latest)
				return -ENOENT;
			*ino = INO(K_LATEST, m.id);
		} else if (name[0] == '@') {
			int64_t t;
			if (mrfs_time_parse(name + 1, &t))
				return -ENOENT;
			return at_ino(fs, m.id, t, "", ino);
		} else {
			if ((rc = mrfs_alias_get(txn, m.id, name, &a)))
				return rc;
			*ino = INO(K_ALIAS, a.id);
		}
		return 0;
	case K_VERSIONS: {
		bool json = len > 5 && !strcmp(name + len - 5, ".json");
		if (len > 15)
			return -ENOENT;
		memcpy(buf, name, len + 1);
		if (json)
			buf[len - 5] = '\0';
		if (!mrfs_version_parse(buf, &n))
			return -ENOENT;
		if ((rc = mrfs_version_by_number(txn, id_of(parent), n, &v)))
			return rc;
		*ino = INO(json ? K_VJSON : K_NODE, v.id);
		return 0;
	}
	case K_NODE:
	case K_SNODE:
		if ((rc = mrfs_node_lookup(txn, id_of(parent), name, &nd)))
			return rc;
		*ino =
		    INO(kind_of(parent) == K_SNODE && S_ISDIR(nd.mode) ? K_SNODE : K_NODE, nd.id);
		return 0;
	case K_SALIAS: {
		char alias[MRFS_NAME_MAX + 1];
		if ((rc = mrfs_alias_name_by_id(txn, id_of(parent), alias)) ||
		    (rc = mrfs_model_by_name(txn, name, &m)) ||
		    (rc = mrfs_alias_get(txn, m.id, alias, &a)))
			return rc;
		return smodel_ino(id_of(parent), m.id, ino);
	}
	case K_SMODEL: {
		uint64_t model;
		if ((rc = smodel_alias(txn, parent, &model, &a)) ||
		    (rc = mrfs_version_by_number(txn, model, a.version, &v)))
			return rc;
		if (!strcmp(name, "config.pbtxt")) {
			if ((rc = mrfs_node_lookup(txn, v.id, name, &nd)))
				return rc;
			if (!S_ISREG(nd.mode))
				return -ENOENT;
			*ino = INO(K_NODE, nd.id);
			return 0;
		}
		if (!mrfs_version_parse(name, &n) || n != a.version)
			return -ENOENT;
		*ino = INO(K_SNODE, v.id);
		return 0;
	}
	case K_AT: {
		struct at_entry e;
		if ((rc = at_get(fs, parent, &e)))
			return rc;
		if (*e.name)
			return -ENOTDIR;
		if ((rc = alias_at(txn, e.model, e.time_ns, name, &n)))
			return rc;
		return at_ino(fs, e.model, e.time_ns, name, ino);
	}
	}
	return -ENOTDIR;
}

/* ---- the watcher ---------------------------------------------------------------
 *
 * The kernel keeps what changes only with a history event (a sealed
 * version's directory and record, the versions directory and its listing)
 * for WATCHED_TIMEOUT. Every change anywhere (this mount, the CLI, another
 * mount of the store) commits an LMDB transaction; the watcher notices the
 * transaction id move (at once for this process's commits, within
 * WATCH_POLL_MS for others), reads the new events and tells the kernel to
 * drop what they touched.
 *
 * A lookup that read the store before a change may reply after the
 * invalidation and so cache the old answer. fs->gate closes that window:
 * replies that may be cached hold it for reading from their transaction to
 * their reply, and the watcher takes it for writing (waiting for those in
 * flight) after bumping fs->gen and before sending its invalidations.
 */

enum inval_type { INVAL_INODE, INVAL_ENTRY };

struct inval {
	enum inval_type type;
	fuse_ino_t ino; /* the inode, or the parent of the entry */
	char name[MRFS_NAME_MAX + 8];
};

struct inval_list {
	struct inval *v;
	size_t n, cap;
	int rc;
};

static void inval_add(struct inval_list *l, enum inval_type type, fuse_ino_t ino, const char *name)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 16;
		struct inval *v = realloc(l->v, ncap * sizeof(*v));
		if (!v) {
			l->rc = -ENOMEM;
			return;
		}
		l->v = v;
		l->cap = ncap;
	}
	l->v[l->n].type = type;
	l->v[l->n].ino = ino;
	snprintf(l->v[l->n].name, sizeof(l->v[l->n].name), "%s", name ? name : "");
	l->n++;
}

struct event_scan {
	struct mrfs_txn *txn;
	struct inval_list *l;
	uint64_t last;
};

/* Version @n of @model: its record and directory; with @gone, its names. */
static void inval_version(struct event_scan *es, uint64_t model, int64_t n, bool gone)
{
	struct mrfs_version v;
	char name[16];

	if (n <= 0 || n > UINT32_MAX)
		return;
	if (gone) {
		snprintf(name, sizeof(name), "%" PRId64, n);
		inval_add(es->l, INVAL_ENTRY, INO(K_VERSIONS, model), name);
		snprintf(name, sizeof(name), "%" PRId64 ".json", n);
		inval_add(es->l, INVAL_ENTRY, INO(K_VERSIONS, model), name);
	} else if (!mrfs_version_by_number(es->txn, model, (uint32_t)n, &v)) {
		inval_add(es->l, INVAL_INODE, INO(K_VJSON, v.id), NULL);
		inval_add(es->l, INVAL_INODE, INO(K_NODE, v.id), NULL);
	}
}

/* The names in /models of a model deleted or renamed. */
static void inval_model_names(struct inval_list *l, const char *name)
{
	char json[MRFS_NAME_MAX + 8];

	if (!name || strlen(name) > MRFS_NAME_MAX)
		return;
	snprintf(json, sizeof(json), "%s.json", name);
	inval_add(l, INVAL_ENTRY, INO_MODELS, name);
	inval_add(l, INVAL_ENTRY, INO_MODELS, json);
}

static int inval_record_cb(void *ctx, const struct mrfs_version *v)
{
	inval_add(ctx, INVAL_INODE, INO(K_VJSON, v->id), NULL);
	return 0;
}

static int64_t event_int(struct mrfs_doc *ev, const char *key)
{
	struct mrfs_doc *d = mrfs_doc_get(ev, key);

	return d && mrfs_doc_type(d) == MRFS_JSON_INT ? (int64_t)mrfs_doc_number(d) : 0;
}

/* What event @line changed, as invalidations. */
static int event_scan_cb(void *ctx, uint64_t seq, const char *line, size_t len)
{
	struct event_scan *es = ctx;
	struct mrfs_doc *ev = mrfs_doc_parse(line, len, NULL, 0);
	const char *kind, *name;
	struct mrfs_model m;

	es->last = seq;
	if (!ev)
		return 0;
	kind = mrfs_doc_string(mrfs_doc_get(ev, "event"));
	name = mrfs_doc_string(mrfs_doc_get(ev, "model"));
	if (kind && name && !strcmp(kind, "model.delete"))
		inval_model_names(es->l, name);
	if (kind && !strcmp(kind, "model.rename"))
		inval_model_names(es->l, mrfs_doc_string(mrfs_doc_get(ev, "from")));
	if (kind && name && !mrfs_model_by_name(es->txn, name, &m)) {
		/* its mtime, and its listing for version events */
		inval_add(es->l, INVAL_INODE, INO(K_MODEL, m.id), NULL);
		inval_add(es->l, INVAL_INODE, INO(K_VERSIONS, m.id), NULL);
		if (!strncmp(kind, "alias.", 6)) {
			/* version records list their aliases */
			inval_version(es, m.id, event_int(ev, "from"), false);
			inval_version(es, m.id, event_int(ev, "to"), false);
		} else if (!strcmp(kind, "model.rename")) {
			/* version records name their model */
			mrfs_versions_walk(es->txn, m.id, 0, inval_record_cb, es->l);
		} else {
			inval_version(es, m.id, event_int(ev, "version"),
				      !strcmp(kind, "version.delete"));
		}
	}
	mrfs_doc_free(ev);
	return es->l->rc;
}

/* Model @id was given to the kernel (its entry may be cached). */
static void watch_known(struct mrfs_fs *fs, uint64_t id)
{
	size_t word = id / 64;

	pthread_mutex_lock(&fs->watch_lock);
	if (word >= fs->nknown) {
		size_t n = word + 64;
		uint64_t *k = realloc(fs->known, n * sizeof(*k));
		if (!k) {
			pthread_mutex_unlock(&fs->watch_lock);
			return; /* then it stays as long as its timeout */
		}
		memset(k + fs->nknown, 0, (n - fs->nknown) * sizeof(*k));
		fs->known = k;
		fs->nknown = n;
	}
	fs->known[word] |= 1ull << (id % 64);
	pthread_mutex_unlock(&fs->watch_lock);
}

/*
 * Another process committed: besides its events, it may have changed what
 * has none (the mode or owner of a model, through another mount). Drop the
 * attributes of every model the kernel may hold.
 */
static void inval_known(struct mrfs_fs *fs, struct inval_list *l)
{
	pthread_mutex_lock(&fs->watch_lock);
	for (size_t w = 0; w < fs->nknown; w++)
		for (unsigned b = 0; b < 64; b++)
			if (fs->known[w] & (1ull << b)) {
				inval_add(l, INVAL_INODE, INO(K_MODEL, w * 64 + b), NULL);
				inval_add(l, INVAL_INODE, INO(K_VERSIONS, w * 64 + b), NULL);
			}
	pthread_mutex_unlock(&fs->watch_lock);
}

/* The invalidations for what changed since the watcher last looked. */
static int watch_scan(struct mrfs_fs *fs, struct inval_list *l)
{
	struct event_scan es = {NULL, l, 0};
	/* commits of ours counted here are in txnid; some in txnid may not be
	 * counted yet, which only makes a change look external */
	uint64_t commits = __atomic_load_n(&fs->commits, __ATOMIC_SEQ_CST);
	uint64_t txnid = mrfs_store_last_txnid(fs->store);
	int rc;

	if (txnid == fs->seen_txnid)
		return 0;
	if (txnid - fs->seen_txnid > commits - fs->seen_commits)
		inval_known(fs, l);
	fs->seen_commits = commits;
	if ((rc = mrfs_txn_begin(fs->store, false, &es.txn)))
		return rc;
	/* the transaction may see more than txnid: then the next look finds
	 * nothing new, which is harmless */
	fs->seen_txnid = txnid;
	rc = mrfs_events_walk(es.txn, 0, fs->next_seq, event_scan_cb, &es);
	if (es.last)
		fs->next_seq = es.last + 1;
	mrfs_txn_abort(es.txn);
	return rc;
}

static void watch_send(struct mrfs_fs *fs, const struct inval_list *l)
{
	if (!l->n)
		return;
	__atomic_add_fetch(&fs->gen, 1, __ATOMIC_SEQ_CST);
	/* wait for replies that read the store before the change */
	pthread_rwlock_wrlock(&fs->gate);
	pthread_rwlock_unlock(&fs->gate);
	for (size_t i = 0; i < l->n; i++) {
		const struct inval *iv = &l->v[i];
		/* -ENOENT: the kernel does not have it; nothing to drop */
		if (iv->type == INVAL_INODE)
			fuse_lowlevel_notify_inval_inode(fs->se, iv->ino, 0, 0);
		else
			fuse_lowlevel_notify_inval_entry(fs->se, iv->ino, iv->name,
							 strlen(iv->name));
	}
}

static void *watch_main(void *arg)
{
	struct mrfs_fs *fs = arg;
	struct inval_list l = {0};

	pthread_mutex_lock(&fs->watch_lock);
	while (!fs->watch_stop) {
		if (!fs->watch_kicked) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += WATCH_POLL_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&fs->watch_cond, &fs->watch_lock, &ts);
		}
		fs->watch_kicked = false;
		pthread_mutex_unlock(&fs->watch_lock);
		l.n = 0;
		l.rc = 0;
		if (watch_scan(fs, &l) || l.rc)
			fprintf(stderr,
				"mrfs: watcher: cannot read the history; "
				"cached entries may stay stale for up to %.0f s\n",
				WATCHED_TIMEOUT);
		watch_send(fs, &l);
		pthread_mutex_lock(&fs->watch_lock);
	}
	pthread_mutex_unlock(&fs->watch_lock);
	free(l.v);
	return NULL;
}

/* After each commit of this process: look now, not at the next poll. */
static void watch_kick(void *ctx)
{
	struct mrfs_fs *fs = ctx;

	__atomic_add_fetch(&fs->commits, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&fs->watch_lock);
	fs->watch_kicked = true;
	pthread_cond_signal(&fs->watch_cond);
	pthread_mutex_unlock(&fs->watch_lock);
}

static int watch_start(struct mrfs_fs *fs, struct fuse_session *se)
{
	pthread_condattr_t ca;
	struct mrfs_txn *txn;
	int rc;

	fs->se = se;
	fs->seen_txnid = mrfs_store_last_txnid(fs->store);
	if ((rc = mrfs_txn_begin(fs->store, false, &txn)))
		return rc;
	fs->next_seq = mrfs_events_next(txn);
	mrfs_txn_abort(txn);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->watch_cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = -pthread_create(&fs->watcher, NULL, watch_main, fs)))
		return rc;
	fs->watching = true;
	mrfs_store_on_commit(fs->store, watch_kick, fs);
	return 0;
}

static void watch_stop(struct mrfs_fs *fs)
{
	if (!fs->watching)
		return;
	mrfs_store_on_commit(fs->store, NULL, NULL);
	pthread_mutex_lock(&fs->watch_lock);
	fs->watch_stop = true;
	pthread_cond_signal(&fs->watch_cond);
	pthread_mutex_unlock(&fs->watch_lock);
	pthread_join(fs->watcher, NULL);
	fs->watching = false;
	pthread_cond_destroy(&fs->watch_cond);
}

/* ---- FUSE operations --------------------------------------------------------- */

static void op_init(void *data, struct fuse_conn_info *conn)
{
	(void)data;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	conn->max_write = IO_BLOCK;
	conn->max_read = MAX_READ; /* the mount option says the same */
	conn->max_readahead = IO_BLOCK;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_txn *txn;
	fuse_ino_t ino;
	int rc;

	pthread_rwlock_rdlock(&fs->gate);
	if ((rc = mrfs_txn_begin(fs->store, false, &txn))) {
		pthread_rwlock_unlock(&fs->gate);
		fuse_reply_err(req, -rc);
		return;
	}
	rc = lookup_ino(fs, txn, parent, name, &ino);
	if (rc == -ENOENT) {
		/* a negative entry: cached never, names come and go */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		fuse_reply_entry(req, &e);
	} else if (rc) {
		fuse_reply_err(req, -rc);
	} else {
		reply_entry(req, fs, txn, parent, ino);
	}
	mrfs_txn_abort(txn);
	pthread_rwlock_unlock(&fs->gate);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* no inode state: numbers are derived from registry ids */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

/*
 * fstat of a file removed while open (the kernel does not say which handle
 * asks): what an open handle of node @id saw when it opened.
 */
static int attr_of_open(struct mrfs_fs *fs, uint64_t id, struct stat *st)
{
	struct handle *h = NULL;
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->hlock);
	for (size_t b = 0; b < 256 && !h; b++)
		for (h = fs->handles[b]; h; h = h->next)
			if ((h->type == H_CONTENT || h->type == H_NODE) && h->nd.id == id)
				break;
	if (h)
		h->refs++;
	pthread_mutex_unlock(&fs->hlock);
	if (h) {
		memset(st, 0, sizeof(*st));
		st->st_ino = INO(K_NODE, h->nd.id);
		st->st_mode = h->nd.mode;
		st->st_uid = h->nd.uid;
		st->st_gid = h->nd.gid;
		st->st_size = (off_t)(h->wn ? h->wn->size : h->nd.size);
		st->st_mtim = ts_of(h->wn ? h->wn->mtime_ns : h->nd.mtime_ns);
		st->st_ctim = ts_of(h->nd.ctime_ns);
		st->st_atim = ts_of(h->nd.atime_ns);
		st->st_blksize = IO_BLOCK;
		rc = 0;
		handle_put(fs, h);
	}
	return rc;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_txn *txn;
	struct stat st;
	double timeout;
	int rc;

	pthread_rwlock_rdlock(&fs->gate);
	if ((rc = mrfs_txn_begin(fs->store, false, &txn)) == 0) {
		rc = attr_of(fs, txn, ino, &st, &timeout);
		mrfs_txn_abort(txn);
	}
	if (rc == -ENOENT && kind_of(ino) == K_NODE)
		rc = attr_of_open(fs, id_of(ino), &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, timeout);
	pthread_rwlock_unlock(&fs->gate);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_alias a;
	char target[4096];
	uint64_t model;
	int rc = mrfs_txn_begin(fs->store, false, &txn);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	switch (kind_of(ino)) {
	case K_LATEST:
		rc = mrfs_model_get(txn, id_of(ino), &m);
		if (!rc && !m.latest)
			rc = -ENOENT;
		if (!rc)
			snprintf(target, sizeof(target), "versions/%u", m.latest);
		break;
	case K_ALIAS:
		rc = mrfs_alias_by_id(txn, id_of(ino), &model, &a);
		if (!rc)
			snprintf(target, sizeof(target), "versions/%u", a.version);
		break;
	case K_NODE:
		rc = mrfs_node_readlink(txn, id_of(ino), target, sizeof(target));
		break;
	case K_AT: {
		struct at_entry e;
		uint32_t n;
		rc = at_get(fs, ino, &e);
		if (!rc && !*e.name)
			rc = -EINVAL;
		if (!rc)
			rc = alias_at(txn, e.model, e.time_ns, e.name, &n);
		if (!rc)
			snprintf(target, sizeof(target), "../versions/%u", n);
		break;
	}
	default:
		rc = -EINVAL;
	}
	mrfs_txn_abort(txn);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
}

/* The draft version holding node @parent, or -EROFS / -ENOENT. */
static int node_version(struct mrfs_fs *fs, uint64_t node, struct mrfs_version *v)
{
	struct mrfs_txn *txn;
	struct mrfs_node nd;
	int rc = mrfs_txn_begin(fs->store, false, &txn);

	if (rc)
		return rc;
	rc = mrfs_node_get(txn, node, &nd);
	if (!rc)
		rc = mrfs_version_get(txn, nd.version, v);
	mrfs_txn_abort(txn);
	return rc;
}

/* Reply to a successful change with the entry of @ino. */
static void reply_new_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_txn *txn;
	int rc = mrfs_txn_begin(fs->store, false, &txn);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, txn, 0, ino);
	mrfs_txn_abort(txn);
}

static const char *managed_why(fuse_ino_t parent, const char *name)
{
	if (parent == INO_ROOT)
		return "the root holds only models/ and history";
	if (!strcmp(name, "latest") || !strcmp(name, "history"))
		return "latest and history are managed by mrfs";
	return "not a place for that";
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_model m;
	struct mrfs_version v;
	struct mrfs_node nd;
	int rc;

	if (refuse_view(req, "mkdir", parent, name))
		return;

	who_of(req, &who);
	switch (kind_of(parent)) {
	case K_FIXED:
		if (parent != INO_MODELS) {
			fail(req, -EPERM, "mkdir", parent, name, managed_why(parent, name));
			return;
		}
		rc = mrfs_model_create(fs->reg, &who, name, mode, &m, &err);
		if (rc)
			break;
		reply_new_entry(req, INO(K_MODEL, m.id));
		return;
	case K_VERSIONS:
		rc = mrfs_version_create(fs->reg, &who, id_of(parent), name, mode, &v, &err);
		if (rc)
			break;
		reply_new_entry(req, INO(K_NODE, v.id));
		return;
	case K_NODE:
		rc = mrfs_node_create(fs->reg, &who, id_of(parent), name, S_IFDIR | (mode & 07777),
				      NULL, &nd, &err);
		if (rc)
			break;
		reply_new_entry(req, INO(K_NODE, nd.id));
		return;
	case K_MODEL:
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg),
			 "a model holds versions/ and aliases: make versions in versions/");
		break;
	default:
		rc = -ENOTDIR;
	}
	fail(req, rc, "mkdir", parent, name, err.msg);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_alias a;
	struct mrfs_node nd;
	int rc;

	if (refuse_view(req, "symlink", parent, name))
		return;

	who_of(req, &who);
	switch (kind_of(parent)) {
	case K_MODEL:
		rc = mrfs_alias_set(fs->reg, &who, id_of(parent), name, target, fs->mountpoint,
				    version_busy, fs, &a, &err);
		if (rc)
			break;
		reply_new_entry(req, INO(K_ALIAS, a.id));
		return;
	case K_NODE:
		rc = mrfs_node_create(fs->reg, &who, id_of(parent), name, S_IFLNK | 0777, target,
				      &nd, &err);
		if (rc)
			break;
		reply_new_entry(req, INO(K_NODE, nd.id));
		return;
	default:
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg),
			 "symlinks here are not aliases: "
			 "aliases live in a model directory");
	}
	fail(req, rc, "symlink", parent, name, err.msg);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_version v;
	struct mrfs_node nd;
	int rc;

	if (refuse_view(req, "mknod", parent, name))
		return;

	(void)rdev;
	who_of(req, &who);
	if (kind_of(parent) != K_NODE) {
		fail(req, -EPERM, "mknod", parent, name, "files live inside versions");
		return;
	}
	if ((rc = node_version(fs, id_of(parent), &v)) == 0 && v.state == MRFS_SEALED) {
		rc = -EROFS;
		snprintf(err.msg, sizeof(err.msg), "version %u is sealed: it cannot change", v.n);
	} else if (!rc && !S_ISREG(mode)) {
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg),
			 "a version holds files, directories and symlinks only");
	} else if (!rc) {
		rc = mrfs_node_create(fs->reg, &who, id_of(parent), name, S_IFREG | (mode & 07777),
				      NULL, &nd, &err);
	}
	if (rc)
		fail(req, rc, "mknod", parent, name, err.msg);
	else
		reply_new_entry(req, INO(K_NODE, nd.id));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	fail(req, -EPERM, "link", newparent, newname, "hard links are not supported");
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	int rc;

	if (refuse_view(req, "unlink", parent, name))
		return;

	who_of(req, &who);
	switch (kind_of(parent)) {
	case K_MODEL:
		if (mrfs_name_reserved(name)) {
			rc = !strcmp(name, "versions") ? -EISDIR : -EPERM;
			snprintf(err.msg, sizeof(err.msg), "%s", managed_why(parent, name));
			break;
		}
		rc = mrfs_alias_delete(fs->reg, &who, id_of(parent), name, &err);
		break;
	case K_NODE:
		rc = mrfs_node_remove(fs->reg, id_of(parent), name, false, &err);
		break;
	default:
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg), "records and histories are managed by mrfs");
	}
	if (rc)
		fail(req, rc, "unlink", parent, name, err.msg);
	else
		fuse_reply_err(req, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_txn *txn;
	struct mrfs_version v;
	uint32_t n;
	int rc;

	if (refuse_view(req, "rmdir", parent, name))
		return;

	who_of(req, &who);
	switch (kind_of(parent)) {
	case K_FIXED:
		if (parent != INO_MODELS) {
			rc = -EPERM;
			break;
		}
		rc = mrfs_model_delete(fs->reg, &who, name, &err);
		break;
	case K_VERSIONS:
		if (!mrfs_version_parse(name, &n)) {
			rc = -ENOENT;
			break;
		}
		if ((rc = mrfs_txn_begin(fs->store, false, &txn)))
			break;
		rc = mrfs_version_by_number(txn, id_of(parent), n, &v);
		mrfs_txn_abort(txn);
		if (!rc)
			rc = mrfs_version_delete(fs->reg, &who, v.id, &err);
		break;
	case K_NODE:
		rc = mrfs_node_remove(fs->reg, id_of(parent), name, true, &err);
		break;
	case K_MODEL:
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg), "versions/ is part of every model");
		break;
	default:
		rc = -ENOTDIR;
	}
	if (rc)
		fail(req, rc, "rmdir", parent, name, err.msg);
	else
		fuse_reply_err(req, 0);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	unsigned k = kind_of(parent);
	int rc;

	if (refuse_view(req, "rename", parent, name) ||
	    refuse_view(req, "rename", newparent, newname))
		return;

	who_of(req, &who);
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		fail(req, -EINVAL, "rename", parent, name, "only RENAME_NOREPLACE is supported");
		return;
	}
	if (k != kind_of(newparent)) {
		rc = k == K_FIXED || k == K_VERSIONS ? -EPERM : -EXDEV;
		snprintf(err.msg, sizeof(err.msg), "cannot move it out of its kind of directory");
	} else if (k == K_FIXED && parent == INO_MODELS && newparent == INO_MODELS) {
		rc =
		    mrfs_model_rename(fs->reg, &who, name, newname, flags & RENAME_NOREPLACE, &err);
	} else if (k == K_MODEL) {
		if (id_of(parent) != id_of(newparent)) {
			rc = -EXDEV;
			snprintf(err.msg, sizeof(err.msg), "aliases cannot move between models");
		} else if (mrfs_name_reserved(name) || mrfs_name_reserved(newname)) {
			rc = -EPERM;
			snprintf(err.msg, sizeof(err.msg),
				 "versions, latest and history are managed by mrfs");
		} else {
			rc = mrfs_alias_rename(fs->reg, &who, id_of(parent), name, newname,
					       flags & RENAME_NOREPLACE, &err);
		}
	} else if (k == K_NODE) {
		rc = mrfs_node_rename(fs->reg, id_of(parent), name, id_of(newparent), newname,
				      flags & RENAME_NOREPLACE ? 1u : 0u, &err);
	} else {
		rc = -EPERM;
		snprintf(err.msg, sizeof(err.msg),
			 k == K_VERSIONS ? "a version keeps its number" : "managed by mrfs");
	}
	if (rc)
		fail(req, rc, "rename", parent, name, err.msg);
	else
		fuse_reply_err(req, 0);
}

static void setattr_node(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_version v;
	struct mrfs_node nd = {0};
	unsigned set = 0;
	uint64_t id = id_of(ino);
	int rc = node_version(fs, id, &v);

	who_of(req, &who);
	if (rc)
		goto out;
	if (v.state == MRFS_SEALED) {
		/* chmod a-w of a sealed version asks for what is already so */
		if (id == v.id && to_set == FUSE_SET_ATTR_MODE && !(attr->st_mode & 0222))
			goto out;
		rc = -EROFS;
		snprintf(err.msg, sizeof(err.msg), "version %u is sealed: it cannot change", v.n);
		goto out;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct mrfs_txn *txn;
		struct wnode *w;
		if ((rc = mrfs_txn_begin(fs->store, false, &txn)))
			goto out;
		rc = mrfs_node_get(txn, id, &nd);
		mrfs_txn_abort(txn);
		if (rc)
			goto out;
		if (!S_ISREG(nd.mode)) {
			rc = S_ISDIR(nd.mode) ? -EISDIR : -EINVAL;
			goto out;
		}
		w = wnode_get(fs, &nd, false);
		if (!w) {
			rc = -ENOMEM;
			goto out;
		}
		pthread_mutex_lock(&w->lock);
		rc = wnode_truncate(fs, w, (uint64_t)attr->st_size);
		/* with no open handle, the change is committed now */
		if (!rc && w->writers == 0)
			rc = wnode_commit(fs, w, &err);
		pthread_mutex_unlock(&w->lock);
		wnode_put(fs, w, false, false);
		if (rc)
			goto out;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		set |= MRFS_SET_MODE;
		nd.mode = attr->st_mode;
		if (id == v.id && !(attr->st_mode & 0222)) {
			/* chmod a-w on a version's directory seals it, with that mode */
			rc = mrfs_version_seal(fs->reg, &who, v.id, attr->st_mode & 07777,
					       version_busy, fs, &err);
			if (rc)
				goto out;
			set &= ~MRFS_SET_MODE;
			to_set &= ~FUSE_SET_ATTR_MODE;
			if (to_set) {
				/* anything else asked with it comes too late */
				rc = -EROFS;
				goto out;
			}
		}
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		set |= MRFS_SET_UID;
		nd.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		set |= MRFS_SET_GID;
		nd.gid = attr->st_gid;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		set |= MRFS_SET_ATIME;
		nd.atime_ns =
		    to_set & FUSE_SET_ATTR_ATIME_NOW ? mrfs_now_ns() : ns_of(&attr->st_atim);
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		struct wnode *w;
		set |= MRFS_SET_MTIME;
		nd.mtime_ns =
		    to_set & FUSE_SET_ATTR_MTIME_NOW ? mrfs_now_ns() : ns_of(&attr->st_mtim);
		/* an open file commits with the time it was given */
		pthread_mutex_lock(&fs->wlock);
		w = wnode_find(fs, id);
		if (w)
			w->mtime_ns = nd.mtime_ns;
		pthread_mutex_unlock(&fs->wlock);
	}
	if (set && (rc = mrfs_node_setattr(fs->reg, id, set, &nd, NULL, &err)))
		goto out;
out:
	(void)fi;
	if (rc)
		fail(req, rc, "setattr", ino, NULL, err.msg);
	else
		op_getattr(req, ino, NULL);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	int rc;

	if (refuse_view(req, "setattr", ino, NULL))
		return;

	switch (kind_of(ino)) {
	case K_NODE:
		setattr_node(req, ino, attr, to_set, fi);
		return;
	case K_MODEL:
		if (to_set & ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
			       FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			       FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))
			break;
		rc = mrfs_model_setattr(
		    fs->reg, id_of(ino),
		    to_set & FUSE_SET_ATTR_MODE ? (int64_t)(attr->st_mode & 07777) : -1,
		    to_set & FUSE_SET_ATTR_UID ? (int64_t)attr->st_uid : -1,
		    to_set & FUSE_SET_ATTR_GID ? (int64_t)attr->st_gid : -1, NULL);
		if (rc) {
			fail(req, rc, "setattr", ino, NULL, NULL);
			return;
		}
		op_getattr(req, ino, NULL);
		/* no event says so: drop the versions directory's copy of the
		 * model's mode and owner (no directory lock is involved) */
		fuse_lowlevel_notify_inval_inode(fs->se, INO(K_VERSIONS, id_of(ino)), 0, 0);
		return;
	}
	if (is_record(ino) && fi && to_set == FUSE_SET_ATTR_SIZE) {
		struct handle *h = handle_get(fs, fi, false);
		bool done = h && h->type == H_BUF && (size_t)attr->st_size <= h->len;
		if (done) {
			h->len = (size_t)attr->st_size;
			h->dirty = true;
		}
		if (h)
			handle_put(fs, h);
		if (done) {
			op_getattr(req, ino, NULL);
			return;
		}
	}
	if (is_record(ino) && (to_set & FUSE_SET_ATTR_SIZE)) {
		fail(req, -EINVAL, "truncate", ino, NULL,
		     "a record is replaced by writing a JSON object to it");
		return;
	}
	if (is_record(ino) &&
	    !(to_set & ~(FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			 FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))) {
		op_getattr(req, ino, NULL); /* touch: nothing to keep */
		return;
	}
	fail(req, -EPERM, "setattr", ino, NULL, "managed by mrfs");
}

/* ---- opening, reading, writing ------------------------------------------------ */

struct history_buf {
	char *buf;
	size_t len, cap;
};

static int history_cb(void *ctx, uint64_t seq, const char *line, size_t len)
{
	struct history_buf *b = ctx;

	(void)seq;
	if (b->len + len > b->cap) {
		size_t ncap = (b->cap + len) * 2;
		char *n = realloc(b->buf, ncap);
		if (!n)
			return -ENOMEM;
		b->buf = n;
		b->cap = ncap;
	}
	memcpy(b->buf + b->len, line, len);
	b->len += len;
	return 0;
}

/* Apply what was written to record handle @h: the registry checks it. */
static int apply_record(fuse_req_t req, struct handle *h)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	int rc;

	if (!h->dirty)
		return 0;
	h->dirty = false;
	who_of(req, &who);
	if (kind_of(h->ino) == K_VJSON)
		rc = mrfs_version_update(fs->reg, &who, id_of(h->ino), h->buf ? h->buf : "", h->len,
					 &err);
	else
		rc = mrfs_model_update(fs->reg, &who, id_of(h->ino), h->buf ? h->buf : "", h->len,
				       &err);
	if (rc) {
		char path[4096];
		path_of(fs, h->ino, path, sizeof(path));
		fprintf(stderr, "mrfs: write %s: refused, the record is unchanged: %s (%s)\n", path,
			*err.msg ? err.msg : strerror(-rc), strerrorname_np(-rc));
	}
	return rc;
}

/* Make room for @size bytes in @h's buffer (records are small). */
static int buf_reserve(struct handle *h, size_t size)
{
	char *n;

	if (size > (64u << 20))
		return -EFBIG;
	if (size <= h->cap)
		return 0;
	n = realloc(h->buf, size);
	if (!n)
		return -ENOMEM;
	h->buf = n;
	h->cap = size;
	return 0;
}

/* Render a generated file (record or history) into @h. */
static int render(struct mrfs_fs *fs, fuse_ino_t ino, struct handle *h)
{
	struct mrfs_txn *txn;
	struct history_buf b = {0};
	int rc = mrfs_txn_begin(fs->store, false, &txn);

	if (rc)
		return rc;
	switch (kind_of(ino)) {
	case K_VJSON:
		rc = mrfs_version_record(txn, id_of(ino), &h->buf, &h->len);
		h->cap = h->len;
		break;
	case K_MODEL_JSON:
		rc = mrfs_model_record(txn, id_of(ino), &h->buf, &h->len);
		h->cap = h->len;
		break;
	default:
		rc = mrfs_events_walk(txn, kind_of(ino) == K_MHIST ? id_of(ino) : 0, 0, history_cb,
				      &b);
		h->buf = b.buf;
		h->len = b.len;
		h->cap = b.cap;
		if (rc) {
			free(b.buf);
			h->buf = NULL;
		}
	}
	mrfs_txn_abort(txn);
	return rc;
}

static void open_node(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_txn *txn;
	struct mrfs_node nd;
	struct mrfs_version v;
	struct handle *h;
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct wnode *w = NULL;
	char why[128] = "";
	int rc = mrfs_txn_begin(fs->store, false, &txn);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = mrfs_node_get(txn, id_of(ino), &nd);
	if (!rc)
		rc = mrfs_version_get(txn, nd.version, &v);
	if (!rc && !S_ISREG(nd.mode))
		rc = S_ISDIR(nd.mode) ? -EISDIR : -EINVAL;
	if (!rc && write && v.state == MRFS_SEALED) {
		rc = -EROFS;
		snprintf(why, sizeof(why), "version %u is sealed: it cannot change", v.n);
	}
	h = rc ? NULL : handle_new(H_CONTENT);
	if (!rc && !h)
		rc = -ENOMEM;
	if (rc)
		goto out;
	h->nd = nd;
	if (v.state == MRFS_SEALED) {
		rc = mrfs_node_content(txn, &nd, &h->file);
		fi->keep_cache = 1;
		goto out;
	}
	/* a draft: share the node's write state if it has one */
	pthread_mutex_lock(&fs->wlock);
	if (!write && !wnode_find(fs, nd.id)) {
		pthread_mutex_unlock(&fs->wlock);
		rc = mrfs_node_content(txn, &nd, &h->file);
		goto out;
	}
	pthread_mutex_unlock(&fs->wlock);
	w = wnode_get(fs, &nd, write);
	if (!w) {
		rc = -ENOMEM;
		goto out;
	}
	h->type = H_NODE;
	h->wn = w;
	h->writer = h->active = write;
	/* writes to a draft skip the page cache: the bytes go to the chunker */
	fi->direct_io = write;
	if (write && (fi->flags & O_TRUNC)) {
		pthread_mutex_lock(&w->lock);
		rc = wnode_truncate(fs, w, 0);
		if (!rc)
			w->dirty = true;
		pthread_mutex_unlock(&w->lock);
	}
out:
	mrfs_txn_abort(txn);
	if (rc) {
		handle_destroy(fs, h); /* with its wnode reference, if any */
		fail(req, rc, "open", ino, NULL, why);
		return;
	}
	handle_open(fs, h, fi);
	fuse_reply_open(req, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h;
	int rc;

	if (kind_of(ino) == K_NODE) {
		open_node(req, ino, fi);
		return;
	}
	if (kind_of(ino) != K_VJSON && kind_of(ino) != K_MODEL_JSON && kind_of(ino) != K_MHIST &&
	    ino != INO_HISTORY) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY && !is_record(ino)) {
		fail(req, -EPERM, "open", ino, NULL, "the history is written by mrfs only");
		return;
	}
	h = handle_new(H_BUF);
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->ino = ino;
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
		h->dirty = true; /* an empty document, unless something is written */
	} else if ((rc = render(fs, ino, h))) {
		handle_destroy(fs, h);
		fuse_reply_err(req, -rc);
		return;
	}
	/* generated on open: never serve an old rendering from the cache */
	fi->direct_io = 1;
	handle_open(fs, h, fi);
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_caller who;
	struct mrfs_err err = {""};
	struct mrfs_node nd;
	struct fuse_entry_param e;
	struct mrfs_txn *txn;
	struct handle *h;
	double timeout;
	int rc;

	if (refuse_view(req, "create", parent, name))
		return;

	who_of(req, &who);
	if (kind_of(parent) != K_NODE) {
		fail(req, -EPERM, "create", parent, name,
		     kind_of(parent) == K_VERSIONS ? "versions are directories: mkdir versions/N"
						   : "files live inside versions");
		return;
	}
	rc = mrfs_node_create(fs->reg, &who, id_of(parent), name, S_IFREG | (mode & 07777), NULL,
			      &nd, &err);
	if (rc) {
		fail(req, rc, "create", parent, name, err.msg);
		return;
	}
	h = handle_new(H_NODE);
	if (h)
		h->wn = wnode_get(fs, &nd, true);
	if (!h || !h->wn) {
		free(h);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->writer = h->active = true;
	h->nd = nd;
	fi->direct_io = 1;
	memset(&e, 0, sizeof(e));
	e.ino = INO(K_NODE, nd.id);
	if ((rc = mrfs_txn_begin(fs->store, false, &txn)) == 0) {
		rc = attr_of(fs, txn, e.ino, &e.attr, &timeout);
		mrfs_txn_abort(txn);
	}
	if (rc) {
		handle_destroy(fs, h);
		fuse_reply_err(req, -rc);
		return;
	}
	handle_open(fs, h, fi);
	fuse_reply_create(req, &e, fi);
}

static void read_handle(fuse_req_t req, fuse_ino_t ino, struct handle *h, size_t size, off_t off);

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, false);

	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	read_handle(req, ino, h, size, off);
	handle_put(fs, h);
}

/*
 * Reply to a read of stored content with pack-file buffers, so that libfuse
 * splices them. A range that needs more segments than a reply carries (it
 * should not happen with max_read <= 1 MiB and 256 KiB chunks) is read into
 * memory instead: a short reply would read as the end of the file.
 */
static void read_content(fuse_req_t req, fuse_ino_t ino, struct handle *h, size_t size, off_t off)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_segment segs[MAX_SEGS];
	struct fuse_bufvec *bv;
	uint64_t want, got = 0;
	int n, rc;

	if (!h->file || (uint64_t)off >= h->file->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	want = h->file->size - (uint64_t)off < size ? h->file->size - (uint64_t)off : size;
	rc = mrfs_store_segments(fs->store, h->file, (uint64_t)off, size, segs, MAX_SEGS, &n);
	if (rc) {
		fail(req, rc, "read", ino, NULL, "a chunk does not match its hash");
		return;
	}
	for (int i = 0; i < n; i++)
		got += segs[i].len;
	/* the vector's buf[] is its last member: room for n of them */
	bv = got == want ? calloc(1, sizeof(*bv) + (size_t)n * sizeof(struct fuse_buf)) : NULL;
	if (!bv) {
		char *buf = malloc(want);
		ssize_t r =
		    buf ? mrfs_store_read(fs->store, h->file, (uint64_t)off, want, buf) : -ENOMEM;
		if (r < 0)
			fail(req, (int)r, "read", ino, NULL, NULL);
		else
			fuse_reply_buf(req, buf, (size_t)r);
		free(buf);
		return;
	}
	bv->count = (size_t)n;
	for (int i = 0; i < n; i++) {
		struct fuse_buf *b = bv->buf + i;
		b->size = segs[i].len;
		b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
		b->fd = segs[i].fd;
		b->pos = segs[i].off;
	}
	fuse_reply_data(req, bv, 0);
	free(bv);
}

static void read_handle(fuse_req_t req, fuse_ino_t ino, struct handle *h, size_t size, off_t off)
{
	struct mrfs_fs *fs = fs_of(req);

	if (h->type == H_BUF) {
		size_t o = (size_t)off < h->len ? (size_t)off : h->len;
		fuse_reply_buf(req, h->buf + o, size < h->len - o ? size : h->len - o);
		return;
	}
	if (h->type == H_CONTENT) {
		read_content(req, ino, h, size, off);
		return;
	}
	if (h->type == H_NODE) {
		char *buf = malloc(size ? size : 1);
		ssize_t n;
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		pthread_mutex_lock(&h->wn->lock);
		n = wnode_read(fs, h->wn, buf, size, (uint64_t)off);
		pthread_mutex_unlock(&h->wn->lock);
		if (n < 0)
			fail(req, (int)n, "read", ino, NULL, NULL);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		free(buf);
		return;
	}
	fuse_reply_err(req, EISDIR);
}

static void write_handle(fuse_req_t req, fuse_ino_t ino, struct handle *h, const char *buf,
			 size_t size, off_t off);

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, false);

	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	write_handle(req, ino, h, buf, size, off);
	handle_put(fs, h);
}

static void write_handle(fuse_req_t req, fuse_ino_t ino, struct handle *h, const char *buf,
			 size_t size, off_t off)
{
	struct mrfs_fs *fs = fs_of(req);
	int rc;

	if (h->type == H_BUF) {
		size_t end = (size_t)off + size;
		if ((rc = buf_reserve(h, end))) {
			fail(req, rc, "write", ino, NULL, "a record is at most 64 MiB");
			return;
		}
		if ((size_t)off > h->len)
			memset(h->buf + h->len, ' ', (size_t)off - h->len);
		memcpy(h->buf + off, buf, size);
		if (end > h->len)
			h->len = end;
		h->dirty = h->written = true;
		fuse_reply_write(req, size);
		return;
	}
	if (h->type != H_NODE || !h->writer) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (!h->active) {
		/* written again after a close of a dup: the version may be sealed */
		struct mrfs_version v;
		if ((rc = node_version(fs, h->wn->id, &v)) == 0 && v.state == MRFS_SEALED)
			rc = -EROFS;
		if (rc) {
			fail(req, rc, "write", ino, NULL, "the version was sealed");
			return;
		}
		pthread_mutex_lock(&fs->wlock);
		h->active = true;
		h->wn->active++;
		pthread_mutex_unlock(&fs->wlock);
	}
	pthread_mutex_lock(&h->wn->lock);
	rc = wnode_write(fs, h->wn, buf, size, (uint64_t)off);
	pthread_mutex_unlock(&h->wn->lock);
	if (rc < 0)
		fail(req, rc, "write", ino, NULL, NULL);
	else
		fuse_reply_write(req, (size_t)rc);
}

/* Commit what @h's node holds; the handle stops counting as busy. */
static int commit_handle(fuse_req_t req, fuse_ino_t ino, struct handle *h)
{
	struct mrfs_fs *fs = fs_of(req);
	struct mrfs_err err = {""};
	int rc;

	pthread_mutex_lock(&h->wn->lock);
	rc = wnode_commit(fs, h->wn, &err);
	pthread_mutex_unlock(&h->wn->lock);
	if (rc) {
		char path[4096];
		path_of(fs, ino, path, sizeof(path));
		fprintf(stderr, "mrfs: close %s: content not kept: %s (%s)\n", path,
			*err.msg ? err.msg : strerror(-rc), strerrorname_np(-rc));
	}
	return rc;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, false);
	int rc = 0;

	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (h->type == H_BUF) {
		/* a shell's `> f` closes a dup before it writes: wait for the data */
		if (h->written)
			rc = apply_record(req, h);
	} else if (h->type == H_NODE && h->writer) {
		rc = commit_handle(req, ino, h);
		pthread_mutex_lock(&fs->wlock);
		if (h->active) {
			h->active = false;
			h->wn->active--;
		}
		pthread_mutex_unlock(&fs->wlock);
	}
	handle_put(fs, h);
	fuse_reply_err(req, -rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, false);
	int rc = 0;

	(void)datasync;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (h->type == H_BUF)
		rc = apply_record(req, h);
	else if (h->type == H_NODE && h->writer)
		rc = commit_handle(req, ino, h);
	handle_put(fs, h);
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, true);

	if (h && h->type == H_NODE && h->writer)
		commit_handle(req, ino, h);
	else if (h && h->type == H_BUF)
		apply_record(req, h);
	if (h)
		handle_put(fs, h);
	fuse_reply_err(req, 0);
}

/* ---- directories ------------------------------------------------------------- */

struct listing {
	struct handle *h;
	size_t cap, names_cap;
};

static int list_add(struct listing *l, const char *name, uint64_t ino, mode_t type)
{
	struct handle *h = l->h;
	size_t len = strlen(name) + 1;

	if (h->ndents == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct dent *d = realloc(h->dents, ncap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		h->dents = d;
		l->cap = ncap;
	}
	if (h->names_len + len > l->names_cap) {
		size_t ncap = l->names_cap ? l->names_cap * 2 : 1024;
		char *n;
		while (ncap < h->names_len + len)
			ncap *= 2;
		if (!(n = realloc(h->names, ncap)))
			return -ENOMEM;
		h->names = n;
		l->names_cap = ncap;
	}
	memcpy(h->names + h->names_len, name, len);
	h->dents[h->ndents].name = h->names_len;
	h->dents[h->ndents].ino = ino;
	h->dents[h->ndents].type = type;
	h->names_len += len;
	h->ndents++;
	return 0;
}

static int list_model_cb(void *ctx, const struct mrfs_model *m)
{
	char name[MRFS_NAME_MAX + 8];
	int rc = list_add(ctx, m->name, INO(K_MODEL, m->id), S_IFDIR);

	snprintf(name, sizeof(name), "%s.json", m->name);
	return rc ? rc : list_add(ctx, name, INO(K_MODEL_JSON, m->id), S_IFREG);
}

static int list_version_cb(void *ctx, uint32_t n, uint64_t vid)
{
	char name[16], *p = name + 10;
	int rc;

	/* "n" and "n.json", without printf: a listing has 10,000s of them */
	memcpy(p, ".json", 6);
	do
		*--p = (char)('0' + n % 10);
	while (n /= 10);
	name[10] = '\0';
	if ((rc = list_add(ctx, p, INO(K_NODE, vid), S_IFDIR)))
		return rc;
	name[10] = '.';
	return list_add(ctx, p, INO(K_VJSON, vid), S_IFREG);
}

static int list_alias_cb(void *ctx, const struct mrfs_alias *a)
{
	return list_add(ctx, a->name, INO(K_ALIAS, a->id), S_IFLNK);
}

struct list_nodes {
	struct listing *l;
	struct mrfs_txn *txn;
};

static int list_node_cb(void *ctx, const char *name, uint64_t id)
{
	struct list_nodes *ln = ctx;
	struct mrfs_node nd;
	int rc = mrfs_node_get(ln->txn, id, &nd);

	return rc ? rc : list_add(ln->l, name, INO(K_NODE, id), nd.mode & S_IFMT);
}

/* In /serving, a version's directories are its own inodes; files are shared. */
static int list_snode_cb(void *ctx, const char *name, uint64_t id)
{
	struct list_nodes *ln = ctx;
	struct mrfs_node nd;
	int rc = mrfs_node_get(ln->txn, id, &nd);

	if (rc)
		return rc;
	return list_add(ln->l, name, INO(S_ISDIR(nd.mode) ? K_SNODE : K_NODE, id),
			nd.mode & S_IFMT);
}

struct list_serving {
	struct listing *l;
	struct mrfs_txn *txn;
	const char *alias; /* NULL: list alias names */
	uint64_t alias_id;
	char (*seen)[MRFS_NAME_MAX + 1];
	size_t nseen;
};

static int list_serving_cb(void *ctx, uint64_t model, const struct mrfs_alias *a)
{
	struct list_serving *ls = ctx;
	struct mrfs_model m;
	uint64_t nid;
	int rc;

	if (ls->alias) {
		fuse_ino_t ino;
		if (strcmp(a->name, ls->alias))
			return 0;
		if ((rc = mrfs_model_get(ls->txn, model, &m)) ||
		    (rc = smodel_ino(ls->alias_id, model, &ino)))
			return rc;
		return list_add(ls->l, m.name, ino, S_IFDIR);
	}
	for (size_t i = 0; i < ls->nseen; i++)
		if (!strcmp(ls->seen[i], a->name))
			return 0;
	if ((rc = mrfs_alias_name_id(ls->txn, a->name, &nid)))
		return rc;
	if (!(ls->nseen & (ls->nseen + 1))) {
		/* grow at powers of two */
		void *n = realloc(ls->seen, (2 * ls->nseen + 2) * sizeof(*ls->seen));
		if (!n)
			return -ENOMEM;
		ls->seen = n;
	}
	snprintf(ls->seen[ls->nseen++], MRFS_NAME_MAX + 1, "%s", a->name);
	return list_add(ls->l, a->name, INO(K_SALIAS, nid), S_IFDIR);
}

struct list_at {
	struct mrfs_fs *fs;
	struct listing *l;
	struct at_entry e;
};

static int list_at_cb(void *ctx, const struct mrfs_alias *a)
{
	struct list_at *la = ctx;
	fuse_ino_t ino;
	int rc = at_ino(la->fs, la->e.model, la->e.time_ns, a->name, &ino);

	return rc ? rc : list_add(la->l, a->name, ino, S_IFLNK);
}

static int list_dir(struct mrfs_fs *fs, struct mrfs_txn *txn, fuse_ino_t ino, struct listing *l)
{
	struct list_serving ls = {l, txn, NULL, 0, NULL, 0};
	struct mrfs_alias a;
	struct mrfs_version v;
	struct mrfs_node nd;
	char name[MRFS_NAME_MAX + 1];
	uint64_t model;
	struct mrfs_model m;
	struct list_nodes ln = {l, txn};
	int rc;

	if ((rc = list_add(l, ".", ino, S_IFDIR)) || (rc = list_add(l, "..", INO_ROOT, S_IFDIR)))
		return rc;
	switch (kind_of(ino)) {
	case K_FIXED:
		if (ino == INO_ROOT) {
			if ((rc = list_add(l, "models", INO_MODELS, S_IFDIR)) ||
			    (rc = list_add(l, "serving", INO_SERVING, S_IFDIR)))
				return rc;
			return list_add(l, "history", INO_HISTORY, S_IFREG);
		}
		if (ino == INO_MODELS)
			return mrfs_models_walk(txn, NULL, list_model_cb, l);
		if (ino == INO_SERVING) {
			rc = mrfs_aliases_all(txn, list_serving_cb, &ls);
			free(ls.seen);
			return rc;
		}
		return -ENOTDIR;
	case K_SALIAS:
		if ((rc = mrfs_alias_name_by_id(txn, id_of(ino), name)))
			return rc;
		ls.alias = name;
		ls.alias_id = id_of(ino);
		return mrfs_aliases_all(txn, list_serving_cb, &ls);
	case K_SMODEL:
		if ((rc = smodel_alias(txn, ino, &model, &a)) ||
		    (rc = mrfs_version_by_number(txn, model, a.version, &v)))
			return rc;
		snprintf(name, sizeof(name), "%u", v.n);
		if ((rc = list_add(l, name, INO(K_SNODE, v.id), S_IFDIR)))
			return rc;
		if (!mrfs_node_lookup(txn, v.id, "config.pbtxt", &nd) && S_ISREG(nd.mode))
			return list_add(l, "config.pbtxt", INO(K_NODE, nd.id), S_IFREG);
		return 0;
	case K_SNODE:
		return mrfs_dir_walk(txn, id_of(ino), NULL, list_snode_cb, &ln);
	case K_AT: {
		struct list_at la = {fs, l, {0}};
		if ((rc = at_get(fs, ino, &la.e)))
			return rc;
		if (*la.e.name)
			return -ENOTDIR;
		return mrfs_aliases_at(txn, la.e.model, la.e.time_ns, list_at_cb, &la);
	}
	case K_MODEL:
		if ((rc = mrfs_model_get(txn, id_of(ino), &m)))
			return rc;
		if ((rc = list_add(l, "versions", INO(K_VERSIONS, m.id), S_IFDIR)) ||
		    (rc = list_add(l, "history", INO(K_MHIST, m.id), S_IFREG)))
			return rc;
		if (m.latest && (rc = list_add(l, "latest", INO(K_LATEST, m.id), S_IFLNK)))
			return rc;
		return mrfs_aliases_walk(txn, m.id, NULL, list_alias_cb, l);
	case K_VERSIONS:
		return mrfs_version_ids_walk(txn, id_of(ino), list_version_cb, l);
	case K_NODE:
		return mrfs_dir_walk(txn, id_of(ino), NULL, list_node_cb, &ln);
	}
	return -ENOTDIR;
}

/* List directory @ino into @h (emptied first), as of now. */
static int list_handle(struct mrfs_fs *fs, fuse_ino_t ino, struct handle *h)
{
	struct listing l = {h, 0, 0};
	struct mrfs_txn *txn;
	int rc;

	free(h->dents);
	free(h->names);
	h->dents = NULL;
	h->names = NULL;
	h->ndents = h->names_len = 0;
	h->gen = __atomic_load_n(&fs->gen, __ATOMIC_SEQ_CST);
	if ((rc = mrfs_txn_begin(fs->store, false, &txn)))
		return rc;
	rc = list_dir(fs, txn, ino, &l);
	mrfs_txn_abort(txn);
	return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_new(H_DIR);
	int rc;

	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if ((rc = list_handle(fs, ino, h))) {
		handle_destroy(fs, h);
		fuse_reply_err(req, -rc);
		return;
	}
	if (kind_of(ino) == K_VERSIONS) {
		/* the kernel keeps the listing until the watcher drops it (a
		 * version event) or this mount adds or removes a version */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	handle_open(fs, h, fi);
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, false);
	char *buf = malloc(size);
	size_t used = 0;
	int rc = 0;

	if (!buf || !h) {
		fuse_reply_err(req, buf ? EBADF : ENOMEM);
		free(buf);
		if (h)
			handle_put(fs, h);
		return;
	}
	/* the kernel may cache what starts at 0: not a listing older than
	 * an invalidation (see the watcher) */
	pthread_rwlock_rdlock(&fs->gate);
	if (off == 0 && h->gen != __atomic_load_n(&fs->gen, __ATOMIC_SEQ_CST) &&
	    (rc = list_handle(fs, ino, h))) {
		pthread_rwlock_unlock(&fs->gate);
		fuse_reply_err(req, -rc);
		free(buf);
		handle_put(fs, h);
		return;
	}
	for (size_t i = (size_t)off; i < h->ndents; i++) {
		struct stat st = {.st_ino = h->dents[i].ino, .st_mode = h->dents[i].type};
		size_t n = fuse_add_direntry(req, buf + used, size - used,
					     h->names + h->dents[i].name, &st, (off_t)(i + 1));
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	pthread_rwlock_unlock(&fs->gate);
	free(buf);
	handle_put(fs, h);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mrfs_fs *fs = fs_of(req);
	struct handle *h = handle_get(fs, fi, true);

	(void)ino;
	if (h)
		handle_put(fs, h);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct mrfs_fs *fs = fs_of(req);
	struct statvfs sv;

	(void)ino;
	if (statvfs(mrfs_store_dir(fs->store), &sv)) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = MRFS_PATH_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .create = op_create,
};

/* ---- running ------------------------------------------------------------------ */

/*
 * The kernel gives a FUSE mount the smaller of its device's readahead
 * (128 KiB by default) and what INIT asks (max_readahead, 1 MiB); serving
 * tools mmap and read large files, which want the larger. Raise the device's
 * before INIT, found in mountinfo without touching the mount (the loop is
 * not running yet), so max_readahead decides. Root only; failure is
 * harmless. (8 MiB measured no better than 1 MiB here.)
 */
static void raise_readahead(const char *mountpoint, unsigned kb)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], dev[64] = "", path[4096];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char d[64], mp[4096];
		if (sscanf(line, "%*s %*s %63s %*s %4095s", d, mp) == 2 && !strcmp(mp, mountpoint))
			snprintf(dev, sizeof(dev), "%s", d); /* the last one is ours */
	}
	fclose(f);
	if (!*dev)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%u\n", kb);
		fclose(f);
	}
}

static int fs_open(struct mrfs_fs *fs, const char *dir)
{
	char path[4096];
	int rc = mrfs_store_open(dir, NULL, &fs->store);

	if (rc)
		return rc;
	if ((rc = mrfs_registry_new(fs->store, &fs->reg)))
		return rc;
	snprintf(path, sizeof(path), "%s/tmp", dir);
	fs->tmp_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fs->tmp_fd < 0 ? -errno : 0;
}

static void fs_close(struct mrfs_fs *fs)
{
	while (fs->wnodes) {
		struct wnode *w = fs->wnodes;
		fs->wnodes = w->next;
		wnode_reset(w);
		free(w);
	}
	if (fs->tmp_fd >= 0)
		close(fs->tmp_fd);
	mrfs_registry_free(fs->reg);
	mrfs_store_close(fs->store);
}

int mrfs_fs_run(const struct mrfs_mount_opts *o)
{
	struct mrfs_fs fs = {.tmp_fd = -1, .admin_gid = (gid_t)-1};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	struct fuse_loop_config *cfg;
	char opts[4096], *dir;
	int rc;

	/* fail early, before the mount, if the store cannot be opened */
	if ((rc = fs_open(&fs, o->store_dir))) {
		fprintf(stderr, "mrfs: cannot open store %s: %s\n", o->store_dir, strerror(-rc));
		fs_close(&fs);
		return rc;
	}
	fs_close(&fs);
	memset(&fs, 0, sizeof(fs));
	fs.tmp_fd = -1;
	fs.admin_gid = (gid_t)-1;
	pthread_mutex_init(&fs.at_lock, NULL);
	pthread_mutex_init(&fs.hlock, NULL);
	pthread_mutex_init(&fs.watch_lock, NULL);
	{
		/* the watcher must not wait behind a stream of lookups */
		pthread_rwlockattr_t ra;
		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&fs.gate, &ra);
		pthread_rwlockattr_destroy(&ra);
	}
	if (o->admin_group) {
		struct group *g = getgrnam(o->admin_group);
		char *end;
		unsigned long gid = strtoul(o->admin_group, &end, 10);
		if (g)
			fs.admin_gid = g->gr_gid;
		else if (*o->admin_group && !*end)
			fs.admin_gid = (gid_t)gid;
		else {
			fprintf(stderr, "mrfs: no group '%s'\n", o->admin_group);
			return -EINVAL;
		}
	}
	pthread_mutex_init(&fs.wlock, NULL);
	fs.mountpoint = realpath(o->mountpoint, NULL);
	dir = realpath(o->store_dir, NULL);
	if (!fs.mountpoint || !dir) {
		rc = -errno;
		fprintf(stderr, "mrfs: %s: %s\n", fs.mountpoint ? o->store_dir : o->mountpoint,
			strerror(errno));
		goto out_free;
	}
	snprintf(opts, sizeof(opts), "default_permissions,max_read=%u,fsname=%s,subtype=mrfs%s%s",
		 MAX_READ, dir, o->fuse_opts ? "," : "", o->fuse_opts ? o->fuse_opts : "");
	if (fuse_opt_add_arg(&args, "mrfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, opts) || (o->debug && fuse_opt_add_arg(&args, "-d"))) {
		rc = -ENOMEM;
		goto out_free;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
	if (!se) {
		rc = -EINVAL;
		goto out_free;
	}
	if (fuse_set_signal_handlers(se)) {
		rc = -EIO;
		goto out_session;
	}
	if (fuse_session_mount(se, fs.mountpoint)) {
		rc = -EIO;
		goto out_signals;
	}
	raise_readahead(fs.mountpoint, IO_BLOCK >> 10);
	/* LMDB must not cross a fork: open the store in the daemon */
	fuse_daemonize(o->foreground);
	/* Reply buffers of up to 1 MiB come and go on every thread: keep them
	 * out of the per-thread heaps (glibc would otherwise raise its mmap
	 * threshold and keep each thread's peak), so RSS stays flat. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	clock_gettime(CLOCK_REALTIME, &started);
	if ((rc = fs_open(&fs, dir))) {
		fprintf(stderr, "mrfs: cannot open store %s: %s\n", dir, strerror(-rc));
		goto out_unmount;
	}
	if ((rc = watch_start(&fs, se))) {
		fprintf(stderr, "mrfs: cannot start the watcher: %s\n", strerror(-rc));
		goto out_unmount;
	}
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		rc = -ENOMEM;
		goto out_unmount;
	}
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, 16);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	rc = rc < 0 ? rc : 0;
out_unmount:
	watch_stop(&fs);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_free:
	fuse_opt_free_args(&args);
	fs_close(&fs);
	pthread_mutex_destroy(&fs.wlock);
	pthread_mutex_destroy(&fs.at_lock);
	pthread_mutex_destroy(&fs.hlock);
	pthread_mutex_destroy(&fs.watch_lock);
	pthread_rwlock_destroy(&fs.gate);
	free(fs.known);
	free(fs.at);
	free(fs.mountpoint);
	free(dir);
	return rc;
}
