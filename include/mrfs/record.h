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

struct mrfs_doc *mrfs_doc_new(void);
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

/* Format @time_ns as "2026-11-27T05:30:00.123456Z" into @buf (>= 32). */
void mrfs_time_format(int64_t time_ns, char *buf, size_t size);

#endif /* MRFS_RECORD_H */
