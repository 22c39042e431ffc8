/* SPDX-License-Identifier: MIT */
/*
 * mrfs: the one binary. Parses the command line and hands the work to its
 * module; with cli.c, the only place that exits.
 *
 * Also the fstab helper: mount.fuse3 runs `mrfs STORE MOUNTPOINT -o OPTS`
 * for an entry of type fuse.mrfs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrfs/fs.h"
#include "mrfs/store.h"

static const char usage_text[] =
	"usage: mrfs <command> [options]\n"
	"\n"
	"  mount [-f] [-d] [-o OPTS] [--store DIR] MOUNTPOINT\n"
	"                          mount the registry (creating the store)\n"
	"  umount MOUNTPOINT       unmount it (as fusermount3 -u)\n"
	"  init   [--store DIR]    create a store\n"
	"  stats  [--store DIR]    logical and stored bytes, dedup ratio\n"
	"  verify [--store DIR]    check every chunk and reference\n"
	"\n"
	"The store is $MRFS_STORE, else /var/lib/mrfs for root and\n"
	"~/.local/share/mrfs for others.\n";

/* The store directory SPEC names. */
static const char *default_store(char *buf, size_t size)
{
	const char *env = getenv("MRFS_STORE");
	const char *home = getenv("HOME");

	if (env && *env)
		return env;
	if (geteuid() == 0 || !home)
		return "/var/lib/mrfs";
	snprintf(buf, size, "%s/.local/share/mrfs", home);
	return buf;
}

/* One line on stderr, exit status 2. */
static int usage_error(const char *cmd, const char *what, const char *arg)
{
	fprintf(stderr, "mrfs %s: %s%s%s%s (see mrfs --help)\n", cmd, what, arg ? " '" : "",
		arg ? arg : "", arg ? "'" : "");
	return 2;
}

/* Append ",@add" to the option list *@opts (grown with realloc). */
static int add_opts(char **opts, const char *add)
{
	size_t old = *opts ? strlen(*opts) : 0;
	char *n = realloc(*opts, old + strlen(add) + 2);

	if (!n)
		return -ENOMEM;
	if (old)
		n[old++] = ',';
	strcpy(n + old, add);
	*opts = n;
	return 0;
}

static int cmd_mount(int argc, char **argv, bool helper)
{
	struct mrfs_mount_opts o = { 0 };
	char buf[4096], *opts = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-f")) {
			o.foreground = true;
		} else if (!strcmp(a, "-d")) {
			o.debug = o.foreground = true;
		} else if (!strcmp(a, "-o") && i + 1 < argc) {
			if (add_opts(&opts, argv[++i]))
				return 1;
		} else if (!strncmp(a, "-o", 2) && a[2]) {
			if (add_opts(&opts, a + 2))
				return 1;
		} else if (!strcmp(a, "--store") && i + 1 < argc) {
			o.store_dir = argv[++i];
		} else if (!strncmp(a, "--store=", 8)) {
			o.store_dir = a + 8;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			free(opts);
			return 0;
		} else if (a[0] == '-') {
			free(opts);
			return usage_error("mount", "unknown option", a);
		} else if (helper && !o.store_dir) {
			o.store_dir = a;
		} else if (!o.mountpoint) {
			o.mountpoint = a;
		} else {
			free(opts);
			return usage_error("mount", "unexpected argument", a);
		}
	}
	if (!o.mountpoint) {
		free(opts);
		return usage_error("mount", "missing MOUNTPOINT", NULL);
	}
	if (!o.store_dir)
		o.store_dir = default_store(buf, sizeof(buf));
	o.fuse_opts = opts;
	rc = mrfs_fs_run(&o);
	free(opts);
	return rc ? 1 : 0;
}

static int cmd_umount(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-')
		return usage_error("umount", "usage: mrfs umount MOUNTPOINT", NULL);
	execlp("fusermount3", "fusermount3", "-u", argv[1], (char *)NULL);
	fprintf(stderr, "mrfs umount: cannot run fusermount3: %s\n", strerror(errno));
	return 1;
}

static void print_problem(void *ctx, uint64_t file, const char *what)
{
	(void)ctx;
	(void)file;
	printf("%s\n", what);
}

static int cmd_store(int argc, char **argv)
{
	const char *cmd = argv[0], *dir = NULL;
	struct mrfs_store *store;
	struct mrfs_store_stats st;
	char buf[4096];
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc)
			dir = argv[++i];
		else if (!strncmp(argv[i], "--store=", 8))
			dir = argv[i] + 8;
		else
			return usage_error(cmd, "unexpected argument", argv[i]);
	}
	if (!dir)
		dir = default_store(buf, sizeof(buf));
	rc = mrfs_store_open(dir, NULL, &store);
	if (rc) {
		fprintf(stderr, "mrfs %s: cannot open store %s: %s\n", cmd, dir, strerror(-rc));
		return 1;
	}
	if (!strcmp(cmd, "init")) {
		printf("store ready at %s\n", dir);
	} else if (!strcmp(cmd, "stats")) {
		rc = mrfs_store_stats(store, &st);
		if (!rc) {
			printf("logical bytes  %" PRIu64 "\n", st.logical_bytes);
			printf("stored bytes   %" PRIu64 "\n", st.stored_bytes);
			printf("dedup ratio    %.2f\n",
			       st.stored_bytes ? (double)st.logical_bytes / (double)st.stored_bytes
					       : 1.0);
			printf("chunks         %" PRIu64 " (%" PRIu64 " unreferenced)\n", st.chunks,
			       st.dead_chunks);
			printf("files          %" PRIu64 "\n", st.files);
			printf("packs          %" PRIu64 " (%" PRIu64 " bytes)\n", st.packs,
			       st.pack_bytes);
		}
	} else {
		rc = mrfs_store_verify(store, print_problem, NULL);
		if (rc > 0)
			printf("%d problem%s found\n", rc, rc == 1 ? "" : "s");
		else if (rc == 0)
			printf("store is consistent\n");
	}
	mrfs_store_close(store);
	if (rc < 0) {
		fprintf(stderr, "mrfs %s: %s\n", cmd, strerror(-rc));
		return 1;
	}
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;
	struct stat st;

	if (!cmd) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(cmd, "mount"))
		return cmd_mount(argc - 1, argv + 1, false);
	if (!strcmp(cmd, "umount"))
		return cmd_umount(argc - 1, argv + 1);
	if (!strcmp(cmd, "init") || !strcmp(cmd, "stats") || !strcmp(cmd, "verify"))
		return cmd_store(argc - 1, argv + 1);
	/* mount.fuse3: mrfs STORE MOUNTPOINT [-o OPTS] */
	if (argc >= 3 && cmd[0] == '/' && !stat(argv[2], &st) && S_ISDIR(st.st_mode))
		return cmd_mount(argc, argv, true);
	fprintf(stderr, "mrfs: '%s' is not a command (see mrfs --help)\n", cmd);
	return 2;
}
