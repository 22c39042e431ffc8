/* SPDX-License-Identifier: MIT */
/*
 * JSON records and events: a small builder over jansson, the only module
 * that uses it. A document is a tree of objects and arrays; members are
 * kept in the order they are added.
 *
 * Ownership: mrfs_doc_new makes a root (free it with mrfs_doc_free); the
 * objects and arrays returned by mrfs_doc_obj/_arr/_push_obj are borrowed
 * from their parent and live as long as the root. Out of memory makes the
 * document incomplete; mrfs_doc_dump then returns NULL.
 */
#ifndef MRFS_RECORD_H
#define MRFS_RECORD_H

#include <stddef.h>
#include <stdint.h>

struct mrfs_doc;

struct mrfs_doc *mrfs_doc_new(void);	   /* an empty object */
struct mrfs_doc *mrfs_doc_new_array(void); /* an empty array */
void mrfs_doc_free(struct mrfs_doc *doc);

/* Members of an object (@key) or, with @key NULL, items of an array. */
void mrfs_doc_str(struct mrfs_doc *doc, const char *key, const char *value);
void mrfs_doc_int(struct mrfs_doc *doc, const char *key, int64_t value);
void mrfs_doc_bool(struct mrfs_doc *doc, const char *key, int value);
void mrfs_doc_null(struct mrfs_doc *doc, const char *key);
/* A time (ns since the epoch) as RFC 3339 UTC with microseconds. */
void mrfs_doc_time(struct mrfs_doc *doc, const char *key, int64_t time_ns);
struct mrfs_doc *mrfs_doc_obj(struct mrfs_doc *doc, const char *key);
struct mrfs_doc *mrfs_doc_arr(struct mrfs_doc *doc, const char *key);

/*
 * The document as JSON text, new (free()), followed by a newline; *@len is
 * its length. @pretty: indented for people, else one line (history).
 * Returns NULL on out of memory.
 */
char *mrfs_doc_dump(struct mrfs_doc *doc, int pretty, size_t *len);

/* ---- reading JSON ---------------------------------------------------- */

enum mrfs_json {
	MRFS_JSON_NULL,
	MRFS_JSON_BOOL,
	MRFS_JSON_INT,
	MRFS_JSON_REAL,
	MRFS_JSON_STRING,
	MRFS_JSON_ARRAY,
	MRFS_JSON_OBJECT,
};

/*
 * Parse @len bytes of @text as one JSON value: a new root (mrfs_doc_free),
 * or NULL with one line saying where and why in @err (@errsize bytes).
 */
struct mrfs_doc *mrfs_doc_parse(const char *text, size_t len, char *err, size_t errsize);

enum mrfs_json mrfs_doc_type(const struct mrfs_doc *doc);

/* Member @key of object @doc, or NULL. Borrowed from @doc. */
struct mrfs_doc *mrfs_doc_get(struct mrfs_doc *doc, const char *key);

/* The value at a dotted path ("metrics.acc") of @doc, or NULL. Borrowed. */
struct mrfs_doc *mrfs_doc_path(struct mrfs_doc *doc, const char *path);

/* Items of an array: how many, and item @i (borrowed, or NULL). */
size_t mrfs_doc_len(const struct mrfs_doc *doc);
struct mrfs_doc *mrfs_doc_at(struct mrfs_doc *doc, size_t i);

/* A string's text (borrowed), or NULL when @doc is not a string. */
const char *mrfs_doc_string(const struct mrfs_doc *doc);
/* A number as a double (0 when @doc is not a number). */
double mrfs_doc_number(const struct mrfs_doc *doc);
/* A boolean's value (false when @doc is not a boolean). */
int mrfs_doc_truth(const struct mrfs_doc *doc);

/* Call @fn for each member of object @doc in order; @fn returns 0 to go
 * on, anything else to stop and return it. */
typedef int (*mrfs_member_fn)(void *ctx, const char *key, struct mrfs_doc *value);
int mrfs_doc_each(struct mrfs_doc *doc, mrfs_member_fn fn, void *ctx);

/* Whether @a and @b are equal JSON values (NULL equals only NULL). */
int mrfs_doc_equal(const struct mrfs_doc *a, const struct mrfs_doc *b);

/* ---- changing JSON ---------------------------------------------------- */

/* A deep copy of @doc as a new root, or NULL on out of memory. */
struct mrfs_doc *mrfs_doc_copy(const struct mrfs_doc *doc);

/* Set member @key of object @doc to a deep copy of @value. Returns 0,
 * -EINVAL (@doc not an object) or -ENOMEM. */
int mrfs_doc_set(struct mrfs_doc *doc, const char *key, const struct mrfs_doc *value);

/* Remove member @key of object @doc (absent is not an error). */
void mrfs_doc_del(struct mrfs_doc *doc, const char *key);

/*
 * Set the dotted @path of object @doc to @value, making objects on the way
 * (replacing non-objects). @value is taken as JSON when it parses as a
 * number, true, false, null, a "string", an object or an array, else as a
 * plain string: `-m metrics.acc=0.93` gives a number, `-m note=hello` a
 * string. Returns 0, -EINVAL (empty path segment) or -ENOMEM.
 */
int mrfs_doc_set_path(struct mrfs_doc *doc, const char *path, const char *value);

/* Format @time_ns as "2026-11-27T05:30:00.123456Z" into @buf (>= 32). */
void mrfs_time_format(int64_t time_ns, char *buf, size_t size);

/*
 * Parse an RFC 3339 time ("2026-11-27T05:30:00Z", fractions and a numeric
 * offset allowed; a date alone is midnight UTC) into ns since the epoch.
 * Returns 0 or -EINVAL.
 */
int mrfs_time_parse(const char *text, int64_t *time_ns);

#endif /* MRFS_RECORD_H */
