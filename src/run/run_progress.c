/*
 * run_progress.c - the progress display of a run: every rank's totals sent
 * to rank 0 by small point-to-point messages, shown by rank 0.
 */
#include <stdlib.h>
#include <string.h>

#include "run_internal.h"

#define P AGIPD_PIXELS

/* ---- progress ---- */

enum { PG_FRAMES, PG_FRAMES_KNOWN, PG_FILES, PG_FILES_STARTED, PG_N };
enum { PG_TAG = 7 };

/* Progress is best effort: an MPI error on its communicator (errors
 * return there) turns it off on this rank, with a warning, and the
 * correction goes on. */
static void run_progress_off(struct ctx *x, const char *what, int rc)
{
	char msg[MPI_MAX_ERROR_STRING] = "";
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	run_event(x, AGIPD_EVENT_WARNING, x->rank, "no progress display: %s: %s", what, msg);
	x->pcomm = MPI_COMM_NULL;   /* freed by progress_end, which every rank reaches */
}

/* Collective on world: the progress communicator, when there is a display. */
void run_progress_begin(struct ctx *x, MPI_Comm world, MPI_Comm *keep)
{
	*keep = MPI_COMM_NULL;
	x->pcomm = MPI_COMM_NULL;
	x->preq = MPI_REQUEST_NULL;
	x->psent = 0;
	memset(x->pmine, 0, sizeof x->pmine);
	if (x->c->verbosity < 1)
		return;
	if (MPI_Comm_dup(world, keep) != MPI_SUCCESS) {
		*keep = MPI_COMM_NULL;
		return;
	}
	MPI_Comm_set_errhandler(*keep, MPI_ERRORS_RETURN);
	x->pcomm = *keep;
	if (x->rank == 0) {
		x->pall = calloc((size_t)x->size * PG_N, sizeof *x->pall);
		x->precv = calloc((size_t)x->size, sizeof *x->precv);
		if (!x->pall || !x->precv)
			x->pcomm = MPI_COMM_NULL;
	}
}

/* Rank 0: take the totals that have arrived. */
static void run_progress_poll(struct ctx *x)
{
	int64_t v[PG_N];
	for (;;) {
		int flag = 0, rc;
		MPI_Status s;
		rc = MPI_Iprobe(MPI_ANY_SOURCE, PG_TAG, x->pcomm, &flag, &s);
		if (rc == MPI_SUCCESS && !flag)
			return;
		if (rc == MPI_SUCCESS)
			rc = MPI_Recv(v, PG_N, MPI_INT64_T, s.MPI_SOURCE, PG_TAG, x->pcomm, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS) {
			run_progress_off(x, "receiving", rc);
			return;
		}
		memcpy(x->pall + (size_t)s.MPI_SOURCE * PG_N, v, sizeof v);
		x->precv[s.MPI_SOURCE]++;
	}
}

/* Counted on this rank; the totals go to rank 0 at most every half second,
 * and only once the previous message has left. */
void run_progress_add(struct ctx *x, int64_t frames, int64_t known, int64_t files, int64_t started)
{
	x->pmine[PG_FRAMES] += frames;
	x->pmine[PG_FRAMES_KNOWN] += known;
	x->pmine[PG_FILES] += files;
	x->pmine[PG_FILES_STARTED] += started;
	if (x->pcomm == MPI_COMM_NULL)
		return;
	if (x->rank == 0) {
		memcpy(x->pall, x->pmine, sizeof x->pmine);
		return;
	}
	double t = run_now();
	if (x->psent > 0 && t - x->plast_send < 0.5)
		return;
	if (x->preq != MPI_REQUEST_NULL) {
		int done = 0, rc = MPI_Test(&x->preq, &done, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS) {
			run_progress_off(x, "sending", rc);
			return;
		}
		if (!done)
			return;
	}
	memcpy(x->psend, x->pmine, sizeof x->pmine);
	int rc = MPI_Isend(x->psend, PG_N, MPI_INT64_T, 0, PG_TAG, x->pcomm, &x->preq);
	if (rc != MPI_SUCCESS) {
		x->preq = MPI_REQUEST_NULL;
		run_progress_off(x, "sending", rc);
		return;
	}
	x->psent++;
	x->plast_send = t;
}

