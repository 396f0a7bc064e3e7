/*
 * main_correct.c - agipd-correct: parse options, set up MPI and the heap,
 * run, map the result to the exit status.  All work is in the library.
 */
#include <ctype.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "agipd_run.h"

/* Does the MCA parameter file `path` set `key`? */
static int mca_file_sets(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int found = 0;
	size_t n = strlen(key);
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f)) {
		const char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (strncmp(s, key, n))
			continue;
		s += n;
		while (*s == ' ' || *s == '\t')
			s++;
		found = *s == '=';
	}
	fclose(f);
	return found;
}

/*
 * Open MPI 4.1.4's sharedfp/lockedfile component overflows a buffer on output
 * paths of about 212 characters and more (every rank aborts in MPI_File_open,
 * "*** buffer overflow detected ***").  agipd-correct uses no shared file
 * pointers: the component is left out before MPI_Init, unless the user chose
 * the sharedfp components (mpirun --mca sharedfp passes OMPI_MCA_sharedfp;
 * or an MCA parameter file).
 */
static void avoid_lockedfile(void)
{
	char path[4096];
	if (getenv("OMPI_MCA_sharedfp"))
		return;
	const char *files = getenv("OMPI_MCA_mca_base_param_files");
	if (files) {
		char list[4096];
		snprintf(list, sizeof list, "%s", files);
		for (char *save = NULL, *f = strtok_r(list, ":", &save); f; f = strtok_r(NULL, ":", &save))
			if (mca_file_sets(f, "sharedfp"))
				return;
	} else {
		const char *home = getenv("HOME"), *prefix = getenv("OPAL_PREFIX");
		if (home) {
			snprintf(path, sizeof path, "%s/.openmpi/mca-params.conf", home);
			if (mca_file_sets(path, "sharedfp"))
				return;
		}
		if (prefix) {
			snprintf(path, sizeof path, "%s/etc/openmpi-mca-params.conf", prefix);
			if (mca_file_sets(path, "sharedfp"))
				return;
		}
		if (mca_file_sets("/etc/openmpi/openmpi-mca-params.conf", "sharedfp") ||
		    mca_file_sets("/usr/local/etc/openmpi-mca-params.conf", "sharedfp"))
			return;
	}
	setenv("OMPI_MCA_sharedfp", "^lockedfile", 0);
}

static void on_signal(int sig)
{
	agipd_run_request_stop(sig);
}

int main(int argc, char **argv)
{
	struct agipd_config c;
	const char *what = NULL;
	agipd_err e = { "" };
	int rank, rc;

	/* zlib state and chunk buffers are ~100 KB - 1 MB each: keep glibc from
	 * returning them to the kernel after every chunk (measured: 1.7-3.4x on
	 * write time). */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);

	/* The option reference (docs/agipd-correct.md) comes from the same table
	 * as --help; `make docs` regenerates it.  No MPI needed. */
	if (argc == 2 && !strcmp(argv[1], "--help-markdown")) {
		agipd_opts_docs(stdout);
		return 0;
	}
	avoid_lockedfile();
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	rc = agipd_opts_parse(&c, argc, argv, &what, &e);
	if (rc != 0) {
		if (rank == 0) {
			if (rc < 0)
				fprintf(stderr, "agipd-correct: error: %s\n", e.msg);
			else if (!strcmp(what, "help"))
				agipd_opts_help(stdout, "agipd-correct");
			else
				printf("agipd-correct %s (git %s)\n", AGIPD_VERSION, AGIPD_GIT_REV);
		}
		MPI_Finalize();
		return rc < 0 ? AGIPD_EXIT_USAGE : 0;
	}
	rc = agipd_run(MPI_COMM_WORLD, &c, stdout);
	long unclosed = agipd_run_unclosed_files(MPI_COMM_WORLD);
	if (unclosed > 0) {
		/* Every output is complete or removed by now; HDF5's own clean-up
		 * would crash on the file it failed to close. */
		if (rank == 0) {
			fprintf(stderr, "agipd-correct: HDF5 could not close %ld file(s) (see above); leaving without "
					"its clean-up\n", unclosed);
			fflush(stdout);
			fflush(stderr);
			MPI_Abort(MPI_COMM_WORLD, rc ? rc : AGIPD_EXIT_FILES_FAILED);
		}
		MPI_Barrier(MPI_COMM_WORLD);
	}
	MPI_Finalize();
	return rc;
}
