/*
 * run.c - the MPI layer of agipd-correct: agipd_run() from start to end.
 *
 * The run in files: run_inputs.c (which raw files, which conditions),
 * run_outdir.c (the output folder: locks, temporaries, outputs that exist),
 * plan.c (who does which file and trains), consts_share.c (constants loaded,
 * converted and shared per node), run_file.c (one file: read, correct,
 * write), run_progress.c and run_report.c (what the run tells, as events:
 * agipd_run.h).  This file holds the order of the steps and the agreement
 * between ranks.
 *
 * Plan (agipd_plan.h, a pure function every rank computes alike, files
 * weighed by their frames estimated from their sizes).  --schedule groups
 * (the default): the world is split once into fixed groups of contiguous
 * ranks, each correcting its contiguous run of files back to back, with no
 * collective on the world between files (correct_groups()); groups tell
 * each other of a failure under --fail-fast, or of a signal, with
 * point-to-point notices looked for at file boundaries.  --schedule
 * rounds: the files are taken in lockstep rounds of at most P (ranks)
 * files, in a round the ranks split into one contiguous group per file, and
 * all ranks agree after each round (correct_rounds()).  Inside a group,
 * ranks take contiguous runs of trains holding about the same number of
 * frames.
 *
 * Agreement.  Before every collective step of a file, the group agrees on
 * the status of what each rank did (run_agree()), so one rank's failure
 * moves the whole group to the clean-up path together and nobody waits in a
 * collective call that the others will never make.
 *
 * Constants.  Ranks of one node that work on the same module (groups: the
 * ranks of one group on the node) share one copy of its constants in an
 * MPI-3 shared-memory window, loaded and transposed once by the lowest such
 * rank, and kept for the next file when the same ranks stay on the same
 * module.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "agipd_names.h"
#include "agipd_agree.h"
#include "run_internal.h"

#define P AGIPD_PIXELS

static volatile sig_atomic_t stop_signal;

void agipd_run_request_stop(int sig)
{
	stop_signal = sig;
}

int run_stop_signal(void)
{
	return (int)stop_signal;
}

void run_event(struct ctx *x, enum agipd_event_kind kind, int rank, const char *fmt, ...)
{
	char small[2048], *text = small;
	va_list ap;
	if (!x->ev.fn)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL) {
		va_start(ap, fmt);
		vsnprintf(text, (size_t)n + 1, fmt, ap);
		va_end(ap);
	} else if (n >= (int)sizeof small) {
		text = small;   /* no memory for the whole text: cut */
	}
	struct agipd_event e = { .kind = kind, .rank = rank, .final = 0, .text = text };
	x->ev.fn(&e, x->ev.arg);
	if (text != small)
		free(text);
}

FILE *run_output_begin(char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	FILE *f = open_memstream(buf, len);
	return f ? f : fopen("/dev/null", "w");
}

void run_output_end(struct ctx *x, enum agipd_event_kind kind, FILE *f, char **buf)
{
	int bad = fclose(f) != 0;
	if (*buf && !bad && x->ev.fn) {
		struct agipd_event e = { .kind = kind, .rank = -1, .final = 0, .text = *buf };
		x->ev.fn(&e, x->ev.arg);
	}
	free(*buf);
	*buf = NULL;
}

long agipd_run_unclosed_files(MPI_Comm comm)
{
	long n = (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE);
	if (n < 0)
		n = 0;
	MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_LONG, MPI_MAX, comm);
	return n;
}

double run_now(void)
{
	return MPI_Wtime();
}

