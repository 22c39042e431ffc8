/* SPDX-License-Identifier: MIT */
/*
 * JSON documents through jansson. See mrfs/record.h.
 *
 * A struct mrfs_doc is a json_t: the cast keeps jansson's types out of
 * every other module's headers.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
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

struct mrfs_doc *mrfs_doc_new_array(void)
{
	return (struct mrfs_doc *)json_array();
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

/*
 * jansson writes reals with 17 digits, so 0.95 reads 0.94999999999999996.
 * Rewrite each real of @text in place with the fewest digits that read
 * back as the same double (what jq and Python print); never longer.
 */
static void shorten_reals(char *text)
{
	char *r = text, *w = text;
	bool in_str = false;

	while (*r) {
		char num[40], best[48];
		size_t n;
		double d;

		if (in_str) {
			if (*r == '\\' && r[1])
				*w++ = *r++; /* the escaped character follows */
			else if (*r == '"')
				in_str = false;
			*w++ = *r++;
			continue;
		}
		if (*r != '-' && (*r < '0' || *r > '9')) {
			in_str = *r == '"';
			*w++ = *r++;
			continue;
		}
		n = strspn(r, "0123456789+-.eE");
		if (n < sizeof(num)) {
			memcpy(num, r, n);
			num[n] = '\0';
		}
		if (n >= sizeof(num) || !strpbrk(num, ".eE")) {
			memmove(w, r, n); /* an integer: as it is */
			w += n;
			r += n;
			continue;
		}
		d = strtod(num, NULL);
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(best, sizeof(best), "%.*g", prec, d);
			if (strtod(best, NULL) == d)
				break;
		}
		if (!strpbrk(best, ".eE"))
			strcat(best, ".0"); /* stay a real: 2 -> 2.0 */
		if (strlen(best) > n)
			memcpy(best, num, n + 1);
		memcpy(w, best, strlen(best));
		w += strlen(best);
		r += n;
	}
	*w = '\0';
}

char *mrfs_doc_dump(struct mrfs_doc *doc, int pretty, size_t *len)
{
	size_t flags = JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_ENCODE_ANY;
	char *text, *out;
	size_t n;

	flags |= pretty ? JSON_INDENT(2) : JSON_COMPACT;
	text = json_dumps(J(doc), flags);
	if (!text)
		return NULL;
	shorten_reals(text);
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

/* ---- reading JSON ------------------------------------------------------ */

struct mrfs_doc *mrfs_doc_parse(const char *text, size_t len, char *err, size_t errsize)
{
	json_error_t e;
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &e);

	if (!j && err)
		snprintf(err, errsize, "line %d, column %d: %s", e.line, e.column, e.text);
	return (struct mrfs_doc *)j;
}

enum mrfs_json mrfs_doc_type(const struct mrfs_doc *doc)
{
	switch (json_typeof((const json_t *)doc)) {
	case JSON_OBJECT:
		return MRFS_JSON_OBJECT;
	case JSON_ARRAY:
		return MRFS_JSON_ARRAY;
	case JSON_STRING:
		return MRFS_JSON_STRING;
	case JSON_INTEGER:
		return MRFS_JSON_INT;
	case JSON_REAL:
		return MRFS_JSON_REAL;
	case JSON_TRUE:
	case JSON_FALSE:
		return MRFS_JSON_BOOL;
	default:
		return MRFS_JSON_NULL;
	}
}

struct mrfs_doc *mrfs_doc_get(struct mrfs_doc *doc, const char *key)
{
	return doc ? (struct mrfs_doc *)json_object_get(J(doc), key) : NULL;
}

struct mrfs_doc *mrfs_doc_path(struct mrfs_doc *doc, const char *path)
{
	char part[256];

	while (doc && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, path, n);
		part[n] = '\0';
		doc = mrfs_doc_get(doc, part);
		path += n;
		if (*path == '.')
			path++;
	}
	return doc;
}

size_t mrfs_doc_len(const struct mrfs_doc *doc)
{
	return json_is_array((const json_t *)doc) ? json_array_size((const json_t *)doc) : 0;
}

struct mrfs_doc *mrfs_doc_at(struct mrfs_doc *doc, size_t i)
{
	return (struct mrfs_doc *)json_array_get(J(doc), i);
}

const char *mrfs_doc_string(const struct mrfs_doc *doc)
{
	return json_string_value((const json_t *)doc);
}

