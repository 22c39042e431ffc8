/* SPDX-License-Identifier: MIT */
/*
 * Fuzz names and alias targets (include/mrfs/registry.h): mrfs_name_valid,
 * mrfs_name_reserved and mrfs_version_parse against reference versions of
 * SPEC's rules, and mrfs_alias_set with arbitrary names and targets on a
 * scratch store holding model "m" (versions 1 and 2 sealed) and model
 * "other" (version 1), as if mounted at /mnt/reg.
 *
 * Input: NAME '\n' TARGET (the whole input is also the string given to the
 * three predicates).
 *
 * Properties:
 *  - the predicates agree with SPEC: names are 1 to 64 of [A-Za-z0-9._-],
 *    not starting with '.' or '-', not ending in ".json"; reserved are
 *    versions, latest, history; a version is 1..4294967295 in digits with
 *    no leading zero;
 *  - mrfs_alias_set answers 0, -EINVAL or -ENOENT, with a reason on refusal;
 *  - it accepts only targets that lead, as paths from /mnt/reg/models/m,
 *    to /mnt/reg/models/m/versions/N of an existing N, and points the alias
 *    at that N (never at another version, never at another model's);
 *  - the forms SPEC lists (versions/N, ./versions/N, /mnt/reg/models/m/
 *    versions/N, with trailing slashes) with a valid, unreserved name and
 *    an existing N are accepted;
 *  - an existing version is never answered -ENOENT, a missing one never 0.
 */
#include <inttypes.h>

#include "mrfs/registry.h"
#include "mrfs/store.h"
#include "fuzz.h"

#define MOUNT "/mnt/reg"

static struct mrfs_store *store;
static struct mrfs_registry *reg;
static struct mrfs_model model;
static const struct mrfs_caller root = {
    .uid = 0, .gid = 0, .pid = 1, .comm = "fuzz", .user = "root"};

static bool ref_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return false;
	return !(n >= 5 && memcmp(s + n - 5, ".json", 5) == 0);
}

static bool ref_reserved(const char *s)
{
	return !strcmp(s, "versions") || !strcmp(s, "latest") || !strcmp(s, "history");
}

static bool ref_version(const char *s, uint32_t *n)
{
	size_t len = strlen(s);

	if (len < 1 || len > 10 || s[0] == '0' || strspn(s, "0123456789") != len)
		return false;
	if (len == 10 && strcmp(s, "4294967295") > 0)
		return false;
	*n = (uint32_t)strtoul(s, NULL, 10);
	return true;
}

/*
 * The version of model m that @target leads to, read as a path from the
 * alias's directory /mnt/reg/models/m (lexically: ., .. and repeated
 * slashes folded), or 0 when it leads anywhere else.
 */
static uint32_t ref_resolve(const char *target)
{
	static const char *const want[] = {"mnt", "reg", "models", "m", "versions"};
	const char *parts[64];
	size_t np = 0, len = strlen(target);
	char *copy = malloc(len + 32), *save = NULL, *tok;
	uint32_t n = 0;

	if (!copy)
		abort();
	if (target[0] == '/')
		snprintf(copy, len + 32, "%s", target);
	else
		snprintf(copy, len + 32, MOUNT "/models/m/%s", target);
	for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			if (np)
				np--;
			continue;
		}
		if (np == 64)
			goto out;
		parts[np++] = tok;
	}
	if (np != 6)
		goto out;
	for (size_t i = 0; i < 5; i++)
		if (strcmp(parts[i], want[i]))
			goto out;
	if (!ref_version(parts[5], &n))
		n = 0;
out:
	free(copy);
	return n;
}

/* One of the forms SPEC lists, for a version: versions/N, ./versions/N or
 * the absolute path, each with trailing slashes allowed. */
static bool spec_form(const char *t)
{
	char num[16];
	size_t len = strlen(t);
	uint32_t n;

	while (len > 1 && t[len - 1] == '/')
		len--;
	if (!strncmp(t, "./", 2))
		t += 2, len -= 2;
	else if (!strncmp(t, MOUNT "/models/m/", strlen(MOUNT "/models/m/")))
		t += strlen(MOUNT "/models/m/"), len -= strlen(MOUNT "/models/m/");
	if (len < 10 || len > 9 + 10 || strncmp(t, "versions/", 9))
		return false;
	snprintf(num, sizeof(num), "%.*s", (int)(len - 9), t + 9);
	return ref_version(num, &n);
}