void run_iso_time(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

/* The group agrees on a status (agipd_agree()).  Collective on g. */
int run_agree(MPI_Comm g, int failed, char *msg)
{
	return agipd_agree(g, failed, msg);
}

/* ---- the run ---- */

static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* What became of every task, gathered on rank 0 at the end. */
struct results {
	int ntasks, ntodo;
	int *todo;                     /* indices of the tasks to correct, in plan order */
	int *status;                   /* RES_* */
	int *root;                     /* world rank of the group's rank 0, or -1 */
	uint64_t *frames;
	double *secs;
	char (*msgs)[AGIPD_ERRLEN];    /* why a task failed, or the conditions it ignored
					  (rank 0, and its group's rank 0) */
};

static void results_free(struct results *res)
{
	free(res->todo);
	free(res->status);
	free(res->root);
	free(res->frames);
	free(res->secs);
	free(res->msgs);
}

static void batches_free(struct ctx *x)
{
	free(x->raw);
	free(x->data);
	free(x->gain);
	free(x->mask);
	free(x->scratch);
	free(x->order);
}

/* The files of the run, found by rank 0 (output folder checked), known to
 * all.  Returns their count, or -1 (said on rank 0).  Collective. */
static int find_tasks(struct ctx *x, struct task **tasks)
{
	agipd_err e = { "" };
	int ntasks = 0;
	if (x->rank == 0) {
		ntasks = run_discover(x, tasks, &e);
		if (ntasks >= 0 && run_check_out_folder(x, &e) < 0)
			ntasks = -1;
	}
	MPI_Bcast(&ntasks, 1, MPI_INT, 0, x->world);
	if (ntasks < 0) {
		if (x->rank == 0)
			run_event(x, AGIPD_EVENT_ERROR, -1, "%s", e.msg);
		free(*tasks);   /* found, before the output folder was refused */
		*tasks = NULL;
		return -1;
	}
	MPI_Bcast(x->raw_dir, sizeof x->raw_dir, MPI_CHAR, 0, x->world);
	if (x->rank != 0)
		*tasks = malloc((size_t)ntasks * sizeof **tasks);
	MPI_Bcast(*tasks, ntasks * (int)sizeof **tasks, MPI_BYTE, 0, x->world);
	return ntasks;
}

/* Operating conditions (SPEC 6.1), read by rank 0; the run's configuration
 * with their gain mode unless the command line gives one (malloc), or NULL
 * (said on rank 0).  Collective. */
static struct agipd_config *run_config(struct ctx *x, const struct task *tasks, int ntasks)
{
	agipd_err e = { "" };
	int st = x->rank == 0 ? run_resolve_conditions(x, tasks, ntasks, &e) : 0;
	MPI_Bcast(&st, 1, MPI_INT, 0, x->world);
	MPI_Bcast(&x->cond, sizeof x->cond, MPI_BYTE, 0, x->world);
	struct agipd_config *local = st ? NULL : malloc(sizeof *local);
	if (!local) {
		if (x->rank == 0)
			run_event(x, AGIPD_EVENT_ERROR, -1, "%s", st ? e.msg : "out of memory");
		return NULL;
	}
	*local = *x->c;
	local->params.gain_mode = agipd_conditions_gain_mode(&x->cond);
	return local;
}

/* This run's files locked; temporaries of runs that are gone removed;
 * complete outputs made alike kept unless --overwrite (rank 0, known to
 * all).  Collective. */
static void claim_outputs(struct ctx *x, struct task *tasks, int ntasks, char (*msgs)[AGIPD_ERRLEN])
{
	const struct agipd_config *c = x->c;
	x->lock_fd = -1;
	if (x->rank == 0) {
		char host[64] = "";
		gethostname(host, sizeof host - 1);
		for (char *h = host; *h; h++)
			if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') || *h == '-'))
				*h = '_';
		snprintf(x->tmp_tag, sizeof x->tmp_tag, "%s.%ld", host[0] ? host : "host", (long)getpid());
		if (!c->dry_run && c->writer != AGIPD_WRITE_NULL) {
			x->lock_fd = run_lock_outputs(x, tasks, ntasks);
			run_remove_stale_temporaries(x, tasks, ntasks);
		}
		if (!c->overwrite && c->writer != AGIPD_WRITE_NULL)
			run_check_outputs(x, tasks, ntasks, msgs);
		for (int i = 0; i < ntasks; i++) {
			char f[4200];
			if (tasks[i].state == T_BUSY &&
			    agipd_corr_name(f, sizeof f, c->out_folder, c->run, tasks[i].module, tasks[i].seq) == 0)
				agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s: another agipd-correct run into %s is writing this "
					   "file now (it holds its lock in %s): left alone", f, c->out_folder, RUN_LOCK_NAME);
		}
	}
	MPI_Bcast(x->tmp_tag, sizeof x->tmp_tag, MPI_CHAR, 0, x->world);
	MPI_Bcast(tasks, ntasks * (int)sizeof *tasks, MPI_BYTE, 0, x->world);
}

/* The results of every task before the run: the pending ones to do, the
 * others skipped or failed with their reason. */
