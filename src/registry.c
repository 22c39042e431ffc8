/* SPDX-License-Identifier: MIT */
/*
 * The registry: models, versions, nodes, aliases and history, kept in the
 * store's key/value databases. See mrfs/registry.h for the layout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mrfs/record.h"
#include "mrfs/registry.h"

struct mrfs_registry {
	struct mrfs_store *store;
};

/* ---- small helpers ------------------------------------------------------ */

/* Microseconds, as the history writes them, so a time read back from an
 * event or a record compares equal to the one kept in a struct. */
int64_t mrfs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec / 1000 * 1000;
}

static void refuse(struct mrfs_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void refuse(struct mrfs_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A key: a tag byte, then big-endian ids and names appended. */
struct key {
	uint8_t b[8 + 8 + 8 + MRFS_PATH_NAME_MAX + 1];
	size_t len;
};

static struct key *k_tag(struct key *k, char tag)
{
	k->b[0] = (uint8_t)tag;
	k->len = 1;
	return k;
}

static struct key *k_u64(struct key *k, uint64_t v)
{
	be64(k->b + k->len, v);
	k->len += 8;
	return k;
}

static struct key *k_u32(struct key *k, uint32_t v)
{
	be32(k->b + k->len, v);
	k->len += 4;
	return k;
}

static struct key *k_str(struct key *k, const char *s)
{
	size_t n = strlen(s);

	if (n > MRFS_PATH_NAME_MAX)
		n = MRFS_PATH_NAME_MAX;
	memcpy(k->b + k->len, s, n);
	k->len += n;
	return k;
}

/* Get a fixed-size struct record. */
static int get_rec(struct mrfs_txn *txn, enum mrfs_db db, const struct key *k, void *out,
		   size_t size)
{
	struct mrfs_val v;
	int rc = mrfs_kv_get(txn, db, k->b, k->len, &v);

	if (rc)
		return rc;
	if (v.len != size)
		return -EIO;
	memcpy(out, v.data, size);
	return 0;
}

/* An index record: key @k holds the big-endian id of what it names. */
static int index_get(struct mrfs_txn *txn, enum mrfs_db db, const struct key *k, uint64_t *id)
{
	struct mrfs_val v;
	int rc = mrfs_kv_get(txn, db, k->b, k->len, &v);

	if (rc)
		return rc;
	if (v.len != 8)
		return -EIO;
	*id = get_be64(v.data);
	return 0;
}

static int put(struct mrfs_txn *txn, enum mrfs_db db, const struct key *k, const void *val,
	       size_t len)
{
	return mrfs_kv_put(txn, db, k->b, k->len, val, len);
}

static int del(struct mrfs_txn *txn, enum mrfs_db db, const struct key *k)
{
	return mrfs_kv_del(txn, db, k->b, k->len);
}

/* ---- names ------------------------------------------------------------ */

bool mrfs_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n < 1 || n > MRFS_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return !(n >= 5 && !strcmp(name + n - 5, ".json"));
}

bool mrfs_name_reserved(const char *name)
{
	return !strcmp(name, "versions") || !strcmp(name, "latest") || !strcmp(name, "history");
}

bool mrfs_version_parse(const char *s, uint32_t *n)
{
	uint64_t v = 0;

	if (!*s || *s == '0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*n = (uint32_t)v;
	return true;
}

/* ---- reading -------------------------------------------------------------- */

int mrfs_registry_new(struct mrfs_store *store, struct mrfs_registry **out)
{
	struct mrfs_registry *reg = calloc(1, sizeof(*reg));

	if (!reg)
		return -ENOMEM;
	reg->store = store;
	*out = reg;
	return 0;
}

void mrfs_registry_free(struct mrfs_registry *reg)
{
	free(reg);
}

struct mrfs_store *mrfs_registry_store(struct mrfs_registry *reg)
{
	return reg->store;
}

int mrfs_model_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_model *m)
{
	struct key k;

	return get_rec(txn, MRFS_DB_MODELS, k_u64(k_tag(&k, 'i'), id), m, sizeof(*m));
}

int mrfs_model_by_name(struct mrfs_txn *txn, const char *name, struct mrfs_model *m)
{
	struct key k;
	uint64_t id;
	int rc;

	if (strlen(name) > MRFS_NAME_MAX)
		return -ENOENT;
	k_str(k_tag(&k, 'n'), name);
	return (rc = index_get(txn, MRFS_DB_MODELS, &k, &id)) ? rc : mrfs_model_get(txn, id, m);
}

static int put_model(struct mrfs_txn *txn, const struct mrfs_model *m)
{
	struct key k;

	return put(txn, MRFS_DB_MODELS, k_u64(k_tag(&k, 'i'), m->id), m, sizeof(*m));
}

int mrfs_version_get(struct mrfs_txn *txn, uint64_t vid, struct mrfs_version *v)
{
	struct key k;

	return get_rec(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'v'), vid), v, sizeof(*v));
}

int mrfs_version_by_number(struct mrfs_txn *txn, uint64_t model, uint32_t n, struct mrfs_version *v)
{
	struct key k;
	uint64_t id;
	int rc;

	k_u32(k_u64(k_tag(&k, 'm'), model), n);
	return (rc = index_get(txn, MRFS_DB_VERSIONS, &k, &id)) ? rc : mrfs_version_get(txn, id, v);
}

static int put_version(struct mrfs_txn *txn, const struct mrfs_version *v)
{
	struct key k;

	return put(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'v'), v->id), v, sizeof(*v));
}

int mrfs_node_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_node *nd)
{
	struct key k;

	return get_rec(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'i'), id), nd, sizeof(*nd));
}

static int put_node(struct mrfs_txn *txn, const struct mrfs_node *nd)
{
	struct key k;

	return put(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'i'), nd->id), nd, sizeof(*nd));
}

static int dirent_get(struct mrfs_txn *txn, uint64_t parent, const char *name, uint64_t *id)
{
	struct key k;

	if (strlen(name) > MRFS_PATH_NAME_MAX)
		return -ENAMETOOLONG;
	k_str(k_u64(k_tag(&k, 'd'), parent), name);
	return index_get(txn, MRFS_DB_NODES, &k, id);
}

int mrfs_node_lookup(struct mrfs_txn *txn, uint64_t parent, const char *name, struct mrfs_node *nd)
{
	uint64_t id;
	int rc = dirent_get(txn, parent, name, &id);

	return rc ? rc : mrfs_node_get(txn, id, nd);
}

int mrfs_node_readlink(struct mrfs_txn *txn, uint64_t id, char *buf, size_t size)
{
	struct key k;
	struct mrfs_val v;
	int rc;

	k_u64(k_tag(&k, 'l'), id);
	rc = mrfs_kv_get(txn, MRFS_DB_NODES, k.b, k.len, &v);

	if (rc)
		return rc;
	if (v.len >= size)
		return -ENAMETOOLONG;
	memcpy(buf, v.data, v.len);
	buf[v.len] = '\0';
	return 0;
}

int mrfs_alias_get(struct mrfs_txn *txn, uint64_t model, const char *name, struct mrfs_alias *a)
{
	struct key k;

	if (strlen(name) > MRFS_NAME_MAX)
		return -ENOENT;
	k_str(k_u64(k_tag(&k, 'a'), model), name);
	return get_rec(txn, MRFS_DB_ALIASES, &k, a, sizeof(*a));
}

int mrfs_alias_by_id(struct mrfs_txn *txn, uint64_t id, uint64_t *model, struct mrfs_alias *a)
{
	struct key k;
	struct mrfs_val v;
	char name[MRFS_NAME_MAX + 1];
	int rc;

	k_u64(k_tag(&k, 'i'), id);
	rc = mrfs_kv_get(txn, MRFS_DB_ALIASES, k.b, k.len, &v);

	if (rc == -ENOENT) {
		/* gone: its tombstone, if any */
		k_u64(k_tag(&k, 'T'), id);
		if ((rc = mrfs_kv_get(txn, MRFS_DB_ALIASES, k.b, k.len, &v)))
			return rc;
		if (v.len != 8 + sizeof(*a))
			return -EIO;
		*model = get_be64(v.data);
		memcpy(a, (const uint8_t *)v.data + 8, sizeof(*a));
		return 0;
	}
	if (rc)
		return rc;
	if (v.len < 9 || v.len > 8 + MRFS_NAME_MAX)
		return -EIO;
	*model = get_be64(v.data);
	memcpy(name, (const char *)v.data + 8, v.len - 8);
	name[v.len - 8] = '\0';
	rc = mrfs_alias_get(txn, *model, name, a);
	return rc == 0 && a->id != id ? -ENOENT : rc;
}

/* Give alias name @name its stable id, once. */
static int name_id_ensure(struct mrfs_txn *txn, const char *name)
{
	struct key k;
	uint64_t id;
	uint8_t idb[8];
	int rc = mrfs_alias_name_id(txn, name, &id);

	if (rc != -ENOENT)
		return rc;
	if ((rc = mrfs_kv_next_id(txn, "alias-name", &id)))
		return rc;
	be64(idb, id);
	if ((rc = put(txn, MRFS_DB_ALIASES, k_str(k_tag(&k, 'g'), name), idb, 8)))
		return rc;
	return put(txn, MRFS_DB_ALIASES, k_u64(k_tag(&k, 'G'), id), name, strlen(name));
}

int mrfs_alias_name_id(struct mrfs_txn *txn, const char *name, uint64_t *id)
{
	struct key k;

	if (strlen(name) > MRFS_NAME_MAX)
		return -ENOENT;
	k_str(k_tag(&k, 'g'), name);
	return index_get(txn, MRFS_DB_ALIASES, &k, id);
}

int mrfs_alias_name_by_id(struct mrfs_txn *txn, uint64_t id, char name[MRFS_NAME_MAX + 1])
{
	struct key k;
	struct mrfs_val v;
	int rc;

	k_u64(k_tag(&k, 'G'), id);
	if ((rc = mrfs_kv_get(txn, MRFS_DB_ALIASES, k.b, k.len, &v)))
		return rc;
	if (v.len > MRFS_NAME_MAX)
		return -EIO;
	memcpy(name, v.data, v.len);
	name[v.len] = '\0';
	return 0;
}

struct all_aliases {
	mrfs_any_alias_fn fn;
	void *ctx;
};

static int all_aliases_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct all_aliases *w = ctx;
	struct mrfs_alias a;

	if (val.len != sizeof(a) || key.len < 10)
		return -EIO;
	memcpy(&a, val.data, sizeof(a));
	return w->fn(w->ctx, get_be64((const uint8_t *)key.data + 1), &a);
}