double mrfs_doc_number(const struct mrfs_doc *doc)
{
	return json_number_value((const json_t *)doc);
}

int mrfs_doc_truth(const struct mrfs_doc *doc)
{
	return json_is_true((const json_t *)doc);
}

int mrfs_doc_each(struct mrfs_doc *doc, mrfs_member_fn fn, void *ctx)
{
	const char *key;
	json_t *value;
	int rc;

	json_object_foreach(J(doc), key, value)
	{
		if ((rc = fn(ctx, key, (struct mrfs_doc *)value)))
			return rc;
	}
	return 0;
}

int mrfs_doc_equal(const struct mrfs_doc *a, const struct mrfs_doc *b)
{
	if (!a || !b)
		return a == b;
	return json_equal((const json_t *)a, (const json_t *)b);
}

/* ---- changing JSON ------------------------------------------------------ */

struct mrfs_doc *mrfs_doc_copy(const struct mrfs_doc *doc)
{
	return (struct mrfs_doc *)json_deep_copy((const json_t *)doc);
}

int mrfs_doc_set(struct mrfs_doc *doc, const char *key, const struct mrfs_doc *value)
{
	json_t *copy;

	if (!json_is_object(J(doc)))
		return -EINVAL;
	copy = json_deep_copy((const json_t *)value);
	if (!copy || json_object_set_new(J(doc), key, copy))
		return -ENOMEM;
	return 0;
}

void mrfs_doc_del(struct mrfs_doc *doc, const char *key)
{
	json_object_del(J(doc), key);
}

int mrfs_doc_set_path(struct mrfs_doc *doc, const char *path, const char *value)
{
	json_t *cur = J(doc), *v;
	char part[256];

	if (!json_is_object(cur))
		return -EINVAL;
	/* every segment non-empty, short and UTF-8, before anything changes */
	for (const char *q = path;;) {
		size_t n = strcspn(q, ".");
		json_t *probe;
		if (n == 0 || n >= sizeof(part))
			return -EINVAL;
		probe = json_stringn(q, n); /* NULL: not UTF-8 */
		if (!probe)
			return -EINVAL;
		json_decref(probe);
		if (!q[n])
			break;
		q += n + 1;
	}
	v = json_loads(value, JSON_DECODE_ANY, NULL);
	if (!v)
		v = json_string(value); /* NULL: not UTF-8 */
	if (!v)
		return -EINVAL;
	for (;;) {
		size_t n = strcspn(path, ".");
		json_t *next;
		if (n == 0 || n >= sizeof(part)) {
			json_decref(v);
			return -EINVAL;
		}
		memcpy(part, path, n);
		part[n] = '\0';
		path += n;
		if (!*path)
			break;
		path++;
		next = json_object_get(cur, part);
		if (!json_is_object(next)) {
			next = json_object();
			if (!next || json_object_set_new(cur, part, next)) {
				json_decref(v);
				return -EINVAL; /* out of memory, or a key not UTF-8 */
			}
		}
		cur = next;
	}
	return json_object_set_new(cur, part, v) ? -EINVAL : 0;
}

/* ---- time ------------------------------------------------------------------ */

int mrfs_time_parse(const char *text, int64_t *time_ns)
{
	struct tm tm;
	const char *p;
	int64_t ns = 0, scale = 100000000;
	long off = 0;

	memset(&tm, 0, sizeof(tm));
	p = strptime(text, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p = strptime(p + 1, "%H:%M:%S", &tm);
		if (!p)
			return -EINVAL;
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++) {
				ns += (*p - '0') * scale;
				scale /= 10;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			/* exactly +HH:MM */
			for (int i = 1; i <= 5; i++)
				if (i == 3 ? p[i] != ':' : (p[i] < '0' || p[i] > '9'))
					return -EINVAL;
			off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600L +
			      ((p[4] - '0') * 10 + (p[5] - '0')) * 60L;
			if (*p == '-')
				off = -off;
			p += 6;
		} else {
			return -EINVAL;
		}
	}
	if (*p)
		return -EINVAL;
	/* int64 nanoseconds reach from 1677 to 2262 */
	if (tm.tm_year < 1678 - 1900 || tm.tm_year > 2261 - 1900)
		return -EINVAL;
	*time_ns = ((int64_t)timegm(&tm) - off) * 1000000000 + ns;
	return 0;
}