static void classify(struct ctx *x, const struct task *tasks, int ntasks, struct results *res)
{
	const struct agipd_config *c = x->c;
	res->ntasks = ntasks;
	res->todo = malloc((size_t)ntasks * sizeof *res->todo);
	res->ntodo = 0;
	res->status = calloc((size_t)ntasks, sizeof *res->status);
	res->root = malloc((size_t)ntasks * sizeof *res->root);
	res->frames = calloc((size_t)ntasks, sizeof *res->frames);
	res->secs = calloc((size_t)ntasks, sizeof *res->secs);
	for (int i = 0; i < ntasks; i++) {
		char f[4200];
		res->root[i] = -1;
		if (tasks[i].state == T_PENDING)
			res->todo[res->ntodo++] = i;
		else if (tasks[i].state == T_EXISTS)
			res->status[i] = RES_SKIPPED;
		else if (tasks[i].state == T_BUSY || tasks[i].state == T_OTHER)
			res->status[i] = RES_FAILED;   /* msgs[i] on rank 0 says why */
		else {
			res->status[i] = RES_FAILED;
			if (tasks[i].seq < 0)
				agipd_msgf(res->msgs[i], AGIPD_ERRLEN, "%s: no raw files of module %d", x->raw_dir,
					   tasks[i].module);
			else if (agipd_raw_name(f, sizeof f, x->raw_dir, c->run, tasks[i].module, tasks[i].seq) == 0)
				agipd_msgf(res->msgs[i], AGIPD_ERRLEN, "%s: missing raw file", f);
		}
	}
}

/* --dry-run on rank 0: the conditions, the plan, and every file that could
 * not be corrected with its reason.  Returns the run's status. */
static int dry_run(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks,
		   const struct results *res)
{
	if (x->rank != 0)
		return AGIPD_EXIT_OK;
	char *buf;
	size_t len;
	FILE *o = run_output_begin(&buf, &len);
	if (o) {
		fprintf(o, "conditions:\n");
		agipd_conditions_print(o, &x->cond);
		run_output_end(x, AGIPD_EVENT_OUTPUT, o, &buf);
	}
	int bad = run_print_plan(x, plan, tasks, res->todo);
	for (int i = 0; i < res->ntasks; i++)
		if (res->status[i] == RES_FAILED) {
			bad++;
			if (tasks[i].seq >= 0)
				run_event(x, AGIPD_EVENT_ERROR, -1, "AGIPD%02d S%05d: %s", tasks[i].module,
					tasks[i].seq, res->msgs[i]);
			else
				run_event(x, AGIPD_EVENT_ERROR, -1, "AGIPD%02d: %s", tasks[i].module, res->msgs[i]);
		}
	if (bad) {
		run_event(x, AGIPD_EVENT_NOTE, -1, "dry run: %d file(s) could not be corrected", bad);
		return AGIPD_EXIT_FILES_FAILED;
	}
	return AGIPD_EXIT_OK;
}

/* Buffers for one batch, on every rank; 0, or -1 when any rank lacks
 * memory (said on rank 0).  Raw frames are usually read in place from a
 * mapping; the copy buffer is only touched for chunked or filtered raw
 * data.  Collective. */
static int batches_alloc(struct ctx *x)
{
	const size_t B = (size_t)x->c->batch_frames;
	x->raw = malloc(B * 2 * P * sizeof *x->raw);
	x->data = malloc(B * P * 4);
	x->gain = malloc(B * P);
	x->mask = malloc(B * P * sizeof *x->mask);
	x->scratch = malloc(P * sizeof *x->scratch);
	x->order = malloc(B * sizeof *x->order);
	int st = !x->raw || !x->data || !x->gain || !x->mask || !x->scratch || !x->order;
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, x->world);
	if (st && x->rank == 0)
		run_event(x, AGIPD_EVENT_ERROR, -1, "out of memory for %zu-frame batches", B);
	return st ? -1 : 0;
}

/* Task ti corrected by the group g (nm: the ranks of this node on the same
 * module); its group's rank 0 records the result. */
