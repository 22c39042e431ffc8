/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets in tests/fuzz/ share: a checked assertion that
 * names the broken property, NUL-terminated copies of the input, a
 * splitter that cuts one input into several fields, and a scratch store in
 * a private temporary directory (under $FUZZ_TMPDIR, else /dev/shm, else
 * $TMPDIR, else /tmp) that is removed when the fuzzer exits.
 *
 * Each target is built with clang -fsanitize=fuzzer,address,undefined
 * (make build/fuzz/fuzz_NAME, or make fuzz). A FUZZ_CHECK that fails
 * prints the property and aborts, which libFuzzer reports as a crash and
 * saves the input; the inputs of crashes found so far are kept in
 * tests/fuzz/regressions/NAME/ (NAME without fuzz_) and replayed by scripts/fuzz.sh.
 */
#ifndef MRFS_FUZZ_H
#define MRFS_FUZZ_H

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property of the code under test does not hold: say which, and abort. */
#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fuzz_broken(__FILE__, __LINE__, #cond, __VA_ARGS__);                       \
		}                                                                                  \
	} while (0)

static void fuzz_broken(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

static void fuzz_broken(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n==FUZZ== %s:%d: property broken: %s\n==FUZZ== ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* A new NUL-terminated copy of @size bytes of @data (exactly size + 1 bytes,
 * so that ASan sees a read past its end). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Cut the input at the next byte @sep: *@field gets a new NUL-terminated
 * copy of what comes before it; the input moves past the separator.
 * Returns false when the input is exhausted (no separator): *@field then
 * holds all that was left. */
static inline bool fuzz_field(const uint8_t **data, size_t *size, uint8_t sep, char **field)
{
	const uint8_t *end = memchr(*data, sep, *size);
	size_t n = end ? (size_t)(end - *data) : *size;

	*field = fuzz_strndup(*data, n);
	*data += end ? n + 1 : n;
	*size -= end ? n + 1 : n;
	return end != NULL;
}

/* ---- a scratch directory ----------------------------------------------- */

static char fuzz_tmp[PATH_MAX];

static int fuzz_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void fuzz_tmp_remove(void)
{
	if (fuzz_tmp[0] && !getenv("FUZZ_KEEP"))
		nftw(fuzz_tmp, fuzz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch directory of this process, made on first use. */
static inline const char *fuzz_tmpdir(void)
{
	const char *base = getenv("FUZZ_TMPDIR");

	if (fuzz_tmp[0])
		return fuzz_tmp;
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(fuzz_tmp, sizeof(fuzz_tmp), "%s/mrfs-fuzz.XXXXXX", base);
	if (!mkdtemp(fuzz_tmp)) {
		perror(fuzz_tmp);
		abort();
	}
	atexit(fuzz_tmp_remove);
	return fuzz_tmp;
}

#endif /* MRFS_FUZZ_H */