int mrfs_aliases_all(struct mrfs_txn *txn, mrfs_any_alias_fn fn, void *ctx)
{
	struct all_aliases w = {fn, ctx};

	return mrfs_kv_scan(txn, MRFS_DB_ALIASES, "a", 1, NULL, 0, all_aliases_cb, &w);
}

static int put_alias(struct mrfs_txn *txn, uint64_t model, const struct mrfs_alias *a)
{
	struct key k;
	uint8_t rev[8 + MRFS_NAME_MAX];
	size_t n = strlen(a->name);
	int rc;

	if ((rc = name_id_ensure(txn, a->name)))
		return rc;

	k_str(k_u64(k_tag(&k, 'a'), model), a->name);
	if ((rc = put(txn, MRFS_DB_ALIASES, &k, a, sizeof(*a))))
		return rc;
	be64(rev, model);
	memcpy(rev + 8, a->name, n);
	return put(txn, MRFS_DB_ALIASES, k_u64(k_tag(&k, 'i'), a->id), rev, 8 + n);
}

/*
 * Delete alias @a of @model, leaving a tombstone under its id: the last
 * target, for a path walk that looked the alias up just before it moved
 * (the kernel may still hold that inode for a moment).
 */
static int del_alias(struct mrfs_txn *txn, uint64_t model, const struct mrfs_alias *a)
{
	struct key k;
	struct mrfs_alias t = *a;
	uint8_t val[8 + sizeof(t)];
	int rc = del(txn, MRFS_DB_ALIASES, k_str(k_u64(k_tag(&k, 'a'), model), a->name));

	if (rc)
		return rc;
	rc = del(txn, MRFS_DB_ALIASES, k_u64(k_tag(&k, 'i'), a->id));
	if (rc && rc != -ENOENT)
		return rc;
	be64(val, model);
	memset(t.name, 0, sizeof(t.name));
	memcpy(val + 8, &t, sizeof(t));
	return put(txn, MRFS_DB_ALIASES, k_u64(k_tag(&k, 'T'), a->id), val, sizeof(val));
}

/* ---- walks ---------------------------------------------------------------- */

struct walk {
	void *fn;
	void *ctx;
	struct mrfs_txn *txn;
	size_t skip; /* key bytes before the name */
	const char *after;
};

static int model_walk_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct walk *w = ctx;
	struct mrfs_model m;
	int rc;

	if (val.len != 8)
		return -EIO;
	if (w->after && key.len - 1 == strlen(w->after) &&
	    !memcmp((const char *)key.data + 1, w->after, key.len - 1))
		return 0;
	if ((rc = mrfs_model_get(w->txn, get_be64(val.data), &m)))
		return rc;
	return ((mrfs_model_fn)w->fn)(w->ctx, &m);
}

int mrfs_models_walk(struct mrfs_txn *txn, const char *after, mrfs_model_fn fn, void *ctx)
{
	struct walk w = {(void *)fn, ctx, txn, 1, after};
	struct key k, from;

	k_tag(&k, 'n');
	if (after)
		k_str(k_tag(&from, 'n'), after);
	return mrfs_kv_scan(txn, MRFS_DB_MODELS, k.b, k.len, after ? from.b : NULL,
			    after ? from.len : 0, model_walk_cb, &w);
}

static int version_walk_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct walk *w = ctx;
	struct mrfs_version v;
	int rc;

	if (val.len != 8)
		return -EIO;
	if ((rc = mrfs_version_get(w->txn, get_be64(val.data), &v)))
		return rc;
	return ((mrfs_version_fn)w->fn)(w->ctx, &v);
}

int mrfs_versions_walk(struct mrfs_txn *txn, uint64_t model, uint32_t after, mrfs_version_fn fn,
		       void *ctx)
{
	struct walk w = {(void *)fn, ctx, txn, 0, NULL};
	struct key k, from;

	k_u64(k_tag(&k, 'm'), model);
	from = k;
	k_u32(&from, after + 1);
	if (after == UINT32_MAX)
		return 0;
	return mrfs_kv_scan(txn, MRFS_DB_VERSIONS, k.b, k.len, from.b, from.len, version_walk_cb,
			    &w);
}

static int version_id_walk_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct walk *w = ctx;

	if (val.len != 8 || key.len != 13)
		return -EIO;
	return ((mrfs_version_id_fn)w->fn)(w->ctx, get_be32((const uint8_t *)key.data + 9),
					   get_be64(val.data));
}

int mrfs_version_ids_walk(struct mrfs_txn *txn, uint64_t model, mrfs_version_id_fn fn, void *ctx)
{
	struct walk w = {(void *)fn, ctx, txn, 0, NULL};
	struct key k;

	k_u64(k_tag(&k, 'm'), model);
	return mrfs_kv_scan(txn, MRFS_DB_VERSIONS, k.b, k.len, NULL, 0, version_id_walk_cb, &w);
}

static int alias_walk_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct walk *w = ctx;
	struct mrfs_alias a;

	if (val.len != sizeof(a))
		return -EIO;
	memcpy(&a, val.data, sizeof(a));
	if (w->after && !strcmp(a.name, w->after))
		return 0;
	return ((mrfs_alias_fn)w->fn)(w->ctx, &a);
}

int mrfs_aliases_walk(struct mrfs_txn *txn, uint64_t model, const char *after, mrfs_alias_fn fn,
		      void *ctx)
{
	struct walk w = {(void *)fn, ctx, txn, 9, after};
	struct key k, from;

	k_u64(k_tag(&k, 'a'), model);
	from = k;
	if (after)
		k_str(&from, after);
	return mrfs_kv_scan(txn, MRFS_DB_ALIASES, k.b, k.len, from.b, from.len, alias_walk_cb, &w);
}

static int dir_walk_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct walk *w = ctx;
	char name[MRFS_PATH_NAME_MAX + 1];
	size_t n = key.len - w->skip;

	if (val.len != 8 || n > MRFS_PATH_NAME_MAX)
		return -EIO;
	memcpy(name, (const char *)key.data + w->skip, n);
	name[n] = '\0';
	if (w->after && !strcmp(name, w->after))
		return 0;
	return ((mrfs_dirent_fn)w->fn)(w->ctx, name, get_be64(val.data));
}

int mrfs_dir_walk(struct mrfs_txn *txn, uint64_t dir, const char *after, mrfs_dirent_fn fn,
		  void *ctx)
{
	struct walk w = {(void *)fn, ctx, txn, 9, after};
	struct key k, from;

	k_u64(k_tag(&k, 'd'), dir);
	from = k;
	if (after)
		k_str(&from, after);
	return mrfs_kv_scan(txn, MRFS_DB_NODES, k.b, k.len, from.b, from.len, dir_walk_cb, &w);
}

struct event_walk {
	struct mrfs_txn *txn;
	uint64_t model;
	mrfs_event_fn fn;
	void *ctx;
};

static int event_line_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct event_walk *w = ctx;

	return w->fn(w->ctx, get_be64((const uint8_t *)key.data + 1), val.data, val.len);
}

static int model_event_cb(void *ctx, struct mrfs_val key, struct mrfs_val val)
{
	struct event_walk *w = ctx;
	uint64_t seq = get_be64((const uint8_t *)key.data + 9);
	struct key k;
	struct mrfs_val line;
	int rc;

	k_u64(k_tag(&k, 'e'), seq);
	rc = mrfs_kv_get(w->txn, MRFS_DB_EVENTS, k.b, k.len, &line);
	if (rc)
		return rc == -ENOENT ? -EIO : rc;
	return w->fn(w->ctx, seq, line.data, line.len);
}

int mrfs_events_walk(struct mrfs_txn *txn, uint64_t model, uint64_t from, mrfs_event_fn fn,
		     void *ctx)
{
	struct event_walk w = {txn, model, fn, ctx};
	struct key k, f;

	if (!model) {
		k_tag(&k, 'e');
		k_u64(k_tag(&f, 'e'), from);
		return mrfs_kv_scan(txn, MRFS_DB_EVENTS, k.b, k.len, f.b, f.len, event_line_cb, &w);
	}
	k_u64(k_tag(&k, 'm'), model);
	f = k;
	k_u64(&f, from);
	return mrfs_kv_scan(txn, MRFS_DB_EVENTS, k.b, k.len, f.b, f.len, model_event_cb, &w);
}

uint64_t mrfs_events_next(struct mrfs_txn *txn)
{
	struct mrfs_val v;
	uint64_t last = 0;

	if (!mrfs_kv_get(txn, MRFS_DB_META, "id.seq", 6, &v) && v.len == 8)
		memcpy(&last, v.data, 8);
	return last + 1;
}

uint64_t mrfs_history_size(struct mrfs_txn *txn, uint64_t model)
{
	struct mrfs_model m;
	struct mrfs_val v;
	uint64_t n = 0;

	if (model)
		return mrfs_model_get(txn, model, &m) ? 0 : m.hist_bytes;
	if (!mrfs_kv_get(txn, MRFS_DB_META, "hist.bytes", 10, &v) && v.len == 8)
		memcpy(&n, v.data, 8);
	return n;
}

/* ---- the files of a version ------------------------------------------------ */

struct files_walk {
	struct mrfs_txn *txn;
	mrfs_file_fn fn;
	void *ctx;
	char path[4096];
	size_t len;
};

static int files_cb(void *ctx, const char *name, uint64_t id)
{
	struct files_walk *w = ctx;
	struct mrfs_node nd;
	size_t save = w->len, n = strlen(name);
	int rc = mrfs_node_get(w->txn, id, &nd);

	if (rc)
		return rc;
	if (w->len + n + 2 > sizeof(w->path))
		return -ENAMETOOLONG;
	if (w->len)
		w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, n + 1);
	w->len += n;
	if (S_ISDIR(nd.mode))
		rc = mrfs_dir_walk(w->txn, id, NULL, files_cb, w);
	else
		rc = w->fn(w->ctx, w->path, &nd);
	w->len = save;
	w->path[save] = '\0';
	return rc;
}

int mrfs_version_files(struct mrfs_txn *txn, uint64_t vid, mrfs_file_fn fn, void *ctx)
{
	struct files_walk *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->txn = txn;
	w->fn = fn;
	w->ctx = ctx;
	rc = mrfs_dir_walk(txn, vid, NULL, files_cb, w);
	free(w);
	return rc;
}

int mrfs_node_content(struct mrfs_txn *txn, const struct mrfs_node *nd, struct mrfs_file **out)
{
	*out = NULL;
	if (!nd->file)
		return 0;
	return mrfs_store_file_get(txn, nd->file, out);
}

/* ---- history ----------------------------------------------------------------- */

