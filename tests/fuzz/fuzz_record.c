/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the writing of records: arbitrary bytes written as versions/N.json
 * or /models/m.json, that is mrfs_version_update and mrfs_model_update, on
 * a scratch store holding model "m" with version 1 (sealed, one file, alias
 * production) and version 2 (a draft).
 *
 * Input: one byte choosing the record (version 1, version 2 or the model),
 * then the text written.
 *
 * Properties:
 *  - the answer is 0 or -EINVAL (the caller is root: never -EACCES);
 *  - a refusal says why and leaves the record byte for byte as it was;
 *  - the text is refused exactly when it is not one JSON object, changes a
 *    managed member, or (model) sets a policy of the wrong shape;
 *  - once accepted, the record still parses, its managed members are those
 *    of before, and its user members are exactly those written (a model
 *    without "policy" shows the default one).
 */
#include "mrfs/record.h"
#include "mrfs/registry.h"
#include "mrfs/store.h"
#include "fuzz.h"

static struct mrfs_store *store;
static struct mrfs_registry *reg;
static struct mrfs_model model;
static uint64_t vids[2];
static const struct mrfs_caller root = {
    .uid = 0, .gid = 0, .pid = 1, .comm = "fuzz", .user = "root"};

static const char *const version_managed[] = {"model", "version", "state",  "created", "sealed",
					      "files", "size",	  "digest", "aliases", NULL};
static const char *const model_managed[] = {"name",	    "created",	"owner",   "latest",
					    "next_version", "versions", "aliases", NULL};

static void die(const char *what, int rc, const struct mrfs_err *err)
{
	fprintf(stderr, "fuzz_record: setup: %s: %d %s\n", what, rc, err ? err->msg : "");
	abort();
}

static void setup(void)
{
	static const char bytes[] = "weights\n";
	struct mrfs_err err = {""};
	struct mrfs_version v;
	struct mrfs_node nd;
	struct mrfs_writer *w;
	struct mrfs_alias a;
	char dir[PATH_MAX];
	int rc;

	snprintf(dir, sizeof(dir), "%s/store", fuzz_tmpdir());
	if ((rc = mrfs_store_open(dir, NULL, &store)) || (rc = mrfs_registry_new(store, &reg)))
		die("open", rc, NULL);
	if ((rc = mrfs_model_create(reg, &root, "m", 0755, &model, &err)))
		die("model", rc, &err);
	if ((rc = mrfs_version_create(reg, &root, model.id, "1", 0755, &v, &err)))
		die("version 1", rc, &err);
	vids[0] = v.id;
	if ((rc = mrfs_node_create(reg, &root, v.id, "w.bin", 0100644, NULL, &nd, &err)))
		die("file", rc, &err);
	if ((rc = mrfs_writer_new(store, &w)) || (rc = mrfs_writer_write(w, bytes, sizeof(bytes))))
		die("writer", rc, NULL);
	if ((rc = mrfs_node_commit(reg, nd.id, w, mrfs_now_ns(), &nd, &err)))
		die("commit", rc, &err);
	if ((rc = mrfs_alias_set(reg, &root, model.id, "production", "versions/1", NULL, NULL, NULL,
				 &a, &err)))
		die("alias", rc, &err);
	if ((rc = mrfs_version_create(reg, &root, model.id, "2", 0755, &v, &err)))
		die("version 2", rc, &err);
	vids[1] = v.id;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setup();
	return 0;
}

/* The record as mrfs shows it: new text. */
static char *record(int which, size_t *len)
{
	struct mrfs_txn *txn;
	char *text = NULL;
	int rc = mrfs_txn_begin(store, false, &txn);

	FUZZ_CHECK(rc == 0, "read transaction: %d", rc);
	rc = which < 2 ? mrfs_version_record(txn, vids[which], &text, len)
		       : mrfs_model_record(txn, model.id, &text, len);
	mrfs_txn_abort(txn);
	FUZZ_CHECK(rc == 0 && text, "rendering record %d: %d", which, rc);
	return text;
}

static bool is_managed(const char *const *managed, const char *key)
{
	for (; *managed; managed++)
		if (!strcmp(*managed, key))
			return true;
	return false;
}

struct cmp {
	const char *const *managed;
	struct mrfs_doc *other;
	const char *what;
};

/* Each user member of one document is in the other, equal. */
static int user_in_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct cmp *c = ctx;

	if (is_managed(c->managed, key) || (c->other == NULL))
		return 0;
	FUZZ_CHECK(mrfs_doc_equal(value, mrfs_doc_get(c->other, key)),
		   "%s: user member '%s' differs", c->what, key);
	return 0;
}

/* Whether the managed members written (if any) all equal the record's. */
struct managed_ok {
	const char *const *managed;
	struct mrfs_doc *before;
	bool ok;
};

