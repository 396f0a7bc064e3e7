/*
 * main_correct.c - agipd-correct: parse options, set up MPI and the heap,
 * run, map the result to the exit status.  All work is in the library.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "agipd_run.h"

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
