/* SPDX-License-Identifier: MIT */
/*
 * The registry: models, versions (drafts and sealed), the files and
 * directories of versions, aliases, the `latest` rule and the history.
 *
 * Every change is one write transaction of the store that also appends its
 * history event, so the history never disagrees with the state. Records are
 * plain structs kept in the store's key/value databases:
 *
 *   models:   'n' name            -> be64 model id
 *             'i' be64 id         -> struct mrfs_model
 *   versions: 'v' be64 vid        -> struct mrfs_version  (vid: its root node)
 *             'm' be64 model be32 n -> be64 vid
 *             'r' be64 vid        -> be64 length of its record (sealed only)
 *   nodes:    'i' be64 id         -> struct mrfs_node
 *             'd' be64 parent name -> be64 child id
 *             'l' be64 id         -> symlink target
 *   aliases:  'a' be64 model name -> struct mrfs_alias
 *             'i' be64 alias id   -> be64 model, name
 *   events:   'e' be64 seq        -> one JSON line
 *             'm' be64 model be64 seq -> (empty)
 *
 * Functions return 0 or a negative errno; a refusal also writes one line
 * saying why into @err (when not NULL), for the daemon's log.
 */
#ifndef MRFS_REGISTRY_H
#define MRFS_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mrfs/store.h"

#define MRFS_NAME_MAX	   64
#define MRFS_USER_MAX	   32
#define MRFS_PATH_NAME_MAX 255

struct mrfs_registry;

/* Who asks: taken from the kernel's view of the request. */
struct mrfs_caller {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	char comm[32];
	char user[MRFS_USER_MAX];
	bool admin; /* a member of the mount's --admin-group */
};

/* Why a change was refused: one line for the log. */
struct mrfs_err {
	char msg[256];
};

struct mrfs_stamp {
	int64_t time_ns; /* wall clock, ns since the epoch */
	uint32_t uid;
	char user[MRFS_USER_MAX];
};

struct mrfs_model {
	uint64_t id;
	uint32_t uid, gid, mode; /* of the model directory */
	uint32_t max_version;	 /* highest version number ever created */
	uint32_t latest;	 /* highest sealed version, 0 when none */
	uint32_t nversions;
	uint32_t naliases;
	int64_t mtime_ns, ctime_ns;
	struct mrfs_stamp created;
	uint64_t hist_bytes; /* length of this model's history file */
	char name[MRFS_NAME_MAX + 1];
};

enum mrfs_vstate { MRFS_DRAFT = 0, MRFS_SEALED = 1 };

struct mrfs_version {
	uint64_t id; /* also the id of its root directory node */
	uint64_t model;
	uint32_t n;
	uint32_t state; /* enum mrfs_vstate */
	struct mrfs_stamp created;
	struct mrfs_stamp sealed;
	uint64_t size;		      /* sealed: bytes of all files */
	uint32_t nfiles;	      /* sealed: number of files */
	uint8_t digest[MRFS_KEY_LEN]; /* sealed: over paths, modes, contents */
};

struct mrfs_node {
	uint64_t id;
	uint64_t parent;  /* 0 for a version's root directory */
	uint64_t version; /* id of the version it belongs to */
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	uint64_t file; /* store file id holding the content, 0 when empty */
	int64_t atime_ns, mtime_ns, ctime_ns;
};

struct mrfs_alias {
	uint64_t id;
	uint32_t version;
	uint32_t pad;
	int64_t time_ns;
	uint32_t uid;
	char name[MRFS_NAME_MAX + 1];
};

/* Open the registry over @store (borrowed: it must outlive the registry).
 * Errors: -ENOMEM. */
int mrfs_registry_new(struct mrfs_store *store, struct mrfs_registry **out);
void mrfs_registry_free(struct mrfs_registry *reg);
struct mrfs_store *mrfs_registry_store(struct mrfs_registry *reg);

/* ---- names ---------------------------------------------------------- */

/* A model or alias name SPEC allows: [A-Za-z0-9._-]{1,64}, not starting
 * with '.' or '-', not ending in ".json". */
bool mrfs_name_valid(const char *name);

/* Reserved inside a model directory: versions, latest, history. */
bool mrfs_name_reserved(const char *name);

/* Parse a version number "n" (1..UINT32_MAX, digits only). */
bool mrfs_version_parse(const char *s, uint32_t *n);

/* ---- reading (inside any transaction) -------------------------------- */

int mrfs_model_by_name(struct mrfs_txn *txn, const char *name, struct mrfs_model *m);
int mrfs_model_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_model *m);
int mrfs_version_get(struct mrfs_txn *txn, uint64_t vid, struct mrfs_version *v);
int mrfs_version_by_number(struct mrfs_txn *txn, uint64_t model, uint32_t n,
			   struct mrfs_version *v);