static void correct_task(struct ctx *x, const struct task *tasks, int ti, MPI_Comm g, MPI_Comm nm,
			 struct results *res)
{
	const struct task *t = &tasks[ti];
	agipd_err e = { "" };
	uint64_t nf = 0;
	double t0 = run_now();
	int gr;
	MPI_Comm_rank(g, &gr);
	int rc = run_file(x, t, g, nm, &nf, &e);
	if (gr != 0)
		return;
	res->root[ti] = x->rank;
	res->status[ti] = rc == 0 ? RES_OK : RES_FAILED;
	res->frames[ti] = nf;
	res->secs[ti] = run_now() - t0;
	if (rc) {
		snprintf(res->msgs[ti], AGIPD_ERRLEN, "%s", e.msg);
		run_event(x, AGIPD_EVENT_ERROR, x->rank, "AGIPD%02d S%05d: %s", t->module, t->seq, e.msg);
	} else if (x->cache.valid && x->cache.meta.warning[0]) {
		/* Each file's report entry names it; the event comes once a module. */
		snprintf(res->msgs[ti], AGIPD_ERRLEN, "%s (--ignore-conditions)", x->cache.meta.warning);
		if (!(x->warned >> t->module & 1))
			run_event(x, AGIPD_EVENT_WARNING, x->rank, "module %d: %s", t->module, res->msgs[ti]);
		x->warned |= 1u << t->module;
	}
	if (rc == 0 && x->c->verbosity >= 2)
		run_event(x, AGIPD_EVENT_NOTE, x->rank, "AGIPD%02d S%05d: %" PRIu64 " frames in %.2f s", t->module,
			  t->seq, nf, run_now() - t0);
}

/* The rounds of the plan.  Returns 0, 1 (stopped by --fail-fast) or 2
 * (stopped by a signal).  Collective. */
static int correct_rounds(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks,
			  struct results *res)
{
	int stopped = 0;
	for (int round = 0; round < plan->nrounds && !stopped; round++) {
		const struct agipd_plan_group *mg = agipd_plan_group_of(plan, round, x->rank);
		int mine = mg ? mg->file : -1;
		MPI_Comm g = MPI_COMM_NULL, nm = MPI_COMM_NULL;
		MPI_Comm_split(x->world, mine >= 0 ? mine : MPI_UNDEFINED, x->rank, &g);
		int module = mine >= 0 ? tasks[res->todo[mine]].module : -1;
		MPI_Comm_split(x->node, module >= 0 ? module : MPI_UNDEFINED, x->rank, &nm);
		if (mine < 0) {
			agipd_consts_share_release(&x->cache);
		} else {
			correct_task(x, tasks, res->todo[mine], g, nm, res);
			MPI_Comm_free(&g);
			MPI_Comm_free(&nm);
		}
		run_progress_show(x, NULL);
		/* Stop everyone after a signal, or after a failure with --fail-fast. */
		int flags[2] = { run_stop_signal() != 0, 0 };
		for (int j = 0; j < res->ntasks; j++)
			if (res->status[j] == RES_FAILED && res->root[j] == x->rank)
				flags[1] = 1;
		agipd_allreduce_yielding(flags, 2, MPI_INT, MPI_MAX, x->world);
		if (flags[0] || (flags[1] && x->c->fail_fast))
			stopped = flags[0] ? 2 : 1;
	}
	return stopped;
}

/*
 * Notices between the groups of a plan without lockstep: a group whose file
 * failed (with --fail-fast) or that a signal stopped tells the first rank of
 * every other group, point-to-point on a duplicate of the world; a group
 * looks for notices at each file boundary.  At the end every rank learns how
 * many notices were sent to it and takes the ones still on their way, so
 * nothing is left in flight.
 */
struct notices {
	MPI_Comm comm;
	int *sent;                 /* notices sent to each rank (+ 2: stopped by failure, by signal) */
	MPI_Request *req;
	int nreq, received, got;   /* got: the strongest notice received (1 failure, 2 signal) */
	int out;                   /* the notice sent */
};

static int notices_begin(struct ctx *x, struct notices *n)
{
	memset(n, 0, sizeof *n);
	MPI_Comm_dup(x->world, &n->comm);
	MPI_Comm_set_errhandler(n->comm, MPI_ERRORS_RETURN);
	n->sent = calloc((size_t)x->size + 2, sizeof *n->sent);
	n->req = malloc((size_t)x->size * sizeof *n->req);
	int st = !n->sent || !n->req;
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, x->world);
	if (!st)
		return 0;
	if (x->rank == 0)
		run_event(x, AGIPD_EVENT_ERROR, -1, "out of memory for %d rank(s)", x->size);
	free(n->sent);   /* on every rank: notices_end() then makes no collective */
	free(n->req);
	n->sent = NULL;
	n->req = NULL;
	return -1;
}