/* Start event @name at @time_ns: a document with seq, time, event and model. */
/*
 * The versions whose record an event of the write transaction under way may
 * have changed (LMDB lets one write transaction run at a time; a thread's
 * list belongs to the one it runs). Before the commit, end() stores each
 * sealed one's record size ('r' key), so a stat needs no rendering; after
 * an alias change it only drops the stored size (a promotion stays cheap;
 * a stat of those few records renders them).
 */
#define MARKS_MAX 16
static __thread struct mark {
	uint64_t model;
	int64_t n;   /* 0: every version of the model */
	bool render; /* else: drop the stored size */
} marks[MARKS_MAX];
static __thread int nmarks;
static __thread bool marks_overflow; /* then: every version of every model */

static void mark(uint64_t model, int64_t n, bool render)
{
	if (n < 0 || n > UINT32_MAX)
		return;
	for (int i = 0; i < nmarks; i++) {
		if (marks[i].model != model)
			continue;
		if (!marks[i].n && marks[i].render)
			return; /* every version is rendered anyway */
		if (marks[i].n == n) {
			marks[i].render |= render;
			return;
		}
	}
	if (nmarks == MARKS_MAX)
		marks_overflow = true;
	else
		marks[nmarks++] = (struct mark){model, n, render};
}

static int event_new(struct mrfs_txn *txn, const char *name, const char *model, int64_t time_ns,
		     struct mrfs_doc **out, uint64_t *seq)
{
	struct mrfs_doc *doc;
	int rc = mrfs_kv_next_id(txn, "seq", seq);

	if (rc)
		return rc;
	doc = mrfs_doc_new();
	if (!doc)
		return -ENOMEM;
	mrfs_doc_int(doc, "seq", (int64_t)*seq);
	mrfs_doc_time(doc, "time", time_ns);
	mrfs_doc_str(doc, "event", name);
	if (model)
		mrfs_doc_str(doc, "model", model);
	*out = doc;
	return 0;
}

/* Finish @doc with the caller and append it; counts its bytes in the
 * whole history and, with @m, in the model's (then saves @m). Frees @doc. */
static int event_commit(struct mrfs_txn *txn, struct mrfs_doc *doc, uint64_t seq,
			const struct mrfs_caller *who, struct mrfs_model *m)
{
	struct key k;
	struct mrfs_val v;
	uint64_t total = 0;
	size_t len;
	char *line;
	int rc;

	if (m) {
		/* what the event says changed: records of those versions */
		const char *kind = mrfs_doc_string(mrfs_doc_get(doc, "event"));
		bool alias = kind && !strncmp(kind, "alias.", 6);
		if (kind && !strcmp(kind, "model.rename")) {
			mark(m->id, 0, true); /* records name their model */
		} else {
			static const char *const nums[] = {"version", "from", "to"};
			for (size_t i = 0; i < sizeof(nums) / sizeof(*nums); i++) {
				struct mrfs_doc *d = mrfs_doc_get(doc, nums[i]);
				if (d && mrfs_doc_type(d) == MRFS_JSON_INT)
					mark(m->id, (int64_t)mrfs_doc_number(d), !alias);
			}
		}
	}
	mrfs_doc_int(doc, "uid", who->uid);
	mrfs_doc_str(doc, "user", who->user);
	mrfs_doc_int(doc, "pid", who->pid);
	mrfs_doc_str(doc, "comm", who->comm);
	line = mrfs_doc_dump(doc, 0, &len);
	mrfs_doc_free(doc);
	if (!line)
		return -ENOMEM;
	rc = put(txn, MRFS_DB_EVENTS, k_u64(k_tag(&k, 'e'), seq), line, len);
	free(line);
	if (rc)
		return rc;
	if (!mrfs_kv_get(txn, MRFS_DB_META, "hist.bytes", 10, &v) && v.len == 8)
		memcpy(&total, v.data, 8);
	total += len;
	if ((rc = mrfs_kv_put(txn, MRFS_DB_META, "hist.bytes", 10, &total, 8)))
		return rc;
	if (!m)
		return 0;
	k_u64(k_u64(k_tag(&k, 'm'), m->id), seq);
	if ((rc = put(txn, MRFS_DB_EVENTS, &k, "", 0)))
		return rc;
	m->hist_bytes += len;
	return put_model(txn, m);
}

static void stamp(struct mrfs_stamp *s, const struct mrfs_caller *who, int64_t now)
{
	memset(s, 0, sizeof(*s));
	s->time_ns = now;
	s->uid = who->uid;
	snprintf(s->user, sizeof(s->user), "%s", who->user);
}

/* ---- models ------------------------------------------------------------------- */

static int store_size_cb(void *ctx, const struct mrfs_version *v);

static int store_model_sizes_cb(void *ctx, const struct mrfs_model *m)
{
	return mrfs_versions_walk(ctx, m->id, 0, store_size_cb, ctx);
}

/* The record sizes of the marked versions, stored anew. */
static int store_sizes(struct mrfs_txn *txn)
{
	struct mrfs_version v;
	int rc = 0;

	if (marks_overflow)
		return mrfs_models_walk(txn, NULL, store_model_sizes_cb, txn);
	for (int i = 0; i < nmarks && !rc; i++) {
		struct key k;
		if (!marks[i].n) {
			rc = mrfs_versions_walk(txn, marks[i].model, 0, store_size_cb, txn);
		} else if (mrfs_version_by_number(txn, marks[i].model, (uint32_t)marks[i].n, &v)) {
			continue; /* deleted: its keys went with it */
		} else if (marks[i].render) {
			rc = store_size_cb(txn, &v);
		} else {
			rc = del(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'r'), v.id));
			rc = rc == -ENOENT ? 0 : rc;
		}
	}
	return rc;
}

static int begin(struct mrfs_registry *reg, struct mrfs_txn **txn)
{
	nmarks = 0;
	marks_overflow = false;
	return mrfs_txn_begin(reg->store, true, txn);
}

/* Commit @txn when @rc is 0, else abort it; returns the outcome. */
static int end(struct mrfs_txn *txn, int rc)
{
	if (!rc)
		rc = store_sizes(txn);
	nmarks = 0;
	marks_overflow = false;
	if (rc) {
		mrfs_txn_abort(txn);
		return rc;
	}
	return mrfs_txn_commit(txn);
}

int mrfs_model_create(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *name,
		      uint32_t mode, struct mrfs_model *out, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_doc *ev;
	struct key k;
	uint8_t idb[8];
	uint64_t seq;
	int64_t now = mrfs_now_ns();
	int rc;

	if (!mrfs_name_valid(name)) {
		refuse(err,
		       "'%s' is not a valid model name (1-64 of [A-Za-z0-9._-], "
		       "not starting with '.' or '-', not ending in .json)",
		       name);
		return -EINVAL;
	}
	if ((rc = begin(reg, &txn)))
		return rc;
	rc = mrfs_model_by_name(txn, name, &m);
	if (rc == 0) {
		refuse(err, "model '%s' exists", name);
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	memset(&m, 0, sizeof(m));
	if ((rc = mrfs_kv_next_id(txn, "model", &m.id)))
		goto out;
	m.uid = who->uid;
	m.gid = who->gid;
	m.mode = mode & 07777;
	m.mtime_ns = m.ctime_ns = now;
	stamp(&m.created, who, now);
	snprintf(m.name, sizeof(m.name), "%s", name);
	be64(idb, m.id);
	if ((rc = put(txn, MRFS_DB_MODELS, k_str(k_tag(&k, 'n'), name), idb, 8)))
		goto out;
	if ((rc = event_new(txn, "model.create", name, mrfs_now_ns(), &ev, &seq)))
		goto out;
	rc = event_commit(txn, ev, seq, who, &m);
	if (!rc && out)
		*out = m;
out:
	return end(txn, rc);
}

int mrfs_model_rename(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *from,
		      const char *to, bool noreplace, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m, other;
	struct mrfs_doc *ev;
	struct key k;
	uint8_t idb[8];
	uint64_t seq;
	int rc;

	if (!mrfs_name_valid(to)) {
		refuse(err, "'%s' is not a valid model name", to);
		return -EINVAL;
	}
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_by_name(txn, from, &m)))
		goto out;
	if (!strcmp(from, to))
		goto out;
	rc = mrfs_model_by_name(txn, to, &other);
	if (rc == 0) {
		refuse(err, "cannot rename model '%s': model '%s' exists", from, to);
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	if ((rc = del(txn, MRFS_DB_MODELS, k_str(k_tag(&k, 'n'), from))))
		goto out;
	be64(idb, m.id);
	if ((rc = put(txn, MRFS_DB_MODELS, k_str(k_tag(&k, 'n'), to), idb, 8)))
		goto out;
	snprintf(m.name, sizeof(m.name), "%s", to);
	m.ctime_ns = mrfs_now_ns();
	if ((rc = event_new(txn, "model.rename", to, mrfs_now_ns(), &ev, &seq)))
		goto out;
	mrfs_doc_str(ev, "from", from);
	mrfs_doc_str(ev, "to", to);
	rc = event_commit(txn, ev, seq, who, &m);
out:
	return end(txn, rc);
}

int mrfs_model_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *name,
		      struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_doc *ev;
	struct key k;
	uint64_t seq;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_by_name(txn, name, &m)))
		goto out;
	if (m.nversions) {
		refuse(err, "model '%s' still has %u version%s", name, m.nversions,
		       m.nversions == 1 ? "" : "s");
		rc = -ENOTEMPTY;
		goto out;
	}
	if ((rc = del(txn, MRFS_DB_MODELS, k_str(k_tag(&k, 'n'), name))))
		goto out;
	if ((rc = del(txn, MRFS_DB_MODELS, k_u64(k_tag(&k, 'i'), m.id))))
		goto out;
	if ((rc = event_new(txn, "model.delete", name, mrfs_now_ns(), &ev, &seq)))
		goto out;
	rc = event_commit(txn, ev, seq, who, NULL);
out:
	return end(txn, rc);
}

int mrfs_model_setattr(struct mrfs_registry *reg, uint64_t model, int64_t mode, int64_t uid,
		       int64_t gid, struct mrfs_model *out)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)))
		goto out;
	if (mode >= 0)
		m.mode = (uint32_t)mode & 07777;
	if (uid >= 0)
		m.uid = (uint32_t)uid;
	if (gid >= 0)
		m.gid = (uint32_t)gid;
	m.ctime_ns = mrfs_now_ns();
	rc = put_model(txn, &m);
	if (!rc && out)
		*out = m;
out:
	return end(txn, rc);
}

/* ---- versions ------------------------------------------------------------ */

static bool dir_empty(struct mrfs_txn *txn, uint64_t id);

