/*
 * agipd_run.h - the MPI layer: which rank corrects which file and trains,
 * constants shared per node, agreement on errors before every collective
 * step, and the run summary.  Sits above the raw reader, the constants
 * loader, the kernel and the writer.
 */
#ifndef AGIPD_RUN_H
#define AGIPD_RUN_H

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
 * What a run tells, as events: the library never prints; the program
 * renders them (a terminal, a log, a JSON file).  Delivered on the rank that
 * makes them, synchronously, from inside agipd_run().
 */
enum agipd_event_kind {
	AGIPD_EVENT_OUTPUT = 0,   /* routine output of rank 0 (plan, summary, preview): whole lines */
	AGIPD_EVENT_ERROR,        /* an error (a file's, or the run's) */
	AGIPD_EVENT_WARNING,
	AGIPD_EVENT_NOTE,         /* more about the run: the failed files, a file's time (verbosity 2) */
	AGIPD_EVENT_PROGRESS,     /* rank 0's progress line */
};

struct agipd_event {
	enum agipd_event_kind kind;
	int rank;                 /* the world rank it is about, or -1 for the run */
	int final;                /* PROGRESS: the run's last progress line */
	const char *text;         /* one line without its newline; OUTPUT: whole lines */
};

struct agipd_run_events {
	void (*fn)(const struct agipd_event *ev, void *arg);   /* NULL: nothing is told */
	void *arg;
	double progress_every;    /* seconds between progress lines (at verbosity 1 and more) */
};

/*
 * Correct the run that c describes.  Collective on comm: every rank calls it
 * with the same configuration.  Routine output, warnings and errors leave
 * as events to ev (routine output on rank 0 of comm, by c->verbosity;
 * errors from the rank that meets them).  Returns an AGIPD_EXIT_* status,
 * the same on every rank.
 */
int agipd_run(MPI_Comm comm, const struct agipd_config *c, const struct agipd_run_events *ev);

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
