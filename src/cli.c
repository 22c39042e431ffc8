/* SPDX-License-Identifier: MIT */
/*
 * The command line: user commands through a mount, store commands on the
 * store. See mrfs/cli.h.
 *
 * User commands touch the registry only with the file operations any
 * program could use (mkdir, open/write/close, chmod, symlink, rename,
 * readlink, reading the sidecars and the history), so what they do is
 * exactly what SPEC promises for those operations, checks and history
 * included. Store commands open the store next to the daemon: LMDB lets
 * both work at once, and the daemon sees their changes within a second.
 *
 * Errors: each helper that fails prints one line saying what and why
 * (error()) and returns a negative errno; its callers pass that on
 * silently, and the command turns it into exit status 1. Usage errors are
 * one line too (usage()), exit status 2. Out of memory exits at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <mntent.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mrfs/cli.h"
#include "mrfs/record.h"
#include "mrfs/registry.h"
#include "mrfs/store.h"

#define COPY_BUF    (1u << 20)	/* log copies with 1 MiB reads and writes */
#define PATCH_MAX   (1u << 20)	/* a bigger `git diff HEAD` is left out */
#define PROGRESS_NS 100000000LL /* redraw a progress bar at most 10 times a second */
#define NS	    1000000000LL

/* The command running, for messages ("mrfs log: ..."). */
static const char *cmdname = "mrfs";

/* Set by SIGINT/SIGTERM while `log` copies. */
static volatile sig_atomic_t interrupted;

/* ---- messages and memory ----------------------------------------------- */

__attribute__((format(printf, 1, 2))) static void error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "mrfs %s: ", cmdname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

__attribute__((format(printf, 1, 2))) static void warning(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "mrfs %s: warning: ", cmdname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* One line on stderr; returns exit status 2. */
__attribute__((format(printf, 1, 2))) static int usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mrfs %s: ", cmdname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'mrfs help %s')\n", cmdname);
	return 2;
}

static void oom(void)
{
	fputs("mrfs: out of memory\n", stderr);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		oom();
	return p;
}

__attribute__((format(printf, 1, 2))) static char *xfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	return s;
}

/* A growing array of strings (owned). */
struct strs {
	char **v;
	size_t n, cap;
};

static void strs_push(struct strs *s, char *str)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = str;
}

static void strs_release(struct strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_str(const struct strs *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], str))
			return true;
	return false;
}

/* ---- options ------------------------------------------------------------- */

struct opt {
	const char *name; /* --name, or NULL */
	char letter;	  /* -l, or 0 */
	bool arg;	  /* takes a value */
	int id;		  /* > OPT_HELP; 0 ends a table */
};

enum { OPT_BAD = -2, OPT_END = -1, OPT_ARG = 0, OPT_HELP = 1 };

/* Common option ids. */
enum { O_MOUNT = 10, O_STORE, O_JSON, O_FIRST_OWN };

struct parser {
	int argc;
	char **argv;
	int i;
	bool dashdash;
	const char *val; /* the value of the option, or the argument */
};

/*
 * The next option (its id, with its value in p->val), argument (OPT_ARG,
 * in p->val), OPT_HELP for -h/--help, OPT_END, or OPT_BAD after printing a
 * usage error. Options and arguments may come in any order; "--" ends the
 * options. Values: "--name VALUE", "--name=VALUE", "-l VALUE", "-lVALUE".
 */
static int next_opt(struct parser *p, const struct opt *defs)
{
	const struct opt *d;
	const char *a, *eq;
	size_t n;

	if (p->i >= p->argc)
		return OPT_END;
	a = p->argv[p->i++];
	if (p->dashdash || a[0] != '-' || !a[1]) {
		p->val = a;
		return OPT_ARG;
	}
	if (!strcmp(a, "--")) {
		p->dashdash = true;
		return next_opt(p, defs);
	}
	if (!strcmp(a, "--help") || !strcmp(a, "-h"))
		return OPT_HELP;
	if (a[1] == '-') {
		eq = strchr(a + 2, '=');
		n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
		for (d = defs; d->id; d++) {
			if (!d->name || strlen(d->name) != n || strncmp(d->name, a + 2, n))
				continue;
			if (!d->arg) {
				if (eq) {
					usage("option --%s takes no value", d->name);
					return OPT_BAD;
				}
				return d->id;
			}
			if (eq) {
				p->val = eq + 1;
				return d->id;
			}
			if (p->i >= p->argc) {
				usage("option --%s needs a value", d->name);
				return OPT_BAD;
			}
			p->val = p->argv[p->i++];
			return d->id;
		}
		usage("unknown option '%s'", a);
		return OPT_BAD;
	}
	for (d = defs; d->id; d++) {
		if (d->letter != a[1])
			continue;
		if (!d->arg) {
			if (a[2])
				break;
			return d->id;
		}
		if (a[2]) {
			p->val = a + 2;
			return d->id;
		}
		if (p->i >= p->argc) {
			usage("option -%c needs a value", d->letter);
			return OPT_BAD;
		}
		p->val = p->argv[p->i++];
		return d->id;
	}
	usage("unknown option '%s'", a);
	return OPT_BAD;
}

/* ---- human formats ------------------------------------------------------- */