int mrfs_version_create(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
			const char *number, uint32_t mode, struct mrfs_version *out,
			struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_version v;
	struct mrfs_node root;
	struct mrfs_doc *ev;
	struct key k;
	uint8_t idb[8];
	uint64_t seq;
	uint32_t n;
	int64_t now = mrfs_now_ns();
	int rc;

	if (!mrfs_version_parse(number, &n)) {
		refuse(err, "'%s' is not a version number (a positive integer)", number);
		return -EINVAL;
	}
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)))
		goto out;
	rc = mrfs_version_by_number(txn, model, n, &v);
	if (rc == 0) {
		refuse(err, "version %u of '%s' exists", n, m.name);
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	if (n <= m.max_version) {
		refuse(err, "version %u of '%s' is not above the highest it has had (%u)", n,
		       m.name, m.max_version);
		rc = -EINVAL;
		goto out;
	}
	memset(&v, 0, sizeof(v));
	memset(&root, 0, sizeof(root));
	if ((rc = mrfs_kv_next_id(txn, "node", &v.id)))
		goto out;
	v.model = model;
	v.n = n;
	v.state = MRFS_DRAFT;
	stamp(&v.created, who, now);
	root.id = v.id;
	root.version = v.id;
	root.mode = S_IFDIR | (mode & 07777);
	root.uid = who->uid;
	root.gid = who->gid;
	root.nlink = 2;
	root.atime_ns = root.mtime_ns = root.ctime_ns = now;
	be64(idb, v.id);
	k_u32(k_u64(k_tag(&k, 'm'), model), n);
	if ((rc = put(txn, MRFS_DB_VERSIONS, &k, idb, 8)) || (rc = put_version(txn, &v)) ||
	    (rc = put_node(txn, &root)))
		goto out;
	m.max_version = n;
	m.nversions++;
	m.mtime_ns = m.ctime_ns = now;
	if ((rc = event_new(txn, "version.create", m.name, mrfs_now_ns(), &ev, &seq)))
		goto out;
	mrfs_doc_int(ev, "version", n);
	rc = event_commit(txn, ev, seq, who, &m);
	if (!rc && out)
		*out = v;
out:
	return end(txn, rc);
}

/* Delete the records of version @v (its tree must be gone already). */
static int drop_version(struct mrfs_txn *txn, const struct mrfs_version *v)
{
	struct key k;
	int rc;

	if ((rc = del(txn, MRFS_DB_VERSIONS, k_u32(k_u64(k_tag(&k, 'm'), v->model), v->n))) ||
	    (rc = del(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'v'), v->id))) ||
	    (rc = del(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'i'), v->id))))
		return rc;
	rc = del(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'u'), v->id));
	if (rc && rc != -ENOENT)
		return rc;
	rc = del(txn, MRFS_DB_VERSIONS, k_u64(k_tag(&k, 'r'), v->id));
	return rc == -ENOENT ? 0 : rc;
}

int mrfs_version_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
			struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_version v;
	struct mrfs_model m;
	struct mrfs_doc *ev;
	uint64_t seq;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_version_get(txn, vid, &v)) || (rc = mrfs_model_get(txn, v.model, &m)))
		goto out;
	if (v.state != MRFS_DRAFT) {
		refuse(err, "version %u of '%s' is sealed", v.n, m.name);
		rc = -EROFS;
		goto out;
	}
	if (!dir_empty(txn, vid)) {
		refuse(err, "draft %u of '%s' is not empty", v.n, m.name);
		rc = -ENOTEMPTY;
		goto out;
	}
	if ((rc = drop_version(txn, &v)))
		goto out;
	m.nversions--;
	m.mtime_ns = m.ctime_ns = mrfs_now_ns();
	if ((rc = event_new(txn, "version.delete", m.name, mrfs_now_ns(), &ev, &seq)))
		goto out;
	mrfs_doc_int(ev, "version", v.n);
	rc = event_commit(txn, ev, seq, who, &m);
out:
	return end(txn, rc);
}

/* Collects the files of a version for its digest and totals. */
struct seal_sum {
	struct mrfs_txn *txn;
	uint8_t *buf;
	size_t len, cap;
	uint64_t size;
	uint32_t nfiles;
	int rc;
};

static int seal_file_cb(void *ctx, const char *path, const struct mrfs_node *nd)
{
	struct seal_sum *s = ctx;
	uint8_t digest[MRFS_KEY_LEN] = {0};
	uint64_t size = 0;
	size_t need = strlen(path) + 1 + 4 + 8 + MRFS_KEY_LEN;
	int rc;

	if (nd->file && (rc = mrfs_store_file_info(s->txn, nd->file, &size, digest)))
		return rc;
	if (s->len + need > s->cap) {
		size_t ncap = (s->cap + need) * 2;
		uint8_t *b = realloc(s->buf, ncap);
		if (!b)
			return -ENOMEM;
		s->buf = b;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, path, strlen(path) + 1);
	s->len += strlen(path) + 1;
	be32(s->buf + s->len, nd->mode);
	be64(s->buf + s->len + 4, nd->size);
	memcpy(s->buf + s->len + 12, digest, MRFS_KEY_LEN);
	s->len += 12 + MRFS_KEY_LEN;
	s->size += nd->size;
	s->nfiles++;
	return 0;
}

/* Seal @v inside @txn (its model @m is updated, not saved). */
static int seal_in(struct mrfs_txn *txn, const struct mrfs_caller *who, struct mrfs_version *v,
		   struct mrfs_model *m, mrfs_busy_fn busy, void *busy_ctx, struct mrfs_err *err)
{
	struct seal_sum s = {.txn = txn};
	struct mrfs_doc *ev;
	uint64_t seq;
	int rc;

	if (busy && busy(busy_ctx, v->id)) {
		refuse(err, "cannot seal version %u of '%s': a file of it is open for writing",
		       v->n, m->name);
		return -EBUSY;
	}
	if ((rc = mrfs_version_files(txn, v->id, seal_file_cb, &s))) {
		free(s.buf);
		return rc;
	}
	mrfs_digest(s.buf, s.len, v->digest);
	free(s.buf);
	v->size = s.size;
	v->nfiles = s.nfiles;
	v->state = MRFS_SEALED;
	stamp(&v->sealed, who, mrfs_now_ns());
	if ((rc = put_version(txn, v)))
		return rc;
	if (v->n > m->latest)
		m->latest = v->n;
	m->mtime_ns = m->ctime_ns = v->sealed.time_ns;
	if ((rc = event_new(txn, "version.seal", m->name, v->sealed.time_ns, &ev, &seq)))
		return rc;
	mrfs_doc_int(ev, "version", v->n);
	mrfs_doc_int(ev, "size", (int64_t)v->size);
	mrfs_doc_int(ev, "files", v->nfiles);
	return event_commit(txn, ev, seq, who, m);
}

int mrfs_version_seal(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
		      int64_t mode, mrfs_busy_fn busy, void *busy_ctx, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_version v;
	struct mrfs_model m;
	struct mrfs_node root;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_version_get(txn, vid, &v)) || (rc = mrfs_model_get(txn, v.model, &m)))
		goto out;
	if (v.state != MRFS_DRAFT)
		goto out;
	if ((rc = seal_in(txn, who, &v, &m, busy, busy_ctx, err)))
		goto out;
	if (mode >= 0 && !(rc = mrfs_node_get(txn, vid, &root))) {
		root.mode = (root.mode & S_IFMT) | ((uint32_t)mode & 07777);
		root.ctime_ns = mrfs_now_ns();
		rc = put_node(txn, &root);
	}
out:
	return end(txn, rc);
}

/* ---- aliases ------------------------------------------------------------- */

/*
 * Parse an alias target into a version number of model @m: "versions/n",
 * "./versions/n", "../<m>/versions/n", or "<mountpoint>/models/<m>/versions/n",
 * with an optional trailing slash.
 */
static int parse_target(const char *target, const struct mrfs_model *m, const char *mountpoint,
			uint32_t *n, struct mrfs_err *err)
{
	char *buf = strdup(target), *p, *model = NULL;
	size_t len;
	int rc = -EINVAL;

	if (!buf)
		return -ENOMEM;
	len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	p = buf;
	if (p[0] == '/') {
		size_t ml = mountpoint ? strlen(mountpoint) : 0;
		if (!ml || strncmp(p, mountpoint, ml) || strncmp(p + ml, "/models/", 8))
			goto bad;
		model = p + ml + 8;
	} else if (!strncmp(p, "../", 3)) {
		model = p + 3;
	} else {
		while (!strncmp(p, "./", 2))
			p += 2;
	}
	if (model) {
		char *slash = strchr(model, '/');
		if (!slash)
			goto bad;
		*slash = '\0';
		if (strcmp(model, m->name)) {
			refuse(err, "alias target '%.80s' is in model '%.64s', not '%s'", target,
			       model, m->name);
			goto out;
		}
		p = slash + 1;
	}
	if (strncmp(p, "versions/", 9) || !mrfs_version_parse(p + 9, n))
		goto bad;
	rc = 0;
	goto out;
bad:
	refuse(err, "alias target '%.80s' is not a version of '%s' (write versions/N)", target,
	       m->name);
out:
	free(buf);
	return rc;
}

static int model_user_doc(struct mrfs_txn *txn, uint64_t model, struct mrfs_doc **out);
static bool privileged(const struct mrfs_caller *who, const struct mrfs_model *m);

/* The key recording that alias @name of @model has pointed at version @n. */
static struct key *k_pointed(struct key *k, uint64_t model, const char *name, uint32_t n)
{
	k_str(k_u64(k_tag(k, 'h'), model), name);
	k->b[k->len++] = '\0';
	return k_u32(k, n);
}

/* Remember that alias @name of @model points at @n (for promote_from). */
static int remember_pointed(struct mrfs_txn *txn, uint64_t model, const char *name, uint32_t n)
{
	struct key k;

	return put(txn, MRFS_DB_ALIASES, k_pointed(&k, model, name, n), "", 0);
}

/*
 * Whether @who may change alias @name of @m: protected aliases need the
 * owner, root or the admin group (-EACCES). With @target > 0, whether the
 * policy's promote_from lets the alias point there (-EPERM).
 */
static int alias_allowed(struct mrfs_txn *txn, const struct mrfs_caller *who,
			 const struct mrfs_model *m, const char *name, int64_t target,
			 struct mrfs_err *err)
{
	struct mrfs_doc *user, *pol, *prot;
	const char *from;
	int rc = model_user_doc(txn, m->id, &user);