static void setup(void)
{
	struct mrfs_err err = {""};
	struct mrfs_model other;
	struct mrfs_version v;
	char dir[PATH_MAX];
	int rc;

	snprintf(dir, sizeof(dir), "%s/store", fuzz_tmpdir());
	if ((rc = mrfs_store_open(dir, NULL, &store)) || (rc = mrfs_registry_new(store, &reg)) ||
	    (rc = mrfs_model_create(reg, &root, "m", 0755, &model, &err)) ||
	    (rc = mrfs_model_create(reg, &root, "other", 0755, &other, &err))) {
		fprintf(stderr, "fuzz_names: setup: %d %s\n", rc, err.msg);
		abort();
	}
	for (int i = 1; i <= 2; i++) {
		char num[4];
		snprintf(num, sizeof(num), "%d", i);
		if ((rc = mrfs_version_create(reg, &root, model.id, num, 0755, &v, &err)) ||
		    (rc = mrfs_version_seal(reg, &root, v.id, -1, NULL, NULL, &err))) {
			fprintf(stderr, "fuzz_names: setup: version %d: %d %s\n", i, rc, err.msg);
			abort();
		}
	}
	if ((rc = mrfs_version_create(reg, &root, other.id, "1", 0755, &v, &err)) ||
	    (rc = mrfs_version_seal(reg, &root, v.id, -1, NULL, NULL, &err))) {
		fprintf(stderr, "fuzz_names: setup: other: %d %s\n", rc, err.msg);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setup();
	return 0;
}

static void predicates(const char *s)
{
	uint32_t n = 0, want = 0;
	bool ok = mrfs_version_parse(s, &n), rok = ref_version(s, &want);

	FUZZ_CHECK(mrfs_name_valid(s) == ref_name_valid(s), "mrfs_name_valid('%s') = %d", s,
		   mrfs_name_valid(s));
	FUZZ_CHECK(mrfs_name_reserved(s) == ref_reserved(s), "mrfs_name_reserved('%s') = %d", s,
		   mrfs_name_reserved(s));
	FUZZ_CHECK(ok == rok, "mrfs_version_parse('%s') = %d", s, ok);
	FUZZ_CHECK(!ok || n == want, "mrfs_version_parse('%s') gave %" PRIu32, s, n);
}

static void alias(const char *name, const char *target)
{
	struct mrfs_err err = {""};
	struct mrfs_alias a;
	bool name_ok = ref_name_valid(name) && !ref_reserved(name);
	uint32_t n = ref_resolve(target);
	int rc;

	memset(&a, 0, sizeof(a));
	rc = mrfs_alias_set(reg, &root, model.id, name, target, MOUNT, NULL, NULL, &a, &err);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT,
		   "alias '%s' -> '%s': mrfs_alias_set returned %d (%s)", name, target, rc,
		   err.msg);
	FUZZ_CHECK(rc == 0 || err.msg[0], "alias '%s' -> '%s' refused (%d) without a reason", name,
		   target, rc);
	if (rc == 0) {
		FUZZ_CHECK(name_ok, "alias '%s' accepted: not a valid alias name", name);
		FUZZ_CHECK(n == 1 || n == 2,
			   "target '%s' accepted (-> %" PRIu32
			   ") but does not lead to a version of m",
			   target, a.version);
		FUZZ_CHECK(a.version == n,
			   "target '%s' leads to version %" PRIu32
			   " but the alias points at %" PRIu32,
			   target, n, a.version);
		rc = mrfs_alias_delete(reg, &root, model.id, name, &err);
		FUZZ_CHECK(rc == 0, "deleting alias '%s': %d %s", name, rc, err.msg);
		return;
	}
	FUZZ_CHECK(rc != -ENOENT || !name_ok || (n != 1 && n != 2),
		   "alias '%s' -> '%s' (version %" PRIu32 ") answered ENOENT", name, target, n);
	FUZZ_CHECK(!(name_ok && (n == 1 || n == 2) && spec_form(target)),
		   "alias '%s' -> '%s' is a form SPEC lists, of version %" PRIu32
		   ", but was refused (%d: %s)",
		   name, target, n, rc, err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *all = fuzz_strndup(data, size), *name, *target;

	predicates(all);
	fuzz_field(&data, &size, '\n', &name);
	target = fuzz_strndup(data, size);
	alias(name, target);
	free(name);
	free(target);
	free(all);
	return 0;
}