static void fmt_size(uint64_t n, char *buf, size_t size)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", n);
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, v < 10 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* A size as a new string. */
static char *size_str(uint64_t n)
{
	char buf[32];

	fmt_size(n, buf, sizeof(buf));
	return xstrdup(buf);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* Local time "2026-11-27 05:30" (or with seconds). */
static void fmt_time(int64_t ns, bool seconds, char *buf, size_t size)
{
	time_t t = (time_t)(ns / NS);
	struct tm tm;

	localtime_r(&t, &tm);
	if (!strftime(buf, size, seconds ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M", &tm))
		snprintf(buf, size, "?");
}

/* "12 s ago", "3 min ago", "5 h ago" within a day, else the local time. */
static void fmt_ago(int64_t ns, char *buf, size_t size)
{
	int64_t age = (now_ns() - ns) / NS;

	if (age < 0 || age >= 86400)
		fmt_time(ns, false, buf, size);
	else if (age < 60)
		snprintf(buf, size, "%" PRId64 " s ago", age);
	else if (age < 3600)
		snprintf(buf, size, "%" PRId64 " min ago", age / 60);
	else
		snprintf(buf, size, "%" PRId64 " h ago", age / 3600);
}

/* ---- tables -------------------------------------------------------------- */

/* Cells in rows of ncols; row 0 is the header. Columns in @right are
 * aligned right. */
struct table {
	size_t ncols;
	unsigned right;
	struct strs cells;
};

static void table_init(struct table *t, size_t ncols, unsigned right)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->right = right;
}

/* Add the next cell (a copy of @s; NULL shows as "-"). */
static void tcell(struct table *t, const char *s)
{
	strs_push(&t->cells, xstrdup(s && *s ? s : "-"));
}

/* Add an empty cell (a header over markers). */
static void tcell_blank(struct table *t)
{
	strs_push(&t->cells, xstrdup(""));
}

/* Add the next cell, taking @s (new; empty shows as "-"). */
static void tcell_take(struct table *t, char *s)
{
	if (!*s) {
		free(s);
		s = xstrdup("-");
	}
	strs_push(&t->cells, s);
}

/* Width on a terminal: UTF-8 characters, not bytes. */
static size_t display_len(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static void table_print(struct table *t, const char *indent)
{
	size_t *w = xcalloc(t->ncols, sizeof(*w));
	size_t rows = t->cells.n / t->ncols;

	for (size_t i = 0; i < rows * t->ncols; i++) {
		size_t l = display_len(t->cells.v[i]);
		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t r = 0; r < rows; r++) {
		fputs(indent, stdout);
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells.v[r * t->ncols + c];
			size_t pad = w[c] - display_len(s);
			bool last = c + 1 == t->ncols;

			if (t->right & (1u << c))
				printf("%*s", (int)pad, "");
			fputs(s, stdout);
			if (!(t->right & (1u << c)) && !last)
				printf("%*s", (int)pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		fputc('\n', stdout);
	}
	free(w);
}

static void table_release(struct table *t)
{
	strs_release(&t->cells);
}

/* ---- progress ------------------------------------------------------------- */

/* A progress bar on stderr, only when it is a terminal. */
struct progress {
	bool on, drawn;
	const char *label;
	int64_t last;
};

static void progress_start(struct progress *p, const char *label)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(STDERR_FILENO);
	p->label = label;
}

static void progress_show(struct progress *p, uint64_t done, uint64_t total)
{
	char d[32], t[32], bar[31];
	int64_t now;
	int fill;

	if (!p->on)
		return;
	now = mono_ns();
	if (p->drawn && now - p->last < PROGRESS_NS && done < total)
		return;
	p->last = now;
	p->drawn = true;
	fill = total ? (int)((double)done / (double)total * 30) : 30;
	if (fill > 30)
		fill = 30;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(30 - fill));
	bar[30] = '\0';
	fmt_size(done, d, sizeof(d));
	fmt_size(total, t, sizeof(t));
	fprintf(stderr, "\r\033[K%s [%s] %3d%%  %s / %s", p->label, bar,
		total ? (int)((double)done * 100 / (double)total) : 100, d, t);
	fflush(stderr);
}

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	progress_show(ctx, done, total);
}

static void progress_end(struct progress *p)
{
	if (p->on && p->drawn)
		fputs("\r\033[K", stderr);
	p->drawn = false;
}

/* ---- files ---------------------------------------------------------------- */

/* The whole of @path: new (free()), NUL-terminated, *@len bytes. */
static int slurp(const char *path, char **out, size_t *len)
{
	size_t n = 0, cap = 65536;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	buf = xrealloc(NULL, cap);
	for (;;) {
		ssize_t r;

		if (cap - n < 2) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			close(fd);
			free(buf);
			return (int)r;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

/* Write all of @buf to @fd. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static char json_err[256];

/* Parse the JSON file @path: 0, -errno, or -EBADMSG (why in json_err). */
static int load_json(const char *path, struct mrfs_doc **out)
{
	char *text = NULL;
	size_t len = 0;
	int rc = slurp(path, &text, &len);

	if (rc)
		return rc;
	*out = mrfs_doc_parse(text, len, json_err, sizeof(json_err));
	free(text);
	return *out ? 0 : -EBADMSG;
}

/* load_json, saying what went wrong; @what names the file for people. */
static int read_record(const char *path, const char *what, struct mrfs_doc **out)
{
	int rc = load_json(path, out);

	if (rc == -EBADMSG)
		error("%s is not valid JSON: %s", what, json_err);
	else if (rc)
		error("cannot read %s: %s", what, strerror(-rc));
	else if (mrfs_doc_type(*out) != MRFS_JSON_OBJECT) {
		error("%s is not a JSON object", what);
		mrfs_doc_free(*out);
		*out = NULL;
		rc = -EBADMSG;
	}
	return rc;
}

/* ---- JSON values ------------------------------------------------------------- */

static const char *dstr(struct mrfs_doc *d, const char *key)
{
	return mrfs_doc_string(mrfs_doc_get(d, key));
}

static bool is_number(const struct mrfs_doc *d)
{
	enum mrfs_json t = d ? mrfs_doc_type(d) : MRFS_JSON_NULL;

	return d && (t == MRFS_JSON_INT || t == MRFS_JSON_REAL);
}

/* Member @key as an integer, or @def when it is not a number. */
static int64_t dint(struct mrfs_doc *d, const char *key, int64_t def)
{
	struct mrfs_doc *v = mrfs_doc_get(d, key);

	return is_number(v) ? (int64_t)mrfs_doc_number(v) : def;
}

/* The time (RFC 3339) at @key, or member "time" of the object at @key. */
static bool dtime(struct mrfs_doc *d, const char *key, int64_t *ns)
{
	struct mrfs_doc *v = mrfs_doc_get(d, key);
	const char *s;

	if (v && mrfs_doc_type(v) == MRFS_JSON_OBJECT)
		v = mrfs_doc_get(v, "time");
	s = mrfs_doc_string(v);
	return s && !mrfs_time_parse(s, ns);
}

/* A value as text, new: strings as they are, numbers in short form,
 * objects and arrays as compact JSON. */
static char *value_str(struct mrfs_doc *v)
{
	char *s;
	size_t len;
	double x;

	if (!v)
		return xstrdup("");
	switch (mrfs_doc_type(v)) {
	case MRFS_JSON_NULL:
		return xstrdup("null");
	case MRFS_JSON_BOOL:
		return xstrdup(mrfs_doc_truth(v) ? "true" : "false");
	case MRFS_JSON_INT:
		return xfmt("%.0f", mrfs_doc_number(v));
	case MRFS_JSON_REAL:
		x = mrfs_doc_number(v);
		return xfmt("%.15g", x);
	case MRFS_JSON_STRING:
		return xstrdup(mrfs_doc_string(v));
	default:
		s = mrfs_doc_dump(v, 0, &len);
		if (!s)
			oom();
		if (len && s[len - 1] == '\n')
			s[len - 1] = '\0';
		return s;
	}
}

/* value_str for a table cell: one line, long text summarised. */
static char *cell_str(struct mrfs_doc *v)
{
	char *s = value_str(v), *nl;
	size_t len = strlen(s);

	nl = strchr(s, '\n');
	if (nl) {
		size_t lines = 0;
		for (const char *p = s; *p; p++)
			lines += *p == '\n';
		if (s[len - 1] != '\n')
			lines++;
		free(s);
		return xfmt("(%zu lines)", lines);
	}
	if (display_len(s) > 60) {
		size_t cut = 0, chars = 0;
		while (s[cut] && chars < 57) {
			cut++;
			if (((unsigned char)s[cut] & 0xc0) != 0x80)
				chars++;
		}
		s[cut] = '\0';
		nl = xfmt("%s...", s);
		free(s);
		return nl;
	}
	return s;
}

/* Members of version records that mrfs manages; the rest is user metadata. */
static const char *const version_managed[] = {
    "model", "version", "state", "created", "sealed", "size", "digest", "files", "aliases", NULL,
};

static bool is_managed(const char *key)
{
	for (int i = 0; version_managed[i]; i++)
		if (!strcmp(version_managed[i], key))
			return true;
	return false;
}

/* Leaves of a document under dotted keys ("metrics.acc"); values borrowed. */
struct leaves {
	struct strs keys;
	struct mrfs_doc **vals;
	bool user_only; /* at the top, skip managed members */
	const char *prefix;
};

static int leaf_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	struct leaves *l = ctx;
	char *full;

	if (l->user_only && is_managed(key))
		return 0;
	full = l->prefix ? xfmt("%s.%s", l->prefix, key) : xstrdup(key);
	if (mrfs_doc_type(value) == MRFS_JSON_OBJECT) {
		struct leaves sub = *l;
		size_t before = l->keys.n;
		int rc;

		sub.user_only = false;
		sub.prefix = full;
		rc = mrfs_doc_each(value, leaf_cb, &sub);
		l->keys = sub.keys;
		l->vals = sub.vals;
		if (rc) {
			free(full);
			return rc;
		}
		if (l->keys.n > before) {
			free(full);
			return 0;
		}
		/* an empty object is a leaf */
	}
	strs_push(&l->keys, full);
	l->vals = xrealloc(l->vals, l->keys.cap * sizeof(*l->vals));
	l->vals[l->keys.n - 1] = value;
	return 0;
}

static void leaves_of(struct mrfs_doc *doc, bool user_only, struct leaves *l)
{
	memset(l, 0, sizeof(*l));
	l->user_only = user_only;
	if (doc && mrfs_doc_type(doc) == MRFS_JSON_OBJECT)
		mrfs_doc_each(doc, leaf_cb, l);
}

static struct mrfs_doc *leaf_get(struct leaves *l, const char *key)
{
	for (size_t i = 0; i < l->keys.n; i++)
		if (!strcmp(l->keys.v[i], key))
			return l->vals[i];
	return NULL;
}

static void leaves_release(struct leaves *l)
{
	strs_release(&l->keys);
	free(l->vals);
}

/* The user name of @uid, or its number. */
static char *user_name(uint32_t uid)
{
	struct passwd *pw = getpwuid(uid);

	return pw ? xstrdup(pw->pw_name) : xfmt("%" PRIu32, uid);
}

/* ---- the mount -------------------------------------------------------------- */

/* The mount to work through (new), or NULL after saying why. */
static char *find_mount(const char *opt)
{
	const char *dir = opt;
	char *found = NULL, *models;
	struct stat st;

	if (!dir || !*dir)
		dir = getenv("MRFS_MOUNT");
	if (!dir || !*dir) {
		FILE *f = setmntent("/proc/mounts", "r");
		struct mntent *me;

		if (!f) {
			error("cannot read /proc/mounts: %s", strerror(errno));
			return NULL;
		}
		while ((me = getmntent(f))) {
			if (!strcmp(me->mnt_type, "fuse.mrfs")) {
				found = xstrdup(me->mnt_dir);
				break;
			}
		}
		endmntent(f);
		if (!found) {
			error("no mrfs mount found in /proc/mounts "
			      "(mount one with 'mrfs mount DIR', or give --mount DIR)");
			return NULL;
		}
		dir = found;
	}
	models = xfmt("%s/models", dir);
	if (stat(models, &st) || !S_ISDIR(st.st_mode)) {
		error("%s is not an mrfs mount (no %s)", dir, models);
		free(models);
		free(found);
		return NULL;
	}
	free(models);
	return found ? found : xstrdup(dir);
}

/* Is model @model there? Says why not. */
static int model_exists(const char *mnt, const char *model)
{
	char *p = xfmt("%s/models/%s", mnt, model);
	struct stat st;
	int rc = 0;

	if (stat(p, &st)) {
		rc = -errno;
		if (rc == -ENOENT)
			error("no model '%s'", model);
		else
			error("cannot look up model '%s': %s", model, strerror(-rc));
	} else if (!S_ISDIR(st.st_mode)) {
		error("no model '%s'", model);
		rc = -ENOENT;
	}
	free(p);
	return rc;
}

/* "3" or "v3". */
static bool parse_vnum(const char *s, uint32_t *n)
{
	if (s[0] == 'v' || s[0] == 'V')
		s++;
	return mrfs_version_parse(s, n);
}

/* Version number from an alias's link "versions/N". */
static bool parse_link(const char *link, uint32_t *n)
{
	const char *p = link;

	if (!strncmp(p, "../", 3))
		p += 3;
	if (!strncmp(p, "./", 2))
		p += 2;
	if (strncmp(p, "versions/", 9))
		return false;
	return mrfs_version_parse(p + 9, n);
}

/* Where alias @alias of @model points: 0, -ENOENT (no such alias, silent)
 * or another -errno after saying why. */
static int read_alias(const char *mnt, const char *model, const char *alias, uint32_t *n)
{
	char *p = xfmt("%s/models/%s/%s", mnt, model, alias);
	char link[PATH_MAX];
	ssize_t len = readlink(p, link, sizeof(link) - 1);
	int rc = 0;

	if (len < 0) {
		rc = -errno;
		if (rc == -EINVAL)
			error("'%s' is not an alias of %s", alias, model);
		else if (rc != -ENOENT)
			error("cannot read alias %s:%s: %s", model, alias, strerror(-rc));
	} else {
		link[len] = '\0';
		if (!parse_link(link, n)) {
			error("alias %s:%s points at '%s', not at a version", model, alias, link);
			rc = -EIO;
		}
	}
	free(p);
	return rc;
}

/*
 * Resolve @spec of @model: NULL or "latest" (the latest version), "vN" or
 * "N" (version N, which must exist), or an alias name. Says why it fails.
 */
static int resolve(const char *mnt, const char *model, const char *spec, uint32_t *n)
{
	struct stat st;
	char *p;
	int rc;

	if ((rc = model_exists(mnt, model)))
		return rc;
	if (!spec || !strcmp(spec, "latest")) {
		rc = read_alias(mnt, model, "latest", n);
		if (rc == -ENOENT)
			error("%s has no sealed version yet (name a draft as %s:vN)", model, model);
		return rc;
	}
	if (parse_vnum(spec, n)) {
		p = xfmt("%s/models/%s/versions/%" PRIu32, mnt, model, *n);
		rc = stat(p, &st) ? -errno : 0;
		free(p);
		if (rc == -ENOENT)
			error("%s has no version %" PRIu32, model, *n);
		else if (rc)
			error("cannot look up %s:v%" PRIu32 ": %s", model, *n, strerror(-rc));
		return rc;
	}
	if (!mrfs_name_valid(spec) || mrfs_name_reserved(spec)) {
		error("'%s' is neither a version (vN) nor an alias name", spec);
		return -EINVAL;
	}
	rc = read_alias(mnt, model, spec, n);
	if (rc == -ENOENT)
		error("%s has no alias '%s'", model, spec);
	return rc;
}

/* Split "MODEL[:SPEC]" into new strings; a usage error when malformed. */
static int parse_ref(const char *ref, char **model, char **spec)
{
	const char *colon = strchr(ref, ':');

	*model = colon ? strndup(ref, (size_t)(colon - ref)) : xstrdup(ref);
	if (!*model)
		oom();
	*spec = colon && colon[1] ? xstrdup(colon + 1) : NULL;
	if (!mrfs_name_valid(*model) || (colon && !colon[1])) {
		free(*model);
		free(*spec);
		return usage("'%s' is not a reference "
			     "(MODEL, MODEL:vN, MODEL:ALIAS or MODEL:latest)",
			     ref);
	}
	return 0;
}

/* The record of version @n of @model, checked to be an object. */
static int version_record(const char *mnt, const char *model, uint32_t n, struct mrfs_doc **out)
{
	char *p = xfmt("%s/models/%s/versions/%" PRIu32 ".json", mnt, model, n);
	char *what = xfmt("the record of %s:v%" PRIu32, model, n);
	int rc = read_record(p, what, out);

	free(what);
	free(p);
	return rc;
}

static int model_record(const char *mnt, const char *model, struct mrfs_doc **out)
{
	char *p = xfmt("%s/models/%s.json", mnt, model);
	char *what = xfmt("the record of model %s", model);
	int rc = read_record(p, what, out);

	free(what);
	free(p);
	return rc;
}

/*
 * Point alias @alias of @model at version @n as `ln -sfn` does: a new alias
 * is one symlink; an existing one is replaced by renaming a symlink with a
 * temporary name over it, so that a reader never finds it missing.
 */
static int set_alias(const char *mnt, const char *model, const char *alias, uint32_t n)
{
	char *target = xfmt("versions/%" PRIu32, n);
	char *path = xfmt("%s/models/%s/%s", mnt, model, alias);
	char *tmp = NULL;
	int rc = 0;

	if (!symlink(target, path))
		goto out;
	rc = -errno;
	if (rc == -EEXIST) {
		tmp = xfmt("%s/models/%s/mrfs-promote-%ld-%ld", mnt, model, (long)getpid(),
			   (long)(mono_ns() % 1000000));
		rc = symlink(target, tmp) ? -errno : 0;
		if (!rc && rename(tmp, path)) {
			rc = -errno;
			unlink(tmp);
		}
	}
	switch (rc) {
	case 0:
		break;
	case -EACCES:
		error("'%s' is a protected alias of %s: only its owner, root or the admin "
		      "group may move it",
		      alias, model);
		break;
	case -EPERM:
		error("%s's policy refuses to point '%s' at v%" PRIu32
		      " (promote_from: it must have been through its source alias first)",
		      model, alias, n);
		break;
	case -ENOENT:
		error("%s has no version %" PRIu32, model, n);
		break;
	case -EBUSY:
		error("cannot seal %s:v%" PRIu32 " for '%s': a file of it is open for writing",
		      model, n, alias);
		break;
	default:
		error("cannot point %s:%s at v%" PRIu32 ": %s", model, alias, n, strerror(-rc));
	}
out:
	free(tmp);
	free(path);
	free(target);
	return rc;
}

/* An alias name a user may set: valid and not reserved. */
static bool alias_name_ok(const char *name)
{
	return mrfs_name_valid(name) && !mrfs_name_reserved(name);
}

/* ---- log -------------------------------------------------------------------- */

struct copy {
	struct progress pg;
	char *buf; /* COPY_BUF bytes */
	uint64_t done, total;
};

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Add up the regular files under @path (whose lstat is @st). */
static int scan(const char *path, const struct stat *st, uint64_t *bytes, uint64_t *files)
{
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (S_ISREG(st->st_mode)) {
		*bytes += (uint64_t)st->st_size;
		(*files)++;
		return 0;
	}
	if (!S_ISDIR(st->st_mode))
		return 0;
	d = opendir(path);
	if (!d) {
		rc = -errno;
		error("cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	while (!rc && (de = readdir(d))) {
		struct stat cst;
		char *child;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		child = xfmt("%s/%s", path, de->d_name);
		if (lstat(child, &cst)) {
			rc = -errno;
			error("cannot stat %s: %s", child, strerror(-rc));
		} else {
			rc = scan(child, &cst, bytes, files);
		}
		free(child);
	}
	closedir(d);
	return rc;
}

/* Give @dst the permission bits and times of @st, as cp -a does. */
static int copy_attrs(const char *dst, const struct stat *st, bool link)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int rc;

	if (!link && chmod(dst, st->st_mode & 07777)) {
		rc = -errno;
		error("cannot chmod %s: %s", dst, strerror(-rc));
		return rc;
	}
	if (utimensat(AT_FDCWD, dst, ts, link ? AT_SYMLINK_NOFOLLOW : 0)) {
		rc = -errno;
		if (link && (rc == -EOPNOTSUPP || rc == -ENOSYS))
			return 0;
		error("cannot set the times of %s: %s", dst, strerror(-rc));
		return rc;
	}
	return 0;
}

static int copy_file(struct copy *c, const char *src, const char *dst, const struct stat *st)
{
	int in, out, rc = 0;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = -errno;
		error("cannot open %s: %s", src, strerror(-rc));
		return rc;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			error("%s: two sources give this path", dst);
		else
			error("cannot create %s: %s", dst, strerror(-rc));
		close(in);
		return rc;
	}
	for (;;) {
		ssize_t r = read(in, c->buf, COPY_BUF);

		if (interrupted) {
			rc = -EINTR;
			break;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			error("cannot read %s: %s", src, strerror(-rc));
			break;
		}
		if (r == 0)
			break;
		if ((rc = write_all(out, c->buf, (size_t)r))) {
			error("cannot write %s: %s", dst, strerror(-rc));
			break;
		}
		c->done += (uint64_t)r;
		progress_show(&c->pg, c->done, c->total);
	}
	close(in);
	/* the file enters the version at close: its errors count */
	if (close(out) && !rc) {
		rc = -errno;
		error("cannot write %s: %s", dst, strerror(-rc));
	}
	if (rc)
		return rc;
	return copy_attrs(dst, st, false);
}

static int copy_entry(struct copy *c, const char *src, const char *dst, const struct stat *st);

/* Copy the entries of directory @src into the existing directory @dst. */
static int copy_dir(struct copy *c, const char *src, const char *dst)
{
	struct dirent **names;
	int n = scandir(src, &names, NULL, alphasort), rc = 0;

	if (n < 0) {
		rc = -errno;
		error("cannot read %s: %s", src, strerror(-rc));
		return rc;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		struct stat st;
		char *s, *d;

		if (rc || !strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		s = xfmt("%s/%s", src, name);
		d = xfmt("%s/%s", dst, name);
		if (lstat(s, &st)) {
			rc = -errno;
			error("cannot stat %s: %s", s, strerror(-rc));
		} else {
			rc = copy_entry(c, s, d, &st);
		}
		free(s);
		free(d);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int copy_entry(struct copy *c, const char *src, const char *dst, const struct stat *st)
{
	char target[PATH_MAX];
	ssize_t len;
	int rc;

	if (interrupted)
		return -EINTR;
	if (S_ISREG(st->st_mode))
		return copy_file(c, src, dst, st);
	if (S_ISDIR(st->st_mode)) {
		if (mkdir(dst, 0700)) {
			rc = -errno;
			if (rc == -EEXIST)
				error("%s: two sources give this path", dst);
			else
				error("cannot mkdir %s: %s", dst, strerror(-rc));
			return rc;
		}
		if ((rc = copy_dir(c, src, dst)))
			return rc;
		return copy_attrs(dst, st, false);
	}
	if (S_ISLNK(st->st_mode)) {
		len = readlink(src, target, sizeof(target) - 1);
		if (len < 0) {
			rc = -errno;
			error("cannot read link %s: %s", src, strerror(-rc));
			return rc;
		}
		target[len] = '\0';
		if (symlink(target, dst)) {
			rc = -errno;
			error("cannot make symlink %s: %s", dst, strerror(-rc));
			return rc;
		}
		return copy_attrs(dst, st, true);
	}
	warning("%s is not a file, directory or symlink: left out", src);
	return 0;
}

/* Remove @path and everything under it, as well as we can. */
static void rm_tree(const char *path, bool top)
{
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (lstat(path, &st))
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	if (!top && (st.st_mode & 0700) != 0700)
		chmod(path, (st.st_mode & 07777) | 0700);
	d = opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			char *child;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			child = xfmt("%s/%s", path, de->d_name);
			rm_tree(child, false);
			free(child);
		}
		closedir(d);
	}
	rmdir(path);
}

/* Run git -C @dir @args...; its stdout (new, NUL-terminated) in *@out.
 * Returns git's exit status, 127 when git cannot run, or -errno. */
static int run_git(const char *dir, char **out, const char *const *args)
{
	const char *argv[16];
	int fds[2], status, rc, n = 0;
	size_t len = 0, cap = 4096;
	char *buf;
	pid_t pid;

	argv[n++] = "git";
	argv[n++] = "-C";
	argv[n++] = dir;
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	if (pipe2(fds, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(fds[0]);
		close(fds[1]);
		return rc;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDERR_FILENO);
		}
		dup2(fds[1], STDOUT_FILENO);
		setenv("GIT_TERMINAL_PROMPT", "0", 1);
		setenv("LC_ALL", "C", 1);
		execvp("git", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	buf = xrealloc(NULL, cap);
	for (;;) {
		ssize_t r;

		if (cap - len < 2)
			buf = xrealloc(buf, cap *= 2);
		r = read(fds[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fds[0]);
	buf[len] = '\0';
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			free(buf);
			return -errno;
		}
	}
	*out = buf;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* run_git for one line of output (trailing newline removed). */
static int git_line(const char *dir, char **out, const char *const *args)
{
	int rc = run_git(dir, out, args);
	size_t len;

	if (rc < 0)
		return rc;
	len = strlen(*out);
	while (len && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
		(*out)[--len] = '\0';
	if (rc || !len) {
		free(*out);
		*out = NULL;
		return rc ? rc : 1;
	}
	return 0;
}

/* A remote URL without the user information (credentials) it may carry. */
static char *strip_userinfo(const char *url)
{
	const char *scheme = strstr(url, "://"), *host, *at, *slash;

	if (!scheme)
		return xstrdup(url);
	host = scheme + 3;
	slash = strchr(host, '/');
	at = strchr(host, '@');
	if (!at || (slash && at > slash))
		return xstrdup(url);
	return xfmt("%.*s%s", (int)(host - url), url, at + 1);
}

/*
 * lineage.code of the git work tree @dir: {repo, commit, branch, dirty,
 * patch}. repo is the origin remote's URL, else the work tree's absolute
 * path; branch is left out on a detached HEAD; dirty says whether `git
 * diff HEAD` shows changes to tracked files, and patch holds that diff.
 */
static int git_lineage(const char *dir, struct mrfs_doc **out)
{
	static const char *const a_top[] = {"rev-parse", "--show-toplevel", NULL};
	static const char *const a_head[] = {"rev-parse", "--verify", "-q", "HEAD", NULL};
	static const char *const a_branch[] = {"symbolic-ref", "-q", "--short", "HEAD", NULL};
	static const char *const a_url[] = {"remote", "get-url", "origin", NULL};
	static const char *const a_diff[] = {"diff", "HEAD", "--no-color", "--no-ext-diff", NULL};
	char *top = NULL, *commit = NULL, *branch = NULL, *url = NULL, *patch = NULL, *repo;
	struct mrfs_doc *code;
	int rc;

	rc = git_line(dir, &top, a_top);
	if (rc == 127 || rc < 0) {
		error("--git: cannot run git");
		return -ENOENT;
	}
	if (rc) {
		error("--git: %s is not in a git work tree", dir);
		return -EINVAL;
	}
	if (git_line(dir, &commit, a_head)) {
		error("--git: %s has no commit yet", top);
		free(top);
		return -EINVAL;
	}
	git_line(dir, &branch, a_branch);
	git_line(dir, &url, a_url);
	rc = run_git(dir, &patch, a_diff);
	if (rc) {
		error("--git: git diff HEAD failed in %s", top);
		free(patch);
		rc = -EIO;
		goto out;
	}
	code = mrfs_doc_new();
	if (!code)
		oom();
	repo = url ? strip_userinfo(url) : xstrdup(top);
	mrfs_doc_str(code, "repo", repo);
	free(repo);
	mrfs_doc_str(code, "commit", commit);
	if (branch)
		mrfs_doc_str(code, "branch", branch);
	mrfs_doc_bool(code, "dirty", *patch != '\0');
	if (*patch) {
		if (strlen(patch) > PATCH_MAX)
			warning("--git: the uncommitted changes are over %u bytes: patch left out",
				PATCH_MAX);
		else
			mrfs_doc_str(code, "patch", patch);
		if (strlen(patch) <= PATCH_MAX && !mrfs_doc_get(code, "patch"))
			warning("--git: the uncommitted changes are not UTF-8: patch left out");
	}
	free(patch);
	*out = code;
	rc = 0;
out:
	free(top);
	free(commit);
	free(branch);
	free(url);
	return rc;
}

/* The number the next version of @model gets: the model record's
 * next_version, else one above the highest version it lists. */
static int next_version(const char *mnt, const char *model, uint32_t *n)
{
	struct mrfs_doc *rec, *vs, *nv;
	int64_t max = 0;
	int rc = model_record(mnt, model, &rec);

	if (rc)
		return rc;
	nv = mrfs_doc_get(rec, "next_version");
	if (is_number(nv) && mrfs_doc_number(nv) >= 1) {
		*n = (uint32_t)mrfs_doc_number(nv);
	} else {
		vs = mrfs_doc_get(rec, "versions");
		for (size_t i = 0; i < mrfs_doc_len(vs); i++) {
			struct mrfs_doc *v = mrfs_doc_at(vs, i);
			int64_t k =
			    is_number(v) ? (int64_t)mrfs_doc_number(v) : dint(v, "version", 0);
			if (k > max)
				max = k;
		}
		*n = (uint32_t)max + 1;
	}
	mrfs_doc_free(rec);
	return 0;
}

/* Members set by --meta FILE: each top-level member but managed ones. */
static int meta_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	if (is_managed(key)) {
		warning("--meta: '%s' is managed by mrfs: left out", key);
		return 0;
	}
	return mrfs_doc_set(ctx, key, value) ? -ENOMEM : 0;
}

/* Write @doc to the record @path as a user would: open, write, close; the
 * daemon checks the document at close. */
static int write_record(const char *path, const char *what, struct mrfs_doc *doc)
{
	size_t len;
	char *text = mrfs_doc_dump(doc, 1, &len);
	int fd, rc;

	if (!text)
		oom();
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		error("cannot open %s for writing: %s", what, strerror(-rc));
		free(text);
		return rc;
	}
	rc = write_all(fd, text, len);
	if (close(fd) && !rc)
		rc = -errno;
	free(text);
	if (rc == -EINVAL)
		error("%s was refused (EINVAL): the document is not an object, "
		      "or it changes a member mrfs manages",
		      what);
	else if (rc)
		error("cannot write %s: %s", what, strerror(-rc));
	return rc;
}

/* The model's sidecar of version @n, with the user metadata applied. */
static int apply_metadata(const char *mnt, const char *model, uint32_t n, struct mrfs_doc *meta,
			  struct mrfs_doc *code, const struct strs *sets)
{
	char *path = xfmt("%s/models/%s/versions/%" PRIu32 ".json", mnt, model, n);
	char *what = xfmt("the record of %s:v%" PRIu32, model, n);
	struct mrfs_doc *rec;
	int rc = read_record(path, what, &rec);

	if (rc)
		goto out;
	if (meta && (rc = mrfs_doc_each(meta, meta_cb, rec)))
		oom();
	if (code) {
		struct mrfs_doc *lineage = mrfs_doc_get(rec, "lineage");

		if (!lineage || mrfs_doc_type(lineage) != MRFS_JSON_OBJECT)
			lineage = mrfs_doc_obj(rec, "lineage");
		if (!lineage || mrfs_doc_set(lineage, "code", code))
			oom();
	}
	for (size_t i = 0; i < sets->n; i++) {
		char *key = xstrdup(sets->v[i]), *eq = strchr(key, '=');

		*eq = '\0';
		rc = mrfs_doc_set_path(rec, key, eq + 1);
		free(key);
		if (rc) {
			/* mrfs_doc_set_path says -EINVAL for text that is not UTF-8 too */
			error("-m %s: not a KEY=VALUE with a dotted KEY and UTF-8 text",
			      sets->v[i]);
			goto out_free;
		}
	}
	rc = write_record(path, what, rec);
out_free:
	mrfs_doc_free(rec);
out:
	free(what);
	free(path);
	return rc;
}

/* Check a -m KEY=VALUE: a usage error (2) or 0. */
static int check_set(const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t top = strcspn(kv, ".=");
	char *first;
	bool managed;

	if (!eq || eq == kv)
		return usage("-m wants KEY=VALUE, not '%s'", kv);
	for (const char *p = kv; p < eq; p++)
		if (*p == '.' && (p == kv || p[1] == '.' || p + 1 == eq))
			return usage("-m %s: empty part in the key", kv);
	first = strndup(kv, top);
	if (!first)
		oom();
	managed = is_managed(first);
	if (managed)
		usage("-m %s: '%s' is managed by mrfs", kv, first);
	free(first);
	return managed ? 2 : 0;
}

static const struct opt log_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {"meta", 0, true, O_FIRST_OWN},
    {"git", 0, true, O_FIRST_OWN + 1},
    {"alias", 0, true, O_FIRST_OWN + 2},
    {"no-seal", 0, false, O_FIRST_OWN + 3},
    {"metadata", 'm', true, O_FIRST_OWN + 4},
    {0},
};

static int cmd_log(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *model = NULL, *mount_opt = NULL, *meta_file = NULL, *git_dir = NULL;
	const char *alias = NULL;
	struct mrfs_doc *meta = NULL, *code = NULL;
	struct strs sets = {0}, srcs = {0};
	struct stat *sst = NULL;
	struct sigaction sa, old_int, old_term;
	struct copy c = {0};
	uint64_t nfiles = 0;
	char *mnt = NULL, *mdir = NULL, *vdir = NULL, label[160];
	bool noseal = false, made = false, new_model = false, handlers = false;
	uint32_t n = 0;
	int id, rc = 2, tries;

	while ((id = next_opt(&p, log_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			goto out;
		case OPT_HELP:
			mrfs_cli_help("log", stdout);
			rc = 0;
			goto out;
		case OPT_ARG:
			if (!model)
				model = p.val;
			else
				strs_push(&srcs, xstrdup(p.val));
			break;
		case O_MOUNT:
			mount_opt = p.val;
			break;
		case O_FIRST_OWN:
			meta_file = p.val;
			break;
		case O_FIRST_OWN + 1:
			git_dir = p.val;
			break;
		case O_FIRST_OWN + 2:
			alias = p.val;
			break;
		case O_FIRST_OWN + 3:
			noseal = true;
			break;
		case O_FIRST_OWN + 4:
			if (check_set(p.val))
				goto out;
			strs_push(&sets, xstrdup(p.val));
			break;
		}
	}
	if (!model) {
		usage("missing MODEL and DIR|FILE...");
		goto out;
	}
	if (!srcs.n) {
		usage("nothing to log: give a directory or files after %s", model);
		goto out;
	}
	if (!mrfs_name_valid(model)) {
		usage("'%s' is not a valid model name ([A-Za-z0-9._-], 1 to 64, "
		      "not starting with '.' or '-', not ending in .json)",
		      model);
		goto out;
	}
	if (alias && !alias_name_ok(alias)) {
		usage("'%s' is not a valid alias name", alias);
		goto out;
	}
	rc = 1;

	/* everything that can fail before the draft exists */
	if (!(mnt = find_mount(mount_opt)))
		goto out;
	if (meta_file) {
		if (read_record(meta_file, meta_file, &meta))
			goto out;
	}
	if (git_dir && git_lineage(git_dir, &code))
		goto out;
	sst = xcalloc(srcs.n, sizeof(*sst));
	for (size_t i = 0; i < srcs.n; i++) {
		if (stat(srcs.v[i], &sst[i])) {
			error("cannot log %s: %s", srcs.v[i], strerror(errno));
			goto out;
		}
		if (!S_ISREG(sst[i].st_mode) && !S_ISDIR(sst[i].st_mode)) {
			error("cannot log %s: not a file or directory", srcs.v[i]);
			goto out;
		}
		if (scan(srcs.v[i], &sst[i], &c.total, &nfiles))
			goto out;
	}

	mdir = xfmt("%s/models/%s", mnt, model);
	if (!mkdir(mdir, 0777)) {
		new_model = true;
	} else if (errno != EEXIST) {
		error("cannot register model %s: %s", model, strerror(errno));
		goto out;
	}
	if (model_exists(mnt, model) || next_version(mnt, model, &n))
		goto out;
	for (tries = 0;; tries++) {
		uint32_t again;

		free(vdir);
		vdir = xfmt("%s/versions/%" PRIu32, mdir, n);
		if (!mkdir(vdir, 0777))
			break;
		/* taken meanwhile, or below a number the model had once */
		if ((errno != EEXIST && errno != EINVAL) || tries >= 1000) {
			error("cannot create %s:v%" PRIu32 ": %s", model, n, strerror(errno));
			goto out;
		}
		if (next_version(mnt, model, &again))
			goto out;
		n = again > n ? again : n + 1;
	}
	made = true;

	/* until it is sealed, an interrupted log removes the draft */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	handlers = true;

	/* the files */
	c.buf = xrealloc(NULL, COPY_BUF);
	snprintf(label, sizeof(label), "%s:v%" PRIu32, model, n);
	progress_start(&c.pg, label);
	for (size_t i = 0; i < srcs.n; i++) {
		if (S_ISDIR(sst[i].st_mode)) {
			rc = copy_dir(&c, srcs.v[i], vdir);
		} else {
			char *base = strrchr(srcs.v[i], '/'), *dst;

			base = base ? base + 1 : srcs.v[i];
			dst = xfmt("%s/%s", vdir, base);
			rc = copy_file(&c, srcs.v[i], dst, &sst[i]);
			free(dst);
		}
		if (rc)
			break;
	}
	progress_end(&c.pg);
	if (rc == -EINTR || interrupted)
		goto out_interrupted;
	if (rc) {
		rc = 1;
		goto out;
	}
	rc = 1;
	if (c.done != c.total)
		warning("copied %" PRIu64 " bytes, expected %" PRIu64
			" (were the sources changing?)",
			c.done, c.total);

	/* the metadata */
	if ((meta || code || sets.n) && apply_metadata(mnt, model, n, meta, code, &sets))
		goto out;

	/* seal, promote */
	if (interrupted)
		goto out_interrupted;
	if (!noseal) {
		struct stat vst;

		if (stat(vdir, &vst) || chmod(vdir, vst.st_mode & 07555)) {
			error("cannot seal %s:v%" PRIu32 ": %s", model, n, strerror(errno));
			goto out;
		}
	}
	made = false; /* from here on the version stays */
	/* the version is logged even if the alias is refused: say which */
	printf("%s:v%" PRIu32 "\n", model, n);
	rc = alias && set_alias(mnt, model, alias, n) ? 1 : 0;
	goto out;
out_interrupted:
	error("interrupted: %s:v%" PRIu32 " removed", model, n);
	rc = 130;
out:
	/* a failed log leaves nothing behind (the number stays used) */
	if (made && vdir)
		rm_tree(vdir, true);
	if (rc && new_model)
		rmdir(mdir);
	if (handlers) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
	}
	free(c.buf);
	free(sst);
	free(vdir);
	free(mdir);
	free(mnt);
	mrfs_doc_free(meta);
	mrfs_doc_free(code);
	strs_release(&sets);
	strs_release(&srcs);
	return rc;
}

/* ---- promote ------------------------------------------------------------------- */

static const struct opt mount_only_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {0},
};

static int cmd_promote(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *args[3] = {NULL, NULL, NULL}, *mount_opt = NULL, *alias;
	uint32_t n, old = 0;
	char *mnt = NULL, *vpath = NULL;
	struct stat st;
	int id, nargs = 0, rc, had;

	while ((id = next_opt(&p, mount_only_opts)) != OPT_END) {
		if (id == OPT_BAD)
			return 2;
		if (id == OPT_HELP)
			return mrfs_cli_help("promote", stdout), 0;
		if (id == O_MOUNT)
			mount_opt = p.val;
		else if (nargs == 3)
			return usage("unexpected argument '%s'", p.val);
		else
			args[nargs++] = p.val;
	}
	if (nargs < 2)
		return usage("usage: mrfs promote MODEL VERSION [ALIAS]");
	alias = args[2] ? args[2] : "production";
	if (!mrfs_name_valid(args[0]))
		return usage("'%s' is not a model name", args[0]);
	if (!parse_vnum(args[1], &n))
		return usage("'%s' is not a version (3 or v3)", args[1]);
	if (!alias_name_ok(alias))
		return usage("'%s' cannot be an alias (a name of [A-Za-z0-9._-], "
			     "not versions, latest or history)",
			     alias);
	if (!(mnt = find_mount(mount_opt)))
		return 1;
	rc = model_exists(mnt, args[0]);
	if (!rc) {
		vpath = xfmt("%s/models/%s/versions/%" PRIu32, mnt, args[0], n);
		if (stat(vpath, &st)) {
			rc = -errno;
			if (rc == -ENOENT)
				error("%s has no version %" PRIu32, args[0], n);
			else
				error("cannot look up %s:v%" PRIu32 ": %s", args[0], n,
				      strerror(-rc));
		}
	}
	if (!rc) {
		had = read_alias(mnt, args[0], alias, &old);
		if (had && had != -ENOENT)
			rc = had;
		else if (!had && old == n)
			printf("%s:%s -> v%" PRIu32 " (already)\n", args[0], alias, n);
		else if (!(rc = set_alias(mnt, args[0], alias, n)) && !had)
			printf("%s:%s -> v%" PRIu32 " (was v%" PRIu32 ")\n", args[0], alias, n,
			       old);
		else if (!rc)
			printf("%s:%s -> v%" PRIu32 "\n", args[0], alias, n);
	}
	free(vpath);
	free(mnt);
	return rc ? 1 : 0;
}

/* ---- reading events ---------------------------------------------------------- */

/* Call @fn for each event of the history file @path, parsed; @fn returns
 * 0 to go on. Lines that do not parse are skipped with one warning. */
typedef int (*event_fn)(void *ctx, const char *line, struct mrfs_doc *ev);

static int each_event(const char *path, event_fn fn, void *ctx)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	bool warned = false;
	int rc = 0;

	if (!f)
		return -errno;
	while (!rc && (len = getline(&line, &cap, f)) > 0) {
		struct mrfs_doc *ev;

		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (!len)
			continue;
		ev = mrfs_doc_parse(line, (size_t)len, json_err, sizeof(json_err));
		if (!ev || mrfs_doc_type(ev) != MRFS_JSON_OBJECT) {
			if (!warned)
				warning("%s: skipping a line that is not a JSON object", path);
			warned = true;
			mrfs_doc_free(ev);
			continue;
		}
		rc = fn(ctx, line, ev);
		mrfs_doc_free(ev);
	}
	if (!rc && ferror(f))
		rc = -EIO;
	free(line);
	fclose(f);
	return rc;
}