	if (rc)
		return rc;
	pol = mrfs_doc_get(user, "policy");
	prot = mrfs_doc_get(pol, "protected");
	for (size_t i = 0; i < mrfs_doc_len(prot); i++) {
		const char *p = mrfs_doc_string(mrfs_doc_at(prot, i));
		if (p && !strcmp(p, name) && !privileged(who, m)) {
			refuse(err,
			       "alias '%s' of '%s' is protected: only its owner, root "
			       "or the admin group may change it",
			       name, m->name);
			rc = -EACCES;
			goto out;
		}
	}
	from = mrfs_doc_string(mrfs_doc_get(mrfs_doc_get(pol, "promote_from"), name));
	if (target > 0 && from) {
		struct key k;
		struct mrfs_val v;
		k_pointed(&k, m->id, from, (uint32_t)target);
		rc = mrfs_kv_get(txn, MRFS_DB_ALIASES, k.b, k.len, &v);
		if (rc == -ENOENT) {
			refuse(err,
			       "policy: '%s' of '%s' may only point at a version '%s' has "
			       "pointed at, and '%s' never pointed at %" PRId64,
			       name, m->name, from, from, target);
			rc = -EPERM;
		}
	}
out:
	mrfs_doc_free(user);
	return rc;
}

static int alias_event(struct mrfs_txn *txn, const struct mrfs_caller *who, struct mrfs_model *m,
		       const char *kind, const char *alias, int64_t from, int64_t to)
{
	struct mrfs_doc *ev;
	uint64_t seq;
	/* the alias change's own time: @<time> answers as its mtime says */
	int rc = event_new(txn, kind, m->name, m->mtime_ns, &ev, &seq);

	if (rc)
		return rc;
	mrfs_doc_str(ev, "alias", alias);
	if (from >= 0)
		mrfs_doc_int(ev, "from", from);
	if (to >= 0)
		mrfs_doc_int(ev, "to", to);
	return event_commit(txn, ev, seq, who, m);
}

static int check_alias_name(const char *name, struct mrfs_err *err)
{
	if (!mrfs_name_valid(name) || mrfs_name_reserved(name)) {
		refuse(err, "'%s' is not a valid alias name%s", name,
		       mrfs_name_reserved(name) ? " (reserved)" : "");
		return -EINVAL;
	}
	return 0;
}

int mrfs_alias_set(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		   const char *name, const char *target, const char *mountpoint, mrfs_busy_fn busy,
		   void *busy_ctx, struct mrfs_alias *out, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_version v;
	struct mrfs_alias a;
	int64_t from = -1;
	uint32_t n;
	int rc;

	if ((rc = check_alias_name(name, err)))
		return rc;
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)))
		goto out;
	if ((rc = parse_target(target, &m, mountpoint, &n, err)))
		goto out;
	rc = mrfs_version_by_number(txn, model, n, &v);
	if (rc == -ENOENT)
		refuse(err, "alias target: '%s' has no version %u", m.name, n);
	if (rc)
		goto out;
	rc = mrfs_alias_get(txn, model, name, &a);
	if (rc == 0) {
		from = a.version;
	} else if (rc == -ENOENT) {
		memset(&a, 0, sizeof(a));
		if ((rc = mrfs_kv_next_id(txn, "alias", &a.id)))
			goto out;
		snprintf(a.name, sizeof(a.name), "%s", name);
		m.naliases++;
	} else {
		goto out;
	}
	if (from >= 0) {
		refuse(err, "alias '%s' of '%s' exists", name, m.name);
		rc = -EEXIST;
		goto out;
	}
	if ((rc = alias_allowed(txn, who, &m, name, n, err)))
		goto out;
	if (v.state == MRFS_DRAFT && (rc = seal_in(txn, who, &v, &m, busy, busy_ctx, err)))
		goto out;
	a.version = n;
	a.time_ns = mrfs_now_ns();
	a.uid = who->uid;
	m.mtime_ns = m.ctime_ns = a.time_ns;
	if ((rc = put_alias(txn, model, &a)) || (rc = remember_pointed(txn, model, name, n)))
		goto out;
	rc = alias_event(txn, who, &m, "alias.set", name, -1, n);
	if (!rc && out)
		*out = a;
out:
	return end(txn, rc);
}

int mrfs_alias_rename(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *from, const char *to, bool noreplace, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_alias src, dst;
	uint32_t old_version;
	bool exists;
	int rc;

	if ((rc = check_alias_name(to, err)))
		return rc;
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)) || (rc = mrfs_alias_get(txn, model, from, &src)))
		goto out;
	if (!strcmp(from, to))
		goto out;
	rc = mrfs_alias_get(txn, model, to, &dst);
	if (rc && rc != -ENOENT)
		goto out;
	exists = rc == 0;
	old_version = exists ? dst.version : 0;
	if (exists && noreplace) {
		refuse(err, "alias '%s' of '%s' exists", to, m.name);
		rc = -EEXIST;
		goto out;
	}
	if ((rc = alias_allowed(txn, who, &m, from, -1, err)) ||
	    (rc = alias_allowed(txn, who, &m, to, src.version, err)))
		goto out;
	/* the source's inode moves to the new name, as rename(2) says */
	if ((rc = del_alias(txn, model, &src)))
		goto out;
	if (exists && (rc = del_alias(txn, model, &dst)))
		goto out;
	dst = src;
	snprintf(dst.name, sizeof(dst.name), "%s", to);
	dst.time_ns = m.mtime_ns = m.ctime_ns = mrfs_now_ns();
	dst.uid = who->uid;
	if ((rc = put_alias(txn, model, &dst)) ||
	    (rc = remember_pointed(txn, model, to, src.version)))
		goto out;
	if (exists)
		m.naliases--;
	if ((rc = alias_event(txn, who, &m, "alias.delete", from, src.version, -1)))
		goto out;
	rc = alias_event(txn, who, &m, exists ? "alias.move" : "alias.set", to,
			 exists ? (int64_t)old_version : -1, src.version);
out:
	return end(txn, rc);
}

int mrfs_alias_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *name, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_alias a;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)) || (rc = mrfs_alias_get(txn, model, name, &a)))
		goto out;
	if ((rc = alias_allowed(txn, who, &m, name, -1, err)) || (rc = del_alias(txn, model, &a)))
		goto out;
	m.naliases--;
	m.mtime_ns = m.ctime_ns = mrfs_now_ns();
	rc = alias_event(txn, who, &m, "alias.delete", name, a.version, -1);
out:
	return end(txn, rc);
}

/* ---- nodes of drafts ----------------------------------------------------- */

/* Node @id and its version, which must be a draft. */
static int draft_node(struct mrfs_txn *txn, uint64_t id, struct mrfs_node *nd,
		      struct mrfs_version *v, struct mrfs_err *err)
{
	int rc = mrfs_node_get(txn, id, nd);

	if (rc)
		return rc;
	if ((rc = mrfs_version_get(txn, nd->version, v)))
		return rc == -ENOENT ? -EIO : rc;
	if (v->state != MRFS_DRAFT) {
		refuse(err, "version %u is sealed: it cannot change", v->n);
		return -EROFS;
	}
	return 0;
}

static int touch_dir(struct mrfs_txn *txn, struct mrfs_node *dir, int nlink_delta)
{
	dir->mtime_ns = dir->ctime_ns = mrfs_now_ns();
	dir->nlink = (uint32_t)((int)dir->nlink + nlink_delta);
	return put_node(txn, dir);
}

static int link_dirent(struct mrfs_txn *txn, uint64_t parent, const char *name, uint64_t id)
{
	struct key k;
	uint8_t idb[8];

	be64(idb, id);
	return put(txn, MRFS_DB_NODES, k_str(k_u64(k_tag(&k, 'd'), parent), name), idb, 8);
}

static int unlink_dirent(struct mrfs_txn *txn, uint64_t parent, const char *name)
{
	struct key k;

	return del(txn, MRFS_DB_NODES, k_str(k_u64(k_tag(&k, 'd'), parent), name));
}

int mrfs_node_create(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t parent,
		     const char *name, uint32_t mode, const char *target, struct mrfs_node *out,
		     struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_node dir, nd;
	struct mrfs_version v;
	struct key k;
	uint64_t existing;
	int64_t now = mrfs_now_ns();
	int rc;

	if (strlen(name) > MRFS_PATH_NAME_MAX)
		return -ENAMETOOLONG;
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = draft_node(txn, parent, &dir, &v, err)))
		goto out;
	if (!S_ISDIR(dir.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	rc = dirent_get(txn, parent, name, &existing);
	if (rc == 0) {
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	memset(&nd, 0, sizeof(nd));
	if ((rc = mrfs_kv_next_id(txn, "node", &nd.id)))
		goto out;
	nd.parent = parent;
	nd.version = dir.version;
	nd.mode = mode;
	nd.uid = who->uid;
	nd.gid = who->gid;
	nd.nlink = S_ISDIR(mode) ? 2 : 1;
	nd.atime_ns = nd.mtime_ns = nd.ctime_ns = now;
	if (S_ISLNK(mode)) {
		nd.size = strlen(target);
		if ((rc = put(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'l'), nd.id), target, nd.size)))
			goto out;
	}
	if ((rc = put_node(txn, &nd)) || (rc = link_dirent(txn, parent, name, nd.id)) ||
	    (rc = touch_dir(txn, &dir, S_ISDIR(mode) ? 1 : 0)))
		goto out;
	if (out)
		*out = nd;
out:
	return end(txn, rc);
}

static bool dir_empty(struct mrfs_txn *txn, uint64_t id)
{
	struct key k;
	struct mrfs_val kk, vv;

	k_u64(k_tag(&k, 'd'), id);
	return mrfs_kv_last(txn, MRFS_DB_NODES, k.b, k.len, &kk, &vv) == -ENOENT;
}

/* Delete node @nd (already unlinked from its directory) and its content. */
static int drop_node(struct mrfs_txn *txn, const struct mrfs_node *nd)
{
	struct key k;
	int rc;

	if (S_ISLNK(nd->mode) && (rc = del(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'l'), nd->id))) &&
	    rc != -ENOENT)
		return rc;
	if (nd->file && (rc = mrfs_store_file_unref(txn, nd->file)))
		return rc;
	return del(txn, MRFS_DB_NODES, k_u64(k_tag(&k, 'i'), nd->id));
}

