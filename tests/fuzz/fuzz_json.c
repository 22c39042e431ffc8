/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the JSON layer of records (include/mrfs/record.h): mrfs_doc_parse,
 * mrfs_doc_dump, mrfs_doc_copy/equal, mrfs_doc_set_path and mrfs_doc_path,
 * what `cp t versions/4.json` and `mrfs log -m KEY=VALUE` go through.
 *
 * Input: PATH '\n' VALUE '\n' DOCUMENT (missing fields are empty).
 *
 * Properties:
 *  - mrfs_doc_parse of anything: a document, or NULL with a message;
 *  - a parsed document dumps (pretty and compact) to text ending in one
 *    newline that parses back to an equal document; a copy is equal;
 *  - mrfs_doc_set_path on an object returns 0 or -EINVAL (never -ENOMEM:
 *    the fuzzer is not out of memory); -EINVAL exactly when a path segment
 *    is empty, too long (255 bytes is the longest) or not UTF-8, or the
 *    value is neither JSON nor a valid UTF-8 string (the header promises
 *    -ENOMEM only for a lack of memory);
 *  - after it succeeds, mrfs_doc_path(PATH) is the value (the parsed JSON,
 *    or the string), and top-level members off the path are unchanged.
 */
#include "mrfs/record.h"
#include "fuzz.h"

static void dump_round_trip(struct mrfs_doc *doc, int pretty)
{
	struct mrfs_doc *back;
	char err[256] = "";
	size_t len = 0;
	char *text = mrfs_doc_dump(doc, pretty, &len);

	FUZZ_CHECK(text, "mrfs_doc_dump(pretty=%d) returned NULL", pretty);
	FUZZ_CHECK(len == strlen(text) && len >= 2 && text[len - 1] == '\n' &&
		       text[len - 2] != '\n',
		   "the dump is not one text ending in one newline (len %zu)", len);
	FUZZ_CHECK(pretty || !memchr(text, '\n', len - 1),
		   "a compact dump (a history line) holds a newline: %s", text);
	back = mrfs_doc_parse(text, len, err, sizeof(err));
	FUZZ_CHECK(back, "the dump does not parse back: %s: %s", err, text);
	FUZZ_CHECK(mrfs_doc_equal(doc, back), "the dump parses to another document: %s", text);
	mrfs_doc_free(back);
	free(text);
}

/* Whether @s is valid UTF-8 without NUL (what a JSON string can hold). */
static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p++, n, cp;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* What set_path must refuse: an empty or over-long segment, or one that is
 * not UTF-8 (a JSON key cannot hold it). */
static bool path_ok(const char *path)
{
	if (!utf8_ok(path))
		return false;
	for (;;) {
		size_t n = strcspn(path, ".");
		if (n == 0 || n > 255)
			return false;
		path += n;
		if (!*path)
			return true;
		path++;
	}
}

struct off_path {
	struct mrfs_doc *after;
	const char *first; /* the first segment of the path */
};

static int unchanged_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct off_path *o = ctx;

	if (strcmp(key, o->first))
		FUZZ_CHECK(mrfs_doc_equal(value, mrfs_doc_get(o->after, key)),
			   "set_path changed member '%s', which is off the path", key);
	return 0;
}

static void set_path(struct mrfs_doc *doc, const char *path, const char *value)
{
	struct mrfs_doc *before = mrfs_doc_copy(doc), *want, *got;
	char first[256];
	int rc;

	FUZZ_CHECK(before, "mrfs_doc_copy returned NULL");
	want = mrfs_doc_parse(value, strlen(value), NULL, 0);
	rc = mrfs_doc_set_path(doc, path, value);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "mrfs_doc_set_path('%s', '%s') returned %d", path,
		   value, rc);
	if (!path_ok(path)) {
		FUZZ_CHECK(rc == -EINVAL,
			   "path '%s' has an empty, long or non-UTF-8 segment but gave %d", path,
			   rc);
		FUZZ_CHECK(mrfs_doc_equal(doc, before), "a refused set_path changed the document");
		goto out;
	}
	if (!want && !utf8_ok(value)) {
		FUZZ_CHECK(rc == -EINVAL, "a value that is neither JSON nor UTF-8 gave %d", rc);
		goto out;
	}
	FUZZ_CHECK(rc == 0, "mrfs_doc_set_path('%s', '%s') refused a good path (%d)", path, value,
		   rc);
	got = mrfs_doc_path(doc, path);
	FUZZ_CHECK(got, "mrfs_doc_path('%s') finds nothing after set_path", path);
	if (want)
		FUZZ_CHECK(mrfs_doc_equal(got, want), "'%s' is not the JSON value '%s'", path,
			   value);
	else
		FUZZ_CHECK(mrfs_doc_type(got) == MRFS_JSON_STRING &&
			       !strcmp(mrfs_doc_string(got), value),
			   "'%s' is not the string '%s'", path, value);
	snprintf(first, sizeof(first), "%.*s", (int)strcspn(path, "."), path);
	mrfs_doc_each(before, unchanged_cb, &(struct off_path){doc, first});
	dump_round_trip(doc, 0);
out:
	mrfs_doc_free(want);
	mrfs_doc_free(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path, *value, *text, err[256] = "";
	struct mrfs_doc *doc, *copy;

	fuzz_field(&data, &size, '\n', &path);
	fuzz_field(&data, &size, '\n', &value);
	text = fuzz_strndup(data, size);

	doc = mrfs_doc_parse((const char *)data, size, err, sizeof(err));
	if (!doc) {
		FUZZ_CHECK(err[0], "mrfs_doc_parse failed without a message");
		doc = mrfs_doc_new();
	} else {
		dump_round_trip(doc, 0);
		dump_round_trip(doc, 1);
		copy = mrfs_doc_copy(doc);
		FUZZ_CHECK(copy && mrfs_doc_equal(doc, copy), "a copy differs");
		mrfs_doc_free(copy);
	}
	if (mrfs_doc_type(doc) == MRFS_JSON_OBJECT)
		set_path(doc, path, value);
	else
		FUZZ_CHECK(mrfs_doc_set_path(doc, path, value) == -EINVAL,
			   "set_path on a non-object did not answer -EINVAL");
	mrfs_doc_free(doc);
	free(path);
	free(value);
	free(text);
	return 0;
}
