/* SPDX-License-Identifier: MIT */
/*
 * The command line: every `mrfs <command>` except `mount`, `umount` and the
 * fstab helper form, which main.c runs itself.
 *
 * User commands (log, promote, ls, show, diff, history) work through a
 * mount with ordinary file operations only: the mount is --mount DIR, else
 * $MRFS_MOUNT, else the first fuse.mrfs line of /proc/mounts. Store
 * commands (init, stats, verify, gc, delete) open the store directly
 * (--store DIR, else mrfs_cli_default_store), next to a running daemon.
 *
 * Exit status, for every command: 0 done, 1 a runtime error (one line on
 * stderr saying what and why; for verify: a problem was found), 2 a usage
 * error (one line on stderr), 130 when SIGINT or SIGTERM stopped `log`
 * (its draft removed). Like main.c, this module may exit(): on out of
 * memory only (status 1).
 */
#ifndef MRFS_CLI_H
#define MRFS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Run command @argv[0] with its arguments @argv[1..@argc-1]. Also takes
 * "help [CMD]", "--help" and "-h". Returns the exit status above; an
 * unknown command is a usage error (2).
 */
int mrfs_cli_main(int argc, char **argv);

/* Whether @cmd names a command (including mount and umount, which main.c
 * runs itself, and help). */
bool mrfs_cli_is_command(const char *cmd);

/* Print the help of command @cmd to @out, or with @cmd NULL the overview
 * of every command. Returns 0, or -ENOENT when there is no such command. */
int mrfs_cli_help(const char *cmd, FILE *out);

/*
 * The store directory SPEC names: $MRFS_STORE, else /var/lib/mrfs for root
 * and ~/.local/share/mrfs for others. Returns either a string of the
 * environment or @buf (@size bytes), filled.
 */
const char *mrfs_cli_default_store(char *buf, size_t size);

#endif /* MRFS_CLI_H */