int mrfs_node_remove(struct mrfs_registry *reg, uint64_t parent, const char *name, bool dir,
		     struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_node pd, nd;
	struct mrfs_version v;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = draft_node(txn, parent, &pd, &v, err)) ||
	    (rc = mrfs_node_lookup(txn, parent, name, &nd)))
		goto out;
	if (dir && !S_ISDIR(nd.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	if (!dir && S_ISDIR(nd.mode)) {
		rc = -EISDIR;
		goto out;
	}
	if (dir && !dir_empty(txn, nd.id)) {
		rc = -ENOTEMPTY;
		goto out;
	}
	if ((rc = unlink_dirent(txn, parent, name)) || (rc = drop_node(txn, &nd)))
		goto out;
	rc = touch_dir(txn, &pd, dir ? -1 : 0);
out:
	return end(txn, rc);
}

int mrfs_node_rename(struct mrfs_registry *reg, uint64_t parent, const char *name,
		     uint64_t newparent, const char *newname, unsigned flags, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_node src, sp, dp, dst;
	struct mrfs_version v, dv;
	bool replace = false;
	int rc;

	if (strlen(newname) > MRFS_PATH_NAME_MAX)
		return -ENAMETOOLONG;
	if (flags & ~1u) /* RENAME_NOREPLACE only */
		return -EINVAL;
	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = draft_node(txn, parent, &sp, &v, err)) ||
	    (rc = draft_node(txn, newparent, &dp, &dv, err)) ||
	    (rc = mrfs_node_lookup(txn, parent, name, &src)))
		goto out;
	if (sp.version != dp.version) {
		refuse(err, "cannot move files between versions");
		rc = -EXDEV;
		goto out;
	}
	if (!S_ISDIR(dp.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	/* a directory cannot move into itself */
	for (uint64_t up = newparent; S_ISDIR(src.mode) && up;) {
		struct mrfs_node a;
		if (up == src.id) {
			rc = -EINVAL;
			goto out;
		}
		if ((rc = mrfs_node_get(txn, up, &a)))
			goto out;
		up = a.parent;
	}
	rc = mrfs_node_lookup(txn, newparent, newname, &dst);
	if (rc == 0) {
		if (dst.id == src.id)
			goto out;
		if (flags & 1u) {
			rc = -EEXIST;
			goto out;
		}
		if (S_ISDIR(dst.mode) && !S_ISDIR(src.mode)) {
			rc = -EISDIR;
			goto out;
		}
		if (!S_ISDIR(dst.mode) && S_ISDIR(src.mode)) {
			rc = -ENOTDIR;
			goto out;
		}
		if (S_ISDIR(dst.mode) && !dir_empty(txn, dst.id)) {
			rc = -ENOTEMPTY;
			goto out;
		}
		replace = true;
	} else if (rc != -ENOENT) {
		goto out;
	}
	if (replace &&
	    ((rc = unlink_dirent(txn, newparent, newname)) || (rc = drop_node(txn, &dst))))
		goto out;
	if ((rc = unlink_dirent(txn, parent, name)) ||
	    (rc = link_dirent(txn, newparent, newname, src.id)))
		goto out;
	src.parent = newparent;
	src.ctime_ns = mrfs_now_ns();
	if ((rc = put_node(txn, &src)))
		goto out;
	if (parent == newparent) {
		rc = touch_dir(txn, &sp, S_ISDIR(src.mode) && replace ? -1 : 0);
	} else {
		int d = S_ISDIR(src.mode) ? 1 : 0;
		if ((rc = touch_dir(txn, &sp, -d)))
			goto out;
		/* @dp may be stale if it was @src's old parent chain: reload */
		if ((rc = mrfs_node_get(txn, newparent, &dp)))
			goto out;
		rc = touch_dir(txn, &dp, replace ? 0 : d);
	}
out:
	return end(txn, rc);
}

int mrfs_node_setattr(struct mrfs_registry *reg, uint64_t id, unsigned set,
		      const struct mrfs_node *attr, struct mrfs_node *out, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_node nd;
	struct mrfs_version v;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = draft_node(txn, id, &nd, &v, err)))
		goto out;
	if (set & MRFS_SET_MODE)
		nd.mode = (nd.mode & S_IFMT) | (attr->mode & 07777);
	if (set & MRFS_SET_UID)
		nd.uid = attr->uid;
	if (set & MRFS_SET_GID)
		nd.gid = attr->gid;
	if (set & MRFS_SET_ATIME)
		nd.atime_ns = attr->atime_ns;
	if (set & MRFS_SET_MTIME)
		nd.mtime_ns = attr->mtime_ns;
	nd.ctime_ns = mrfs_now_ns();
	rc = put_node(txn, &nd);
	if (!rc && out)
		*out = nd;
out:
	return end(txn, rc);
}

int mrfs_node_commit(struct mrfs_registry *reg, uint64_t id, struct mrfs_writer *writer,
		     int64_t mtime_ns, struct mrfs_node *out, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_node nd;
	struct mrfs_version v;
	uint64_t size = mrfs_writer_size(writer), file;
	int rc;

	/* fsync outside the writer lock */
	if ((rc = mrfs_writer_sync(writer))) {
		mrfs_writer_abort(writer);
		return rc;
	}
	if ((rc = begin(reg, &txn))) {
		mrfs_writer_abort(writer);
		return rc;
	}
	if ((rc = draft_node(txn, id, &nd, &v, err))) {
		mrfs_writer_abort(writer);
		goto out;
	}
	if ((rc = mrfs_writer_finish(writer, txn, &file)))
		goto out;
	if (nd.file && (rc = mrfs_store_file_unref(txn, nd.file)))
		goto out;
	nd.file = file;
	nd.size = size;
	nd.mtime_ns = mtime_ns;
	nd.ctime_ns = mrfs_now_ns();
	rc = put_node(txn, &nd);
	if (!rc && out)
		*out = nd;
out:
	return end(txn, rc);
}

/* ---- records ---------------------------------------------------------------- */

static void doc_stamp(struct mrfs_doc *doc, const char *key, const struct mrfs_stamp *s)
{
	struct mrfs_doc *o;

	if (!s->time_ns) {
		mrfs_doc_null(doc, key);
		return;
	}
	o = mrfs_doc_obj(doc, key);
	mrfs_doc_time(o, "time", s->time_ns);
	mrfs_doc_int(o, "uid", s->uid);
	mrfs_doc_str(o, "user", s->user);
}

static void doc_digest(struct mrfs_doc *doc, const char *key, const uint8_t *d)
{
	char hex[2 * MRFS_KEY_LEN + 1], buf[2 * MRFS_KEY_LEN + 8];

	mrfs_key_hex(d, hex);
	snprintf(buf, sizeof(buf), "xxh128:%s", hex);
	mrfs_doc_str(doc, key, buf);
}

struct rec_files {
	struct mrfs_txn *txn;
	struct mrfs_doc *files;
	uint64_t size;
};

static int rec_file_cb(void *ctx, const char *path, const struct mrfs_node *nd)
{
	struct rec_files *r = ctx;
	struct mrfs_doc *f = mrfs_doc_obj(r->files, NULL);
	uint8_t digest[MRFS_KEY_LEN];
	uint64_t size;
	char mode[16];
	int rc;

	mrfs_doc_str(f, "path", path);
	mrfs_doc_int(f, "size", (int64_t)nd->size);
	snprintf(mode, sizeof(mode), "%04o", nd->mode & 07777);
	mrfs_doc_str(f, "mode", mode);
	if (S_ISLNK(nd->mode)) {
		char target[4096];
		if ((rc = mrfs_node_readlink(r->txn, nd->id, target, sizeof(target))))
			return rc;
		mrfs_doc_str(f, "target", target);
	} else if (nd->file) {
		if ((rc = mrfs_store_file_info(r->txn, nd->file, &size, digest)))
			return rc;
		doc_digest(f, "digest", digest);
	} else {
		uint8_t empty[MRFS_KEY_LEN];
		mrfs_digest("", 0, empty);
		doc_digest(f, "digest", empty);
	}
	r->size += nd->size;
	return 0;
}

struct rec_aliases {
	struct mrfs_doc *doc;
	uint32_t version; /* 0: every alias as name: version */
};

static int rec_alias_cb(void *ctx, const struct mrfs_alias *a)
{
	struct rec_aliases *r = ctx;

	if (!r->version)
		mrfs_doc_int(r->doc, a->name, a->version);
	else if (a->version == r->version)
		mrfs_doc_str(r->doc, NULL, a->name);
	return 0;
}

static int render(struct mrfs_doc *doc, char **out, size_t *len)
{
	*out = mrfs_doc_dump(doc, 1, len);
	mrfs_doc_free(doc);
	return *out ? 0 : -ENOMEM;
}

/* The managed members of version @v's record. */
static int version_doc(struct mrfs_txn *txn, const struct mrfs_version *v,
		       const struct mrfs_model *m, struct mrfs_doc **out)
{
	struct mrfs_doc *doc = mrfs_doc_new();
	struct rec_files rf = {.txn = txn};
	struct rec_aliases ra;
	int rc;

	if (!doc)
		return -ENOMEM;
	mrfs_doc_str(doc, "model", m->name);
	mrfs_doc_int(doc, "version", v->n);
	mrfs_doc_str(doc, "state", v->state == MRFS_SEALED ? "sealed" : "draft");
	doc_stamp(doc, "created", &v->created);
	doc_stamp(doc, "sealed", &v->sealed);
	rf.files = mrfs_doc_arr(doc, "files");
	if ((rc = mrfs_version_files(txn, v->id, rec_file_cb, &rf)))
		goto out_free;
	mrfs_doc_int(doc, "size", (int64_t)rf.size);
	if (v->state == MRFS_SEALED)
		doc_digest(doc, "digest", v->digest);
	else
		mrfs_doc_null(doc, "digest");
	ra.doc = mrfs_doc_arr(doc, "aliases");
	ra.version = v->n;
	if ((rc = mrfs_aliases_walk(txn, v->model, NULL, rec_alias_cb, &ra)))
		goto out_free;
	*out = doc;
	return 0;
out_free:
	mrfs_doc_free(doc);
	return rc;
}

/* The user members kept for a record ('u' id in @db): a new object. */
static int user_doc(struct mrfs_txn *txn, enum mrfs_db db, uint64_t id, struct mrfs_doc **out)
{
	struct key k;
	struct mrfs_val v;
	int rc;

	k_u64(k_tag(&k, 'u'), id);
	rc = mrfs_kv_get(txn, db, k.b, k.len, &v);
	if (rc == -ENOENT) {
		*out = mrfs_doc_new();
		return *out ? 0 : -ENOMEM;
	}
	if (rc)
		return rc;
	*out = mrfs_doc_parse(v.data, v.len, NULL, 0);
	if (!*out || mrfs_doc_type(*out) != MRFS_JSON_OBJECT) {
		mrfs_doc_free(*out);
		return -EIO;
	}
	return 0;
}

static int merge_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	return mrfs_doc_set(ctx, key, value);
}

/* A model's policy when it has set none. */
static struct mrfs_doc *default_policy(void)
{
	struct mrfs_doc *p = mrfs_doc_new();

	mrfs_doc_str(mrfs_doc_arr(p, "protected"), NULL, "production");
	return p;
}

/* The user members of model @m's record, with the default policy filled in. */
static int model_user_doc(struct mrfs_txn *txn, uint64_t model, struct mrfs_doc **out)
{
	struct mrfs_doc *policy;
	int rc = user_doc(txn, MRFS_DB_MODELS, model, out);

	if (rc || mrfs_doc_get(*out, "policy"))
		return rc;
	policy = default_policy();
	rc = policy ? mrfs_doc_set(*out, "policy", policy) : -ENOMEM;
	mrfs_doc_free(policy);
	return rc;
}