int mrfs_node_get(struct mrfs_txn *txn, uint64_t id, struct mrfs_node *nd);
int mrfs_node_lookup(struct mrfs_txn *txn, uint64_t parent, const char *name, struct mrfs_node *nd);
/* The target of symlink node @id into @buf (NUL-terminated). */
int mrfs_node_readlink(struct mrfs_txn *txn, uint64_t id, char *buf, size_t size);
int mrfs_alias_get(struct mrfs_txn *txn, uint64_t model, const char *name, struct mrfs_alias *a);
/* The alias with id @id and its model. An alias removed or replaced since
 * answers with its last target and an empty name (a path walk may hold it
 * for a moment after it moved). */
int mrfs_alias_by_id(struct mrfs_txn *txn, uint64_t id, uint64_t *model, struct mrfs_alias *a);

/* Walks: @fn returns 0 to go on, 1 to stop, or -errno. Starting after
 * @after (a name, or NULL / 0 for the beginning). */
typedef int (*mrfs_model_fn)(void *ctx, const struct mrfs_model *m);
int mrfs_models_walk(struct mrfs_txn *txn, const char *after, mrfs_model_fn fn, void *ctx);
typedef int (*mrfs_version_fn)(void *ctx, const struct mrfs_version *v);
int mrfs_versions_walk(struct mrfs_txn *txn, uint64_t model, uint32_t after, mrfs_version_fn fn,
		       void *ctx);
/* Numbers and ids of @model's versions only, in order (reads no record). */
typedef int (*mrfs_version_id_fn)(void *ctx, uint32_t n, uint64_t vid);
int mrfs_version_ids_walk(struct mrfs_txn *txn, uint64_t model, mrfs_version_id_fn fn, void *ctx);
typedef int (*mrfs_alias_fn)(void *ctx, const struct mrfs_alias *a);
int mrfs_aliases_walk(struct mrfs_txn *txn, uint64_t model, const char *after, mrfs_alias_fn fn,
		      void *ctx);
typedef int (*mrfs_dirent_fn)(void *ctx, const char *name, uint64_t id);
int mrfs_dir_walk(struct mrfs_txn *txn, uint64_t dir, const char *after, mrfs_dirent_fn fn,
		  void *ctx);
/* Events of @model (0: every event) from seq @from on, as JSON lines. */
typedef int (*mrfs_event_fn)(void *ctx, uint64_t seq, const char *line, size_t len);
int mrfs_events_walk(struct mrfs_txn *txn, uint64_t model, uint64_t from, mrfs_event_fn fn,
		     void *ctx);
/*
 * Every alias of every model, in model id order: @fn gets the model id and
 * the alias. For the serving view.
 */
typedef int (*mrfs_any_alias_fn)(void *ctx, uint64_t model, const struct mrfs_alias *a);
int mrfs_aliases_all(struct mrfs_txn *txn, mrfs_any_alias_fn fn, void *ctx);

/* The stable id of alias name @name (any model has or had it), and back. */
int mrfs_alias_name_id(struct mrfs_txn *txn, const char *name, uint64_t *id);
int mrfs_alias_name_by_id(struct mrfs_txn *txn, uint64_t id, char name[MRFS_NAME_MAX + 1]);

/*
 * The aliases of @model as they were at @time_ns, replayed from its history:
 * @fn gets each with its version (only name and version are filled in).
 */
int mrfs_aliases_at(struct mrfs_txn *txn, uint64_t model, int64_t time_ns, mrfs_alias_fn fn,
		    void *ctx);

/* The seq the next event will get (events so far are 1 .. it - 1). */
uint64_t mrfs_events_next(struct mrfs_txn *txn);

/* Bytes of the whole history (@model 0) or of one model's. */
uint64_t mrfs_history_size(struct mrfs_txn *txn, uint64_t model);

/* The files of version @vid, depth first in name order: @fn gets each
 * regular file or symlink with its path relative to the version. */
typedef int (*mrfs_file_fn)(void *ctx, const char *path, const struct mrfs_node *nd);
int mrfs_version_files(struct mrfs_txn *txn, uint64_t vid, mrfs_file_fn fn, void *ctx);

/* The store file behind @nd, loaded, or NULL for an empty file. */
int mrfs_node_content(struct mrfs_txn *txn, const struct mrfs_node *nd, struct mrfs_file **out);

/* The records SPEC shows as versions/<n>.json and /models/<m>.json: new
 * JSON text (free()) and its length. Errors: -ENOENT, -ENOMEM, -EIO. */
int mrfs_version_record(struct mrfs_txn *txn, uint64_t vid, char **out, size_t *len);
/* The length of that record, without rendering it when the version is
 * sealed (stored by every change its events name). */
int mrfs_version_record_size(struct mrfs_txn *txn, uint64_t vid, uint64_t *size);
/*
 * Compare every stored record length with the record (for verify): @fn
 * gets each sealed version whose stored length differs from its record's.
 * Returns 0 or a negative errno.
 */
typedef void (*mrfs_record_bad_fn)(void *ctx, const char *model, uint32_t n, uint64_t stored,
				   uint64_t actual);
int mrfs_record_sizes_check(struct mrfs_txn *txn, mrfs_record_bad_fn fn, void *ctx);
int mrfs_model_record(struct mrfs_txn *txn, uint64_t model, char **out, size_t *len);

