/* SPDX-License-Identifier: MIT */
/*
 * mrfs: the one binary. Runs `mount` and `umount` itself, hands every other
 * command to cli.c; with cli.c, the only place that exits.
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

#include "mrfs/cli.h"
#include "mrfs/fs.h"

/* One line on stderr, exit status 2. */
static int usage_error(const char *cmd, const char *what, const char *arg)
{
	fprintf(stderr, "mrfs %s: %s%s%s%s (see mrfs --help)\n", cmd, what, arg ? " '" : "",
		arg ? arg : "", arg ? "'" : "");
	return 2;
}

/* Append ",@add" to the option list *@opts (grown with realloc). */
static int add_opt(char **opts, const char *add)
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

/* Add the comma-separated -o options @add to *@opts, except
 * admin_group=GROUP (the fstab spelling of --admin-group): into *@admin. */
static int add_opts(char **opts, const char *add, char **admin)
{
	char *copy = strdup(add), *tok, *save = NULL;
	int rc = copy ? 0 : -ENOMEM;

	for (tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "admin_group=", 12)) {
			rc = add_opt(opts, tok);
			continue;
		}
		free(*admin);
		*admin = strdup(tok + 12);
		if (!*admin)
			rc = -ENOMEM;
	}
	free(copy);
	return rc;
}

static int cmd_mount(int argc, char **argv, bool helper)
{
	struct mrfs_mount_opts o = {0};
	char buf[4096], *opts = NULL, *admin = NULL;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-f")) {
			o.foreground = true;
		} else if (!strcmp(a, "-d")) {
			o.debug = o.foreground = true;
		} else if (!strcmp(a, "-o") && i + 1 < argc) {
			if (add_opts(&opts, argv[++i], &admin))
				goto out_nomem;
		} else if (!strncmp(a, "-o", 2) && a[2]) {
			if (add_opts(&opts, a + 2, &admin))
				goto out_nomem;
		} else if ((!strcmp(a, "--admin-group") && i + 1 < argc) ||
			   !strncmp(a, "--admin-group=", 14)) {
			free(admin);
			admin = strdup(a[13] ? a + 14 : argv[++i]);
			if (!admin)
				goto out_nomem;
		} else if (!strcmp(a, "--store") && i + 1 < argc) {
			o.store_dir = argv[++i];
		} else if (!strncmp(a, "--store=", 8)) {
			o.store_dir = a + 8;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			mrfs_cli_help("mount", stdout);
			goto out;
		} else if (a[0] == '-') {
			rc = usage_error("mount", "unknown option", a);
			goto out;
		} else if (helper && !o.store_dir) {
			o.store_dir = a;
		} else if (!o.mountpoint) {
			o.mountpoint = a;
		} else {
			rc = usage_error("mount", "unexpected argument", a);
			goto out;
		}
	}
	if (!o.mountpoint) {
		rc = usage_error("mount", "missing MOUNTPOINT", NULL);
		goto out;
	}
	if (!o.store_dir)
		o.store_dir = mrfs_cli_default_store(buf, sizeof(buf));
	o.fuse_opts = opts;
	o.admin_group = admin;
	rc = mrfs_fs_run(&o) ? 1 : 0;
	goto out;
out_nomem:
	fputs("mrfs mount: out of memory\n", stderr);
	rc = 1;
out:
	free(opts);
	free(admin);
	return rc;
}

static int cmd_umount(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		mrfs_cli_help("umount", stdout);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-')
		return usage_error("umount", "usage: mrfs umount MOUNTPOINT", NULL);
	execlp("fusermount3", "fusermount3", "-u", argv[1], (char *)NULL);
	fprintf(stderr, "mrfs umount: cannot run fusermount3: %s\n", strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;
	struct stat st;

	if (!cmd) {
		fputs("usage: mrfs <command> [options] (see mrfs --help)\n", stderr);
		return 2;
	}
	if (!strcmp(cmd, "mount"))
		return cmd_mount(argc - 1, argv + 1, false);
	if (!strcmp(cmd, "umount"))
		return cmd_umount(argc - 1, argv + 1);
	/* mount.fuse3: mrfs STORE MOUNTPOINT [-o OPTS] */
	if (argc >= 3 && cmd[0] == '/' && !stat(argv[2], &st) && S_ISDIR(st.st_mode))
		return cmd_mount(argc, argv, true);
	return mrfs_cli_main(argc - 1, argv + 1);
}