int mrfs_version_record(struct mrfs_txn *txn, uint64_t vid, char **out, size_t *len)
{
	struct mrfs_version v;
	struct mrfs_model m;
	struct mrfs_doc *doc, *user;
	int rc;

	if ((rc = mrfs_version_get(txn, vid, &v)) || (rc = mrfs_model_get(txn, v.model, &m)) ||
	    (rc = version_doc(txn, &v, &m, &doc)))
		return rc;
	if ((rc = user_doc(txn, MRFS_DB_VERSIONS, vid, &user)) ||
	    (rc = mrfs_doc_each(user, merge_cb, doc))) {
		mrfs_doc_free(doc);
		return rc;
	}
	mrfs_doc_free(user);
	return render(doc, out, len);
}

/* The length of version @vid's record, rendered now. */
static int rendered_len(struct mrfs_txn *txn, uint64_t vid, uint64_t *len)
{
	size_t n;
	char *text;
	int rc = mrfs_version_record(txn, vid, &text, &n);

	if (rc)
		return rc;
	free(text);
	*len = n;
	return 0;
}

/* The length stored for version @vid's record, if any. */
static bool stored_len(struct mrfs_txn *txn, uint64_t vid, uint64_t *len)
{
	struct mrfs_val v;
	struct key k;

	k_u64(k_tag(&k, 'r'), vid);
	if (mrfs_kv_get(txn, MRFS_DB_VERSIONS, k.b, k.len, &v) || v.len != 8)
		return false;
	*len = get_be64(v.data);
	return true;
}

/* Store @v's record length; a record that cannot be rendered now only
 * loses its stored length (stat renders it), never the change under way. */
static int store_size_cb(void *ctx, const struct mrfs_version *v)
{
	struct mrfs_txn *txn = ctx;
	struct key k;
	uint8_t b[8];
	uint64_t len;
	int rc;

	if (v->state != MRFS_SEALED)
		return 0; /* a draft's record changes with every file: none kept */
	k_u64(k_tag(&k, 'r'), v->id);
	if (rendered_len(txn, v->id, &len)) {
		rc = del(txn, MRFS_DB_VERSIONS, &k);
		return rc == -ENOENT ? 0 : rc;
	}
	be64(b, len);
	return put(txn, MRFS_DB_VERSIONS, &k, b, 8);
}

int mrfs_version_record_size(struct mrfs_txn *txn, uint64_t vid, uint64_t *size)
{
	return stored_len(txn, vid, size) ? 0 : rendered_len(txn, vid, size);
}

struct sizes_check {
	struct mrfs_txn *txn;
	const struct mrfs_model *m;
	mrfs_record_bad_fn fn;
	void *ctx;
};

static int check_size_cb(void *ctx, const struct mrfs_version *v)
{
	struct sizes_check *sc = ctx;
	uint64_t stored, len;
	int rc;

	if (!stored_len(sc->txn, v->id, &stored))
		return 0; /* none stored: stat renders it */
	if ((rc = rendered_len(sc->txn, v->id, &len)))
		return rc;
	if (stored != len)
		sc->fn(sc->ctx, sc->m->name, v->n, stored, len);
	return 0;
}

static int check_sizes_model_cb(void *ctx, const struct mrfs_model *m)
{
	struct sizes_check *sc = ctx;

	sc->m = m;
	return mrfs_versions_walk(sc->txn, m->id, 0, check_size_cb, sc);
}

int mrfs_record_sizes_check(struct mrfs_txn *txn, mrfs_record_bad_fn fn, void *ctx)
{
	struct sizes_check sc = {txn, NULL, fn, ctx};

	return mrfs_models_walk(txn, NULL, check_sizes_model_cb, &sc);
}

static int rec_version_cb(void *ctx, const struct mrfs_version *v)
{
	struct mrfs_doc *o = mrfs_doc_obj(ctx, NULL);

	mrfs_doc_int(o, "version", v->n);
	mrfs_doc_str(o, "state", v->state == MRFS_SEALED ? "sealed" : "draft");
	return 0;
}

/* The managed members of model @m's record. */
static int model_doc(struct mrfs_txn *txn, const struct mrfs_model *m, struct mrfs_doc **out)
{
	struct mrfs_doc *doc = mrfs_doc_new(), *owner;
	struct rec_aliases ra = {0};
	int rc;

	if (!doc)
		return -ENOMEM;
	mrfs_doc_str(doc, "name", m->name);
	doc_stamp(doc, "created", &m->created);
	owner = mrfs_doc_obj(doc, "owner");
	mrfs_doc_int(owner, "uid", m->uid);
	mrfs_doc_int(owner, "gid", m->gid);
	if (m->latest)
		mrfs_doc_int(doc, "latest", m->latest);
	else
		mrfs_doc_null(doc, "latest");
	mrfs_doc_int(doc, "next_version", (int64_t)m->max_version + 1);
	if ((rc = mrfs_versions_walk(txn, m->id, 0, rec_version_cb, mrfs_doc_arr(doc, "versions"))))
		goto out_free;
	ra.doc = mrfs_doc_obj(doc, "aliases");
	if ((rc = mrfs_aliases_walk(txn, m->id, NULL, rec_alias_cb, &ra)))
		goto out_free;
	*out = doc;
	return 0;
out_free:
	mrfs_doc_free(doc);
	return rc;
}

int mrfs_model_record(struct mrfs_txn *txn, uint64_t model, char **out, size_t *len)
{
	struct mrfs_model m;
	struct mrfs_doc *doc, *user;
	int rc;

	if ((rc = mrfs_model_get(txn, model, &m)) || (rc = model_doc(txn, &m, &doc)))
		return rc;
	if ((rc = model_user_doc(txn, model, &user)) || (rc = mrfs_doc_each(user, merge_cb, doc))) {
		mrfs_doc_free(doc);
		return rc;
	}
	mrfs_doc_free(user);
	return render(doc, out, len);
}

/* ---- writing records ------------------------------------------------------ */

struct split {
	struct mrfs_doc *managed, *user;
	struct mrfs_err *err;
};

/* Sort a written member: managed ones must be unchanged, the rest is user. */
static int split_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct split *s = ctx;
	struct mrfs_doc *cur = mrfs_doc_get(s->managed, key);

	if (cur) {
		if (mrfs_doc_equal(cur, value))
			return 0;
		refuse(s->err, "member '%s' is managed by mrfs and cannot change", key);
		return -EINVAL;
	}
	return mrfs_doc_set(s->user, key, value);
}

struct changed {
	struct mrfs_doc *other, *keys;
	bool policy;
};

/* Collect the keys of one document whose values differ in the other. */
static int changed_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct changed *c = ctx;
	struct mrfs_doc *o = mrfs_doc_get(c->other, key);

	if (o && mrfs_doc_equal(o, value))
		return 0;
	if (!strcmp(key, "policy")) {
		c->policy = true;
		return 0;
	}
	for (size_t i = 0; i < mrfs_doc_len(c->keys); i++)
		if (!strcmp(mrfs_doc_string(mrfs_doc_at(c->keys, i)), key))
			return 0;
	mrfs_doc_str(c->keys, NULL, key);
	return 0;
}

/*
 * Parse @text against @managed: the new user members (*@user), the keys
 * that changed from @old (*@keys, an array) and whether the policy did.
 */
static int diff_record(struct mrfs_doc *managed, struct mrfs_doc *old, const char *text, size_t len,
		       struct mrfs_doc **user, struct mrfs_doc **keys, bool *policy,
		       struct mrfs_err *err)
{
	char why[160];
	struct mrfs_doc *doc = mrfs_doc_parse(text, len, why, sizeof(why));
	struct split sp = {managed, NULL, err};
	struct changed ch = {NULL, NULL, false};
	int rc;

	if (!doc) {
		refuse(err, "not JSON: %s", why);
		return -EINVAL;
	}
	if (mrfs_doc_type(doc) != MRFS_JSON_OBJECT) {
		refuse(err, "a record must be one JSON object");
		mrfs_doc_free(doc);
		return -EINVAL;
	}
	sp.user = mrfs_doc_new();
	ch.keys = mrfs_doc_new_array();
	rc = sp.user && ch.keys ? mrfs_doc_each(doc, split_cb, &sp) : -ENOMEM;
	mrfs_doc_free(doc);
	if (rc)
		goto out_free;
	ch.other = old;
	if ((rc = mrfs_doc_each(sp.user, changed_cb, &ch)))
		goto out_free;
	ch.other = sp.user;
	if ((rc = mrfs_doc_each(old, changed_cb, &ch)))
		goto out_free;
	*user = sp.user;
	*keys = ch.keys;
	*policy = ch.policy;
	return 0;
out_free:
	mrfs_doc_free(sp.user);
	mrfs_doc_free(ch.keys);
	return rc;
}

static int put_user(struct mrfs_txn *txn, enum mrfs_db db, uint64_t id, struct mrfs_doc *user)
{
	struct key k;
	size_t len;
	char *text = mrfs_doc_dump(user, 0, &len);
	int rc;

	if (!text)
		return -ENOMEM;
	k_u64(k_tag(&k, 'u'), id);
	rc = put(txn, db, &k, text, len);
	free(text);
	return rc;
}

static bool privileged(const struct mrfs_caller *who, const struct mrfs_model *m)
{
	return who->uid == 0 || who->uid == m->uid || who->admin;
}

/* One rule of promote_from: alias name -> alias name. */
static int promote_rule_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	const char *from = mrfs_doc_string(value);

	(void)ctx;
	return mrfs_name_valid(key) && from && mrfs_name_valid(from) ? 0 : -EINVAL;
}

/* A policy must be {"protected": [names], "promote_from": {name: name}}. */
static int check_policy(struct mrfs_doc *p, struct mrfs_err *err)
{
	struct mrfs_doc *prot = mrfs_doc_get(p, "protected");
	struct mrfs_doc *from = mrfs_doc_get(p, "promote_from");

	if (!p || mrfs_doc_type(p) != MRFS_JSON_OBJECT)
		goto bad;
	if (prot) {
		if (mrfs_doc_type(prot) != MRFS_JSON_ARRAY)
			goto bad;
		for (size_t i = 0; i < mrfs_doc_len(prot); i++) {
			const char *n = mrfs_doc_string(mrfs_doc_at(prot, i));
			if (!n || !mrfs_name_valid(n))
				goto bad;
		}
	}
	if (from &&
	    (mrfs_doc_type(from) != MRFS_JSON_OBJECT || mrfs_doc_each(from, promote_rule_cb, NULL)))
		goto bad;
	return 0;
bad:
	refuse(err, "policy must be {\"protected\": [alias names], "
		    "\"promote_from\": {\"alias\": \"alias\"}}");
	return -EINVAL;
}