/*
 * Replace the user members of a record with those of the JSON document
 * @text (@len bytes): what `cp t versions/4.json` asks. The document must
 * be one JSON object; managed members may be left out or repeated
 * unchanged. Every changed key is listed in a metadata.update event;
 * a changed `policy` (models only, checked for shape) is a policy.update
 * event and needs the model's owner, root or the admin group (-EACCES).
 * Nothing changes when the document equals the record. Errors: -EINVAL
 * (with why), -EACCES, -ENOENT, -ENOSPC.
 */
int mrfs_version_update(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
			const char *text, size_t len, struct mrfs_err *err);
int mrfs_model_update(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *text, size_t len, struct mrfs_err *err);

/* ---- changes (each one transaction with its history event) ----------- */

int mrfs_model_create(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *name,
		      uint32_t mode, struct mrfs_model *out, struct mrfs_err *err);
int mrfs_model_rename(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *from,
		      const char *to, bool noreplace, struct mrfs_err *err);
int mrfs_model_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *name,
		      struct mrfs_err *err);
/* Change mode/owner of a model directory (@mode, @uid, @gid: -1 to keep). */
int mrfs_model_setattr(struct mrfs_registry *reg, uint64_t model, int64_t mode, int64_t uid,
		       int64_t gid, struct mrfs_model *out);

int mrfs_version_create(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
			const char *number, uint32_t mode, struct mrfs_version *out,
			struct mrfs_err *err);
/* Delete draft @vid (empty of files), or any version when @force (CLI). */
int mrfs_version_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
			struct mrfs_err *err);
/*
 * Delete version @n of @model whatever its state (the CLI's `delete`):
 * its files' references are dropped (gc reclaims the bytes), `latest` moves
 * back if it pointed there, and a version.delete event is logged. Refused
 * with -EBUSY while an alias points at it; -ENOENT when there is no such
 * version.
 */
int mrfs_version_remove(struct mrfs_registry *reg, const struct mrfs_caller *who, const char *model,
			uint32_t n, struct mrfs_err *err);

/* Seal draft @vid and, with @mode >= 0, give its directory that mode in
 * the same transaction (chmod a-w). -EBUSY when @busy says a file of it is
 * open for writing (@busy may be NULL): then nothing changes. Sealing a
 * sealed version is a no-op. */
typedef bool (*mrfs_busy_fn)(void *ctx, uint64_t vid);
int mrfs_version_seal(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t vid,
		      int64_t mode, mrfs_busy_fn busy, void *busy_ctx, struct mrfs_err *err);

/*
 * Point alias @name of @model at the version named by @target (the forms
 * SPEC accepts; @mountpoint is the mount's absolute path for absolute
 * targets). Creates the alias (-EEXIST if it exists and !@replace) or
 * moves it; seals the version if it is a draft (-EBUSY as for sealing).
 */
int mrfs_alias_set(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		   const char *name, const char *target, const char *mountpoint, mrfs_busy_fn busy,
		   void *busy_ctx, struct mrfs_alias *out, struct mrfs_err *err);
/* Rename alias @from to @to in @model: @to takes @from's target. */
int mrfs_alias_rename(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *from, const char *to, bool noreplace, struct mrfs_err *err);
int mrfs_alias_delete(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t model,
		      const char *name, struct mrfs_err *err);

/* Inside a draft: make a file, directory or symlink (@target) in @parent. */
int mrfs_node_create(struct mrfs_registry *reg, const struct mrfs_caller *who, uint64_t parent,
		     const char *name, uint32_t mode, const char *target, struct mrfs_node *out,
		     struct mrfs_err *err);
/* Remove @name from @parent: a file or symlink (@dir false) or an empty
 * directory (@dir true). */
int mrfs_node_remove(struct mrfs_registry *reg, uint64_t parent, const char *name, bool dir,
		     struct mrfs_err *err);
int mrfs_node_rename(struct mrfs_registry *reg, uint64_t parent, const char *name,
		     uint64_t newparent, const char *newname, unsigned flags, struct mrfs_err *err);

/* What mrfs_node_setattr changes: the MRFS_SET_* bits of @set. */
#define MRFS_SET_MODE  1u
#define MRFS_SET_UID   2u
#define MRFS_SET_GID   4u
#define MRFS_SET_SIZE  8u
#define MRFS_SET_ATIME 16u
#define MRFS_SET_MTIME 32u
int mrfs_node_setattr(struct mrfs_registry *reg, uint64_t id, unsigned set,
		      const struct mrfs_node *attr, struct mrfs_node *out, struct mrfs_err *err);
/*
 * Give node @id new content: the file @writer becomes (finished inside the
 * transaction), @size bytes, modified at @mtime_ns. The old content is
 * dropped. -ENOENT when the node is gone (the writer is aborted), -EROFS
 * when its version was sealed meanwhile.
 */
int mrfs_node_commit(struct mrfs_registry *reg, uint64_t id, struct mrfs_writer *writer,
		     int64_t mtime_ns, struct mrfs_node *out, struct mrfs_err *err);

/* The current time in ns since the epoch. */
int64_t mrfs_now_ns(void);

#endif /* MRFS_REGISTRY_H */
