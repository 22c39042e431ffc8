/* SPDX-License-Identifier: MIT */
/*
 * The FUSE driver: mounts the registry as SPEC.md's tree, on libfuse3's
 * low-level API, multithreaded. The only module that talks to libfuse.
 */
#ifndef MRFS_FS_H
#define MRFS_FS_H

#include <stdbool.h>

struct mrfs_mount_opts {
	const char *store_dir; /* the store (created when absent) */
	const char *mountpoint;
	const char *fuse_opts;	 /* comma-separated -o options, or NULL */
	bool foreground;	 /* else daemonize once the mount is ready */
	bool debug;		 /* libfuse's debug output */
	const char *admin_group; /* may change protected aliases and policy */
};

/*
 * Mount and serve until unmounted or signalled. Errors before the mount is
 * up are printed to stderr. Returns 0 or a negative errno.
 */
int mrfs_fs_run(const struct mrfs_mount_opts *opts);

#endif /* MRFS_FS_H */
