/* SPDX-License-Identifier: MIT */
/*
 * mrfs: the one binary. Parses the command and hands it to its module;
 * the only place besides cli.c that exits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mrfs/store.h"

static void usage(FILE *to)
{
	fputs("usage: mrfs <command> [options]\n"
	      "\n"
	      "store commands:\n"
	      "  init   [--store DIR]   create a store\n"
	      "  stats  [--store DIR]   logical and stored bytes, dedup ratio\n"
	      "  verify [--store DIR]   check every chunk and reference\n",
	      to);
}

/* The store directory SPEC names: $MRFS_STORE, /var/lib/mrfs for root,
 * ~/.local/share/mrfs for others. */
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

static void print_problem(void *ctx, uint64_t file, const char *what)
{
	(void)ctx;
	(void)file;
	printf("%s\n", what);
}

int main(int argc, char **argv)
{
	char buf[4096];
	const char *cmd, *dir = NULL;
	struct mrfs_store *store;
	struct mrfs_store_stats st;
	int rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strncmp(argv[i], "--store=", 8)) {
			dir = argv[i] + 8;
		} else {
			fprintf(stderr, "mrfs %s: unexpected argument '%s'\n", cmd, argv[i]);
			return 2;
		}
	}
	if (!dir)
		dir = default_store(buf, sizeof(buf));
	if (strcmp(cmd, "init") && strcmp(cmd, "stats") && strcmp(cmd, "verify")) {
		fprintf(stderr, "mrfs: '%s' is not a command (see mrfs --help)\n", cmd);
		return 2;
	}
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
			       st.stored_bytes ? (double)st.logical_bytes / (double)st.stored_bytes : 1.0);
			printf("chunks         %" PRIu64 " (%" PRIu64 " unreferenced)\n",
			       st.chunks, st.dead_chunks);
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
