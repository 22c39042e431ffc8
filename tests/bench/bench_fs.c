/* SPDX-License-Identifier: MIT */
/*
 * bench_fs: the measuring half of scripts/bench-fs.sh. Each command does
 * one timed thing to a path (a file or directory of a mount, or the same
 * thing on a plain filesystem) and prints one line of "name key value"
 * pairs on stdout; scripts/bench-fs.sh runs them side by side, run after
 * run, and computes medians and ratios. Times are wall clock
 * (CLOCK_MONOTONIC), from open() to close() where a file is read.
 *
 *     bench_fs seq FILE
 *         read() FILE to its end with a 1 MiB buffer:
 *         seq bytes N size N seconds S
 *         (size is st_size at open; bytes below it is a short read)
 *
 *     bench_fs mmap FILE in|random [SEED]
 *         mmap FILE (MAP_SHARED, PROT_READ) and read one byte of every
 *         page, in order or in a random permutation drawn before the clock
 *         starts:
 *         mmap order in|random pages N seconds S majflt N minflt N
 *         A SIGBUS (a page beyond what the filesystem serves) ends the pass:
 *         mmap order ... error sigbus page N
 *
 *     bench_fs pread FILE OPS [SEED]
 *         OPS pread()s of 4 KiB at random 4 KiB-aligned offsets, one at a
 *         time (queue depth 1), each one timed:
 *         pread ops N seconds S iops X p50_us X p99_us X max_us X short N
 *
 *     bench_fs ls DIR
 *         readdir DIR to its end (the names), then fstatat() every name
 *         (what ls -l adds), then stat DIR itself 1000 times:
 *         ls entries N readdir_s S stat_s S dirstat_p50_us X dirstat_p99_us X
 *
 *     bench_fs mkdirs DIR FROM TO
 *         For n = FROM..TO: mkdir DIR/n, write a 64-byte file DIR/n/w.bin,
 *         close it, chmod DIR/n a-w (through a mount: a new sealed version
 *         of one small file, when DIR is a model's versions directory):
 *         mkdirs made N seconds S
 *
 *     bench_fs promote DIR A B COUNT
 *         COUNT times, alternately with target A and B, what
 *         `ln -sfn TARGET DIR/production` does: symlinkat() on the name
 *         (EEXIST), symlinkat() on a temporary name, renameat() over the
 *         name. Each one timed:
 *         promote count N p50_us X p99_us X min_us X max_us X
 *
 *     bench_fs mount MRFS STORE MNT LOG
 *         Become the daemon: exec `MRFS mount -f --store STORE MNT` with its
 *         stdout and stderr appended to LOG, after forking a child that
 *         polls, every 100 us, until MNT/models can be stat()ed on a
 *         filesystem other than MNT's parent's, lists MNT/models, prints
 *         mount seconds S first_ls_seconds S
 *         and exits (or prints "mount error ..." when the daemon exits or
 *         nothing answers for 120 s). The clock starts before the fork. So
 *         the caller that starts this in the background holds the
 *         daemon's pid and reaps it: unmount with fusermount3 -u MNT.
 *
 * Exit status 0; 1 with a message on stderr when the measurement could not
 * be made (a SIGBUS or a failed call); 2 on a usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BUF	     (1u << 20)
#define PAGE	     4096u
#define DIRSTATS     1000
#define MOUNT_WAIT_S 120.0

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what, const char *arg, int err)
{
	fprintf(stderr, "bench_fs: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "",
		strerror(err));
	exit(1);
}

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: bench_fs seq FILE\n"
			"       bench_fs mmap FILE in|random [SEED]\n"
			"       bench_fs pread FILE OPS [SEED]\n"
			"       bench_fs ls DIR\n"
			"       bench_fs mkdirs DIR FROM TO\n"
			"       bench_fs promote DIR A B COUNT\n"
			"       bench_fs mount MRFS STORE MNT LOG\n");
	exit(2);
}

static unsigned long long number(const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		usage();
	return v;
}

/* xorshift64*: a seeded stream, the same on every run. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The @q quantile (0..1) of the @n sorted values @v: nearest rank. */
static double quantile(const double *v, size_t n, double q)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(q * n + 0.999999);
	if (i < 1)
		i = 1;
	if (i > n)
		i = n;
	return v[i - 1];
}