/* ---- ls ----------------------------------------------------------------------- */

enum wop { W_GT, W_GE, W_LT, W_LE, W_EQ, W_NE };

/* A --where filter: PATH OP VALUE. */
struct where {
	char *path;
	enum wop op;
	char *value;
	bool numeric;
	double num;
};

static char *trimmed(const char *s, size_t len)
{
	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return strndup(s, len);
}

static int parse_where(const char *expr, struct where *w)
{
	static const struct {
		const char *s;
		enum wop op;
	} ops[] = {
	    {">=", W_GE}, {"<=", W_LE}, {"==", W_EQ}, {"!=", W_NE},
	    {">", W_GT},  {"<", W_LT},	{"=", W_EQ},
	};
	size_t pos = strcspn(expr, "<>=!"), oplen = 0;
	const char *rest;
	char *end;

	memset(w, 0, sizeof(*w));
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!strncmp(expr + pos, ops[i].s, strlen(ops[i].s))) {
			w->op = ops[i].op;
			oplen = strlen(ops[i].s);
			break;
		}
	}
	if (!expr[pos] || !oplen)
		return usage("--where wants PATH OP VALUE with OP one of > >= < <= == !=, not '%s'",
			     expr);
	w->path = trimmed(expr, pos);
	rest = expr + pos + oplen;
	w->value = trimmed(rest, strlen(rest));
	if (!w->path || !w->value)
		oom();
	if (!*w->path || w->path[0] == '.' || w->path[strlen(w->path) - 1] == '.' ||
	    strstr(w->path, "..")) {
		usage("--where: '%s' is not a dotted path such as metrics.acc", w->path);
		goto bad;
	}
	if (!*w->value) {
		usage("--where: no value after the operator in '%s'", expr);
		goto bad;
	}
	if ((w->value[0] == '"' || w->value[0] == '\'') && strlen(w->value) >= 2 &&
	    w->value[strlen(w->value) - 1] == w->value[0]) {
		memmove(w->value, w->value + 1, strlen(w->value) - 2);
		w->value[strlen(w->value) - 2] = '\0';
	} else {
		errno = 0;
		w->num = strtod(w->value, &end);
		w->numeric = !*end && !errno && isfinite(w->num);
	}
	if (!w->numeric && w->op != W_EQ && w->op != W_NE) {
		usage("--where: %s compares numbers; '%s' is not one", expr, w->value);
		goto bad;
	}
	return 0;
