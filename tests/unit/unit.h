/* SPDX-License-Identifier: MIT */
/*
 * A tiny unit test framework, included once by each tests/unit/test_*.c.
 *
 *     static void test_thing(void)
 *     {
 *             CHECK(x > 0);
 *             CHECK_EQ(n, 3);
 *             CHECK_RC(mrfs_thing(), -ENOENT);
 *             if (!CHECK_MEM(got, want, len))
 *                     goto out;
 *     }
 *
 *     int main(void)
 *     {
 *             unit_init();
 *             UNIT_RUN(test_thing, "thing");
 *             return unit_done("test_thing");
 *     }
 *
 * Every CHECK* evaluates its arguments once, prints file:line and the
 * failing expression (with the values, for the _EQ forms) and counts the
 * failure, and evaluates to true when the check passed, so a test can
 * stop at the first failure that makes the rest meaningless. UNIT_RUN
 * prints "ok - name" or "not ok - name"; unit_done prints the closing
 * "name: N passed, N failed" line and returns main's exit status.
 *
 * Diagnostics go to stdout prefixed with "# " (TAP comments). At most
 * UNIT_MAX_REPORTS failures are printed per test; all are counted.
 *
 * Temporary directories (unit_tmpdir_new) are removed by unit_tmpdir_free,
 * or, when the test dies of a signal or an ASan report, on the way out
 * (not of a UBSan report: that runtime exits without a callback).
 *
 * Environment: MRFS_UNIT_KEEP=1 keeps the temporary directories;
 * MRFS_UNIT_SEED=<n> changes the seed that unit_seed() mixes in.
 */
#ifndef MRFS_UNIT_H
#define MRFS_UNIT_H

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

#define UNIT_MAX_REPORTS 20

struct unit_state {
	int tests_run;
	int tests_failed;
	long failures; /* failed checks of the current test */
	uint64_t seed; /* mixed into unit_seed() */
};

static struct unit_state unit_st __attribute__((unused));

static inline void unit_vreport(const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static inline void unit_vreport(const char *file, int line, const char *fmt, va_list ap)
{
	unit_st.failures++;
	if (unit_st.failures > UNIT_MAX_REPORTS)
		return;
	printf("# %s:%d: ", file, line);
	vprintf(fmt, ap);
	putchar('\n');
	if (unit_st.failures == UNIT_MAX_REPORTS)
		printf("# (further failures of this test are counted, not shown)\n");
}

/* Count a failure and print it; for checks the macros do not cover. */
static inline void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	unit_vreport(file, line, fmt, ap);
	va_end(ap);
}

#define FAIL(...) unit_fail(__FILE__, __LINE__, __VA_ARGS__)

/* A note for the reader of the output (not a failure). */
#define NOTE(...)                                                                                  \
	do {                                                                                       \
		printf("# ");                                                                      \
		printf(__VA_ARGS__);                                                               \
		putchar('\n');                                                                     \
	} while (0)

static inline bool unit_check(bool ok, const char *file, int line, const char *expr)
{
	if (!ok)
		unit_fail(file, line, "CHECK(%s) failed", expr);
	return ok;
}

static inline bool unit_check_eq(long long a, long long b, const char *file, int line,
				 const char *ea, const char *eb)
{
	if (a == b)
		return true;
	unit_fail(file, line, "CHECK_EQ(%s, %s) failed: %lld (%#llx) != %lld (%#llx)", ea, eb, a,
		  (unsigned long long)a, b, (unsigned long long)b);
	return false;
}

static inline bool unit_check_rc(long long got, long long want, const char *file, int line,
				 const char *expr)
{
	if (got == want)
		return true;
	unit_fail(file, line, "%s returned %lld (%s), expected %lld (%s)", expr, got,
		  got < 0 ? strerror((int)-got) : "not an error", want,
		  want < 0 ? strerror((int)-want) : "not an error");
	return false;
}