static int managed_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct managed_ok *m = ctx;

	if (is_managed(m->managed, key) && !mrfs_doc_equal(value, mrfs_doc_get(m->before, key)))
		m->ok = false;
	return 0;
}

static int rule_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	bool *ok = ctx;
	const char *to = mrfs_doc_string(value);

	if (!mrfs_name_valid(key) || !to || !mrfs_name_valid(to))
		*ok = false;
	return 0;
}

/* SPEC's shape: {"protected": [names], "promote_from": {name: name}},
 * both members optional. */
static bool policy_ok(struct mrfs_doc *p)
{
	struct mrfs_doc *prot, *from;
	bool ok = true;

	if (mrfs_doc_type(p) != MRFS_JSON_OBJECT)
		return false;
	prot = mrfs_doc_get(p, "protected");
	from = mrfs_doc_get(p, "promote_from");
	if (prot) {
		if (mrfs_doc_type(prot) != MRFS_JSON_ARRAY)
			return false;
		for (size_t i = 0; i < mrfs_doc_len(prot); i++) {
			const char *n = mrfs_doc_string(mrfs_doc_at(prot, i));
			if (!n || !mrfs_name_valid(n))
				return false;
		}
	}
	if (from) {
		if (mrfs_doc_type(from) != MRFS_JSON_OBJECT)
			return false;
		mrfs_doc_each(from, rule_cb, &ok);
	}
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mrfs_err err = {""};
	const char *const *managed;
	struct mrfs_doc *in, *bdoc, *adoc, *pol, *defpol;
	struct managed_ok mo;
	size_t blen, alen;
	char *before, *after;
	int which, rc;
	bool expect_ok;

	if (!size)
		return 0;
	which = data[0] % 3;
	data++, size--;
	managed = which < 2 ? version_managed : model_managed;
	before = record(which, &blen);
	rc = which < 2
		 ? mrfs_version_update(reg, &root, vids[which], (const char *)data, size, &err)
		 : mrfs_model_update(reg, &root, model.id, (const char *)data, size, &err);
	after = record(which, &alen);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "update of record %d returned %d (%s)", which, rc,
		   err.msg);

	bdoc = mrfs_doc_parse(before, blen, NULL, 0);
	adoc = mrfs_doc_parse(after, alen, NULL, 0);
	FUZZ_CHECK(bdoc && adoc, "a record does not parse: %s", adoc ? before : after);
	in = mrfs_doc_parse((const char *)data, size, NULL, 0);
	expect_ok = in && mrfs_doc_type(in) == MRFS_JSON_OBJECT;
	if (expect_ok) {
		mo = (struct managed_ok){managed, bdoc, true};
		mrfs_doc_each(in, managed_cb, &mo);
		expect_ok = mo.ok;
	}
	if (expect_ok && which == 2 && (pol = mrfs_doc_get(in, "policy")) &&
	    !mrfs_doc_equal(pol, mrfs_doc_get(bdoc, "policy")))
		expect_ok = policy_ok(pol);

	if (rc) {
		FUZZ_CHECK(err.msg[0], "a refusal (%d) without a reason", rc);
		FUZZ_CHECK(blen == alen && !memcmp(before, after, blen),
			   "a refused update (%s) changed the record", err.msg);
		FUZZ_CHECK(!expect_ok,
			   "a good record (an object, managed members unchanged, "
			   "policy well formed) was refused: %s",
			   err.msg);
		goto out;
	}
	FUZZ_CHECK(expect_ok, "a bad record was accepted (record %d)", which);
	for (const char *const *k = managed; *k; k++)
		FUZZ_CHECK(mrfs_doc_equal(mrfs_doc_get(bdoc, *k), mrfs_doc_get(adoc, *k)),
			   "managed member '%s' changed", *k);
	mrfs_doc_each(in, user_in_cb, &(struct cmp){managed, adoc, "written -> record"});
	if (which == 2 && !mrfs_doc_get(in, "policy")) {
		/* no policy written: the default one shows */
		static const char def[] = "{\"protected\":[\"production\"]}";
		defpol = mrfs_doc_parse(def, strlen(def), NULL, 0);
		FUZZ_CHECK(mrfs_doc_equal(mrfs_doc_get(adoc, "policy"), defpol),
			   "the model shows a policy that was not written and is not the default");
		mrfs_doc_free(defpol);
		mrfs_doc_del(adoc, "policy");
	}
	mrfs_doc_each(adoc, user_in_cb, &(struct cmp){managed, in, "record -> written"});
out:
	mrfs_doc_free(in);
	mrfs_doc_free(bdoc);
	mrfs_doc_free(adoc);
	free(before);
	free(after);
	return 0;
}