bad:
	free(w->path);
	free(w->value);
	return 2;
}

static void where_release(struct where *w)
{
	free(w->path);
	free(w->value);
}

static bool where_match(const struct where *w, struct mrfs_doc *rec)
{
	struct mrfs_doc *v = mrfs_doc_path(rec, w->path);
	const char *s;
	double x;
	int cmp;

	if (!v)
		return false;
	if (w->numeric) {
		if (!is_number(v))
			return false;
		x = mrfs_doc_number(v);
		switch (w->op) {
		case W_GT:
			return x > w->num;
		case W_GE:
			return x >= w->num;
		case W_LT:
			return x < w->num;
		case W_LE:
			return x <= w->num;
		case W_EQ:
			return x == w->num;
		case W_NE:
			return x != w->num;
		}
		return false;
	}
	switch (mrfs_doc_type(v)) {
	case MRFS_JSON_STRING:
		s = mrfs_doc_string(v);
		break;
	case MRFS_JSON_BOOL:
		s = mrfs_doc_truth(v) ? "true" : "false";
		break;
	case MRFS_JSON_NULL:
		s = "null";
		break;
	default:
		return false;
	}
	cmp = strcmp(s, w->value);
	return w->op == W_EQ ? cmp == 0 : cmp != 0;
}

/* The models of the mount, sorted. */
static int model_names(const char *mnt, struct strs *out)
{
	char *dir = xfmt("%s/models", mnt);
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort), rc = 0;

	if (n < 0) {
		rc = -errno;
		error("cannot list %s: %s", dir, strerror(-rc));
		free(dir);
		return rc;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		unsigned char t = names[i]->d_type;

		if (name[0] != '.' && (t == DT_DIR || t == DT_UNKNOWN)) {
			char *p = xfmt("%s/%s", dir, name);
			struct stat st;

			if (!stat(p, &st) && S_ISDIR(st.st_mode))
				strs_push(out, xstrdup(name));
			free(p);
		}
		free(names[i]);
	}
	free(names);
	free(dir);
	return 0;
}

/* The alias names in a version record's "aliases" (strings or {name}). */
static char *aliases_str(struct mrfs_doc *rec, bool latest)
{
	struct mrfs_doc *a = mrfs_doc_get(rec, "aliases");
	char *out = xstrdup(""), *next;

	for (size_t i = 0; i < mrfs_doc_len(a); i++) {
		struct mrfs_doc *item = mrfs_doc_at(a, i);
		const char *name = mrfs_doc_string(item);

		if (!name)
			name = dstr(item, "name");
		if (!name)
			continue;
		next = xfmt("%s%s%s", out, *out ? "," : "", name);
		free(out);
		out = next;
	}
	if (latest) {
		next = xfmt("%s%slatest", out, *out ? "," : "");
		free(out);
		out = next;
	}
	return out;
}

/* Size of a version: "size", else the sum of its files' sizes. */
static uint64_t record_size(struct mrfs_doc *rec)
{
	struct mrfs_doc *files = mrfs_doc_get(rec, "files");
	int64_t size = dint(rec, "size", -1);

	if (size >= 0)
		return (uint64_t)size;
	size = 0;
	for (size_t i = 0; i < mrfs_doc_len(files); i++)
		size += dint(mrfs_doc_at(files, i), "size", 0);
	return (uint64_t)size;
}

/* Print records as one JSON array. */
static void print_json_array(struct mrfs_doc **docs, size_t n)
{
	fputs("[", stdout);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		char *text = mrfs_doc_dump(docs[i], 1, &len);

		if (!text)
			oom();
		if (len && text[len - 1] == '\n')
			text[len - 1] = '\0';
		printf("%s\n%s", i ? "," : "", text);
		free(text);
	}
	fputs(n ? "\n]\n" : "]\n", stdout);
}

/* One row of a versions listing. */
struct vrow {
	const char *model; /* borrowed from the names list */
	uint32_t n;
	bool latest;
	struct mrfs_doc *rec;
};

struct vrows {
	struct vrow *v;
	size_t n, cap;
};

/* Add the versions of @model that pass @w (may be NULL) to @rows. */
static int collect_versions(const char *mnt, const char *model, const struct where *w,
			    struct vrows *rows)
{
	struct mrfs_doc *mrec, *vs;
	int64_t latest;
	int rc = model_record(mnt, model, &mrec);

	if (rc)
		return rc;
	latest = dint(mrec, "latest", 0);
	vs = mrfs_doc_get(mrec, "versions");
	for (size_t i = 0; i < mrfs_doc_len(vs); i++) {
		struct mrfs_doc *item = mrfs_doc_at(vs, i), *rec;
		int64_t n =
		    is_number(item) ? (int64_t)mrfs_doc_number(item) : dint(item, "version", 0);

		if (n <= 0)
			continue;
		rc = version_record(mnt, model, (uint32_t)n, &rec);
		if (rc == -ENOENT) /* deleted meanwhile */
			continue;
		if (rc)
			break;
		if (w && !where_match(w, rec)) {
			mrfs_doc_free(rec);
			continue;
		}
		if (rows->n == rows->cap) {
			rows->cap = rows->cap ? 2 * rows->cap : 16;
			rows->v = xrealloc(rows->v, rows->cap * sizeof(*rows->v));
		}
		rows->v[rows->n++] = (struct vrow){model, (uint32_t)n, n == latest, rec};
	}
	mrfs_doc_free(mrec);
	return rc;
}

/* The metric to show beside versions: the numeric member of "metrics" that
 * most versions have; on a tie, the first of the newest. New, or NULL. */
static char *pick_metric(struct vrows *rows)
{
	struct strs keys = {0};
	size_t *count = NULL, best = 0;
	char *key = NULL;

	for (size_t i = rows->n; i-- > 0;) {
		struct leaves l;

		leaves_of(mrfs_doc_get(rows->v[i].rec, "metrics"), false, &l);
		for (size_t k = 0; k < l.keys.n; k++) {
			size_t j = 0;

			if (!is_number(l.vals[k]))
				continue;
			while (j < keys.n && strcmp(keys.v[j], l.keys.v[k]))
				j++;
			if (j == keys.n) {
				strs_push(&keys, xstrdup(l.keys.v[k]));
				count = xrealloc(count, keys.cap * sizeof(*count));
				count[j] = 0;
			}
			count[j]++;
		}
		leaves_release(&l);
	}
	for (size_t j = 0; j < keys.n; j++) {
		if (count[j] > best) {
			best = count[j];
			free(key);
			key = xfmt("metrics.%s", keys.v[j]);
		}
	}
	free(count);
	strs_release(&keys);
	return key;
}

static void print_versions(struct vrows *rows, bool many, const char *metric)
{
	struct table t;
	char when[64];

	/* SIZE, FILES and the metric align right */
	table_init(&t, metric ? 7 : 6, 1u << 2 | 1u << 3 | (metric ? 1u << 6 : 0));
	tcell(&t, "VERSION");
	tcell(&t, "STATE");
	tcell(&t, "SIZE");
	tcell(&t, "FILES");
	tcell(&t, "CREATED");
	tcell(&t, "ALIASES");
	if (metric)
		tcell(&t, metric);
	for (size_t i = 0; i < rows->n; i++) {
		struct vrow *r = &rows->v[i];
		int64_t ns;

		if (many)
			tcell_take(&t, xfmt("%s:v%" PRIu32, r->model, r->n));
		else
			tcell_take(&t, xfmt("v%" PRIu32, r->n));
		tcell(&t, dstr(r->rec, "state"));
		tcell_take(&t, size_str(record_size(r->rec)));
		tcell_take(&t, xfmt("%zu", mrfs_doc_len(mrfs_doc_get(r->rec, "files"))));
		if (dtime(r->rec, "created", &ns)) {
			fmt_ago(ns, when, sizeof(when));
			tcell(&t, when);
		} else {
			tcell(&t, NULL);
		}
		tcell_take(&t, aliases_str(r->rec, r->latest));
		if (metric) {
			struct mrfs_doc *v = mrfs_doc_path(r->rec, metric);
			tcell_take(&t, v ? cell_str(v) : xstrdup(""));
		}
	}
	table_print(&t, "");
	table_release(&t);
}

static int alias_cell_cb(void *ctx, const char *key, struct mrfs_doc *value)
{
	char **out = ctx, *next;
	char *v = value_str(value);

	next = xfmt("%s%s%s=v%s", *out, **out ? "," : "", key, v);
	free(v);
	free(*out);
	*out = next;
	return 0;
}

static int print_models(const char *mnt, struct strs *names, bool json)
{
	struct mrfs_doc **recs = xcalloc(names->n, sizeof(*recs));
	struct table t;
	size_t n = 0;
	char when[64];
	int rc = 0;

	for (size_t i = 0; i < names->n; i++) {
		rc = model_record(mnt, names->v[i], &recs[n]);
		if (rc == -ENOENT) { /* gone meanwhile */
			rc = 0;
			continue;
		}
		if (rc)
			goto out;
		n++;
	}
	if (json) {
		print_json_array(recs, n);
		goto out;
	}
	table_init(&t, 7, 1u << 1);
	tcell(&t, "MODEL");
	tcell(&t, "VERSIONS");
	tcell(&t, "LATEST");
	tcell(&t, "ALIASES");
	tcell(&t, "OWNER");
	tcell(&t, "CREATED");
	tcell(&t, "DESCRIPTION");
	for (size_t i = 0; i < n; i++) {
		struct mrfs_doc *r = recs[i], *vs = mrfs_doc_get(r, "versions");
		struct mrfs_doc *owner = mrfs_doc_get(r, "owner"), *desc;
		size_t drafts = 0;
		int64_t latest = dint(r, "latest", 0), ns;
		char *al = xstrdup("");

		for (size_t k = 0; k < mrfs_doc_len(vs); k++) {
			const char *st = dstr(mrfs_doc_at(vs, k), "state");
			drafts += st && !strcmp(st, "draft");
		}
		tcell(&t, dstr(r, "name") ? dstr(r, "name") : names->v[i]);
		if (drafts)
			tcell_take(&t, xfmt("%zu (%zu draft%s)", mrfs_doc_len(vs), drafts,
					    drafts == 1 ? "" : "s"));
		else
			tcell_take(&t, xfmt("%zu", mrfs_doc_len(vs)));
		tcell_take(&t, latest > 0 ? xfmt("v%" PRId64, latest) : xstrdup(""));
		if (mrfs_doc_get(r, "aliases") &&
		    mrfs_doc_type(mrfs_doc_get(r, "aliases")) == MRFS_JSON_OBJECT)
			mrfs_doc_each(mrfs_doc_get(r, "aliases"), alias_cell_cb, &al);
		tcell_take(&t, al);
		if (owner && is_number(mrfs_doc_get(owner, "uid")))
			tcell_take(&t, user_name((uint32_t)dint(owner, "uid", 0)));
		else
			tcell(&t, NULL);
		if (dtime(r, "created", &ns)) {
			fmt_ago(ns, when, sizeof(when));
			tcell(&t, when);
		} else {
			tcell(&t, NULL);
		}
		desc = mrfs_doc_get(r, "description");
		tcell_take(&t, desc ? cell_str(desc) : xstrdup(""));
	}
	table_print(&t, "");
	table_release(&t);
out:
	for (size_t i = 0; i < n; i++)
		mrfs_doc_free(recs[i]);
	free(recs);
	return rc;
}