static int open_file(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("cannot open", path, errno);
	if (fstat(fd, &st) < 0)
		die("fstat", path, errno);
	*size = (uint64_t)st.st_size;
	return fd;
}

static int cmd_seq(const char *path)
{
	char *buf = aligned_alloc(PAGE, SEQ_BUF);
	uint64_t size, bytes = 0;
	double t0, t1;
	ssize_t n;
	int fd;

	if (!buf)
		die("out of memory", NULL, ENOMEM);
	t0 = now();
	fd = open_file(path, &size);
	for (;;) {
		n = read(fd, buf, SEQ_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read", path, errno);
		if (n == 0)
			break;
		bytes += (uint64_t)n;
	}
	close(fd);
	t1 = now();
	printf("seq bytes %llu size %llu seconds %.6f\n", (unsigned long long)bytes,
	       (unsigned long long)size, t1 - t0);
	free(buf);
	return 0;
}

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

static int cmd_mmap(const char *path, const char *order, uint64_t seed)
{
	struct sigaction sa = {.sa_handler = on_sigbus};
	volatile uint64_t i = 0;
	volatile unsigned sum = 0;
	struct rusage r0, r1;
	uint32_t *volatile perm = NULL;
	const volatile unsigned char *map;
	uint64_t size, pages;
	bool random_order;
	double t0, t1;
	void *m;
	int fd;

	if (!strcmp(order, "in"))
		random_order = false;
	else if (!strcmp(order, "random"))
		random_order = true;
	else
		usage();
	fd = open_file(path, &size);
	if (!size)
		die("empty file", path, EINVAL);
	pages = (size + PAGE - 1) / PAGE;
	if (pages > UINT32_MAX)
		die("file too large", path, EFBIG);
	if (random_order) {
		perm = malloc(pages * sizeof(*perm));
		if (!perm)
			die("out of memory", NULL, ENOMEM);
		for (uint64_t k = 0; k < pages; k++)
			perm[k] = (uint32_t)k;
		for (uint64_t k = pages - 1; k > 0; k--) {
			uint64_t j = rnd(&seed) % (k + 1);
			uint32_t t = perm[k];
			perm[k] = perm[j];
			perm[j] = t;
		}
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		die("sigaction", NULL, errno);

	getrusage(RUSAGE_SELF, &r0);
	t0 = now();
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap", path, errno);
	map = m;
	if (sigsetjmp(bus_jmp, 1)) {
		uint64_t page = random_order ? perm[i] : i;
		printf("mmap order %s pages %llu seconds %.6f error sigbus page %llu\n", order,
		       (unsigned long long)pages, now() - t0, (unsigned long long)page);
		fprintf(stderr, "bench_fs: SIGBUS at page %llu of %llu (byte %llu) of %s\n",
			(unsigned long long)page, (unsigned long long)pages,
			(unsigned long long)page * PAGE, path);
		return 1;
	}
	for (i = 0; i < pages; i++) {
		uint64_t p = random_order ? perm[i] : i;
		sum += map[p * PAGE];
	}
	munmap(m, size);
	close(fd);
	t1 = now();
	getrusage(RUSAGE_SELF, &r1);
	printf("mmap order %s pages %llu seconds %.6f majflt %ld minflt %ld\n", order,
	       (unsigned long long)pages, t1 - t0, r1.ru_majflt - r0.ru_majflt,
	       r1.ru_minflt - r0.ru_minflt);
	free(perm);
	return 0;
}

static int cmd_pread(const char *path, uint64_t ops, uint64_t seed)
{
	char *buf = aligned_alloc(PAGE, PAGE);
	uint64_t size, blocks, *offs, shorts = 0;
	double *lat, t0, t1, total;
	int fd;

	if (!ops)
		usage();
	if (!buf)
		die("out of memory", NULL, ENOMEM);
	offs = malloc(ops * sizeof(*offs));
	lat = malloc(ops * sizeof(*lat));
	if (!offs || !lat)
		die("out of memory", NULL, ENOMEM);
	fd = open_file(path, &size);
	blocks = size / PAGE;
	if (!blocks)
		die("file smaller than 4 KiB", path, EINVAL);
	for (uint64_t k = 0; k < ops; k++)
		offs[k] = rnd(&seed) % blocks * PAGE;

	t0 = now();
	for (uint64_t k = 0; k < ops; k++) {
		double a = now();
		ssize_t n = pread(fd, buf, PAGE, (off_t)offs[k]);

		lat[k] = now() - a;
		if (n < 0)
			die("pread", path, errno);
		if (n != PAGE)
			shorts++;
	}
	t1 = now();
	close(fd);
	total = t1 - t0;
	qsort(lat, ops, sizeof(*lat), cmp_double);
	printf("pread ops %llu seconds %.6f iops %.1f p50_us %.2f p99_us %.2f max_us %.2f"
	       " short %llu\n",
	       (unsigned long long)ops, total, ops / total, quantile(lat, ops, 0.50) * 1e6,
	       quantile(lat, ops, 0.99) * 1e6, lat[ops - 1] * 1e6, (unsigned long long)shorts);
	free(offs);
	free(lat);
	free(buf);
	return 0;
}

static int cmd_ls(const char *path)
{
	double t0, t1, t2, lat[DIRSTATS];
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *d;
	struct stat st;
	DIR *dir;

	t0 = now();
	dir = opendir(path);
	if (!dir)
		die("opendir", path, errno);
	while ((errno = 0, d = readdir(dir))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (n == cap) {
			char **more;
			cap = cap ? 2 * cap : 1024;
			more = realloc(names, cap * sizeof(*names));
			if (!more)
				die("out of memory", NULL, ENOMEM);
			names = more;
		}
		names[n] = strdup(d->d_name);
		if (!names[n])
			die("out of memory", NULL, ENOMEM);
		n++;
	}
	if (errno)
		die("readdir", path, errno);
	t1 = now();
	for (size_t k = 0; k < n; k++)
		if (fstatat(dirfd(dir), names[k], &st, AT_SYMLINK_NOFOLLOW) < 0)
			die("fstatat", names[k], errno);
	t2 = now();
	closedir(dir);
	for (int k = 0; k < DIRSTATS; k++) {
		double a = now();

		if (stat(path, &st) < 0)
			die("stat", path, errno);
		lat[k] = now() - a;
	}
	qsort(lat, DIRSTATS, sizeof(*lat), cmp_double);
	printf("ls entries %zu readdir_s %.6f stat_s %.6f dirstat_p50_us %.2f"
	       " dirstat_p99_us %.2f\n",
	       n, t1 - t0, t2 - t1, quantile(lat, DIRSTATS, 0.5) * 1e6,
	       quantile(lat, DIRSTATS, 0.99) * 1e6);
	for (size_t k = 0; k < n; k++)
		free(names[k]);
	free(names);
	return 0;
}

static int cmd_mkdirs(const char *dir, uint64_t from, uint64_t to)
{
	char path[PATH_MAX], data[64];
	double t0 = now(), last = t0;
	uint64_t made = 0;
	int fd;

	for (uint64_t v = from; v <= to; v++) {
		snprintf(path, sizeof(path), "%s/%llu", dir, (unsigned long long)v);
		if (mkdir(path, 0755) < 0)
			die("mkdir", path, errno);
		snprintf(path, sizeof(path), "%s/%llu/w.bin", dir, (unsigned long long)v);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create", path, errno);
		memset(data, ' ', sizeof(data));
		snprintf(data, sizeof(data), "weights of version %llu", (unsigned long long)v);
		data[sizeof(data) - 1] = '\n';
		if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
			die("write", path, errno ? errno : EIO);
		if (close(fd) < 0)
			die("close", path, errno);
		snprintf(path, sizeof(path), "%s/%llu", dir, (unsigned long long)v);
		if (chmod(path, 0555) < 0)
			die("chmod", path, errno);
		made++;
		if (now() - last >= 30) {
			last = now();
			fprintf(stderr, "bench_fs: %s: %llu of %llu made, %.0f/s\n", dir,
				(unsigned long long)made, (unsigned long long)(to - from + 1),
				made / (last - t0));
		}
	}
	printf("mkdirs made %llu seconds %.6f\n", (unsigned long long)made, now() - t0);
	return 0;
}

static int cmd_promote(const char *dir, const char *a, const char *b, uint64_t count)
{
	char name[PATH_MAX], tmp[PATH_MAX];
	double *lat;
	int dfd;

	if (!count)
		usage();
	lat = malloc(count * sizeof(*lat));
	if (!lat)
		die("out of memory", NULL, ENOMEM);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		die("open", dir, errno);
	snprintf(name, sizeof(name), "production");
	for (uint64_t k = 0; k < count; k++) {
		const char *target = k % 2 ? b : a;
		double t0;

		/* the temporary name ln makes up: random letters, here the count */
		snprintf(tmp, sizeof(tmp), "Ln%llu", (unsigned long long)k);
		t0 = now();
		if (symlinkat(target, dfd, name) == 0) {
			/* the first time, or after something removed it: ln stops here */
		} else if (errno != EEXIST) {
			die("symlink", name, errno);
		} else {
			if (symlinkat(target, dfd, tmp) < 0)
				die("symlink", tmp, errno);
			if (renameat(dfd, tmp, dfd, name) < 0)
				die("rename over", name, errno);
		}
		lat[k] = now() - t0;
	}
	close(dfd);
	qsort(lat, count, sizeof(*lat), cmp_double);
	printf("promote count %llu p50_us %.2f p99_us %.2f min_us %.2f max_us %.2f\n",
	       (unsigned long long)count, quantile(lat, count, 0.5) * 1e6,
	       quantile(lat, count, 0.99) * 1e6, lat[0] * 1e6, lat[count - 1] * 1e6);
	free(lat);
	return 0;
}

static int cmd_mount(const char *mrfs, const char *store, const char *mnt, const char *log)
{
	char parent[PATH_MAX], models[PATH_MAX];
	struct timespec nap = {0, 100000};
	struct stat pst, st;
	struct dirent *d;
	double t0, t1, t2;
	pid_t daemon_pid;
	DIR *dir;
	int fd;

	snprintf(parent, sizeof(parent), "%s/..", mnt);
	snprintf(models, sizeof(models), "%s/models", mnt);
	if (stat(parent, &pst) < 0)
		die("stat", parent, errno);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open", log, errno);
	fflush(stdout);
	daemon_pid = getpid();
	t0 = now();
	switch (fork()) {
	case -1:
		die("fork", NULL, errno);
	case 0:
		break;
	default:
		/* the parent becomes the daemon */
		if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			die("dup2", log, errno);
		execl(mrfs, mrfs, "mount", "-f", "--store", store, mnt, (char *)NULL);
		fprintf(stderr, "bench_fs: cannot run %s: %s\n", mrfs, strerror(errno));
		_exit(127);
	}
	close(fd);
	for (;;) {
		if (stat(models, &st) == 0 && st.st_dev != pst.st_dev)
			break;
		if (getppid() != daemon_pid) {
			printf("mount error daemon_exited\n");
			return 1;
		}
		if (now() - t0 > MOUNT_WAIT_S) {
			printf("mount error timeout\n");
			return 1;
		}
		nanosleep(&nap, NULL);
	}
	t1 = now();
	dir = opendir(models);
	if (!dir)
		die("opendir", models, errno);
	while ((d = readdir(dir)))
		;
	closedir(dir);
	t2 = now();
	printf("mount seconds %.6f first_ls_seconds %.6f\n", t1 - t0, t2 - t1);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (!strcmp(cmd, "seq") && argc == 3)
		return cmd_seq(argv[2]);
	if (!strcmp(cmd, "mmap") && (argc == 4 || argc == 5))
		return cmd_mmap(argv[2], argv[3], argc == 5 ? number(argv[4]) | 1 : 1);
	if (!strcmp(cmd, "pread") && (argc == 4 || argc == 5))
		return cmd_pread(argv[2], number(argv[3]), argc == 5 ? number(argv[4]) | 1 : 1);
	if (!strcmp(cmd, "ls") && argc == 3)
		return cmd_ls(argv[2]);
	if (!strcmp(cmd, "mkdirs") && argc == 5)
		return cmd_mkdirs(argv[2], number(argv[3]), number(argv[4]));
	if (!strcmp(cmd, "promote") && argc == 6)
		return cmd_promote(argv[2], argv[3], argv[4], number(argv[5]));
	if (!strcmp(cmd, "mount") && argc == 6)
		return cmd_mount(argv[2], argv[3], argv[4], argv[5]);
	usage();
}