/* Group rank0..: notice `kind` to the first rank of every other group. */
static void notices_send(struct ctx *x, struct notices *n, const struct agipd_plan *plan, int rank0, int kind)
{
	n->out = kind;
	for (int i = plan->round_first[0]; i < plan->round_first[1]; i++) {
		int to = plan->groups[i].rank0;
		if (to == rank0 || n->nreq >= x->size ||
		    MPI_Isend(&n->out, 1, MPI_INT, to, 0, n->comm, &n->req[n->nreq]) != MPI_SUCCESS)
			continue;
		n->nreq++;
		n->sent[to]++;
	}
}

static void notices_poll(struct notices *n)
{
	int flag = 1, v;
	MPI_Status st;
	while (flag && MPI_Iprobe(MPI_ANY_SOURCE, 0, n->comm, &flag, &st) == MPI_SUCCESS && flag)
		if (MPI_Recv(&v, 1, MPI_INT, st.MPI_SOURCE, 0, n->comm, MPI_STATUS_IGNORE) == MPI_SUCCESS) {
			n->received++;
			n->got = v > n->got ? v : n->got;
		}
}

/* A request waited for as agipd_wait_yielding(), rank 0 showing progress. */
static void run_wait_showing(struct ctx *x, MPI_Request *req)
{
	for (int done = 0;;) {
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (done)
			return;
		run_progress_show(x, NULL);
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* The end, collective on world: notices still on their way taken, sends
 * completed; returns how the run stopped (0, 1 failure, 2 signal), alike on
 * every rank. */
static int notices_end(struct ctx *x, struct notices *n, int stopped)
{
	MPI_Request req;
	if (n->sent) {
		n->sent[x->size] = stopped == 1;
		n->sent[x->size + 1] = stopped == 2;
		MPI_Iallreduce(MPI_IN_PLACE, n->sent, x->size + 2, MPI_INT, MPI_SUM, x->world, &req);
		run_wait_showing(x, &req);
		for (int v; n->received < n->sent[x->rank]; n->received++)
			MPI_Recv(&v, 1, MPI_INT, MPI_ANY_SOURCE, 0, n->comm, MPI_STATUS_IGNORE);
		MPI_Waitall(n->nreq, n->req, MPI_STATUSES_IGNORE);
		stopped = n->sent[x->size + 1] ? 2 : n->sent[x->size] ? 1 : 0;
	}
	free(n->sent);
	free(n->req);
	MPI_Comm_free(&n->comm);
	return stopped;
}

/* After a file of group g (first rank rank0): the group agrees whether to
 * stop (a signal, a failure here or a notice, with --fail-fast) and tells
 * the other groups when the cause is its own.  0, 1 (failure) or 2 (signal). */
static int group_boundary(struct ctx *x, struct notices *n, const struct agipd_plan *plan, MPI_Comm g, int rank0,
			  int failed)
{
	notices_poll(n);
	int f[4] = { run_stop_signal() != 0, failed && x->c->fail_fast, n->got == 2, n->got == 1 };
	agipd_allreduce_yielding(f, 4, MPI_INT, MPI_MAX, g);
	if ((f[0] || f[1]) && x->rank == rank0)
		notices_send(x, n, plan, rank0, f[0] ? 2 : 1);
	return f[0] || f[2] ? 2 : f[1] || f[3] ? 1 : 0;
}

/* A plan without lockstep: the world split once into the plan's groups,
 * each correcting its files back to back (nm: its ranks on this node, the
 * same communicator for all its files, so constants stay while its module
 * does), with no collective on the world between files.  Returns 0, 1
 * (stopped by --fail-fast) or 2 (stopped by a signal).  Collective. */
static int correct_groups(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks,
			  struct results *res)
{
	const struct agipd_plan_group *mg = agipd_plan_group_of(plan, 0, x->rank);
	MPI_Comm g = MPI_COMM_NULL, nm = MPI_COMM_NULL;
	struct notices n;
	int stopped = 0;
	if (notices_begin(x, &n) < 0)
		return notices_end(x, &n, 1);
	MPI_Comm_split(x->world, mg ? mg->rank0 : MPI_UNDEFINED, x->rank, &g);
	if (mg) {
		MPI_Comm_split_type(g, MPI_COMM_TYPE_SHARED, x->rank, MPI_INFO_NULL, &nm);
		for (int round = 0; round < plan->nrounds && !stopped; round++) {
			const struct agipd_plan_group *pg = agipd_plan_group_of(plan, round, x->rank);
			if (!pg)
				break;
			int ti = res->todo[pg->file];
			correct_task(x, tasks, ti, g, nm, res);
			run_progress_show(x, NULL);
			stopped = group_boundary(x, &n, plan, g, mg->rank0,
						 res->status[ti] == RES_FAILED && res->root[ti] == x->rank);
		}
		MPI_Comm_free(&nm);
		MPI_Comm_free(&g);
	}
	return notices_end(x, &n, stopped);
}

/* Results to rank 0: statuses and frames by reduction, messages by
 * message (why a file failed, or the conditions a corrected one ignored).
 * Collective. */
static void gather_results(struct ctx *x, struct results *res)
{
	const int n = res->ntasks;
	MPI_Allreduce(MPI_IN_PLACE, res->root, n, MPI_INT, MPI_MAX, x->world);
	if (x->c->dry_run)
		return;
	MPI_Allreduce(MPI_IN_PLACE, res->status, n, MPI_INT, MPI_MAX, x->world);
	MPI_Allreduce(MPI_IN_PLACE, res->frames, n, MPI_UINT64_T, MPI_MAX, x->world);
	MPI_Allreduce(MPI_IN_PLACE, res->secs, n, MPI_DOUBLE, MPI_MAX, x->world);
	for (int i = 0; i < n; i++) {
		if ((res->status[i] != RES_FAILED && res->status[i] != RES_OK) || res->root[i] <= 0)
			continue;
		if (x->rank == res->root[i])
			MPI_Send(res->msgs[i], AGIPD_ERRLEN, MPI_CHAR, 0, i, x->world);
		else if (x->rank == 0)
			MPI_Recv(res->msgs[i], AGIPD_ERRLEN, MPI_CHAR, res->root[i], i, x->world, MPI_STATUS_IGNORE);
	}
}

/* Rank 0 after a run: the summary and the report.  Returns the
 * run's status (a report that cannot be written fails the run). */
static int finish(struct ctx *x, const struct task *tasks, const struct results *res, const double *all,
		  double t_start, int ret)
{
	const struct agipd_config *c = x->c;
	if (c->dry_run)
		return ret;
	double wall = run_now() - t_start;
	run_print_summary(x, tasks, res->ntasks, res->status, res->frames, res->msgs, all, wall);
	if (c->report[0] && run_write_report(x, tasks, res->ntasks, res->status, res->frames, res->secs, res->msgs,
					     all, wall, ret) < 0) {
		run_event(x, AGIPD_EVENT_ERROR, -1, "%s: cannot write the report: %s", c->report, strerror(errno));
		if (ret == AGIPD_EXIT_OK)
			ret = AGIPD_EXIT_FILES_FAILED;
	}
	return ret;
}

/*
 * The frames of the files to correct as the plan weighs them, estimated by
 * rank 0 from their sizes (a stat() each, no HDF5 open;
 * agipd_plan_frames_of_size()); known to all (malloc), or NULL (files
 * count alike).  Collective.
 */
static uint64_t *plan_frames(struct ctx *x, const struct task *tasks, const struct results *res)
{
	uint64_t *fr = malloc(((size_t)res->ntodo + 1) * sizeof *fr);
	int ok = fr != NULL;
	MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, x->world);
	if (!ok) {
		free(fr);
		return NULL;
	}
	for (int i = 0; i < res->ntodo && x->rank == 0; i++) {
		const struct task *t = &tasks[res->todo[i]];
		char path[4200];
		struct stat st;
		fr[i] = agipd_raw_name(path, sizeof path, x->raw_dir, x->c->run, t->module, t->seq) == 0 &&
				stat(path, &st) == 0 ? agipd_plan_frames_of_size((uint64_t)st.st_size) : 0;
	}
	MPI_Bcast(fr, res->ntodo, MPI_UINT64_T, 0, x->world);
	return fr;
}

/* Plan, correct, release: the run proper once its tasks are known. */
static int run_tasks(struct ctx *x, const struct task *tasks, struct results *res, struct agipd_plan *plan,
		     double t_start)
{
	const struct agipd_config *c = x->c;
	agipd_err e = { "" };
	int node_size;
	/* Every rank computes the plan alike, files weighed by their frames as
	 * estimated from their sizes. */
	MPI_Comm_size(x->node, &node_size);
	uint64_t *frames = plan_frames(x, tasks, res);
	int rc = agipd_plan_make(plan, frames, res->ntodo, x->size, node_size, c->writer == AGIPD_WRITE_SERIAL,
				 c->schedule == AGIPD_SCHEDULE_ROUNDS ? AGIPD_PLAN_BALANCED : AGIPD_PLAN_GROUPS, &e);
	free(frames);
	if (rc < 0) {
		if (x->rank == 0)
			run_event(x, AGIPD_EVENT_ERROR, -1, "%s", e.msg);
		return AGIPD_EXIT_USAGE;
	}
	if (c->dry_run)
		return dry_run(x, plan, tasks, res);
	if (batches_alloc(x) < 0)
		return AGIPD_EXIT_USAGE;

	x->ntodo = res->ntodo;
	x->t_start = t_start;
	MPI_Comm pcomm;
	run_progress_begin(x, x->world, &pcomm);
	MPI_Barrier(x->world);
	int stopped = plan->lockstep ? correct_rounds(x, plan, tasks, res) : correct_groups(x, plan, tasks, res);
	agipd_consts_share_release(&x->cache);
	MPI_Request breq;
	MPI_Ibarrier(x->world, &breq);
	agipd_wait_yielding(&breq);
	run_progress_end(x, x->world, &pcomm);
	return stopped == 2 ? AGIPD_EXIT_INTERRUPTED : AGIPD_EXIT_OK;
}

int agipd_run(MPI_Comm world, const struct agipd_config *c, const struct agipd_run_events *ev)
{
	struct ctx X, *x = &X;
	struct task *tasks = NULL;
	struct results res;
	struct agipd_plan plan;

	memset(x, 0, sizeof *x);
	memset(&res, 0, sizeof res);
	memset(&plan, 0, sizeof plan);
	x->world = world;
	x->c = c;
	if (ev)
		x->ev = *ev;
	x->cache.win = MPI_WIN_NULL;
	MPI_Comm_rank(world, &x->rank);
	MPI_Comm_size(world, &x->size);
	MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, x->rank, MPI_INFO_NULL, &x->node);
	double t_start = run_now();
	if (x->rank == 0)
		run_iso_time(x->start_time, sizeof x->start_time);
	MPI_Bcast(x->start_time, sizeof x->start_time, MPI_CHAR, 0, world);

	int ntasks = find_tasks(x, &tasks);
	struct agipd_config *local = ntasks < 0 ? NULL : run_config(x, tasks, ntasks);
	if (!local) {
		free(tasks);
		MPI_Comm_free(&x->node);
		return AGIPD_EXIT_USAGE;
	}
	x->c = c = local;
	res.msgs = calloc((size_t)ntasks, sizeof *res.msgs);
	claim_outputs(x, tasks, ntasks, res.msgs);
	classify(x, tasks, ntasks, &res);

	int ret = run_tasks(x, tasks, &res, &plan, t_start);

	/* Every file of this run is complete or removed: let them go. */
	if (x->rank == 0)
		run_unlock_outputs(x);
	gather_results(x, &res);
	x->cnt[C_T_TOTAL] = run_now() - t_start;
	x->cnt[C_PEAK_RSS_MB] = peak_rss_mb();
	double *all = x->rank == 0 ? calloc((size_t)x->size * C_NCOUNTERS, sizeof *all) : NULL;
	MPI_Gather(x->cnt, C_NCOUNTERS, MPI_DOUBLE, all, C_NCOUNTERS, MPI_DOUBLE, 0, world);
	int nfailed = 0;
	for (int i = 0; i < ntasks; i++)
		if (res.status[i] == RES_FAILED ||
		    (res.status[i] == RES_NONE && tasks[i].state == T_PENDING && !c->dry_run))
			nfailed++;
	if (ret == AGIPD_EXIT_OK && nfailed)
		ret = AGIPD_EXIT_FILES_FAILED;
	if (x->rank == 0)
		ret = finish(x, tasks, &res, all, t_start, ret);
	MPI_Bcast(&ret, 1, MPI_INT, 0, world);
	agipd_plan_free(&plan);
	free(local);
	free(all);
	results_free(&res);
	free(tasks);
	batches_free(x);
	MPI_Comm_free(&x->node);
	return ret;
}