static const struct opt ls_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {"json", 0, false, O_JSON},
    {"where", 'w', true, O_FIRST_OWN},
    {0},
};

static int cmd_ls(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *model = NULL, *mount_opt = NULL, *expr = NULL;
	struct where w = {0};
	struct strs names = {0};
	struct vrows rows = {0};
	bool json = false;
	char *mnt = NULL, *metric = NULL;
	int id, rc = 0;

	while ((id = next_opt(&p, ls_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			return 2;
		case OPT_HELP:
			mrfs_cli_help("ls", stdout);
			return 0;
		case O_MOUNT:
			mount_opt = p.val;
			break;
		case O_JSON:
			json = true;
			break;
		case O_FIRST_OWN:
			expr = p.val;
			break;
		default:
			if (model)
				return usage("unexpected argument '%s'", p.val);
			model = p.val;
		}
	}
	if (model && !mrfs_name_valid(model))
		return usage("'%s' is not a model name", model);
	if (expr && parse_where(expr, &w))
		return 2;
	if (!(mnt = find_mount(mount_opt))) {
		rc = -EIO;
		goto out;
	}
	if (model) {
		if ((rc = model_exists(mnt, model)))
			goto out;
		strs_push(&names, xstrdup(model));
	} else if ((rc = model_names(mnt, &names))) {
		goto out;
	}
	if (!model && !expr) {
		rc = print_models(mnt, &names, json);
		goto out;
	}
	for (size_t i = 0; i < names.n && !rc; i++) {
		rc = collect_versions(mnt, names.v[i], expr ? &w : NULL, &rows);
		if (rc == -ENOENT && !model) /* gone meanwhile */
			rc = 0;
	}
	if (rc)
		goto out;
	if (json) {
		struct mrfs_doc **docs = xcalloc(rows.n, sizeof(*docs));

		for (size_t i = 0; i < rows.n; i++)
			docs[i] = rows.v[i].rec;
		print_json_array(docs, rows.n);
		free(docs);
	} else {
		metric = expr ? xstrdup(w.path) : pick_metric(&rows);
		print_versions(&rows, !model, metric);
	}
out:
	for (size_t i = 0; i < rows.n; i++)
		mrfs_doc_free(rows.v[i].rec);
	free(rows.v);
	free(metric);
	free(mnt);
	strs_release(&names);
	if (expr)
		where_release(&w);
	return rc ? 1 : 0;
}

/* ---- show --------------------------------------------------------------------- */

/* "8aa6dd8a47a9" from "xxh128:8aa6dd8a47a9610ee24701cc3afa503b". */
static char *short_digest(struct mrfs_doc *d)
{
	const char *s = mrfs_doc_string(d), *colon;

	if (!s)
		return xstrdup("");
	colon = strchr(s, ':');
	return xfmt("%.12s", colon ? colon + 1 : s);
}

/* "2026-11-27 05:30:00 by alice (3 min ago)" for a {time, uid, user} stamp. */
static char *stamp_str(struct mrfs_doc *rec, const char *key)
{
	struct mrfs_doc *s = mrfs_doc_get(rec, key);
	char when[64], ago[64];
	const char *user = dstr(s, "user");
	int64_t ns;

	if (!dtime(rec, key, &ns))
		return xstrdup("");
	fmt_time(ns, true, when, sizeof(when));
	fmt_ago(ns, ago, sizeof(ago));
	if (!strcmp(when, ago) || strncmp(ago + strlen(ago) - 3, "ago", 3))
		return xfmt("%s%s%s", when, user ? " by " : "", user ? user : "");
	return xfmt("%s%s%s (%s)", when, user ? " by " : "", user ? user : "", ago);
}

static void show_record(const char *model, uint32_t n, bool latest, struct mrfs_doc *rec)
{
	struct mrfs_doc *files = mrfs_doc_get(rec, "files");
	struct table t;
	struct leaves l;
	char *al, *size = size_str(record_size(rec));

	printf("%s:v%" PRIu32 "\n", model, n);
	table_init(&t, 2, 0);
	tcell(&t, "state");
	tcell(&t, dstr(rec, "state"));
	al = aliases_str(rec, latest);
	tcell(&t, "aliases");
	for (char *c = al; *c; c++)
		if (*c == ',')
			*c = ' ';
	tcell_take(&t, al);
	tcell(&t, "created");
	tcell_take(&t, stamp_str(rec, "created"));
	if (mrfs_doc_get(rec, "sealed") &&
	    mrfs_doc_type(mrfs_doc_get(rec, "sealed")) == MRFS_JSON_OBJECT) {
		tcell(&t, "sealed");
		tcell_take(&t, stamp_str(rec, "sealed"));
	}
	tcell(&t, "size");
	tcell_take(&t, xfmt("%s in %zu file%s", size, mrfs_doc_len(files),
			    mrfs_doc_len(files) == 1 ? "" : "s"));
	free(size);
	if (dstr(rec, "digest")) {
		tcell(&t, "digest");
		tcell(&t, dstr(rec, "digest"));
	}
	table_print(&t, "  ");
	table_release(&t);

	if (mrfs_doc_len(files)) {
		printf("\nfiles\n");
		table_init(&t, 4, 1u << 1);
		tcell(&t, "MODE");
		tcell(&t, "SIZE");
		tcell(&t, "DIGEST");
		tcell(&t, "PATH");
		for (size_t i = 0; i < mrfs_doc_len(files); i++) {
			struct mrfs_doc *f = mrfs_doc_at(files, i);

			tcell_take(&t, value_str(mrfs_doc_get(f, "mode")));
			tcell_take(&t, size_str((uint64_t)dint(f, "size", 0)));
			tcell_take(&t, short_digest(mrfs_doc_get(f, "digest")));
			tcell(&t, dstr(f, "path"));
		}
		table_print(&t, "  ");
		table_release(&t);
	}

	leaves_of(rec, true, &l);
	if (l.keys.n) {
		printf("\nmetadata\n");
		table_init(&t, 2, 0);
		for (size_t i = 0; i < l.keys.n; i++) {
			tcell(&t, l.keys.v[i]);
			tcell_take(&t, cell_str(l.vals[i]));
		}
		table_print(&t, "  ");
		table_release(&t);
	}
	leaves_release(&l);
}

/* Where the aliases of one model stood at a moment, from its events. */
struct replay {
	int64_t at;
	char *name; /* the model's name, followed through renames after @at */
	bool gone;  /* ... it was deleted after @at */
	struct strs aliases;
	uint32_t *targets;
	uint32_t *sealed;
	size_t nsealed;
	bool existed;
};

static int rename_cb(void *ctx, const char *line, struct mrfs_doc *ev)
{
	struct replay *r = ctx;
	const char *event = dstr(ev, "event"), *from = dstr(ev, "from");
	int64_t t;

	(void)line;
	if (r->gone || !event || !dtime(ev, "time", &t) || t <= r->at)
		return 0;
	if (!strcmp(event, "model.rename") && from && !strcmp(from, r->name) && dstr(ev, "to")) {
		free(r->name);
		r->name = xstrdup(dstr(ev, "to"));
	} else if (!strcmp(event, "model.delete") && dstr(ev, "model") &&
		   !strcmp(dstr(ev, "model"), r->name)) {
		r->gone = true;
	}
	return 0;
}

static void replay_set(struct replay *r, const char *alias, int64_t to)
{
	for (size_t i = 0; i < r->aliases.n; i++) {
		if (!strcmp(r->aliases.v[i], alias)) {
			r->targets[i] = (uint32_t)(to > 0 ? to : 0);
			return;
		}
	}
	if (to <= 0)
		return;
	strs_push(&r->aliases, xstrdup(alias));
	r->targets = xrealloc(r->targets, r->aliases.cap * sizeof(*r->targets));
	r->targets[r->aliases.n - 1] = (uint32_t)to;
}

static int replay_cb(void *ctx, const char *line, struct mrfs_doc *ev)
{
	struct replay *r = ctx;
	const char *event = dstr(ev, "event"), *alias = dstr(ev, "alias");
	int64_t t, v = dint(ev, "version", 0);

	(void)line;
	if (!event || !dtime(ev, "time", &t) || t > r->at)
		return 0;
	r->existed = true;
	if (alias && (!strcmp(event, "alias.set") || !strcmp(event, "alias.move")))
		replay_set(r, alias, dint(ev, "to", 0));
	else if (alias && !strcmp(event, "alias.delete"))
		replay_set(r, alias, 0);
	else if (!strcmp(event, "version.seal") && v > 0) {
		r->sealed = xrealloc(r->sealed, (r->nsealed + 1) * sizeof(*r->sealed));
		r->sealed[r->nsealed++] = (uint32_t)v;
	} else if (!strcmp(event, "version.delete") && v > 0) {
		for (size_t i = 0; i < r->nsealed; i++)
			if (r->sealed[i] == (uint32_t)v)
				r->sealed[i] = 0;
	}
	return 0;
}

/*
 * Where alias @alias (or "latest") of the model named @model at @at
 * pointed then, by replaying the history: first /history for renames and
 * deletions after @at (to find that model under its name of today), then
 * its own history up to @at. *@now is the model's name today (new).
 */
static int alias_at(const char *mnt, const char *model, const char *alias, int64_t at, uint32_t *n,
		    char **now)
{
	struct replay r = {.at = at, .name = xstrdup(model)};
	char *path = xfmt("%s/history", mnt), when[64];
	int rc = each_event(path, rename_cb, &r);

	mrfs_time_format(at, when, sizeof(when));
	free(path);
	if (rc) {
		error("cannot read %s/history: %s", mnt, strerror(-rc));
		goto out;
	}
	if (r.gone) {
		error("the model named %s at %s has been deleted since", model, when);
		rc = -ENOENT;
		goto out;
	}
	*now = xstrdup(r.name);
	path = xfmt("%s/models/%s/history", mnt, *now);
	rc = each_event(path, replay_cb, &r);
	free(path);
	if (rc == -ENOENT || (!rc && !r.existed)) {
		error("there was no model %s at %s", model, when);
		rc = -ENOENT;
		goto out;
	}
	if (rc) {
		error("cannot read the history of %s: %s", *now, strerror(-rc));
		goto out;
	}
	*n = 0;
	if (!strcmp(alias, "latest")) {
		for (size_t i = 0; i < r.nsealed; i++)
			if (r.sealed[i] > *n)
				*n = r.sealed[i];
	} else {
		for (size_t i = 0; i < r.aliases.n; i++)
			if (!strcmp(r.aliases.v[i], alias))
				*n = r.targets[i];
	}
	if (!*n) {
		if (!strcmp(alias, "latest"))
			error("%s had no sealed version at %s", model, when);
		else
			error("%s had no alias '%s' at %s", model, alias, when);
		rc = -ENOENT;
	}
out:
	if (rc) {
		free(*now);
		*now = NULL;
	}
	strs_release(&r.aliases);
	free(r.name);
	free(r.targets);
	free(r.sealed);
	return rc;
}

static const struct opt show_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {"json", 0, false, O_JSON},
    {"at", 0, true, O_FIRST_OWN},
    {0},
};

static int cmd_show(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *ref = NULL, *mount_opt = NULL, *at_text = NULL;
	char *model = NULL, *spec = NULL, *mnt = NULL, *now = NULL, *path;
	struct mrfs_doc *rec = NULL;
	bool json = false, latest = false;
	int64_t at = 0;
	uint32_t n, ln;
	int id, rc;

	while ((id = next_opt(&p, show_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			return 2;
		case OPT_HELP:
			mrfs_cli_help("show", stdout);
			return 0;
		case O_MOUNT:
			mount_opt = p.val;
			break;
		case O_JSON:
			json = true;
			break;
		case O_FIRST_OWN:
			at_text = p.val;
			break;
		default:
			if (ref)
				return usage("unexpected argument '%s'", p.val);
			ref = p.val;
		}
	}
	if (!ref)
		return usage("usage: mrfs show MODEL[:vN|:ALIAS|:latest] [--at TIME]");
	if (at_text && mrfs_time_parse(at_text, &at))
		return usage("--at: '%s' is not an RFC 3339 time such as 2026-11-27T05:30:00Z",
			     at_text);
	if (parse_ref(ref, &model, &spec))
		return 2;
	rc = 2;
	if (at_text && spec && parse_vnum(spec, &n)) {
		usage("--at tells where an alias pointed: give MODEL:ALIAS, not a version");
		goto out;
	}
	if (at_text && spec && !alias_name_ok(spec) && strcmp(spec, "latest")) {
		usage("'%s' is not an alias name", spec);
		goto out;
	}
	rc = -EIO;
	if (!(mnt = find_mount(mount_opt)))
		goto out;
	if (at_text) {
		char when[64];

		if ((rc = alias_at(mnt, model, spec ? spec : "latest", at, &n, &now)))
			goto out;
		mrfs_time_format(at, when, sizeof(when));
		path = xfmt("%s/models/%s/versions/%" PRIu32 ".json", mnt, now, n);
		rc = load_json(path, &rec);
		free(path);
		if (rc == -ENOENT) {
			if (json)
				printf("{\"model\": \"%s\", \"alias\": \"%s\", \"at\": \"%s\", "
				       "\"version\": %" PRIu32 ", \"deleted\": true}\n",
				       now, spec ? spec : "latest", when, n);
			else
				printf("%s:%s at %s was v%" PRIu32 " (deleted since)\n", model,
				       spec ? spec : "latest", when, n);
			rc = 0;
			goto out;
		}
		mrfs_doc_free(rec);
		rec = NULL;
		if (!json)
			printf("%s:%s at %s was %s:v%" PRIu32 "\n\n", model, spec ? spec : "latest",
			       when, now, n);
		free(model);
		model = now;
		now = NULL;
	} else if ((rc = resolve(mnt, model, spec, &n))) {
		goto out;
	}
	if ((rc = version_record(mnt, model, n, &rec)))
		goto out;
	latest = !read_alias(mnt, model, "latest", &ln) && ln == n;
	if (json) {
		size_t len;
		char *text = mrfs_doc_dump(rec, 1, &len);

		if (!text)
			oom();
		fputs(text, stdout);
		free(text);
	} else {
		show_record(model, n, latest, rec);
	}
out:
	mrfs_doc_free(rec);
	free(model);
	free(spec);
	free(now);
	free(mnt);
	return rc == 2 ? 2 : rc ? 1 : 0;
}

/* ---- diff ---------------------------------------------------------------------- */

struct dfile {
	const char *path;
	struct mrfs_doc *f;
};

static int cmp_dfile(const void *a, const void *b)
{
	return strcmp(((const struct dfile *)a)->path, ((const struct dfile *)b)->path);
}

static struct dfile *files_of(struct mrfs_doc *rec, size_t *n)
{
	struct mrfs_doc *files = mrfs_doc_get(rec, "files");
	struct dfile *v = xcalloc(mrfs_doc_len(files), sizeof(*v));

	*n = 0;
	for (size_t i = 0; i < mrfs_doc_len(files); i++) {
		struct mrfs_doc *f = mrfs_doc_at(files, i);

		if (dstr(f, "path"))
			v[(*n)++] = (struct dfile){dstr(f, "path"), f};
	}
	if (*n)
		qsort(v, *n, sizeof(*v), cmp_dfile);
	return v;
}

static bool same_file(struct mrfs_doc *a, struct mrfs_doc *b)
{
	return mrfs_doc_equal(mrfs_doc_get(a, "digest"), mrfs_doc_get(b, "digest")) &&
	       mrfs_doc_equal(mrfs_doc_get(a, "size"), mrfs_doc_get(b, "size")) &&
	       mrfs_doc_equal(mrfs_doc_get(a, "mode"), mrfs_doc_get(b, "mode"));
}

static const struct opt diff_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {"json", 0, false, O_JSON},
    {"all", 'a', false, O_FIRST_OWN},
    {0},
};