static int metadata_event(struct mrfs_txn *txn, const struct mrfs_caller *who, struct mrfs_model *m,
			  int64_t version, struct mrfs_doc *keys)
{
	struct mrfs_doc *ev;
	uint64_t seq;
	int rc = event_new(txn, "metadata.update", m->name, mrfs_now_ns(), &ev, &seq);

	if (rc)
		return rc;
	if (version > 0)
		mrfs_doc_int(ev, "version", version);
	if ((rc = mrfs_doc_set(ev, "keys", keys))) {
		mrfs_doc_free(ev);
		return rc;
	}
	return event_commit(txn, ev, seq, who, m);
}

int mrfs_version_update(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
			const char *text, size_t len, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_version v;
	struct mrfs_model m;
	struct mrfs_doc *managed = NULL, *old = NULL, *user = NULL, *keys = NULL;
	bool policy;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_version_get(txn, vid, &v)) || (rc = mrfs_model_get(txn, v.model, &m)) ||
	    (rc = version_doc(txn, &v, &m, &managed)) ||
	    (rc = user_doc(txn, MRFS_DB_VERSIONS, vid, &old)) ||
	    (rc = diff_record(managed, old, text, len, &user, &keys, &policy, err)))
		goto out;
	if (policy)
		mrfs_doc_str(keys, NULL, "policy"); /* no meaning on a version */
	if (!mrfs_doc_len(keys))
		goto out;
	if ((rc = put_user(txn, MRFS_DB_VERSIONS, vid, user)))
		goto out;
	rc = metadata_event(txn, who, &m, v.n, keys);
out:
	mrfs_doc_free(managed);
	mrfs_doc_free(old);
	mrfs_doc_free(user);
	mrfs_doc_free(keys);
	return end(txn, rc);
}

int mrfs_model_update(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *text, size_t len, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_doc *managed = NULL, *old = NULL, *user = NULL, *keys = NULL, *ev;
	struct mrfs_doc *pol;
	uint64_t seq;
	bool policy;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_get(txn, model, &m)) || (rc = model_doc(txn, &m, &managed)) ||
	    (rc = model_user_doc(txn, model, &old)) ||
	    (rc = diff_record(managed, old, text, len, &user, &keys, &policy, err)))
		goto out;
	pol = mrfs_doc_get(user, "policy");
	if (policy && !privileged(who, &m)) {
		refuse(err, "only the owner of '%s', root or the admin group may change its policy",
		       m.name);
		rc = -EACCES;
		goto out;
	}
	if (policy && pol && (rc = check_policy(pol, err)))
		goto out;
	if (!policy && !mrfs_doc_len(keys))
		goto out;
	if ((rc = put_user(txn, MRFS_DB_MODELS, model, user)))
		goto out;
	if (mrfs_doc_len(keys) && (rc = metadata_event(txn, who, &m, 0, keys)))
		goto out;
	if (policy) {
		struct mrfs_doc *effective = pol ? NULL : default_policy();
		if ((rc = event_new(txn, "policy.update", m.name, mrfs_now_ns(), &ev, &seq)))
			goto out;
		rc = mrfs_doc_set(ev, "policy", pol ? pol : effective);
		mrfs_doc_free(effective);
		if (rc) {
			mrfs_doc_free(ev);
			goto out;
		}
		rc = event_commit(txn, ev, seq, who, &m);
	}
out:
	mrfs_doc_free(managed);
	mrfs_doc_free(old);
	mrfs_doc_free(user);
	mrfs_doc_free(keys);
	return end(txn, rc);
}

/* ---- deleting sealed versions ---------------------------------------------- */

struct tree_entry {
	uint64_t parent;
	char name[MRFS_PATH_NAME_MAX + 1];
};

struct tree {
	struct mrfs_txn *txn;
	struct tree_entry *e;
	size_t n, cap;
};

struct tree_ctx {
	struct tree *t;
	uint64_t dir;
};

/* Collect every entry under a directory, children before their parents. */
static int tree_entry_cb(void *ctx, const char *name, uint64_t id)
{
	struct tree_ctx *c = ctx;
	struct tree *t = c->t;
	struct mrfs_node nd;
	int rc = mrfs_node_get(t->txn, id, &nd);

	if (rc)
		return rc;
	if (S_ISDIR(nd.mode)) {
		struct tree_ctx sub = {t, id};
		if ((rc = mrfs_dir_walk(t->txn, id, NULL, tree_entry_cb, &sub)))
			return rc;
	}
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		struct tree_entry *a = realloc(t->e, ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		t->e = a;
		t->cap = ncap;
	}
	t->e[t->n].parent = c->dir;
	snprintf(t->e[t->n].name, sizeof(t->e[t->n].name), "%s", name);
	t->n++;
	return 0;
}

struct alias_of {
	uint32_t n;
	char name[MRFS_NAME_MAX + 1];
};

static int alias_of_cb(void *ctx, const struct mrfs_alias *a)
{
	struct alias_of *f = ctx;

	if (a->version != f->n)
		return 0;
	snprintf(f->name, sizeof(f->name), "%s", a->name);
	return 1;
}

struct latest_scan {
	uint32_t skip, best;
};

static int latest_cb(void *ctx, const struct mrfs_version *v)
{
	struct latest_scan *s = ctx;

	if (v->state == MRFS_SEALED && v->n != s->skip)
		s->best = v->n;
	return 0;
}

int mrfs_version_remove(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *model,
			uint32_t n, struct mrfs_err *err)
{
	struct mrfs_txn *txn;
	struct mrfs_model m;
	struct mrfs_version v;
	struct alias_of al = {n, ""};
	struct tree t = {0};
	struct tree_ctx root;
	struct latest_scan ls = {n, 0};
	struct mrfs_doc *ev;
	uint64_t seq;
	int rc;

	if ((rc = begin(reg, &txn)))
		return rc;
	if ((rc = mrfs_model_by_name(txn, model, &m))) {
		refuse(err, "no model '%s'", model);
		goto out;
	}
	if ((rc = mrfs_version_by_number(txn, m.id, n, &v))) {
		refuse(err, "'%s' has no version %u", model, n);
		goto out;
	}
	if ((rc = mrfs_aliases_walk(txn, m.id, NULL, alias_of_cb, &al)))
		goto out;
	if (*al.name) {
		refuse(err, "alias '%s' of '%s' points at version %u: move it first", al.name,
		       model, n);
		rc = -EBUSY;
		goto out;
	}
	t.txn = txn;
	root.t = &t;
	root.dir = v.id;
	if ((rc = mrfs_dir_walk(txn, v.id, NULL, tree_entry_cb, &root)))
		goto out;
	for (size_t i = 0; i < t.n; i++) {
		struct mrfs_node nd;
		if ((rc = mrfs_node_lookup(txn, t.e[i].parent, t.e[i].name, &nd)) ||
		    (rc = unlink_dirent(txn, t.e[i].parent, t.e[i].name)) ||
		    (rc = drop_node(txn, &nd)))
			goto out;
	}
	if ((rc = drop_version(txn, &v)))
		goto out;
	if ((rc = mrfs_versions_walk(txn, m.id, 0, latest_cb, &ls)))
		goto out;
	m.latest = ls.best;
	m.nversions--;
	m.mtime_ns = m.ctime_ns = mrfs_now_ns();
	if ((rc = event_new(txn, "version.delete", m.name, mrfs_now_ns(), &ev, &seq)))
		goto out;
	mrfs_doc_int(ev, "version", n);
	mrfs_doc_int(ev, "files", (int64_t)v.nfiles);
	mrfs_doc_int(ev, "size", (int64_t)v.size);
	rc = event_commit(txn, ev, seq, who, &m);
out:
	free(t.e);
	return end(txn, rc);
}

/* ---- time travel ------------------------------------------------------------ */

struct replay {
	int64_t until;
	struct mrfs_alias *a;
	size_t n, cap;
	int rc;
};

static struct mrfs_alias *replay_find(struct replay *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->a[i].name, name))
			return &r->a[i];
	return NULL;
}

static int replay_cb(void *ctx, uint64_t seq, const char *line, size_t len)
{
	struct replay *r = ctx;
	struct mrfs_doc *ev = mrfs_doc_parse(line, len, NULL, 0);
	const char *kind, *name, *when;
	struct mrfs_alias *a;
	int64_t t;
	int rc = 0;

	(void)seq;
	if (!ev)
		return -EIO;
	kind = mrfs_doc_string(mrfs_doc_get(ev, "event"));
	name = mrfs_doc_string(mrfs_doc_get(ev, "alias"));
	when = mrfs_doc_string(mrfs_doc_get(ev, "time"));
	if (!kind || !when || mrfs_time_parse(when, &t)) {
		rc = -EIO;
		goto out;
	}
	if (t > r->until) {
		rc = 1; /* later than asked: stop */
		goto out;
	}
	if (!name || strncmp(kind, "alias.", 6))
		goto out;
	a = replay_find(r, name);
	if (!strcmp(kind, "alias.delete")) {
		if (a)
			*a = r->a[--r->n];
		goto out;
	}
	if (!a) {
		if (r->n == r->cap) {
			size_t ncap = r->cap ? r->cap * 2 : 16;
			struct mrfs_alias *na = realloc(r->a, ncap * sizeof(*na));
			if (!na) {
				rc = -ENOMEM;
				goto out;
			}
			r->a = na;
			r->cap = ncap;
		}
		a = &r->a[r->n++];
		memset(a, 0, sizeof(*a));
		snprintf(a->name, sizeof(a->name), "%s", name);
	}
	a->version = (uint32_t)mrfs_doc_number(mrfs_doc_get(ev, "to"));
	a->time_ns = t;
out:
	mrfs_doc_free(ev);
	return rc;
}

static int alias_name_cmp(const void *x, const void *y)
{
	return strcmp(((const struct mrfs_alias *)x)->name, ((const struct mrfs_alias *)y)->name);
}

int mrfs_aliases_at(struct mrfs_txn *txn, uint64_t model, int64_t time_ns, mrfs_alias_fn fn,
		    void *ctx)
{
	struct replay r = {.until = time_ns};
	int rc = mrfs_events_walk(txn, model, 0, replay_cb, &r);

	if (!rc && r.n)
		qsort(r.a, r.n, sizeof(*r.a), alias_name_cmp);
	for (size_t i = 0; !rc && i < r.n; i++)
		rc = fn(ctx, &r.a[i]);
	free(r.a);
	return rc < 0 ? rc : 0;
}
