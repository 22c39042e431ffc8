/* SPDX-License-Identifier: MIT */
/*
 * JSON documents through jansson. See mrfs/record.h.
 *
 * A struct mrfs_doc is a json_t: the cast keeps jansson's types out of
 * every other module's headers.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mrfs/record.h"

static json_t *J(struct mrfs_doc *doc)
{
	return (json_t *)doc;
}

struct mrfs_doc *mrfs_doc_new(void)
{
	return (struct mrfs_doc *)json_object();
}

void mrfs_doc_free(struct mrfs_doc *doc)
{
	json_decref(J(doc));
}

/* Add @value (a new reference, taken) to @doc under @key or at its end. */
static json_t *add(struct mrfs_doc *doc, const char *key, json_t *value)
{
	int rc;

	if (!doc || !value) {
		json_decref(value);
		return NULL;
	}
	if (key)
		rc = json_object_set_new(J(doc), key, value);
	else
		rc = json_array_append_new(J(doc), value);
	return rc ? NULL : value;
}

void mrfs_doc_str(struct mrfs_doc *doc, const char *key, const char *value)
{
	add(doc, key, value ? json_string(value) : json_null());
}

void mrfs_doc_int(struct mrfs_doc *doc, const char *key, int64_t value)
{
	add(doc, key, json_integer(value));
}

void mrfs_doc_bool(struct mrfs_doc *doc, const char *key, int value)
{
	add(doc, key, json_boolean(value));
}

void mrfs_doc_null(struct mrfs_doc *doc, const char *key)
{
	add(doc, key, json_null());
}

void mrfs_time_format(int64_t time_ns, char *buf, size_t size)
{
	time_t sec = (time_t)(time_ns / 1000000000);
	int usec = (int)(time_ns % 1000000000 / 1000);
	struct tm tm;
	char base[32];

	gmtime_r(&sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%.20s.%06dZ", base, usec);
}

void mrfs_doc_time(struct mrfs_doc *doc, const char *key, int64_t time_ns)
{
	char buf[64];

	mrfs_time_format(time_ns, buf, sizeof(buf));
	mrfs_doc_str(doc, key, buf);
}

struct mrfs_doc *mrfs_doc_obj(struct mrfs_doc *doc, const char *key)
{
	return (struct mrfs_doc *)add(doc, key, json_object());
}

struct mrfs_doc *mrfs_doc_arr(struct mrfs_doc *doc, const char *key)
{
	return (struct mrfs_doc *)add(doc, key, json_array());
}

char *mrfs_doc_dump(struct mrfs_doc *doc, int pretty, size_t *len)
{
	size_t flags = JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII;
	char *text, *out;
	size_t n;

	flags |= pretty ? JSON_INDENT(2) : JSON_COMPACT;
	text = json_dumps(J(doc), flags);
	if (!text)
		return NULL;
	n = strlen(text);
	out = realloc(text, n + 2);
	if (!out) {
		free(text);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	*len = n + 1;
	return out;
}
