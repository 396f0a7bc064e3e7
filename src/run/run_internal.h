/*
 * run_internal.h - what the files of the MPI layer share (src/run*.c): the
 * run's context, its task list and the functions one file calls in another.
 * Not installed, not for the tools: the library's interface is agipd_run.h.
 */
#ifndef AGIPD_RUN_INTERNAL_H
#define AGIPD_RUN_INTERNAL_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "agipd_conditions.h"
#include "agipd_consts_h5.h"
#include "agipd_consts_share.h"
#include "agipd_err.h"
#include "agipd_opts.h"
#include "agipd_plan.h"
#include "agipd_raw_h5.h"
#include "agipd_run.h"

/* Rank 0 of a run locks its files in OUT/RUN_LOCK_NAME (run_outdir.c). */
#define RUN_LOCK_NAME ".agipd-correct.lock"

/* T_BUSY: another run holds the file's lock; T_OTHER: a complete output made
 * from another input or with other options (needs --overwrite). */
enum task_state { T_PENDING = 0, T_EXISTS, T_MISSING, T_BUSY, T_OTHER };
enum res_status { RES_NONE = 0, RES_OK, RES_SKIPPED, RES_FAILED, RES_NOT_RUN };

struct task {
	int module, seq, state;
};

/* Per-rank counters for the summary; plain doubles so they gather as one. */
enum { C_FRAMES, C_BYTES_IN, C_T_CONSTS, C_T_READ, C_T_CORRECT, C_T_WRITE, C_T_WAIT, C_T_TOTAL,
       C_Z_CHUNKS, C_Z_IN, C_Z_OUT, C_Z_SECONDS, C_T_GATHER, C_CONST_CELLS, C_CONST_LOADS, C_PEAK_RSS_MB, C_NCOUNTERS };

struct ctx {
	MPI_Comm world, node;
	int rank, size;
	const struct agipd_config *c;
	struct agipd_run_events ev;
	char raw_dir[4096];
	char tmp_tag[96];              /* HOST.PID of rank 0: this run's temporaries */
	int lock_fd;                   /* rank 0: OUT/.agipd-correct.lock, or -1 */
	char start_time[32];
	double cnt[C_NCOUNTERS];
	struct agipd_consts_share cache;  /* this node's constants of the module */
	struct agipd_conditions cond;  /* operating conditions of the run (SPEC 6.1) */
	unsigned warned;               /* modules whose conditions warning was shown */
	float *scratch;
	/* progress: every rank's running totals [frames done, frames of started
	 * files, files done, files started], sent to rank 0 now and then as
	 * small point-to-point messages on a communicator of their own (no
	 * one-sided windows: those need an RMA component that works between
	 * nodes, which plain TCP clusters lack) */
	MPI_Comm pcomm;                /* MPI_COMM_NULL: no progress */
	int64_t pmine[4], psend[4];
	int64_t *pall;                 /* rank 0: the latest totals of every rank */
	int *precv;                    /* rank 0: messages received from every rank */
	MPI_Request preq;
	int psent;
	double plast_send;
	int ntodo;
	double t_start, last_progress;
	/* batch buffers */
	uint16_t *raw;
	void *data;
	uint8_t *gain;
	uint32_t *mask;
	uint32_t *order;
};

/* An event of `kind` about `rank` (-1: the run) with a printf text. */
void run_event(struct ctx *x, enum agipd_event_kind kind, int rank, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Text for one event built with stdio: a stream, and the event it makes
 * (never NULL: /dev/null when there is no memory). */
FILE *run_output_begin(char **buf, size_t *len);
void run_output_end(struct ctx *x, enum agipd_event_kind kind, FILE *f, char **buf);

/* The signal that asked the run to stop, or 0 (agipd_run_request_stop()). */
int run_stop_signal(void);

/* run.c: the clock, the agreement of a group on a status (0: all
 * succeeded, else -1 with msg the lowest failing rank's; collective on g),
 * local time as ISO 8601. */
double run_now(void);
int run_agree(MPI_Comm g, int failed, char *msg);
void run_iso_time(char *buf, size_t len);

/* run_outdir.c (rank 0): the output folder made and checked; a folder that
 * may not exist yet resolved; this run's files locked (the lock file's fd,
 * or -1); temporaries of runs that are gone removed; existing outputs
 * checked (tasks[].state, msgs). */
int run_is_dir(const char *p);
int run_check_out_folder(struct ctx *x, agipd_err *e);
int run_resolve_future(const char *path, char out[PATH_MAX]);
int run_lock_outputs(struct ctx *x, struct task *tasks, int ntasks);
void run_unlock_outputs(struct ctx *x);
void run_remove_stale_temporaries(struct ctx *x, const struct task *tasks, int ntasks);
void run_check_outputs(struct ctx *x, struct task *tasks, int ntasks, char (*msgs)[AGIPD_ERRLEN]);

/* run_inputs.c (rank 0): the tasks (malloc; their count or -1), the run's
 * conditions into x->cond. */
int run_discover(struct ctx *x, struct task **out, agipd_err *e);
int run_resolve_conditions(struct ctx *x, const struct task *tasks, int ntasks, agipd_err *e);

/* run_progress.c: begin and end are collective on world. */
void run_progress_begin(struct ctx *x, MPI_Comm world, MPI_Comm *keep);
void run_progress_add(struct ctx *x, int64_t frames, int64_t known, int64_t files, int64_t started);
void run_progress_show(struct ctx *x, const int64_t *final);
void run_progress_end(struct ctx *x, MPI_Comm world, MPI_Comm *keep);

/* run_file.c: task t corrected by group g (collective on g and nm); 0, or
 * -1 with e set on every rank of g. */
int run_file(struct ctx *x, const struct task *t, MPI_Comm g, MPI_Comm nm, uint64_t *frames_out,
	     agipd_err *e);
/* SHA-256 of the raw file's INDEX (trainIds, first, count), as hex. */
void run_index_checksum(const struct agipd_raw *r, char hex[65]);
/* An option's value as the provenance stores it (paths absolute). */
int run_param_value(const struct agipd_config *c, const char *name, char *buf, size_t len);

/* run_report.c (rank 0): the --dry-run plan, the summary (events), the
 * JSON report (0, or -1 with errno). */
int run_print_plan(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks, const int *todo);
void run_print_summary(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
		       const uint64_t *frames, char (*msgs)[AGIPD_ERRLEN], const double *all, double wall);
int run_write_report(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
		     const uint64_t *frames, const double *secs, char (*msgs)[AGIPD_ERRLEN], const double *all,
		     double wall, int ret);

#endif