static int cmd_diff(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *args[3] = {NULL, NULL, NULL}, *mount_opt = NULL;
	struct mrfs_doc *ra = NULL, *rb = NULL, *out = NULL, *jf = NULL, *jm = NULL;
	struct mrfs_doc *jadd = NULL, *jrm = NULL, *jch = NULL;
	struct dfile *fa = NULL, *fb = NULL;
	struct leaves la = {0}, lb = {0};
	struct strs keys = {0};
	struct table ft, mt;
	size_t na = 0, nb = 0, i = 0, k = 0, added = 0, removed = 0, changed = 0, same = 0;
	bool json = false, all = false;
	uint32_t a, b;
	char *mnt = NULL, *va, *vb;
	int id, nargs = 0, rc = 1;

	while ((id = next_opt(&p, diff_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			return 2;
		case OPT_HELP:
			mrfs_cli_help("diff", stdout);
			return 0;
		case O_MOUNT:
			mount_opt = p.val;
			break;
		case O_JSON:
			json = true;
			break;
		case O_FIRST_OWN:
			all = true;
			break;
		default:
			if (nargs == 3)
				return usage("unexpected argument '%s'", p.val);
			args[nargs++] = p.val;
		}
	}
	if (nargs != 3)
		return usage("usage: mrfs diff MODEL A B (versions as 3 or v3, or aliases)");
	if (!mrfs_name_valid(args[0]))
		return usage("'%s' is not a model name", args[0]);
	if (!(mnt = find_mount(mount_opt)) || resolve(mnt, args[0], args[1], &a) ||
	    resolve(mnt, args[0], args[2], &b) || version_record(mnt, args[0], a, &ra) ||
	    version_record(mnt, args[0], b, &rb))
		goto out;

	fa = files_of(ra, &na);
	fb = files_of(rb, &nb);
	table_init(&ft, 3, 0);
	if (json) {
		out = mrfs_doc_new();
		if (!out)
			oom();
		mrfs_doc_str(out, "model", args[0]);
		mrfs_doc_int(out, "a", a);
		mrfs_doc_int(out, "b", b);
		jf = mrfs_doc_obj(out, "files");
		jadd = mrfs_doc_arr(jf, "added");
		jrm = mrfs_doc_arr(jf, "removed");
		jch = mrfs_doc_arr(jf, "changed");
	}
	while (i < na || k < nb) {
		int c = i == na ? 1 : k == nb ? -1 : strcmp(fa[i].path, fb[k].path);

		if (c < 0) {
			removed++;
			mrfs_doc_str(jrm, NULL, fa[i].path);
			tcell(&ft, "-");
			tcell(&ft, fa[i].path);
			tcell_take(&ft, size_str((uint64_t)dint(fa[i].f, "size", 0)));
			i++;
		} else if (c > 0) {
			added++;
			mrfs_doc_str(jadd, NULL, fb[k].path);
			tcell(&ft, "+");
			tcell(&ft, fb[k].path);
			tcell_take(&ft, size_str((uint64_t)dint(fb[k].f, "size", 0)));
			k++;
		} else {
			bool eq = same_file(fa[i].f, fb[k].f);
			char *sa = size_str((uint64_t)dint(fa[i].f, "size", 0));
			char *sb = size_str((uint64_t)dint(fb[k].f, "size", 0));

			if (!eq) {
				changed++;
				mrfs_doc_str(jch, NULL, fa[i].path);
			} else {
				same++;
			}
			if (!eq || all) {
				tcell(&ft, eq ? "=" : "~");
				tcell(&ft, fa[i].path);
				if (eq)
					tcell(&ft, sa);
				else if (!mrfs_doc_equal(mrfs_doc_get(fa[i].f, "mode"),
							 mrfs_doc_get(fb[k].f, "mode")) &&
					 mrfs_doc_equal(mrfs_doc_get(fa[i].f, "digest"),
							mrfs_doc_get(fb[k].f, "digest")))
					tcell_take(&ft, xfmt("mode %s -> %s",
							     dstr(fa[i].f, "mode") ?: "?",
							     dstr(fb[k].f, "mode") ?: "?"));
				else
					tcell_take(&ft, xfmt("%s -> %s", sa, sb));
			}
			free(sa);
			free(sb);
			i++;
			k++;
		}
	}
	if (jf)
		mrfs_doc_int(jf, "unchanged", (int64_t)same);

	/* user metadata, flattened */
	leaves_of(ra, true, &la);
	leaves_of(rb, true, &lb);
	for (size_t j = 0; j < la.keys.n; j++)
		strs_push(&keys, xstrdup(la.keys.v[j]));
	for (size_t j = 0; j < lb.keys.n; j++)
		if (!has_str(&keys, lb.keys.v[j]))
			strs_push(&keys, xstrdup(lb.keys.v[j]));
	if (keys.n)
		qsort(keys.v, keys.n, sizeof(*keys.v), cmp_str);
	table_init(&mt, 4, 0);
	tcell_blank(&mt);
	tcell(&mt, "KEY");
	tcell_take(&mt, xfmt("v%" PRIu32, a));
	tcell_take(&mt, xfmt("v%" PRIu32, b));
	if (json)
		jm = mrfs_doc_obj(out, "metadata");
	for (size_t j = 0; j < keys.n; j++) {
		struct mrfs_doc *x = leaf_get(&la, keys.v[j]), *y = leaf_get(&lb, keys.v[j]);
		bool eq = x && y && mrfs_doc_equal(x, y);

		if (eq && !all)
			continue;
		if (jm) {
			struct mrfs_doc *o = mrfs_doc_obj(jm, keys.v[j]);

			if (!x)
				mrfs_doc_null(o, "a");
			else if (mrfs_doc_set(o, "a", x))
				oom();
			if (!y)
				mrfs_doc_null(o, "b");
			else if (mrfs_doc_set(o, "b", y))
				oom();
		}
		va = x ? cell_str(x) : xstrdup("");
		vb = y ? cell_str(y) : xstrdup("");
		tcell(&mt, eq ? "=" : !x ? "+" : !y ? "-" : "~");
		tcell(&mt, keys.v[j]);
		tcell_take(&mt, va);
		tcell_take(&mt, vb);
	}

	if (json) {
		size_t len;
		char *text = mrfs_doc_dump(out, 1, &len);

		if (!text)
			oom();
		fputs(text, stdout);
		free(text);
	} else {
		printf("%s v%" PRIu32 " -> v%" PRIu32 ": %zu added, %zu removed, %zu changed, "
		       "%zu unchanged\n",
		       args[0], a, b, added, removed, changed, same);
		if (ft.cells.n) {
			printf("\nfiles\n");
			table_print(&ft, "  ");
		}
		if (mt.cells.n > 4) {
			printf("\nmetadata\n");
			table_print(&mt, "  ");
		} else {
			printf("\nmetadata: %s\n", keys.n ? "the same" : "none");
		}
	}
	table_release(&ft);
	table_release(&mt);
	rc = 0;
out:
	leaves_release(&la);
	leaves_release(&lb);
	strs_release(&keys);
	free(fa);
	free(fb);
	mrfs_doc_free(out);
	mrfs_doc_free(ra);
	mrfs_doc_free(rb);
	free(mnt);
	return rc;
}

/* ---- history -------------------------------------------------------------------- */

/* The event's own members for people: "production v3 -> v4". */
static char *event_details(struct mrfs_doc *ev)
{
	static const char *const common[] = {"seq",  "time", "event", "model", "uid",
					     "user", "pid",  "comm",  NULL};
	const char *event = dstr(ev, "event"), *alias = dstr(ev, "alias");
	int64_t v = dint(ev, "version", 0), from = dint(ev, "from", 0), to = dint(ev, "to", 0);
	struct mrfs_doc *keys = mrfs_doc_get(ev, "keys");
	struct leaves l;
	char *out, *next;

	if (!event)
		event = "";
	if (alias && !strcmp(event, "alias.set"))
		return xfmt("%s -> v%" PRId64, alias, to);
	if (alias && !strcmp(event, "alias.move"))
		return xfmt("%s v%" PRId64 " -> v%" PRId64, alias, from, to);
	if (alias && !strcmp(event, "alias.delete"))
		return xfmt("%s (was v%" PRId64 ")", alias, from);
	if (!strcmp(event, "model.rename"))
		return xfmt("%s -> %s", dstr(ev, "from") ?: "?", dstr(ev, "to") ?: "?");
	if (!strcmp(event, "version.seal") && v > 0) {
		char *size = size_str((uint64_t)dint(ev, "size", 0));
		int64_t files = dint(ev, "files", 0);

		out = xfmt("v%" PRId64 " (%s, %" PRId64 " file%s)", v, size, files,
			   files == 1 ? "" : "s");
		free(size);
		return out;
	}
	if (!strcmp(event, "version.create") || !strcmp(event, "version.delete"))
		return v > 0 ? xfmt("v%" PRId64, v) : xstrdup("");
	if (keys) {
		char *list = xstrdup("");

		for (size_t i = 0; i < mrfs_doc_len(keys); i++) {
			char *k = value_str(mrfs_doc_at(keys, i));

			next = xfmt("%s%s%s", list, i ? ", " : "", k);
			free(k);
			free(list);
			list = next;
		}
		out = v > 0 ? xfmt("v%" PRId64 ": %s", v, list) : xfmt("model: %s", list);
		free(list);
		return out;
	}
	/* anything else: its own members as key=value */
	leaves_of(ev, false, &l);
	out = xstrdup("");
	for (size_t i = 0; i < l.keys.n; i++) {
		bool skip = false;
		char *val;

		for (int c = 0; common[c]; c++)
			skip |= !strcmp(common[c], l.keys.v[i]);
		if (skip)
			continue;
		val = cell_str(l.vals[i]);
		next = xfmt("%s%s%s=%s", out, *out ? " " : "", l.keys.v[i], val);
		free(val);
		free(out);
		out = next;
	}
	leaves_release(&l);
	return out;
}

struct hist {
	const char *model; /* only this model's events (reading /history), or NULL */
	const char *alias;
	const char *event;
	int64_t since;
	bool has_since;
	struct strs lines;
	struct table t;
};

static bool event_is(const char *event, const char *want)
{
	size_t n = strlen(want);

	if (!strcmp(event, want))
		return true;
	return !strchr(want, '.') && !strncmp(event, want, n) && event[n] == '.';
}

static int hist_cb(void *ctx, const char *line, struct mrfs_doc *ev)
{
	struct hist *h = ctx;
	const char *event = dstr(ev, "event"), *model = dstr(ev, "model");
	const char *alias = dstr(ev, "alias");
	char when[64];
	int64_t t;

	if (h->model && (!model || strcmp(model, h->model)) &&
	    !(event && !strcmp(event, "model.rename") && dstr(ev, "from") &&
	      !strcmp(dstr(ev, "from"), h->model)))
		return 0;
	if (h->alias && (!alias || strcmp(alias, h->alias)))
		return 0;
	if (h->event && (!event || !event_is(event, h->event)))
		return 0;
	if (!dtime(ev, "time", &t))
		t = 0;
	if (h->has_since && t < h->since)
		return 0;
	strs_push(&h->lines, xstrdup(line));
	tcell_take(&h->t, xfmt("%" PRId64, dint(ev, "seq", 0)));
	if (t) {
		fmt_time(t, true, when, sizeof(when));
		tcell(&h->t, when);
	} else {
		tcell(&h->t, NULL);
	}
	tcell(&h->t, event);
	tcell(&h->t, model);
	tcell_take(&h->t, event_details(ev));
	tcell(&h->t, dstr(ev, "user"));
	tcell(&h->t, dstr(ev, "comm"));
	return 0;
}

static const struct opt history_opts[] = {
    {"mount", 0, true, O_MOUNT},
    {"json", 0, false, O_JSON},
    {"alias", 0, true, O_FIRST_OWN},
    {"since", 0, true, O_FIRST_OWN + 1},
    {"event", 'e', true, O_FIRST_OWN + 2},
    {"last", 'n', true, O_FIRST_OWN + 3},
    {0},
};

static int cmd_history(int argc, char **argv)
{
	struct parser p = {argc, argv, 1, false, NULL};
	const char *mount_opt = NULL, *model = NULL;
	struct hist h = {0};
	bool json = false;
	char *mnt = NULL, *path = NULL, *end;
	unsigned long last = 0;
	size_t skip = 0;
	struct stat st;
	int id, rc = 1;

	while ((id = next_opt(&p, history_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			return 2;
		case OPT_HELP:
			mrfs_cli_help("history", stdout);
			return 0;
		case O_MOUNT:
			mount_opt = p.val;
			break;
		case O_JSON:
			json = true;
			break;
		case O_FIRST_OWN:
			if (!alias_name_ok(p.val))
				return usage("'%s' is not an alias name", p.val);
			h.alias = p.val;
			break;
		case O_FIRST_OWN + 1:
			if (mrfs_time_parse(p.val, &h.since))
				return usage("--since: '%s' is not an RFC 3339 time "
					     "such as 2026-11-27T05:30:00Z",
					     p.val);
			h.has_since = true;
			break;
		case O_FIRST_OWN + 2:
			h.event = p.val;
			break;
		case O_FIRST_OWN + 3:
			errno = 0;
			last = strtoul(p.val, &end, 10);
			if (*end || errno || !*p.val || p.val[0] == '-' || !last)
				return usage("-n wants a number of events, not '%s'", p.val);
			break;
		default:
			if (model)
				return usage("unexpected argument '%s'", p.val);
			model = p.val;
		}
	}
	if (model && !mrfs_name_valid(model))
		return usage("'%s' is not a model name", model);
	if (!(mnt = find_mount(mount_opt)))
		return 1;
	table_init(&h.t, 7, 1u);
	tcell(&h.t, "SEQ");
	tcell(&h.t, "TIME");
	tcell(&h.t, "EVENT");
	tcell(&h.t, "MODEL");
	tcell(&h.t, "DETAILS");
	tcell(&h.t, "USER");
	tcell(&h.t, "COMM");
	if (model) {
		path = xfmt("%s/models/%s", mnt, model);
		if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
			free(path);
			path = xfmt("%s/models/%s/history", mnt, model);
		} else {
			/* no such model today: its events under that name */
			free(path);
			path = xfmt("%s/history", mnt);
			h.model = model;
		}
	} else {
		path = xfmt("%s/history", mnt);
	}
	rc = each_event(path, hist_cb, &h);
	if (rc) {
		error("cannot read %s: %s", path, strerror(-rc));
		goto out;
	}
	if (h.model && !h.lines.n) {
		error("no model '%s', and no events of one", model);
		rc = -ENOENT;
		goto out;
	}
	if (last && h.lines.n > last)
		skip = h.lines.n - last;
	if (json) {
		for (size_t i = skip; i < h.lines.n; i++)
			puts(h.lines.v[i]);
	} else {
		/* drop the rows before the last -n, keeping the header */
		for (size_t i = 0; i < skip * h.t.ncols; i++)
			free(h.t.cells.v[h.t.ncols + i]);
		memmove(h.t.cells.v + h.t.ncols, h.t.cells.v + h.t.ncols + skip * h.t.ncols,
			(h.t.cells.n - h.t.ncols - skip * h.t.ncols) * sizeof(char *));
		h.t.cells.n -= skip * h.t.ncols;
		table_print(&h.t, "");
	}
out:
	table_release(&h.t);
	strs_release(&h.lines);
	free(path);
	free(mnt);
	return rc ? 1 : 0;
}

/* ---- store commands -------------------------------------------------------------- */

static const struct opt store_opts[] = {
    {"store", 0, true, O_STORE},
    {"json", 0, false, O_JSON},
    {0},
};

/* Open the store @dir; with !@create, one must be there already. */
static int open_store(const char *dir, bool create, bool read_only, struct mrfs_store **out)
{
	struct mrfs_store_options o = {.read_only = read_only};
	char *mdb = xfmt("%s/data.mdb", dir);
	struct stat st;
	int rc;

	if (!create && stat(mdb, &st)) {
		rc = -errno;
		if (rc == -ENOENT)
			error("no store at %s (mrfs init makes one; --store DIR names another)",
			      dir);
		else
			error("cannot open store %s: %s", dir, strerror(-rc));
		free(mdb);
		return rc;
	}
	free(mdb);
	rc = mrfs_store_open(dir, &o, out);
	if (rc)
		error("cannot open store %s: %s", dir, strerror(-rc));
	return rc;
}

/* Parse the options of a store command: --store, --json (if @json_ok),
 * and @nargs arguments into @args. Returns -1 to go on, or an exit status. */
static int store_args(int argc, char **argv, const char **dir, char *buf, size_t size, bool *json,
		      const char **args, int nargs, const char *synopsis)
{
	struct parser p = {argc, argv, 1, false, NULL};
	int id, n = 0;

	*dir = NULL;
	while ((id = next_opt(&p, store_opts)) != OPT_END) {
		switch (id) {
		case OPT_BAD:
			return 2;
		case OPT_HELP:
			mrfs_cli_help(cmdname, stdout);
			return 0;
		case O_STORE:
			*dir = p.val;
			break;
		case O_JSON:
			if (!json)
				return usage("unknown option '--json'");
			*json = true;
			break;
		default:
			if (n == nargs)
				return usage("unexpected argument '%s'", p.val);
			args[n++] = p.val;
		}
	}
	if (n < nargs)
		return usage("usage: %s", synopsis);
	if (!*dir)
		*dir = mrfs_cli_default_store(buf, size);
	return -1;
}

static int cmd_init(int argc, char **argv)
{
	struct mrfs_store *store;
	const char *dir;
	char buf[4096];
	int rc = store_args(argc, argv, &dir, buf, sizeof(buf), NULL, NULL, 0,
			    "mrfs init [--store DIR]");

	if (rc >= 0)
		return rc;
	if (open_store(dir, true, false, &store))
		return 1;
	mrfs_store_close(store);
	printf("store ready at %s\n", dir);
	return 0;
}

static int cmd_stats(int argc, char **argv)
{
	struct mrfs_store *store;
	struct mrfs_store_stats st;
	const char *dir;
	char buf[4096], a[32], b[32];
	bool json = false;
	int rc = store_args(argc, argv, &dir, buf, sizeof(buf), &json, NULL, 0,
			    "mrfs stats [--store DIR] [--json]");

	if (rc >= 0)
		return rc;
	if (open_store(dir, false, true, &store))
		return 1;
	rc = mrfs_store_stats(store, &st);
	mrfs_store_close(store);
	if (rc) {
		error("cannot read the store's statistics: %s", strerror(-rc));
		return 1;
	}
	if (json) {
		struct mrfs_doc *d = mrfs_doc_new();
		size_t len;
		char *text;

		if (!d)
			oom();
		mrfs_doc_str(d, "store", dir);
		mrfs_doc_int(d, "logical_bytes", (int64_t)st.logical_bytes);
		mrfs_doc_int(d, "stored_bytes", (int64_t)st.stored_bytes);
		mrfs_doc_int(d, "files", (int64_t)st.files);
		mrfs_doc_int(d, "chunks", (int64_t)st.chunks);
		mrfs_doc_int(d, "dead_chunks", (int64_t)st.dead_chunks);
		mrfs_doc_int(d, "packs", (int64_t)st.packs);
		mrfs_doc_int(d, "pack_bytes", (int64_t)st.pack_bytes);
		text = mrfs_doc_dump(d, 1, &len);
		mrfs_doc_free(d);
		if (!text)
			oom();
		fputs(text, stdout);
		free(text);
		return 0;
	}
	fmt_size(st.logical_bytes, a, sizeof(a));
	printf("store        %s\n", dir);
	printf("logical      %s (%" PRIu64 " bytes in %" PRIu64 " files)\n", a, st.logical_bytes,
	       st.files);
	fmt_size(st.stored_bytes, a, sizeof(a));
	printf("stored       %s (%" PRIu64 " bytes)\n", a, st.stored_bytes);
	printf("dedup ratio  %.2fx\n",
	       st.stored_bytes ? (double)st.logical_bytes / (double)st.stored_bytes : 1.0);
	printf("chunks       %" PRIu64 " (%" PRIu64 " unreferenced)\n", st.chunks, st.dead_chunks);
	fmt_size(st.pack_bytes, b, sizeof(b));
	printf("packs        %" PRIu64 " (%s on disk)\n", st.packs, b);
	return 0;
}

/* ---- verify ---- */

struct use {
	uint64_t file;
	char *model;
	uint32_t version;
	char *path;
};

struct problem {
	uint64_t file;
	char *what;
};

struct vfy {
	struct problem *p;
	size_t np, cap;
	uint64_t *ids; /* the problems' file ids, sorted, unique */
	size_t nids;
	struct use *uses;
	size_t nuses, ucap;
	struct mrfs_txn *txn;
	const struct mrfs_model *m;
	const struct mrfs_version *v;
	struct strs records; /* model:vN whose stored record length is wrong */
};

static void verify_cb(void *ctx, uint64_t file, const char *what)
{
	struct vfy *x = ctx;

	if (x->np == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 16;
		x->p = xrealloc(x->p, x->cap * sizeof(*x->p));
	}
	x->p[x->np++] = (struct problem){file, xstrdup(what)};
}

static void record_bad_cb(void *ctx, const char *model, uint32_t n, uint64_t stored,
			  uint64_t actual)
{
	char *what = xfmt("record of %s:v%" PRIu32 " is %" PRIu64 " bytes, the index says %" PRIu64,
			  model, n, actual, stored);

	struct vfy *x = ctx;

	verify_cb(ctx, 0, what);
	free(what);
	strs_push(&x->records, xfmt("%s:v%" PRIu32, model, n));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int vfy_file_cb(void *ctx, const char *path, const struct mrfs_node *nd)
{
	struct vfy *x = ctx;

	if (!nd->file || !x->nids || !bsearch(&nd->file, x->ids, x->nids, sizeof(*x->ids), cmp_u64))
		return 0;
	if (x->nuses == x->ucap) {
		x->ucap = x->ucap ? 2 * x->ucap : 16;
		x->uses = xrealloc(x->uses, x->ucap * sizeof(*x->uses));
	}
	x->uses[x->nuses++] = (struct use){nd->file, xstrdup(x->m->name), x->v->n, xstrdup(path)};
	return 0;
}

static int vfy_version_cb(void *ctx, const struct mrfs_version *v)
{
	struct vfy *x = ctx;

	x->v = v;
	return mrfs_version_files(x->txn, v->id, vfy_file_cb, x);
}

static int vfy_model_cb(void *ctx, const struct mrfs_model *m)
{
	struct vfy *x = ctx;

	x->m = m;
	return mrfs_versions_walk(x->txn, m->id, 0, vfy_version_cb, x);
}

/* Which models, versions and paths use the files of the problems. */
static int map_problems(struct mrfs_store *store, struct vfy *x)
{
	int rc;

	x->ids = xcalloc(x->np, sizeof(*x->ids));
	for (size_t i = 0; i < x->np; i++)
		if (x->p[i].file)
			x->ids[x->nids++] = x->p[i].file;
	if (!x->nids)
		return 0;
	qsort(x->ids, x->nids, sizeof(*x->ids), cmp_u64);
	{
		size_t u = 1;
		for (size_t i = 1; i < x->nids; i++)
			if (x->ids[i] != x->ids[u - 1])
				x->ids[u++] = x->ids[i];
		x->nids = u;
	}
	if ((rc = mrfs_txn_begin(store, false, &x->txn)))
		return rc;
	rc = mrfs_models_walk(x->txn, NULL, vfy_model_cb, x);
	mrfs_txn_abort(x->txn);
	x->txn = NULL;
	return rc < 0 ? rc : 0;
}

static int cmd_verify(int argc, char **argv)
{
	struct mrfs_store *store;
	struct vfy x = {0};
	struct progress pg;
	struct strs affected = {0};
	const char *dir;
	char buf[4096];
	bool json = false;
	int rc = store_args(argc, argv, &dir, buf, sizeof(buf), &json, NULL, 0,
			    "mrfs verify [--store DIR] [--json]");

	if (rc >= 0)
		return rc;
	if (open_store(dir, false, true, &store))
		return 1;
	progress_start(&pg, "verify");
	rc = mrfs_store_verify_progress(store, verify_cb, &x, progress_cb, &pg);
	progress_end(&pg);
	if (rc >= 0) {
		/* the record lengths kept for stat */
		struct mrfs_txn *txn;
		if (!(rc = mrfs_txn_begin(store, false, &txn))) {
			rc = mrfs_record_sizes_check(txn, record_bad_cb, &x);
			mrfs_txn_abort(txn);
		}
	}
	if (rc < 0) {
		error("cannot check the store: %s", strerror(-rc));
		rc = 1;
		goto out;
	}
	if (x.np && (rc = map_problems(store, &x))) {
		error("cannot map the damaged files to models: %s", strerror(-rc));
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < x.nuses; i++) {
		char *ref = xfmt("%s:v%" PRIu32, x.uses[i].model, x.uses[i].version);

		if (!has_str(&affected, ref))
			strs_push(&affected, ref);
		else
			free(ref);
	}
	for (size_t i = 0; i < x.records.n; i++)
		if (!has_str(&affected, x.records.v[i]))
			strs_push(&affected, xstrdup(x.records.v[i]));
	if (json) {
		struct mrfs_doc *d = mrfs_doc_new(), *arr, *aff;
		size_t len;
		char *text;

		if (!d)
			oom();
		mrfs_doc_str(d, "store", dir);
		mrfs_doc_bool(d, "ok", x.np == 0);
		arr = mrfs_doc_arr(d, "problems");
		for (size_t i = 0; i < x.np; i++) {
			struct mrfs_doc *o = mrfs_doc_obj(arr, NULL), *ua;

			if (x.p[i].file)
				mrfs_doc_int(o, "file", (int64_t)x.p[i].file);
			mrfs_doc_str(o, "what", x.p[i].what);
			ua = mrfs_doc_arr(o, "used_by");
			for (size_t k = 0; k < x.nuses; k++) {
				struct mrfs_doc *u;

				if (!x.p[i].file || x.uses[k].file != x.p[i].file)
					continue;
				u = mrfs_doc_obj(ua, NULL);
				mrfs_doc_str(u, "model", x.uses[k].model);
				mrfs_doc_int(u, "version", x.uses[k].version);
				mrfs_doc_str(u, "path", x.uses[k].path);
			}
		}
		aff = mrfs_doc_arr(d, "affected");
		for (size_t i = 0; i < affected.n; i++)
			mrfs_doc_str(aff, NULL, affected.v[i]);
		text = mrfs_doc_dump(d, 1, &len);
		mrfs_doc_free(d);
		if (!text)
			oom();
		fputs(text, stdout);
		free(text);
	} else {
		for (size_t i = 0; i < x.np; i++) {
			printf("problem: %s\n", x.p[i].what);
			for (size_t k = 0; k < x.nuses; k++)
				if (x.p[i].file && x.uses[k].file == x.p[i].file)
					printf("  in %s:v%" PRIu32 " %s\n", x.uses[k].model,
					       x.uses[k].version, x.uses[k].path);
		}
		if (!x.np)
			printf("store %s is consistent\n", dir);
	}
	if (x.np) {
		char *list = xstrdup("");

		for (size_t i = 0; i < affected.n; i++) {
			char *files = xstrdup(""), *next;

			for (size_t k = 0; k < x.nuses; k++) {
				char *ref =
				    xfmt("%s:v%" PRIu32, x.uses[k].model, x.uses[k].version);
				bool same = !strcmp(ref, affected.v[i]);

				free(ref);
				if (!same || strstr(files, x.uses[k].path))
					continue;
				next = xfmt("%s%s%s", files, *files ? ", " : "", x.uses[k].path);
				free(files);
				files = next;
			}
			next = xfmt("%s%s%s (%s)", list, i ? "; " : "", affected.v[i],
				    *files ? files : "its record's length");
			free(files);
			free(list);
			list = next;
		}
		error("%zu problem%s found%s%s", x.np, x.np == 1 ? "" : "s",
		      affected.n ? "; damaged: " : " (no version uses the damaged data)", list);
		free(list);
		rc = 1;
	} else {
		rc = 0;
	}
out:
	mrfs_store_close(store);
	for (size_t i = 0; i < x.np; i++)
		free(x.p[i].what);
	for (size_t i = 0; i < x.nuses; i++) {
		free(x.uses[i].model);
		free(x.uses[i].path);
	}
	free(x.p);
	free(x.ids);
	free(x.uses);
	strs_release(&x.records);
	strs_release(&affected);
	return rc;
}

static int cmd_gc(int argc, char **argv)
{
	struct mrfs_store *store;
	struct mrfs_gc_stats st = {0};
	struct progress pg;
	const char *dir;
	char buf[4096], a[32], b[32], r[32];
	bool json = false;
	int rc = store_args(argc, argv, &dir, buf, sizeof(buf), &json, NULL, 0,
			    "mrfs gc [--store DIR] [--json]");

	if (rc >= 0)
		return rc;
	if (open_store(dir, false, false, &store))
		return 1;
	progress_start(&pg, "gc");
	rc = mrfs_store_gc(store, progress_cb, &pg, &st);
	progress_end(&pg);
	mrfs_store_close(store);
	if (rc) {
		error("garbage collection failed: %s", strerror(-rc));
		return 1;
	}
	if (json) {
		struct mrfs_doc *d = mrfs_doc_new();
		size_t len;
		char *text;

		if (!d)
			oom();
		mrfs_doc_str(d, "store", dir);
		mrfs_doc_int(d, "chunks_dropped", (int64_t)st.chunks_dropped);
		mrfs_doc_int(d, "packs_rewritten", (int64_t)st.packs_rewritten);
		mrfs_doc_int(d, "packs_removed", (int64_t)st.packs_removed);
		mrfs_doc_int(d, "bytes_before", (int64_t)st.bytes_before);
		mrfs_doc_int(d, "bytes_after", (int64_t)st.bytes_after);
		mrfs_doc_int(d, "reclaimed",
			     st.bytes_before > st.bytes_after
				 ? (int64_t)(st.bytes_before - st.bytes_after)
				 : 0);
		text = mrfs_doc_dump(d, 1, &len);
		mrfs_doc_free(d);
		if (!text)
			oom();
		fputs(text, stdout);
		free(text);
		return 0;
	}
	fmt_size(st.bytes_before > st.bytes_after ? st.bytes_before - st.bytes_after : 0, r,
		 sizeof(r));
	fmt_size(st.bytes_before, a, sizeof(a));
	fmt_size(st.bytes_after, b, sizeof(b));
	printf("reclaimed %s: packs %s -> %s (%" PRIu64 " chunk%s dropped, %" PRIu64
	       " pack%s rewritten, %" PRIu64 " removed)\n",
	       r, a, b, st.chunks_dropped, st.chunks_dropped == 1 ? "" : "s", st.packs_rewritten,
	       st.packs_rewritten == 1 ? "" : "s", st.packs_removed);
	return 0;
}

struct alias_list {
	uint32_t n;
	char *names;
};

static int alias_list_cb(void *ctx, const struct mrfs_alias *a)
{
	struct alias_list *l = ctx;
	char *next;

	if (a->version != l->n)
		return 0;
	next = xfmt("%s%s%s", l->names ? l->names : "", l->names ? ", " : "", a->name);
	free(l->names);
	l->names = next;
	return 0;
}

/* The aliases of @model pointing at version @n, new ("production, staging"). */
static char *aliases_at(struct mrfs_store *store, const char *model, uint32_t n)
{
	struct alias_list l = {n, NULL};
	struct mrfs_txn *txn;
	struct mrfs_model m;

	if (mrfs_txn_begin(store, false, &txn))
		return NULL;
	if (!mrfs_model_by_name(txn, model, &m))
		mrfs_aliases_walk(txn, m.id, NULL, alias_list_cb, &l);
	mrfs_txn_abort(txn);
	return l.names;
}

static int cmd_delete(int argc, char **argv)
{
	struct mrfs_store *store;
	struct mrfs_registry *reg;
	struct mrfs_caller who = {0};
	struct mrfs_err err = {{0}};
	struct passwd *pw;
	const char *dir, *args[2];
	char buf[4096], *names;
	uint32_t n;
	int rc = store_args(argc, argv, &dir, buf, sizeof(buf), NULL, args, 2,
			    "mrfs delete MODEL VERSION [--store DIR]");

	if (rc >= 0)
		return rc;
	if (!mrfs_name_valid(args[0]))
		return usage("'%s' is not a model name", args[0]);
	if (!parse_vnum(args[1], &n))
		return usage("'%s' is not a version (3 or v3)", args[1]);
	if (open_store(dir, false, false, &store))
		return 1;
	if ((rc = mrfs_registry_new(store, &reg))) {
		error("cannot open the registry: %s", strerror(-rc));
		mrfs_store_close(store);
		return 1;
	}
	who.uid = getuid();
	who.gid = getgid();
	who.pid = getpid();
	snprintf(who.comm, sizeof(who.comm), "mrfs");
	pw = getpwuid(who.uid);
	if (pw)
		snprintf(who.user, sizeof(who.user), "%s", pw->pw_name);
	else
		snprintf(who.user, sizeof(who.user), "%u", (unsigned)who.uid);
	rc = mrfs_version_remove(reg, &who, args[0], n, &err);
	switch (rc) {
	case 0:
		printf("deleted %s:v%" PRIu32 " (mrfs gc reclaims its space)\n", args[0], n);
		break;
	case -EBUSY:
		names = aliases_at(store, args[0], n);
		error("%s:v%" PRIu32 " is what %s point%s at: move or remove %s first", args[0], n,
		      names ? names : "an alias", names && strchr(names, ',') ? "" : "s",
		      names && strchr(names, ',') ? "them" : "it");
		free(names);
		break;
	case -ENOENT:
		if (err.msg[0])
			error("%s", err.msg);
		else
			error("no version %" PRIu32 " of %s", n, args[0]);
		break;
	default:
		error("cannot delete %s:v%" PRIu32 ": %s", args[0], n,
		      err.msg[0] ? err.msg : strerror(-rc));
	}
	mrfs_registry_free(reg);
	mrfs_store_close(store);
	return rc ? 1 : 0;
}

/* ---- help and dispatch ------------------------------------------------------------ */

struct command {
	const char *name;
	int (*run)(int argc, char **argv); /* NULL: main.c runs it */
	const char *synopsis;
	const char *help;
};

static const struct command commands[] = {
    {"log", cmd_log, "log MODEL DIR|FILE... [-m KEY=VALUE]... [--alias NAME]",
     "usage: mrfs log MODEL DIR|FILE... [-m KEY=VALUE]... [--meta FILE] [--git DIR]\n"
     "                [--alias NAME] [--no-seal] [--mount DIR]\n"
     "\n"
     "Log a new version of MODEL through the mount: register MODEL if it is new,\n"
     "make the next version N (the model record's next_version), copy into it\n"
     "the contents of each DIR and each FILE by name, keeping modes and times\n"
     "(cp -a), write the metadata into versions/N.json, seal it (chmod a-w)\n"
     "and print MODEL:vN. If anything fails, the draft is removed.\n"
     "\n"
     "  -m, --metadata KEY=VALUE  set a user member; KEY may be dotted\n"
     "                            (metrics.acc=0.93); VALUE is JSON when it parses\n"
     "                            (numbers, true, [1,2], {...}), else a string\n"
     "  --meta FILE               merge the top-level members of a JSON object\n"
     "                            (members mrfs manages are left out)\n"
     "  --git DIR                 record lineage.code: {repo, commit, branch,\n"
     "                            dirty, patch} of the git work tree at DIR;\n"
     "                            patch is `git diff HEAD` when it is dirty\n"
     "  --alias NAME              then point alias NAME at the version (ln -sfn)\n"
     "  --no-seal                 leave the version a draft (--alias seals anyway)\n"
     "  --mount DIR               the mount to use (else $MRFS_MOUNT, else the\n"
     "                            first fuse.mrfs mount of /proc/mounts)\n"},
    {"promote", cmd_promote, "promote MODEL VERSION [ALIAS]",
     "usage: mrfs promote MODEL VERSION [ALIAS] [--mount DIR]\n"
     "\n"
     "Point ALIAS (default: production) of MODEL at VERSION (3 or v3),\n"
     "atomically as `ln -sfn versions/3 ALIAS` does: a reader never finds the\n"
     "alias missing. A draft is sealed first. The model's policy applies:\n"
     "a protected alias only moves for its owner, root or the admin group.\n"},
    {"ls", cmd_ls, "ls [MODEL] [--where EXPR] [--json]",
     "usage: mrfs ls [MODEL] [--where EXPR] [--json] [--mount DIR]\n"
     "\n"
     "Without MODEL, list the models: versions, latest, aliases, owner.\n"
     "With MODEL, list its versions: state, size, files, creation, aliases and\n"
     "a metric.\n"
     "\n"
     "  -w, --where EXPR  only versions whose record passes PATH OP VALUE, with\n"
     "                    OP one of > >= < <= == != (numbers compare as numbers,\n"
     "                    anything else by equality): 'metrics.acc>0.9',\n"
     "                    'lineage.code.dirty==false'; without MODEL, across\n"
     "                    every model\n"
     "  --json            the records, as one JSON array\n"},
    {"show", cmd_show, "show MODEL[:vN|:ALIAS|:latest] [--at TIME]",
     "usage: mrfs show MODEL[:vN|:ALIAS|:latest] [--at TIME] [--json] [--mount DIR]\n"
     "\n"
     "Show a version's record: state, aliases, who made and sealed it, its\n"
     "files and its metadata. MODEL alone is MODEL:latest.\n"
     "\n"
     "  --at TIME  where MODEL:ALIAS (or latest) pointed at TIME (RFC 3339,\n"
     "             2026-11-27T05:30:00Z), replayed from the history; follows\n"
     "             renames of the model since\n"
     "  --json     the record as JSON\n"},
    {"diff", cmd_diff, "diff MODEL A B",
     "usage: mrfs diff MODEL A B [--all] [--json] [--mount DIR]\n"
     "\n"
     "Compare two versions of MODEL (as 3, v3, an alias or latest): files\n"
     "added (+), removed (-) and changed (~, by digest, size or mode), how many\n"
     "are unchanged, and the user metadata that differs, flattened to dotted keys.\n"
     "\n"
     "  -a, --all  list unchanged files and metadata too (=)\n"
     "  --json     the same as a JSON object\n"},
    {"history", cmd_history, "history [MODEL] [--alias NAME] [--since TIME] [--json]",
     "usage: mrfs history [MODEL] [--alias NAME] [--since TIME] [-e EVENT] [-n N]\n"
     "                    [--json] [--mount DIR]\n"
     "\n"
     "The registry's events (or MODEL's) as a table: sequence number, time,\n"
     "event, model, what changed, who, with which program.\n"
     "\n"
     "  --alias NAME    only events of alias NAME\n"
     "  --since TIME    only events at or after TIME (RFC 3339)\n"
     "  -e, --event EV  only events EV (alias.move), or of a kind (alias)\n"
     "  -n, --last N    only the last N events that pass\n"
     "  --json          the events' JSON lines, as the history files hold them\n"},
    {"init", cmd_init, "init [--store DIR]",
     "usage: mrfs init [--store DIR]\n"
     "\n"
     "Create a store (mount creates one too).\n"},
    {"stats", cmd_stats, "stats [--store DIR] [--json]",
     "usage: mrfs stats [--store DIR] [--json]\n"
     "\n"
     "The store's logical bytes (what the versions hold), stored bytes (the\n"
     "distinct chunks), their ratio, chunks and pack files.\n"},
    {"verify", cmd_verify, "verify [--store DIR] [--json]",
     "usage: mrfs verify [--store DIR] [--json]\n"
     "\n"
     "Check every chunk's bytes against its hash, every file against the index,\n"
     "every reference count and every stored record length; name the models,\n"
     "versions and files that damaged data belongs to. Exit status 1 when\n"
     "anything is wrong.\n"},
    {"gc", cmd_gc, "gc [--store DIR] [--json]",
     "usage: mrfs gc [--store DIR] [--json]\n"
     "\n"
     "Reclaim the space of chunks nothing uses any more (after delete):\n"
     "drop them from the index, rewrite packs that are mostly garbage and\n"
     "remove empty ones. Safe while the store is mounted.\n"},
    {"delete", cmd_delete, "delete MODEL VERSION [--store DIR]",
     "usage: mrfs delete MODEL VERSION [--store DIR]\n"
     "\n"
     "Delete version VERSION (3 or v3) of MODEL, sealed or not, and log a\n"
     "version.delete event. Refused while an alias points at it. The space\n"
     "comes back with mrfs gc.\n"},
    {"mount", NULL, "mount [-f] [-d] [-o OPTS] [--admin-group GROUP] [--store DIR] MOUNTPOINT",
     "usage: mrfs mount [-f] [-d] [-o OPTS] [--admin-group GROUP] [--store DIR]\n"
     "                  MOUNTPOINT\n"
     "\n"
     "Mount the registry at MOUNTPOINT, creating the store on first use.\n"
     "\n"
     "  -f                   stay in the foreground\n"
     "  -d                   debug output (implies -f)\n"
     "  -o OPTS              mount options (allow_other, ...)\n"
     "  --admin-group GROUP  members of GROUP (a name or a gid) may move\n"
     "                       protected aliases and change policies, as the\n"
     "                       model's owner and root may (-o admin_group=GROUP)\n"
     "  --store DIR          the store (else $MRFS_STORE, else /var/lib/mrfs\n"
     "                       for root and ~/.local/share/mrfs for others)\n"
     "\n"
     "For /etc/fstab:\n"
     "  /var/lib/mrfs /mnt/registry fuse.mrfs allow_other,admin_group=mlops 0 0\n"},
    {"umount", NULL, "umount MOUNTPOINT",
     "usage: mrfs umount MOUNTPOINT\n"
     "\n"
     "Unmount the registry (as fusermount3 -u).\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

bool mrfs_cli_is_command(const char *cmd)
{
	return find_command(cmd) || !strcmp(cmd, "help");
}

int mrfs_cli_help(const char *cmd, FILE *out)
{
	const struct command *c;

	if (cmd) {
		if (!(c = find_command(cmd)))
			return -ENOENT;
		fputs(c->help, out);
		return 0;
	}
	fputs("usage: mrfs <command> [options]      (mrfs help COMMAND tells more)\n"
	      "\n"
	      "Through a mount (--mount DIR, $MRFS_MOUNT, or the first in /proc/mounts):\n",
	      out);
	for (size_t i = 0; i < 6; i++)
		fprintf(out, "  %s\n", commands[i].synopsis);
	fputs("\nOn the store (--store DIR, else $MRFS_STORE, else /var/lib/mrfs for root\n"
	      "and ~/.local/share/mrfs for others):\n",
	      out);
	for (size_t i = 6; i < NCOMMANDS - 2; i++)
		fprintf(out, "  %s\n", commands[i].synopsis);
	fputs("\nThe filesystem:\n", out);
	for (size_t i = NCOMMANDS - 2; i < NCOMMANDS; i++)
		fprintf(out, "  %s\n", commands[i].synopsis);
	fputs("\nReferences: resnet:v3, resnet:production, resnet:latest (resnet alone).\n"
	      "Exit status: 0 done, 1 failed (or verify found damage), 2 usage error.\n",
	      out);
	return 0;
}

const char *mrfs_cli_default_store(char *buf, size_t size)
{
	const char *env = getenv("MRFS_STORE");
	const char *home = getenv("HOME");

	if (env && *env)
		return env;
	if (geteuid() == 0 || !home || !*home)
		return "/var/lib/mrfs";
	snprintf(buf, size, "%s/.local/share/mrfs", home);
	return buf;
}

int mrfs_cli_main(int argc, char **argv)
{
	const struct command *c;
	const char *cmd = argc > 0 ? argv[0] : NULL;
	int rc;

	if (!cmd) {
		fputs("usage: mrfs <command> [options] (see mrfs --help)\n", stderr);
		return 2;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || (!strcmp(cmd, "help") && argc == 1)) {
		mrfs_cli_help(NULL, stdout);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		if (argc > 2 || mrfs_cli_help(argv[1], stdout)) {
			fprintf(stderr, "mrfs help: no command '%s' (see mrfs --help)\n", argv[1]);
			return 2;
		}
		return 0;
	}
	c = find_command(cmd);
	if (!c || !c->run) {
		fprintf(stderr, "mrfs: '%s' is not a command (see mrfs --help)\n", cmd);
		return 2;
	}
	cmdname = c->name;
	rc = c->run(argc, argv);
	if (fflush(stdout) || ferror(stdout)) {
		if (errno != EPIPE)
			error("cannot write the output: %s", strerror(errno));
		return rc ? rc : 1;
	}
	return rc;
}