/* Rank 0: a PROGRESS event every ev.progress_every seconds (the program
 * chooses: a few times a second on a terminal, every 10 s into a log).
 * final: the final totals, or NULL for the latest that arrived. */
void run_progress_show(struct ctx *x, const int64_t *final)
{
	if (x->rank != 0 || x->c->verbosity < 1 || (!final && x->pcomm == MPI_COMM_NULL))
		return;
	if (!final)
		run_progress_poll(x);   /* at every batch: the queue stays short */
	double t = run_now(), el = t - x->t_start;
	if (!final && (x->pcomm == MPI_COMM_NULL || t - x->last_progress < x->ev.progress_every))
		return;
	x->last_progress = t;
	int64_t v[PG_N] = { 0 };
	if (final) {
		memcpy(v, final, sizeof v);
	} else {
		for (int q = 0; q < x->size; q++)
			for (int j = 0; j < PG_N; j++)
				v[j] += x->pall[(size_t)q * PG_N + j];
	}
	/* Frames of files not started yet: estimated from those started. */
	double total = (double)v[PG_FRAMES_KNOWN];
	if (v[PG_FILES_STARTED] > 0 && v[PG_FILES_STARTED] < x->ntodo)
		total += total / (double)v[PG_FILES_STARTED] * (double)(x->ntodo - v[PG_FILES_STARTED]);
	double rate = el > 0 ? (double)v[PG_FRAMES] / el : 0;
	double eta = rate > 0 && total > (double)v[PG_FRAMES] ? (total - (double)v[PG_FRAMES]) / rate : 0;
	char line[256];
	snprintf(line, sizeof line, "[%7.1f s] files %lld/%d, frames %lld/%s%.0f (%.0f%%), %.0f frames/s, %.2f GB/s, "
		 "ETA %.0f s", el, (long long)v[PG_FILES], x->ntodo, (long long)v[PG_FRAMES],
		 v[PG_FILES_STARTED] < x->ntodo ? "~" : "", total,
		 total > 0 ? 100.0 * (double)v[PG_FRAMES] / total : 0, rate, rate * 4 * P / 1e9, eta);
	if (x->ev.fn) {
		struct agipd_event ev = { .kind = AGIPD_EVENT_PROGRESS, .rank = -1, .final = final != NULL, .text = line };
		x->ev.fn(&ev, x->ev.arg);
	}
}

/*
 * Collective on world: rank 0 takes the messages still on their way (every
 * rank says how many it sent), every send completes, the final line shows
 * the exact totals (a reduction), and the communicator goes.
 */
void run_progress_end(struct ctx *x, MPI_Comm world, MPI_Comm *keep)
{
	if (*keep == MPI_COMM_NULL)
		return;
	int n = x->psent, *ns = x->rank == 0 ? calloc((size_t)x->size, sizeof *ns) : NULL;
	int64_t tot[PG_N];
	MPI_Gather(&n, 1, MPI_INT, ns, 1, MPI_INT, 0, world);
	if (x->rank == 0 && ns && x->pcomm != MPI_COMM_NULL)
		for (int q = 1; q < x->size; q++)
			while (x->precv[q] < ns[q]) {
				int64_t v[PG_N];
				int rc = MPI_Recv(v, PG_N, MPI_INT64_T, q, PG_TAG, x->pcomm, MPI_STATUS_IGNORE);
				if (rc != MPI_SUCCESS) {
					run_progress_off(x, "receiving", rc);
					break;
				}
				x->precv[q]++;
			}
	MPI_Reduce(x->pmine, tot, PG_N, MPI_INT64_T, MPI_SUM, 0, world);
	if (x->preq != MPI_REQUEST_NULL && MPI_Wait(&x->preq, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		x->preq = MPI_REQUEST_NULL;
	run_progress_show(x, tot);
	free(ns);
	free(x->pall);
	free(x->precv);
	x->pall = NULL;
	x->precv = NULL;
	x->pcomm = MPI_COMM_NULL;
	MPI_Comm_free(keep);
}
