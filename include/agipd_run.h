/*
 * agipd_run.h - the MPI layer: which rank corrects which file and trains,
 * constants shared per node, agreement on errors before every collective
 * step, and the run summary.  Sits above the raw reader, the constants
 * loader, the kernel and the writer.
 */
#ifndef AGIPD_RUN_H
#define AGIPD_RUN_H

#include <stdio.h>

#include <mpi.h>

#include "agipd_opts.h"

/* Exit statuses of a run (also the program's exit codes). */
enum {
	AGIPD_EXIT_OK = 0,            /* every file corrected or already complete */
	AGIPD_EXIT_FILES_FAILED = 1,  /* some files failed; the others are complete */
	AGIPD_EXIT_USAGE = 2,         /* bad options or set-up: nothing was written */
	AGIPD_EXIT_INTERRUPTED = 3,   /* SIGTERM/SIGINT: stopped cleanly, partial files removed */
};

/*
 * Correct the run that c describes.  Collective on comm: every rank calls it
 * with the same configuration.  Routine output goes to `out` on rank 0 of
 * comm (by c->verbosity); errors to stderr from the rank that meets them.
 * Returns an AGIPD_EXIT_* status, the same on every rank.
 */
int agipd_run(MPI_Comm comm, const struct agipd_config *c, FILE *out);

/* Ask a running agipd_run() to stop at the next batch (async-signal-safe). */
void agipd_run_request_stop(int sig);

/*
 * HDF5 files still open in any rank after agipd_run() (the most over the
 * ranks of comm; collective).  Normally 0.  HDF5 1.10 keeps a half-destroyed
 * file id after an H5Fclose that failed (a disk that filled up), and its
 * clean-up in MPI_Finalize then crashes on it: a program that sees a
 * non-zero count should leave with MPI_Abort instead.
 */
long agipd_run_unclosed_files(MPI_Comm comm);

#endif