static inline bool unit_check_mem(const void *a, const void *b, size_t len, const char *file,
				  int line, const char *ea, const char *eb)
{
	const unsigned char *pa = a, *pb = b;
	size_t i;

	if (memcmp(a, b, len) == 0)
		return true;
	for (i = 0; i < len && pa[i] == pb[i]; i++)
		;
	unit_fail(file, line,
		  "CHECK_MEM(%s, %s, %zu) failed: first difference at byte %zu (%#04x != %#04x)",
		  ea, eb, len, i, pa[i], pb[i]);
	return false;
}

/* Is @expr true? */
#define CHECK(expr) unit_check(!!(expr), __FILE__, __LINE__, #expr)

/* Are @a and @b equal, compared as 64-bit integers? */
#define CHECK_EQ(a, b) unit_check_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)

/* Did @expr return @want (0, a count, or a negative errno)? */
#define CHECK_RC(expr, want)                                                                       \
	unit_check_rc((long long)(expr), (long long)(want), __FILE__, __LINE__, #expr)

/* Are the @len bytes at @a and @b equal? */
#define CHECK_MEM(a, b, len) unit_check_mem((a), (b), (len), __FILE__, __LINE__, #a, #b)

/* ---- running ---------------------------------------------------------- */

static inline double unit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void unit_run(void (*fn)(void), const char *name)
{
	double t0 = unit_now();

	unit_st.failures = 0;
	fn();
	unit_st.tests_run++;
	if (unit_st.failures) {
		unit_st.tests_failed++;
		printf("not ok - %s (%ld failed checks, %.2f s)\n", name, unit_st.failures,
		       unit_now() - t0);
	} else {
		printf("ok - %s (%.2f s)\n", name, unit_now() - t0);
	}
}

#define UNIT_RUN(fn, name) unit_run(fn, name)

/* Print the closing line; the exit status for main. */
static inline int unit_done(const char *prog)
{
	printf("%s: %d passed, %d failed\n", prog, unit_st.tests_run - unit_st.tests_failed,
	       unit_st.tests_failed);
	return unit_st.tests_failed ? 1 : 0;
}

/* ---- deterministic pseudo-random data --------------------------------- */

static inline uint64_t unit_mix64(uint64_t x)
{
	/* splitmix64's finalizer */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* A seed for @n, changed by MRFS_UNIT_SEED. */
static inline uint64_t unit_seed(uint64_t n)
{
	return unit_mix64(n ^ unit_mix64(unit_st.seed));
}

/* A sequential generator (splitmix64). */
struct unit_rng {
	uint64_t s;
};

static inline void unit_rng_init(struct unit_rng *r, uint64_t seed)
{
	r->s = unit_seed(seed);
}

static inline uint64_t unit_rng_next(struct unit_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ull;
	return unit_mix64(r->s);
}

/* A number in [0, @n) (@n > 0); the bias is negligible for test sizes. */
static inline uint64_t unit_rng_below(struct unit_rng *r, uint64_t n)
{
	return unit_rng_next(r) % n;
}

/*
 * Fill @buf with bytes [@off, @off + @len) of the endless stream named
 * @seed. Any range of a stream can be made on its own, so readers can
 * check a range of a large stream without keeping it in memory.
 */
static inline void unit_fill(uint64_t seed, uint64_t off, void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t s = unit_seed(seed);
	uint64_t w = off / 8;
	size_t skip = off % 8;

	while (len) {
		uint64_t v = unit_mix64(s ^ (w * 0xd1b54a32d192ed03ull));
		unsigned char b[8];
		size_t n = 8 - skip;
		int i;

		for (i = 0; i < 8; i++)
			b[i] = (unsigned char)(v >> (8 * i));
		if (n > len)
			n = len;
		memcpy(p, b + skip, n);
		p += n;
		len -= n;
		skip = 0;
		w++;
	}
}

/* ---- temporary directories -------------------------------------------- */

#define UNIT_MAX_TMPDIRS 8

/* The directories not yet freed, removed on a crash too (see unit_init). */
static char unit_tmpdirs[UNIT_MAX_TMPDIRS][PATH_MAX] __attribute__((unused));

static inline bool unit_keep(void)
{
	const char *keep = getenv("MRFS_UNIT_KEEP");

	return keep && *keep && strcmp(keep, "0") != 0;
}

static inline int unit_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (remove(path) < 0 && errno != ENOENT)
		printf("# cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

/* A new empty directory under $TMPDIR (or /tmp), mode 0700, its path
 * written to @path. Returns 0 or -errno. */
static inline int unit_tmpdir_new(char *path, size_t size)
{
	const char *base = getenv("TMPDIR");
	int i, n;

	if (!base || !*base)
		base = "/tmp";
	n = snprintf(path, size, "%s/mrfs-unit-XXXXXX", base);
	if (n < 0 || (size_t)n >= size || (size_t)n >= PATH_MAX)
		return -ENAMETOOLONG;
	if (!mkdtemp(path)) {
		int err = -errno;

		unit_fail(__FILE__, __LINE__, "mkdtemp(%s): %s", path, strerror(-err));
		return err;
	}
	for (i = 0; i < UNIT_MAX_TMPDIRS; i++) {
		if (!unit_tmpdirs[i][0]) {
			memcpy(unit_tmpdirs[i], path, n + 1);
			break;
		}
	}
	return 0;
}

/* Remove @path and everything below it (unless MRFS_UNIT_KEEP is set).
 * An empty @path is a no-op, so a failed unit_tmpdir_new can be freed. */
static inline void unit_tmpdir_free(const char *path)
{
	int i;

	if (!path || !*path)
		return;
	if (unit_keep())
		printf("# kept %s\n", path);
	else
		nftw(path, unit_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	/* last: @path may be one of these */
	for (i = 0; i < UNIT_MAX_TMPDIRS; i++)
		if (unit_tmpdirs[i] != path && !strcmp(unit_tmpdirs[i], path))
			unit_tmpdirs[i][0] = '\0';
	for (i = 0; i < UNIT_MAX_TMPDIRS; i++)
		if (unit_tmpdirs[i] == path)
			unit_tmpdirs[i][0] = '\0';
}

/* Remove every directory not yet freed: the way out of a crash. */
static inline void unit_tmpdir_free_all(void)
{
	int i;

	for (i = 0; i < UNIT_MAX_TMPDIRS; i++)
		if (unit_tmpdirs[i][0])
			unit_tmpdir_free(unit_tmpdirs[i]);
}

#ifndef __SANITIZE_ADDRESS__
static inline void unit_on_fatal(int sig)
{
	unit_tmpdir_free_all();
	raise(sig); /* SA_RESETHAND: the default action now */
}
#endif

/* ---- setting up --------------------------------------------------------- */

/*
 * Line-buffer stdout, read MRFS_UNIT_SEED, and arrange for the temporary
 * directories to be removed when the test dies: through the sanitizers'
 * death callback in a sanitizer build (whose own handlers must stay), else
 * on the fatal signals.
 */
static inline void unit_init(void)
{
	const char *s = getenv("MRFS_UNIT_SEED");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (s && *s) {
		unit_st.seed = strtoull(s, NULL, 0);
		printf("# MRFS_UNIT_SEED=%" PRIu64 "\n", unit_st.seed);
	}
#ifdef __SANITIZE_ADDRESS__
	__sanitizer_set_death_callback(unit_tmpdir_free_all);
#else
	{
		static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE,
					   SIGILL,  SIGINT,  SIGTERM};
		struct sigaction sa;
		size_t i;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = unit_on_fatal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			sigaction(sigs[i], &sa, NULL);
	}
#endif
}

#endif /* MRFS_UNIT_H */
