/*
 * run.c - the MPI layer of agipd-correct.
 *
 * Plan (agipd_plan.h, a pure function every rank computes alike).  The
 * files to correct are taken in rounds of at most P (ranks) files; in a
 * round the ranks are split into one contiguous group per file, so with
 * fewer ranks than files every rank writes whole files, and with more ranks
 * than files each file is written by a group.  With more files than ranks
 * the round size may be smaller, so that no round waits long for its
 * slowest group.  Inside a group, ranks take contiguous runs of trains
 * holding about the same number of frames.
 *
 * Agreement.  Before every collective step of a file, the group agrees on
 * the status of what each rank did (agree()), so one rank's failure moves the
 * whole group to the clean-up path together and nobody waits in a collective
 * call that the others will never make.
 *
 * Constants.  Ranks of one node that work on the same module share one copy
 * of its constants in an MPI-3 shared-memory window, loaded and transposed
 * once by the lowest such rank, and kept for the next round when the same
 * ranks stay on the same module.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "agipd_caldb.h"
#include "agipd_checksum.h"
#include "agipd_compress.h"
#include "agipd_conditions.h"
#include "agipd_consts_h5.h"
#include "agipd_mapguard.h"
#include "agipd_plan.h"
#include "agipd_preview.h"
#include "agipd_raw.h"
#include "agipd_run.h"
#include "agipd_sha256.h"
#include "agipd_writer.h"

#define P AGIPD_PIXELS

static volatile sig_atomic_t stop_signal;

void agipd_run_request_stop(int sig)
{
	stop_signal = sig;
}

long agipd_run_unclosed_files(MPI_Comm comm)
{
	long n = (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE);
	if (n < 0)
		n = 0;
	MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_LONG, MPI_MAX, comm);
	return n;
}

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

struct consts_cache {
	int valid, module, ncells, status;
	MPI_Comm comm;
	MPI_Win win;
	void *priv;                    /* private copy when alone on the module */
	struct agipd_consts k;
	struct agipd_consts_meta meta;
	char msg[AGIPD_ERRLEN];
};

struct ctx {
	MPI_Comm world, node;
	int rank, size;
	const struct agipd_config *c;
	FILE *out;
	char raw_dir[4096];
	char tmp_tag[96];              /* HOST.PID of rank 0: this run's temporaries */
	int lock_fd;                   /* rank 0: OUT/.agipd-correct.lock, or -1 */
	char start_time[32];
	double cnt[C_NCOUNTERS];
	struct consts_cache cache;
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
	int tty;
	/* batch buffers */
	uint16_t *raw;
	void *data;
	uint8_t *gain;
	uint32_t *mask;
	uint32_t *order;
};

static double now(void)
{
	return MPI_Wtime();
}

static void iso_time(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

/* File names are built with snprintf and checked: a name that does not fit
 * its buffer is an error (ENAMETOOLONG), never a cut name, which would name
 * another file.  The folders are short enough (AGIPD_NAME_ROOM) that this
 * does not happen with the buffers below; the checks keep it so. */
static int path_fits(int n, size_t len)
{
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int raw_name(char *buf, size_t len, const char *dir, long run, int module, int seq)
{
	return path_fits(snprintf(buf, len, "%s/RAW-R%04ld-AGIPD%02d-S%05d.h5", dir, run, module, seq), len);
}

static int corr_name(char *buf, size_t len, const char *dir, long run, int module, int seq)
{
	return path_fits(snprintf(buf, len, "%s/CORR-R%04ld-AGIPD%02d-S%05d.h5", dir, run, module, seq), len);
}

/* The temporary name a file is written under until it is complete, unique
 * to the run (tag: host and pid of its rank 0). */
static int tmp_name(char *buf, size_t len, const char *dir, long run, int module, int seq, const char *tag)
{
	return path_fits(snprintf(buf, len, "%s/.CORR-R%04ld-AGIPD%02d-S%05d.h5.%s.part", dir, run, module, seq, tag),
			 len);
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	if (path_fits(snprintf(buf, sizeof buf, "%s", path), sizeof buf) < 0)
		return -1;
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(buf, 0775) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(buf, 0775) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/*
 * Wait for a request without spinning: poll briefly, then sleep between
 * tests, up to 1 ms.  A rank waiting for a slow (or stopped) one then uses
 * next to no CPU, where MPI's blocking calls busy-poll.
 */
static void wait_yielding(MPI_Request *req)
{
	long ns = 0;
	for (int i = 0;; i++) {
		int done = 0;
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (done)
			return;
		if (i < 64)
			continue;
		ns = ns ? (ns < 500000 ? 2 * ns : 1000000) : 2000;
		struct timespec ts = { 0, ns };
		nanosleep(&ts, NULL);
	}
}

/* MPI_Allreduce in place, waiting as wait_yielding(). */
static void allreduce_yielding(void *buf, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm)
{
	MPI_Request req;
	MPI_Iallreduce(MPI_IN_PLACE, buf, n, t, op, comm, &req);
	wait_yielding(&req);
}

/*
 * The group agrees on a status: returns 0 when every rank succeeded, else -1
 * with msg set on every rank to the message of the lowest failing rank.
 * Collective on g.
 */
static int agree(MPI_Comm g, int failed, char *msg)
{
	int me, who;
	MPI_Request req;
	MPI_Comm_rank(g, &me);
	who = failed ? me : INT_MAX;
	allreduce_yielding(&who, 1, MPI_INT, MPI_MIN, g);
	if (who == INT_MAX)
		return 0;
	MPI_Ibcast(msg, AGIPD_ERRLEN, MPI_CHAR, who, g, &req);
	wait_yielding(&req);
	return -1;
}

/* ---- discovery (rank 0) ---- */

static int cmp_task(const void *a, const void *b)
{
	const struct task *x = a, *y = b;
	return x->module != y->module ? x->module - y->module : x->seq - y->seq;
}

/* Fills tasks (malloc) on rank 0; returns count, or -1 with e set. */
static int discover(struct ctx *x, struct task **out, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char sub[4200];
	struct task *found = NULL, *tasks = NULL;
	int nfound = 0, cap = 0, ntasks = 0, tcap = 0;
	DIR *d;
	struct dirent *de;

	if (path_fits(snprintf(sub, sizeof sub, "%s/r%04ld", c->in_folder, c->run), sizeof sub) < 0 ||
	    path_fits(snprintf(x->raw_dir, sizeof x->raw_dir, "%s", is_dir(sub) ? sub : c->in_folder),
		      sizeof x->raw_dir) < 0)
		return agipd_err_set(e, "%s: input folder name too long", c->in_folder);
	if (!is_dir(x->raw_dir))
		return agipd_err_set(e, "%s: input folder does not exist", c->in_folder);
	d = opendir(x->raw_dir);
	if (!d)
		return agipd_err_set(e, "%s: cannot read input folder: %s", x->raw_dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		long run;
		int m, s, n = 0;
		char again[256];
		if (sscanf(de->d_name, "RAW-R%4ld-AGIPD%2d-S%5d.h5%n", &run, &m, &s, &n) != 3 || de->d_name[n])
			continue;
		snprintf(again, sizeof again, "RAW-R%04ld-AGIPD%02d-S%05d.h5", run, m, s);
		if (strcmp(again, de->d_name) || run != c->run || m < 0 || m >= AGIPD_MODULES || s < 0)
			continue;
		if (nfound == cap) {
			cap = cap ? 2 * cap : 64;
			struct task *t = realloc(found, (size_t)cap * sizeof *t);
			if (!t) {
				closedir(d);
				free(found);
				return agipd_err_set(e, "out of memory");
			}
			found = t;
		}
		found[nfound++] = (struct task){ m, s, T_PENDING };
	}
	closedir(d);
	if (nfound)
		qsort(found, (size_t)nfound, sizeof *found, cmp_task);

#define PUSH(mm, ss, st)                                                                    \
	do {                                                                                \
		if (ntasks == tcap) {                                                       \
			tcap = tcap ? 2 * tcap : 64;                                        \
			struct task *t_ = realloc(tasks, (size_t)tcap * sizeof *t_);        \
			if (!t_)                                                            \
				goto oom;                                                   \
			tasks = t_;                                                         \
		}                                                                           \
		tasks[ntasks++] = (struct task){ mm, ss, st };                              \
	} while (0)

	for (int m = 0; m < AGIPD_MODULES; m++) {
		int wanted = c->modules.n ? agipd_list_has(&c->modules, m) : 0;
		int any = 0;
		for (int i = 0; i < nfound; i++)
			if (found[i].module == m)
				any = 1;
		if (!wanted && !(c->modules.n == 0 && any))
			continue;
		if (c->sequences.n == 0) {
			for (int i = 0; i < nfound; i++)
				if (found[i].module == m)
					PUSH(m, found[i].seq, T_PENDING);
			if (!any)
				PUSH(m, -1, T_MISSING);
		} else {
			for (int r = 0; r < c->sequences.n; r++)
				for (long s = c->sequences.lo[r]; s <= c->sequences.hi[r] && s < 100000; s++) {
					int have = 0;
					for (int i = 0; i < nfound; i++)
						if (found[i].module == m && found[i].seq == s)
							have = 1;
					/* With every module, a module lacking a sequence is not asked for. */
					if (!have && !c->modules.n && !any)
						continue;
					PUSH(m, (int)s, have ? T_PENDING : T_MISSING);
				}
		}
	}
	free(found);
	if (ntasks == 0) {
		free(tasks);
		return agipd_err_set(e, "%s: no raw files of run %ld%s", x->raw_dir, c->run,
				     c->modules.n || c->sequences.n ? " for the modules and sequences asked" : "");
	}
	*out = tasks;
	return ntasks;
oom:
	free(found);
	free(tasks);
	return agipd_err_set(e, "out of memory");
#undef PUSH
}

/*
 * realpath() of a folder that may not exist yet: its deepest existing
 * ancestor resolved, the rest appended with "." and ".." applied.  Returns 0,
 * or -1 with errno set.
 */
static int resolve_future(const char *path, char out[PATH_MAX])
{
	char head[PATH_MAX], tail[PATH_MAX] = "";
	if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head) {
		errno = ENAMETOOLONG;
		return -1;
	}
	while (!realpath(head[0] ? head : ".", out)) {
		char *s = strrchr(head, '/');
		if (errno != ENOENT || !head[0])
			return -1;
		char t[PATH_MAX];
		if (path_fits(snprintf(t, sizeof t, "%s%s%s", s ? s + 1 : head, tail[0] ? "/" : "", tail),
			      sizeof t) < 0)
			return -1;
		memcpy(tail, t, strlen(t) + 1);
		if (s == head)
			head[1] = 0;
		else if (s)
			*s = 0;
		else
			head[0] = 0;
	}
	for (char *save = NULL, *p = strtok_r(tail, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		size_t n = strlen(out);
		if (!strcmp(p, "."))
			continue;
		if (!strcmp(p, "..")) {
			char *s = strrchr(out, '/');
			if (s)
				s[s == out] = 0;
			continue;
		}
		if (n + 1 + strlen(p) >= PATH_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		snprintf(out + n, PATH_MAX - n, "%s%s", out[n - 1] == '/' ? "" : "/", p);
	}
	return 0;
}

/* Output folder checks (rank 0). */
static int check_out_folder(struct ctx *x, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char rin[PATH_MAX], rraw[PATH_MAX], rout[PATH_MAX];
	if (!realpath(c->in_folder, rin) || !realpath(x->raw_dir, rraw))
		return agipd_err_set(e, "%s: %s", c->in_folder, strerror(errno));
	size_t lr = strlen(rraw);
	/* Compared before anything is created (a new folder inside the raw
	 * folder would be a change to it), and again once it exists. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0 ? resolve_future(c->out_folder, rout) < 0 : !realpath(c->out_folder, rout))
			return agipd_err_set(e, "%s: %s", c->out_folder, strerror(errno));
		if (!strcmp(rout, rin) || !strcmp(rout, rraw) || (!strncmp(rout, rraw, lr) && rout[lr] == '/'))
			return agipd_err_set(e, "%s: the output folder must not be the input folder (or inside it): "
					     "raw data is never written to", c->out_folder);
		if (pass == 0 && c->dry_run)
			return 0;
		if (pass == 0 && mkdir_p(c->out_folder) < 0)
			return agipd_err_set(e, "%s: cannot create output folder: %s", c->out_folder,
					     strerror(errno));
	}
	if (!c->dry_run) {
		/* Try it: access() says yes to root even where writing fails. */
		char probe[PATH_MAX + 64];
		snprintf(probe, sizeof probe, "%s/.agipd-write-test.%ld", rout, (long)getpid());
		int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return agipd_err_set(e, "%s: output folder is not writable: %s", c->out_folder, strerror(errno));
		close(fd);
		unlink(probe);
	}
	return 0;
}

/* ---- constants shared per node ---- */

static void cache_release(struct consts_cache *cc)
{
	if (!cc->valid)
		return;
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_free(&cc->win);
	free(cc->priv);
	MPI_Comm_free(&cc->comm);
	memset(cc, 0, sizeof *cc);
	cc->win = MPI_WIN_NULL;
}

/* Rank 0 of a module's ranks: where its constants are (constants folder or
 * calibration database), and whether their conditions are the run's. */
static int consts_probe_module(struct ctx *x, int module, const char *path, struct agipd_consts_meta *m,
			       agipd_err *e)
{
	const struct agipd_config *c = x->c;
	int st = c->calibration_metadata[0]
		? agipd_caldb_module(c->calibration_metadata, c->caldb_root, module, &c->params, m, e)
		: agipd_consts_probe(path, &c->params, m, e);
	if (st == 0 && agipd_consts_check_conditions(m, &x->cond, e) < 0) {
		if (!c->ignore_conditions)
			return -1;
		snprintf(m->warning, sizeof m->warning, "%s", e->msg);
	}
	return st;
}

/*
 * Make sure the cache holds this module's constants for at least `needed`
 * cells, for the ranks of nm (this node, this module).  Collective on nm.
 * Returns the load status (0 or -1 with cc->msg).
 */
static int consts_acquire(struct ctx *x, MPI_Comm nm, int module, int needed)
{
	struct consts_cache *cc = &x->cache;
	const struct agipd_params *p = &x->c->params;
	int nr, result;
	MPI_Allreduce(MPI_IN_PLACE, &needed, 1, MPI_INT, MPI_MAX, nm);
	if (needed < 1)
		needed = 1;
	if (cc->valid && cc->module == module) {
		MPI_Comm_compare(cc->comm, nm, &result);
		if ((result == MPI_IDENT || result == MPI_CONGRUENT) &&
		    (cc->status != 0 || cc->ncells >= needed || cc->ncells >= cc->meta.cells))
			return cc->status;
	}
	cache_release(cc);

	double t0 = now();
	cc->valid = 1;
	cc->module = module;
	cc->win = MPI_WIN_NULL;
	MPI_Comm_dup(nm, &cc->comm);
	MPI_Comm_rank(nm, &nr);
	agipd_err e = { "" };
	char path[4200];
	agipd_consts_path(path, sizeof path, x->c->constants_folder, module);
	int st = 0;
	if (nr == 0)
		st = consts_probe_module(x, module, path, &cc->meta, &e);
	MPI_Bcast(&st, 1, MPI_INT, 0, nm);
	MPI_Bcast(&cc->meta, sizeof cc->meta, MPI_BYTE, 0, nm);
	if (cc->meta.caldb)
		snprintf(path, sizeof path, "%s", cc->meta.path);
	if (st == 0 && cc->meta.cells < 1)
		st = agipd_err_set(&e, "%s: constants have no memory cells", path);
	if (st) {
		MPI_Bcast(e.msg, sizeof e.msg, MPI_CHAR, 0, nm);
		memcpy(cc->msg, e.msg, sizeof cc->msg);
		cc->status = -1;
		x->cnt[C_T_CONSTS] += now() - t0;
		return -1;
	}
	cc->ncells = needed < cc->meta.cells ? needed : cc->meta.cells;
	agipd_consts_layout(p, &cc->k);
	size_t words = agipd_consts_words(&cc->k, cc->ncells);
	void *base = NULL;
	int nn;
	MPI_Comm_size(nm, &nn);
	if (nn == 1) {
		/* Alone on this module on this node: private memory on 2 MiB pages
		 * (a first touch of a 4 KiB page costs microseconds; shared memory
		 * gets no transparent huge pages). */
		size_t bytes = (words * 4 + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
		if (posix_memalign(&base, 2u << 20, bytes ? bytes : (2u << 20)) != 0) {
			agipd_msgf(cc->msg, sizeof cc->msg, "%s: cannot allocate %zu MB for constants", path,
				   words * 4 >> 20);
			cc->status = -1;
			return -1;
		}
		madvise(base, bytes, MADV_HUGEPAGE);
		cc->priv = base;
	} else {
		MPI_Aint sz;
		int du;
		MPI_Info info;
		MPI_Info_create(&info);
		MPI_Info_set(info, "alloc_shared_noncontig", "false");
		/* A full node's constants can exceed a small /dev/shm: report it as
		 * this module's failure instead of aborting the job. */
		MPI_Comm_set_errhandler(cc->comm, MPI_ERRORS_RETURN);
		int mrc = MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)(words * 4) : 0, 4, info, cc->comm, &base,
						  &cc->win);
		MPI_Info_free(&info);
		if (mrc != MPI_SUCCESS) {
			cc->win = MPI_WIN_NULL;
			agipd_msgf(cc->msg, sizeof cc->msg, "%s: cannot allocate %zu MB of shared memory for constants",
				   path, words * 4 >> 20);
			cc->status = -1;
			return -1;
		}
		MPI_Win_shared_query(cc->win, 0, &sz, &du, &base);
	}
	agipd_consts_attach(&cc->k, cc->ncells, base);
	/* Every rank of the node and module loads its share of the cells and
	 * checksums its share of the file. */
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_fence(0, cc->win);
	int lo = (int)((long)cc->ncells * nr / nn), hi = (int)((long)cc->ncells * (nr + 1) / nn);
	st = agipd_consts_load(p, lo, hi, &cc->k, &cc->meta, &e);
	x->cnt[C_CONST_CELLS] += hi - lo;   /* this rank's share: a node loads a module once */
	x->cnt[C_CONST_LOADS] += 1.0 / nn;
	/* Every file of the module's constants (one, or one per constant from
	 * the calibration database). */
	const int nf = cc->meta.nfiles;
	uint32_t crc[AGIPD_CONST_KINDS] = { 0 };
	uint64_t len[AGIPD_CONST_KINDS] = { 0 }, total[AGIPD_CONST_KINDS] = { 0 };
	for (int f = 0; f < nf && st == 0; f++)
		st = agipd_consts_checksum_part(cc->meta.files[f].path, nr, nn, &crc[f], &len[f], &total[f], &e);
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_fence(0, cc->win);
	if (agree(nm, st, e.msg) == 0) {
		uint32_t *crcs = malloc((size_t)nn * AGIPD_CONST_KINDS * sizeof *crcs);
		uint64_t *lens = malloc((size_t)nn * AGIPD_CONST_KINDS * sizeof *lens);
		MPI_Allgather(crc, AGIPD_CONST_KINDS, MPI_UINT32_T, crcs, AGIPD_CONST_KINDS, MPI_UINT32_T, nm);
		MPI_Allgather(len, AGIPD_CONST_KINDS, MPI_UINT64_T, lens, AGIPD_CONST_KINDS, MPI_UINT64_T, nm);
		for (int f = 0; f < nf; f++) {
			uint32_t v = crcs[f];
			for (int q = 1; q < nn; q++)
				v = agipd_crc32_combine(v, crcs[q * AGIPD_CONST_KINDS + f], lens[q * AGIPD_CONST_KINDS + f]);
			cc->meta.files[f].crc32 = v;
			cc->meta.files[f].size = total[f];
		}
		if (!cc->meta.caldb) {
			cc->meta.crc32 = cc->meta.files[0].crc32;
			cc->meta.size = cc->meta.files[0].size;
		}
		free(crcs);
		free(lens);
		st = 0;
	} else {
		st = -1;
		memcpy(cc->msg, e.msg, sizeof cc->msg);
	}
	cc->status = st ? -1 : 0;
	x->cnt[C_T_CONSTS] += now() - t0;
	return cc->status;
}

/* ---- progress ---- */

enum { PG_FRAMES, PG_FRAMES_KNOWN, PG_FILES, PG_FILES_STARTED, PG_N };
enum { PG_TAG = 7 };

/* Progress is best effort: an MPI error on its communicator (errors
 * return there) turns it off on this rank, with a warning, and the
 * correction goes on. */
static void progress_off(struct ctx *x, const char *what, int rc)
{
	char msg[MPI_MAX_ERROR_STRING] = "";
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	fprintf(stderr, "agipd-correct: warning [rank %d]: no progress display: %s: %s\n", x->rank, what, msg);
	x->pcomm = MPI_COMM_NULL;   /* freed by progress_end, which every rank reaches */
}

/* Collective on world: the progress communicator, when there is a display. */
static void progress_begin(struct ctx *x, MPI_Comm world, MPI_Comm *keep)
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
static void progress_poll(struct ctx *x)
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
			progress_off(x, "receiving", rc);
			return;
		}
		memcpy(x->pall + (size_t)s.MPI_SOURCE * PG_N, v, sizeof v);
		x->precv[s.MPI_SOURCE]++;
	}
}

/* Counted on this rank; the totals go to rank 0 at most every half second,
 * and only once the previous message has left. */
static void progress_add(struct ctx *x, int64_t frames, int64_t known, int64_t files, int64_t started)
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
	double t = now();
	if (x->psent > 0 && t - x->plast_send < 0.5)
		return;
	if (x->preq != MPI_REQUEST_NULL) {
		int done = 0, rc = MPI_Test(&x->preq, &done, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS) {
			progress_off(x, "sending", rc);
			return;
		}
		if (!done)
			return;
	}
	memcpy(x->psend, x->pmine, sizeof x->pmine);
	int rc = MPI_Isend(x->psend, PG_N, MPI_INT64_T, 0, PG_TAG, x->pcomm, &x->preq);
	if (rc != MPI_SUCCESS) {
		x->preq = MPI_REQUEST_NULL;
		progress_off(x, "sending", rc);
		return;
	}
	x->psent++;
	x->plast_send = t;
}

/* Rank 0: a line on stderr, a few times a second on a terminal (rewritten
 * in place), every 10 s into a log.  v: final totals, or NULL for the
 * latest that arrived. */
static void progress_show(struct ctx *x, const int64_t *final)
{
	if (x->rank != 0 || x->c->verbosity < 1 || (!final && x->pcomm == MPI_COMM_NULL))
		return;
	if (!final)
		progress_poll(x);   /* at every batch: the queue stays short */
	double t = now(), el = t - x->t_start;
	if (!final && (x->pcomm == MPI_COMM_NULL || t - x->last_progress < (x->tty ? 0.25 : 10.0)))
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
	fprintf(stderr, "%s[%7.1f s] files %lld/%d, frames %lld/%s%.0f (%.0f%%), %.0f frames/s, %.2f GB/s, ETA %.0f s%s",
		x->tty ? "\r" : "", el, (long long)v[PG_FILES], x->ntodo, (long long)v[PG_FRAMES],
		v[PG_FILES_STARTED] < x->ntodo ? "~" : "", total, total > 0 ? 100.0 * (double)v[PG_FRAMES] / total : 0,
		rate, rate * 4 * P / 1e9, eta, x->tty ? (final ? "\n" : "   ") : "\n");
	fflush(stderr);
}

/*
 * Collective on world: rank 0 takes the messages still on their way (every
 * rank says how many it sent), every send completes, the final line shows
 * the exact totals (a reduction), and the communicator goes.
 */
static void progress_end(struct ctx *x, MPI_Comm world, MPI_Comm *keep)
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
					progress_off(x, "receiving", rc);
					break;
				}
				x->precv[q]++;
			}
	MPI_Reduce(x->pmine, tot, PG_N, MPI_INT64_T, MPI_SUM, 0, world);
	if (x->preq != MPI_REQUEST_NULL && MPI_Wait(&x->preq, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		x->preq = MPI_REQUEST_NULL;
	progress_show(x, tot);
	free(ns);
	free(x->pall);
	free(x->precv);
	x->pall = NULL;
	x->precv = NULL;
	x->pcomm = MPI_COMM_NULL;
	MPI_Comm_free(keep);
}

/* ---- one file ---- */

/* order[] = 0..n-1 sorted by the cellId of kept frame f0+i, stable. */
static void order_by_cell(const struct agipd_raw *r, uint64_t f0, uint64_t n, uint32_t *order)
{
	uint32_t count[AGIPD_MAX_CELLS + 2];
	unsigned maxc = 0;
	for (uint64_t i = 0; i < n; i++) {
		unsigned c = r->cell[r->kept[f0 + i]];
		if (c > maxc)
			maxc = c;
	}
	if (maxc > AGIPD_MAX_CELLS) {    /* unusual cellIds: keep file order */
		for (uint64_t i = 0; i < n; i++)
			order[i] = (uint32_t)i;
		return;
	}
	memset(count, 0, sizeof count);
	for (uint64_t i = 0; i < n; i++)
		count[r->cell[r->kept[f0 + i]] + 1]++;
	for (unsigned c = 1; c <= maxc + 1; c++)
		count[c] += count[c - 1];
	for (uint64_t i = 0; i < n; i++)
		order[count[r->cell[r->kept[f0 + i]]]++] = (uint32_t)i;
}

/* Correct kept frames [f0, f0 + n) of r into x's buffers, in x->order. */
struct batch {
	struct ctx *x;
	const struct agipd_raw *r;
	uint64_t f0, n;
	size_t dsz;
};

static void correct_batch(void *arg)
{
	const struct batch *b = arg;
	struct ctx *x = b->x;
	const struct agipd_raw *r = b->r;
	const struct agipd_params *p = &x->c->params;
	for (uint64_t j = 0; j < b->n; j++) {
		const uint64_t i = x->order[j];
		const uint16_t *fr = r->frames ? agipd_raw_frame(r, b->f0 + i) : x->raw + i * 2 * P;
		int cell = r->cell[r->kept[b->f0 + i]];
		agipd_correct_frame(p, &x->cache.k, cell, fr, fr + P, (char *)x->data + i * P * b->dsz,
				    x->gain + i * P, x->mask + i * P, x->scratch);
	}
}

/* First kept frame of group rank i of g: train-aligned, balanced by frames. */
static uint64_t split_point(const struct agipd_raw *r, int i, int g)
{
	return agipd_plan_split(r->out_first, r->nout, r->nkept, i, g);
}

static void index_checksum(const struct agipd_raw *r, char hex[65])
{
	struct agipd_sha256 s;
	agipd_sha256_init(&s);
	agipd_sha256_update(&s, r->train_id, r->ntrains * 8);
	agipd_sha256_update(&s, r->first, r->ntrains * 8);
	agipd_sha256_update(&s, r->count, r->ntrains * 8);
	agipd_sha256_hex(&s, hex);
}

static int param_value(const struct agipd_config *c, const char *name, char *buf, size_t len);

/* path made absolute in place (kept as it is when it does not resolve or
 * the absolute one does not fit). */
static void abs_path(char *path, size_t len)
{
	char abs[PATH_MAX];
	if (path[0] && realpath(path, abs) && strlen(abs) < len)
		memcpy(path, abs, strlen(abs) + 1);
}

static int write_provenance(struct ctx *x, struct agipd_writer *w, const struct agipd_raw *r, MPI_Comm g,
			    agipd_err *e)
{
	const struct agipd_config *c = x->c;
	const struct consts_cache *cc = &x->cache;
	char end[32], idx[65], nranks[32], granks[32];
	int gsize;
	MPI_Comm_size(g, &gsize);
	iso_time(end, sizeof end);
	MPI_Bcast(end, sizeof end, MPI_CHAR, 0, g);
	index_checksum(r, idx);
	snprintf(nranks, sizeof nranks, "%d", x->size);
	snprintf(granks, sizeof granks, "%d", gsize);
	/* Paths as resolved absolute ones: rank 0's, so that every rank writes
	 * the same attributes. */
	static char raw_abs[PATH_MAX];
	static struct agipd_consts_meta meta;
	meta = cc->meta;
	snprintf(raw_abs, sizeof raw_abs, "%s", r->path);
	abs_path(raw_abs, sizeof raw_abs);
	abs_path(meta.path, sizeof meta.path);
	for (int f = 0; f < meta.nfiles; f++)
		abs_path(meta.files[f].path, sizeof meta.files[f].path);
	MPI_Bcast(raw_abs, sizeof raw_abs, MPI_CHAR, 0, g);
	MPI_Bcast(&meta, sizeof meta, MPI_BYTE, 0, g);
	const char *slash = strrchr(r->path, '/');
	struct agipd_kv top[] = {
		{ "program", "agipd-correct", 0, 0 },
		{ "version", AGIPD_VERSION, 0, 0 },
		{ "git_revision", AGIPD_GIT_REV, 0, 0 },
		{ "command_line", c->command_line, 0, 0 },
		{ "start_time", x->start_time, 0, 0 },
		{ "end_time", end, 0, 0 },
		{ "n_ranks", NULL, x->size, 1 },
		{ "n_ranks_file", NULL, gsize, 1 },
		{ "raw_file", slash ? slash + 1 : r->path, 0, 0 },
		{ "raw_path", raw_abs, 0, 0 },
		{ "raw_index_sha256", idx, 0, 0 },
		{ "deflate_encoder", agipd_deflate_impl(), 0, 0 },
		{ "spec", "AGIPD correction data contract, SPEC.md", 0, 0 },
	};
	/* Every step runs on every rank even after an error (collective calls). */
	int rc = agipd_writer_attrs(w, "METADATA/calibration", top, sizeof top / sizeof top[0], e);
	/* The ADU per keV used for each memory cell, with --photon-energy. */
	agipd_err e2;
	const struct agipd_params *p = &c->params;
	if (p->photon_energy > 0) {
		static float used[AGIPD_MAX_CELLS + 1];
		int nc = cc->ncells < AGIPD_MAX_CELLS + 1 ? cc->ncells : AGIPD_MAX_CELLS + 1;
		for (int i = 0; i < nc; i++)
			used[i] = p->adu_per_kev > 0 ? (float)p->adu_per_kev : cc->k.ff_median ? cc->k.ff_median[i] : NAN;
		if (agipd_writer_attr_floats(w, "METADATA/calibration", "adu_per_kev_used", used, (size_t)nc, &e2) < 0 &&
		    rc == 0) {
			rc = -1;
			*e = e2;
		}
	}
	/* Every parameter with its given or default value. */
	struct agipd_kv kv[64];
	char vals[64][512];
	int n = 0;
	for (int i = 0; i < agipd_noptions && n < 64; i++)
		if (param_value(c, agipd_options[i].name, vals[n], sizeof vals[n]) == 0) {
			kv[n].key = agipd_options[i].name;
			kv[n].str = vals[n];
			n++;
		}
	MPI_Bcast(vals, n * (int)sizeof vals[0], MPI_CHAR, 0, g);
	if (agipd_writer_attrs(w, "METADATA/calibration/parameters", kv, (size_t)n, &e2) < 0 && rc == 0) {
		rc = -1;
		*e = e2;
	}
	/* The constants (file or calibration database) and the conditions. */
	if (agipd_writer_calibration_sources(w, &meta, cc->ncells, &x->cond, c->ignore_conditions, &e2) < 0 &&
	    rc == 0) {
		rc = -1;
		*e = e2;
	}
	return rc;
}

/*
 * A failed write says when the output file system is (nearly) full: HDF5's
 * MPI-IO driver reports only "file write failed", and the cause (ENOSPC) is
 * printed by Open MPI apart from the file's error line.  Returns st.
 */
static int out_error(struct ctx *x, int st, agipd_err *e)
{
	struct statvfs v;
	if (st == 0 || statvfs(x->c->out_folder, &v) < 0)
		return st;
	double avail = (double)(geteuid() == 0 ? v.f_bfree : v.f_bavail) * (double)v.f_frsize;
	double need = (double)x->size * (double)x->c->batch_frames * P * 4 + (16 << 20);
	size_t n = strlen(e->msg);
	if (avail < need && n + 1 < sizeof e->msg)
		snprintf(e->msg + n, sizeof e->msg - n, " (No space left on device? %.1f MB free on the output file "
			 "system)", avail / 1e6);
	return st;
}

/*
 * Correct one file with the ranks of g.  Collective on g (and, for the
 * constants, on nm).  Returns 0, or -1 with e set identically on every rank.
 */
static int do_file(struct ctx *x, const struct task *t, MPI_Comm g, MPI_Comm nm, uint64_t *frames_out,
		   agipd_err *e)
{
	const struct agipd_config *c = x->c;
	const struct agipd_params *p = &c->params;
	char src[256], raw_path[4200], tmp_path[4400], final_path[4200];
	struct agipd_raw r;
	struct agipd_writer *w = NULL;
	int gr, gs, st, opened = 0;
	double t0;

	MPI_Comm_rank(g, &gr);
	MPI_Comm_size(g, &gs);
	agipd_source_name(src, sizeof src, c->karabo_id, t->module);
	int named = raw_name(raw_path, sizeof raw_path, x->raw_dir, c->run, t->module, t->seq) |
		    tmp_name(tmp_path, sizeof tmp_path, c->out_folder, c->run, t->module, t->seq, x->tmp_tag) |
		    corr_name(final_path, sizeof final_path, c->out_folder, c->run, t->module, t->seq);

	/* Raw file: every rank of the group reads INDEX itself. */
	t0 = now();
	if (named < 0)
		st = agipd_err_set(e, "AGIPD%02d S%05d: file name too long under %s or %s", t->module, t->seq,
				   x->raw_dir, c->out_folder);
	else
		st = agipd_raw_open(&r, raw_path, src, p, e);
	opened = st == 0;
	x->cnt[C_T_READ] += now() - t0;
	int needed = opened && r.nkept ? (int)r.max_kept_cell + 1 : 0;

	/* Constants (collective on nm, which every rank of g belongs to). */
	int cst = consts_acquire(x, nm, t->module, needed);
	if (st == 0 && cst != 0)
		st = agipd_err_set(e, "module %d: %s", t->module, x->cache.msg);
	if (st == 0 && needed > x->cache.ncells)
		st = agipd_err_set(e, "%s: cellId %d is not covered by the constants of module %d (%s has %d memory "
				   "cells)", raw_path, needed - 1, t->module, x->cache.meta.path, x->cache.meta.cells);
	if (agree(g, st, e->msg))
		goto fail;
	if (gr == 0)
		progress_add(x, 0, (int64_t)r.nkept, 0, 1);

	/* The output, under its temporary name. */
	struct agipd_writer_config wc = {
		.comm = g,
		.kind = c->writer == AGIPD_WRITE_NULL ? AGIPD_WRITER_NULL
			: c->writer == AGIPD_WRITE_SERIAL ? AGIPD_WRITER_SERIAL
			: c->writer == AGIPD_WRITE_H5FILTER ? AGIPD_WRITER_COLLECTIVE_H5FILTER : AGIPD_WRITER_COLLECTIVE,
		.path = tmp_path,
		.source = src,
		.dtype = p->data_dtype,
		.nframes = r.nkept,
		.deflate_level = c->deflate_level,
	};
	t0 = now();
	st = out_error(x, agipd_writer_create(&w, &wc, e), e);
	if (agree(g, st, e->msg))
		goto fail;
	st = out_error(x, agipd_writer_write_index(w, &r, e), e);
	x->cnt[C_T_WRITE] += now() - t0;
	if (agree(g, st, e->msg))
		goto fail;

	/* Frames: my trains, in batches; every rank makes the same writes. */
	const uint64_t k0 = split_point(&r, gr, gs), k1 = split_point(&r, gr + 1, gs);
	const uint64_t B = (uint64_t)c->batch_frames, mine = k1 - k0;
	int nb = (int)((mine + B - 1) / B);
	MPI_Allreduce(MPI_IN_PLACE, &nb, 1, MPI_INT, MPI_MAX, g);
	const size_t dsz = agipd_dtype_size(p->data_dtype);
	uint64_t done = 0;
	for (int b = 0; b < nb; b++) {
		uint64_t f0 = k0 + (uint64_t)b * B;
		uint64_t n = f0 < k1 ? (k1 - f0 < B ? k1 - f0 : B) : 0;
		t0 = now();
		/* Mapped raw data is read in place; else a copy through HDF5. */
		if (r.frames) {
			st = 0;
			if (f0 + n < k1)
				agipd_raw_prefetch(&r, f0 + n, k1 - f0 - n < B ? k1 - f0 - n : B);
		} else {
			st = agipd_raw_read(&r, f0, n, x->raw, e);
		}
		double t1 = now();
		x->cnt[C_T_READ] += t1 - t0;
		/* Frames of one memory cell one after another: the cell's constants
		 * (~2 MB) are then still in cache for the next train's frame. */
		if (st == 0) {
			order_by_cell(&r, f0, n, x->order);
			/* A mapped raw file truncated meanwhile faults (SIGBUS):
			 * an error of this file, not the end of the job. */
			struct batch bt = { x, &r, f0, n, dsz };
			if (agipd_mapguard_run(r.frames ? r.map : NULL, r.map_len, correct_batch, &bt) < 0)
				st = agipd_err_set(e, "%s: raw file changed while it was read (bus error reading "
						   "image/data from the mapped file: truncated or rewritten in place?)",
						   raw_path);
		}
		double t2 = now();
		x->cnt[C_T_CORRECT] += t2 - t1;
		if (stop_signal && st == 0)
			st = agipd_err_set(e, "interrupted by signal %d", (int)stop_signal);
		if (agree(g, st, e->msg))
			goto fail;
		double t3 = now();
		x->cnt[C_T_WAIT] += t3 - t2;
		st = out_error(x, agipd_writer_write_frames(w, f0 < k1 ? f0 : 0, n, x->data, x->gain, x->mask, e), e);
		x->cnt[C_T_WRITE] += now() - t3;
		if (agree(g, st, e->msg))
			goto fail;
		done += n;
		progress_add(x, (int64_t)n, 0, 0, 0);
		progress_show(x, NULL);
		x->cnt[C_BYTES_IN] += (double)n * 4 * P;
	}

	t0 = now();
	st = out_error(x, write_provenance(x, w, &r, g, e), e);
	if (agree(g, st, e->msg))
		goto fail;
	struct agipd_writer_stats ws;
	st = out_error(x, agipd_writer_close(w, &ws, e), e);
	w = NULL;
	x->cnt[C_Z_CHUNKS] += (double)ws.chunks;
	x->cnt[C_Z_IN] += (double)ws.bytes_in;
	x->cnt[C_Z_OUT] += (double)ws.bytes_out;
	x->cnt[C_Z_SECONDS] += ws.t_filter;
	x->cnt[C_T_GATHER] += ws.t_gather;
	if (agree(g, st, e->msg))
		goto fail;
	/* Complete: only now does it get its final name. */
	if (gr == 0 && wc.kind != AGIPD_WRITER_NULL && rename(tmp_path, final_path) < 0)
		st = agipd_err_set(e, "%s: cannot rename to %s: %s", tmp_path, final_path, strerror(errno));
	x->cnt[C_T_WRITE] += now() - t0;
	if (agree(g, st, e->msg))
		goto fail;
	*frames_out = r.nkept;
	x->cnt[C_FRAMES] += (double)done;   /* frames of files that were completed */
	if (gr == 0)
		progress_add(x, 0, 0, 1, 0);
	agipd_raw_close(&r);
	return 0;
fail:
	if (w)
		agipd_writer_abort(w);
	if (gr == 0)
		unlink(tmp_path);
	if (opened)
		agipd_raw_close(&r);
	return -1;
}

/* ---- dry run ---- */

/* Returns how many files cannot be planned (each said on stderr too). */
static int print_plan(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks, const int *todo)
{
	const struct agipd_config *c = x->c;
	FILE *o = x->out;
	int P_ = x->size, bad = 0;
	fprintf(o, "plan: %d file(s) to correct with %d rank(s), %s writer\n", plan->nfiles, P_,
		c->writer == AGIPD_WRITE_SERIAL ? "serial" : c->writer == AGIPD_WRITE_NULL ? "null"
		: c->writer == AGIPD_WRITE_H5FILTER ? "collective-h5filter" : "collective");
	for (int round = 0; round < plan->nrounds; round++) {
		int k = plan->round_first[round + 1] - plan->round_first[round];
		fprintf(o, "round %d:\n", round);
		for (int j = plan->round_first[round]; j < plan->round_first[round + 1]; j++) {
			const struct agipd_plan_group *pg = &plan->groups[j];
			const struct task *t = &tasks[todo[pg->file]];
			int r0 = pg->rank0, r1 = pg->rank0 + pg->nranks;
			char src[256], path[4200];
			struct agipd_raw r;
			agipd_err e;
			agipd_source_name(src, sizeof src, c->karabo_id, t->module);
			if (raw_name(path, sizeof path, x->raw_dir, c->run, t->module, t->seq) < 0 ?
				    agipd_err_set(&e, "%s: raw file name too long", x->raw_dir) :
				    agipd_raw_open(&r, path, src, &c->params, &e) < 0) {
				fprintf(o, "  AGIPD%02d S%05d: ranks %d-%d: cannot plan: %s\n", t->module, t->seq, r0,
					r1 - 1, e.msg);
				fprintf(stderr, "agipd-correct: error: AGIPD%02d S%05d: %s\n", t->module, t->seq, e.msg);
				bad++;
				continue;
			}
			fprintf(o, "  AGIPD%02d S%05d: %" PRIu64 " frames in %zu trains, ranks %d-%d\n", t->module,
				t->seq, r.nkept, r.nout, r0, r1 - 1);
			for (int rr = r0; rr < r1; rr++) {
				uint64_t a = split_point(&r, rr - r0, r1 - r0), b = split_point(&r, rr - r0 + 1, r1 - r0);
				size_t ta = 0, tb = 0;
				for (size_t q = 0; q < r.nout; q++) {
					if (r.out_first[q] < a)
						ta = q + 1;
					if (r.out_first[q] < b)
						tb = q + 1;
				}
				if (a == b)
					fprintf(o, "    rank %d: no frames\n", rr);
				else
					fprintf(o, "    rank %d: frames %" PRIu64 "-%" PRIu64 " (trains %" PRIu64 "..%" PRIu64
						   ")\n", rr, a, b - 1, r.train_id[r.out_train[ta]],
						r.train_id[r.out_train[tb - 1]]);
			}
			agipd_raw_close(&r);
		}
		if (c->writer == AGIPD_WRITE_SERIAL && k < P_)
			fprintf(o, "  ranks %d-%d idle\n", k, P_ - 1);
	}
	fflush(o);
	return bad;
}

/* ---- output locks, temporaries, outputs that exist ---- */

/*
 * Two runs into one output folder must not undo each other's work.  Rank 0
 * of a run holds, for the whole run, a write lock on one byte per file it may
 * write of OUT/.agipd-correct.lock (open-file-description locks, fcntl
 * F_OFD_SETLK: released by the kernel when the process ends, however it
 * ends).  A file whose byte another run holds is left alone and reported.
 * Temporaries carry the writing run's host and pid
 * (.CORR-R0001-AGIPD00-S00000.h5.HOST.PID.part), and those of a file are
 * removed only under its lock, when no live run can own them.  The last run
 * to leave removes the lock file (checked for by the others: a run that
 * opened a lock file just removed opens the new one).
 */
#define LOCK_NAME ".agipd-correct.lock"

static off_t lock_byte(long run, int module, int seq)
{
	return ((off_t)run << 24) + ((off_t)module << 17) + seq;
}

static int lock_range(int fd, short type, off_t start, off_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	return fcntl(fd, F_OFD_SETLK, &fl);
}

/* Is fd still the lock file of folder dir? */
static int lock_current(int fd, const char *dir)
{
	char path[4200];
	struct stat a, b;
	snprintf(path, sizeof path, "%s/" LOCK_NAME, dir);
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/*
 * Rank 0: lock every file of the selection (tasks[].state T_BUSY where
 * another run holds it).  Returns the lock file's fd, or -1 where the file
 * system has no locks (a warning says so; the run goes on unprotected).
 */
static int lock_outputs(struct ctx *x, struct task *tasks, int ntasks)
{
	const struct agipd_config *c = x->c;
	char path[4200];
	snprintf(path, sizeof path, "%s/" LOCK_NAME, c->out_folder);
	for (int attempt = 0; attempt < 100; attempt++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664), bad = 0;
		if (fd < 0) {
			fprintf(stderr, "agipd-correct: warning: %s: cannot open the lock file (%s): runs into this "
					"folder at the same time are not kept apart\n", path, strerror(errno));
			return -1;
		}
		for (int i = 0; i < ntasks && !bad; i++) {
			if (tasks[i].seq < 0 || tasks[i].state == T_MISSING)
				continue;
			tasks[i].state = T_PENDING;
			if (lock_range(fd, F_WRLCK, lock_byte(c->run, tasks[i].module, tasks[i].seq), 1) == 0)
				continue;
			if (errno == EAGAIN || errno == EACCES)
				tasks[i].state = T_BUSY;
			else
				bad = errno;
		}
		if (bad) {
			fprintf(stderr, "agipd-correct: warning: %s: no file locks on this file system (%s): runs into "
					"this folder at the same time are not kept apart\n", path, strerror(bad));
			close(fd);
			for (int i = 0; i < ntasks; i++)
				if (tasks[i].state == T_BUSY)
					tasks[i].state = T_PENDING;
			return -1;
		}
		if (lock_current(fd, c->out_folder))
			return fd;
		close(fd);   /* removed by a run that left: take the new one */
	}
	fprintf(stderr, "agipd-correct: warning: %s: the lock file keeps changing: runs into this folder at the "
			"same time are not kept apart\n", path);
	for (int i = 0; i < ntasks; i++)
		if (tasks[i].state == T_BUSY)
			tasks[i].state = T_PENDING;
	return -1;
}

/* Rank 0: let the files go; the last run out removes the lock file. */
static void unlock_outputs(struct ctx *x)
{
	char path[4200];
	if (x->lock_fd < 0)
		return;
	snprintf(path, sizeof path, "%s/" LOCK_NAME, x->c->out_folder);
	if (lock_range(x->lock_fd, F_WRLCK, 0, 0) == 0 && lock_current(x->lock_fd, x->c->out_folder))
		unlink(path);
	close(x->lock_fd);
	x->lock_fd = -1;
}

/*
 * Rank 0, under the locks: remove the temporaries of the files this run
 * holds (any run's, of any name: no live run can own them).  Without locks
 * (a file system that has none), only those of the old name (one per file)
 * and those of runs on this host whose process is gone.
 */
static void remove_stale_temporaries(struct ctx *x, const struct task *tasks, int ntasks)
{
	const struct agipd_config *c = x->c;
	char host[sizeof x->tmp_tag] = "";
	DIR *d = opendir(c->out_folder);
	struct dirent *de;
	if (!d)
		return;
	snprintf(host, sizeof host, "%s", x->tmp_tag);
	if (strrchr(host, '.'))
		*strrchr(host, '.') = 0;
	while ((de = readdir(d)) != NULL) {
		long run, pid = 0;
		int m, sq, n = 0, mine = 0;
		size_t len = strlen(de->d_name);
		if (sscanf(de->d_name, ".CORR-R%4ld-AGIPD%2d-S%5d.h5%n", &run, &m, &sq, &n) != 3 || run != c->run ||
		    len < (size_t)n + 5 || strcmp(de->d_name + len - 5, ".part") || de->d_name[n] != '.')
			continue;
		for (int i = 0; i < ntasks; i++)
			if (tasks[i].module == m && tasks[i].seq == sq && tasks[i].seq >= 0 && tasks[i].state != T_BUSY &&
			    tasks[i].state != T_MISSING)
				mine = 1;
		if (!mine)
			continue;
		if (x->lock_fd < 0 && len > (size_t)n + 5) {
			/* .HOST.PID.part: a dead process of this host? */
			char tag[256];
			snprintf(tag, sizeof tag, "%.*s", (int)(len - (size_t)n - 6), de->d_name + n + 1);
			char *dot = strrchr(tag, '.');
			if (!dot)
				continue;
			*dot = 0;
			if (strcmp(host, tag))
				continue;
			pid = strtol(dot + 1, NULL, 10);
			if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
				continue;
		}
		char f[4400];
		snprintf(f, sizeof f, "%s/%s", c->out_folder, de->d_name);
		unlink(f);
	}
	closedir(d);
}

/*
 * The value of option `name` as the provenance stores it: paths resolved to
 * absolute ones, and for --adu-per-kev, where SlopesFF's median per memory
 * cell is used, a pointer to the values used.  -1 as agipd_opts_value().
 */
static int param_value(const struct agipd_config *c, const char *name, char *buf, size_t len)
{
	static const char *const paths[] = { "in-folder", "out-folder", "constants-folder", "calibration-metadata",
					      "caldb-root", "report" };
	if (agipd_opts_value(c, name, buf, len) < 0)
		return -1;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		char abs[PATH_MAX];
		if (!strcmp(name, paths[i]) && buf[0] && resolve_future(buf, abs) == 0 &&
		    path_fits(snprintf(buf, len, "%s", abs), len) < 0)
			return -1;
	}
	if (!strcmp(name, "adu-per-kev") && c->params.photon_energy > 0 && c->params.adu_per_kev == 0)
		snprintf(buf, len, "median of SlopesFF per memory cell (METADATA/calibration/adu_per_kev_used)");
	return 0;
}

/* Does the corrected data depend on option i? */
static int data_option(int i)
{
	const char *n = agipd_options[i].name;
	return !strcmp(agipd_options[i].group, "Correction") || !strcmp(n, "karabo-id") ||
	       !strcmp(n, "constants-folder");
}

/*
 * Rank 0: is the CORR file of t, which exists, complete and made from this
 * raw file with these options?  0 yes, 1 complete but made otherwise, -1 not
 * complete; e says why.
 */
static int check_existing(struct ctx *x, const struct task *t, const char *final, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char src[256], raw[4200], idx[65];
	struct agipd_kv kv[64];
	static char vals[64][512];
	struct agipd_raw r;
	int n = 0;
	agipd_source_name(src, sizeof src, c->karabo_id, t->module);
	raw_name(raw, sizeof raw, x->raw_dir, c->run, t->module, t->seq);
	if (agipd_raw_open(&r, raw, src, &c->params, e) < 0) {
		char why[AGIPD_ERRLEN];
		snprintf(why, sizeof why, "%s", e->msg);
		return agipd_err_set(e, "its raw file cannot be read to check it: %s", why);
	}
	index_checksum(&r, idx);
	for (int i = 0; i < agipd_noptions && n < 64; i++)
		if (data_option(i) && param_value(c, agipd_options[i].name, vals[n], sizeof vals[n]) == 0) {
			kv[n].key = agipd_options[i].name;
			kv[n].str = vals[n];
			kv[n].num = 0;
			kv[n].integer = 0;
			n++;
		}
	int rc = agipd_writer_check(final, src, r.nkept, r.nout, idx, kv, (size_t)n, e);
	agipd_raw_close(&r);
	return rc;
}

/*
 * Rank 0: the files of the selection that exist under their final name are
 * kept (T_EXISTS) when complete and made alike, refused (T_OTHER, msgs[i]
 * says why) when made otherwise, and corrected again when not complete.
 */
static void check_outputs(struct ctx *x, struct task *tasks, int ntasks, char (*msgs)[AGIPD_ERRLEN])
{
	const struct agipd_config *c = x->c;
	for (int i = 0; i < ntasks; i++) {
		char f[4200];
		agipd_err e = { "" };
		if (tasks[i].state != T_PENDING)
			continue;
		if (corr_name(f, sizeof f, c->out_folder, c->run, tasks[i].module, tasks[i].seq) < 0 || !file_exists(f))
			continue;
		int rc = check_existing(x, &tasks[i], f, &e);
		if (rc == 0) {
			tasks[i].state = T_EXISTS;
		} else if (rc > 0) {
			tasks[i].state = T_OTHER;
			agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s exists, but %s: use --overwrite to replace it", f, e.msg);
		} else {
			fprintf(stderr, "agipd-correct: warning: AGIPD%02d S%05d: %s exists but is not complete (%s): "
					"it is corrected again\n", tasks[i].module, tasks[i].seq, f, e.msg);
		}
	}
}

/* ---- the run ---- */

static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* Rank 0: the run's conditions from its control data (fallbacks from the
 * raw files of the tasks), and a first look at the calibration metadata. */
static int resolve_conditions(struct ctx *x, const struct task *tasks, int ntasks, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	int modules[AGIPD_MODULES], nm = 0, nraw = 0, rc = -1;
	char (*paths)[4200] = calloc((size_t)ntasks + 1, sizeof *paths);
	char (*srcs)[256] = calloc((size_t)ntasks + 1, sizeof *srcs);
	const char **pp = calloc((size_t)ntasks + 1, sizeof *pp), **sp = calloc((size_t)ntasks + 1, sizeof *sp);
	if (!paths || !srcs || !pp || !sp) {
		agipd_err_set(e, "out of memory");
		goto out;
	}
	for (int i = 0; i < ntasks; i++) {
		if (tasks[i].state != T_PENDING)
			continue;
		if (!nm || modules[nm - 1] != tasks[i].module)
			modules[nm++] = tasks[i].module;   /* tasks are sorted by module */
		raw_name(paths[nraw], sizeof paths[nraw], x->raw_dir, c->run, tasks[i].module, tasks[i].seq);
		agipd_source_name(srcs[nraw], sizeof srcs[nraw], c->karabo_id, tasks[i].module);
		pp[nraw] = paths[nraw];
		sp[nraw] = srcs[nraw];
		nraw++;
	}
	struct agipd_cond_input in = {
		.raw_dir = x->raw_dir, .run = c->run,
		.karabo_id_control = c->karabo_id_control, .karabo_da_control = c->karabo_da_control,
		.modules = modules, .nmodules = nm, .raw_files = pp, .raw_sources = sp, .nraw = nraw,
		.params = &c->params, .given = c->cond_given, .given_value = c->cond_value,
	};
	rc = agipd_conditions_resolve(&in, &x->cond, e);
	if (rc == 0 && c->calibration_metadata[0])
		rc = agipd_caldb_check(c->calibration_metadata, e);
out:
	free(paths);
	free(srcs);
	free(pp);
	free(sp);
	return rc;
}

static void print_summary(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			  const uint64_t *frames, char (*msgs)[AGIPD_ERRLEN], const double *all, double wall);
static int write_report(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			const uint64_t *frames, const double *secs, char (*msgs)[AGIPD_ERRLEN], const double *all,
			double wall, int ret);

int agipd_run(MPI_Comm world, const struct agipd_config *c, FILE *out)
{
	struct ctx X, *x = &X;
	struct task *tasks = NULL;
	int ntasks = 0, st = 0;
	agipd_err e = { "" };
	int ret = AGIPD_EXIT_OK;

	memset(x, 0, sizeof *x);
	x->world = world;
	x->c = c;
	x->out = out;
	x->cache.win = MPI_WIN_NULL;
	MPI_Comm_rank(world, &x->rank);
	MPI_Comm_size(world, &x->size);
	MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, x->rank, MPI_INFO_NULL, &x->node);
	agipd_h5_quiet();
	double t_start = now();
	if (x->rank == 0)
		iso_time(x->start_time, sizeof x->start_time);
	MPI_Bcast(x->start_time, sizeof x->start_time, MPI_CHAR, 0, world);

	/* Files: found by rank 0, known to all. */
	if (x->rank == 0) {
		ntasks = discover(x, &tasks, &e);
		if (ntasks >= 0 && check_out_folder(x, &e) < 0)
			ntasks = -1;
	}
	MPI_Bcast(&ntasks, 1, MPI_INT, 0, world);
	if (ntasks < 0) {
		if (x->rank == 0)
			fprintf(stderr, "agipd-correct: error: %s\n", e.msg);
		free(tasks);   /* found, before the output folder was refused */
		MPI_Comm_free(&x->node);
		return AGIPD_EXIT_USAGE;
	}
	MPI_Bcast(x->raw_dir, sizeof x->raw_dir, MPI_CHAR, 0, world);
	if (x->rank != 0)
		tasks = malloc((size_t)ntasks * sizeof *tasks);
	MPI_Bcast(tasks, ntasks * (int)sizeof *tasks, MPI_BYTE, 0, world);

	/* Operating conditions (SPEC 6.1), read by rank 0; the run's gain mode
	 * unless the command line gives one. */
	st = x->rank == 0 ? resolve_conditions(x, tasks, ntasks, &e) : 0;
	MPI_Bcast(&st, 1, MPI_INT, 0, world);
	MPI_Bcast(&x->cond, sizeof x->cond, MPI_BYTE, 0, world);
	struct agipd_config *local = st ? NULL : malloc(sizeof *local);
	if (!local) {
		if (x->rank == 0)
			fprintf(stderr, "agipd-correct: error: %s\n", st ? e.msg : "out of memory");
		free(tasks);
		MPI_Comm_free(&x->node);
		return AGIPD_EXIT_USAGE;
	}
	*local = *c;
	local->params.gain_mode = agipd_conditions_gain_mode(&x->cond);
	x->c = c = local;

	char (*msgs)[AGIPD_ERRLEN] = calloc((size_t)ntasks, sizeof *msgs);
	/* This run's files locked; temporaries of runs that are gone removed;
	 * complete outputs made alike kept unless --overwrite. */
	x->lock_fd = -1;
	if (x->rank == 0) {
		char host[64] = "";
		gethostname(host, sizeof host - 1);
		for (char *h = host; *h; h++)
			if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') || *h == '-'))
				*h = '_';
		snprintf(x->tmp_tag, sizeof x->tmp_tag, "%s.%ld", host[0] ? host : "host", (long)getpid());
		if (!c->dry_run && c->writer != AGIPD_WRITE_NULL) {
			x->lock_fd = lock_outputs(x, tasks, ntasks);
			remove_stale_temporaries(x, tasks, ntasks);
		}
		if (!c->overwrite && c->writer != AGIPD_WRITE_NULL)
			check_outputs(x, tasks, ntasks, msgs);
		for (int i = 0; i < ntasks; i++)
			if (tasks[i].state == T_BUSY)
				agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s/CORR-R%04ld-AGIPD%02d-S%05d.h5: another agipd-correct run "
					 "into %s is writing this file now (it holds its lock in %s): left alone",
					 c->out_folder, c->run, tasks[i].module, tasks[i].seq, c->out_folder, LOCK_NAME);
	}
	MPI_Bcast(x->tmp_tag, sizeof x->tmp_tag, MPI_CHAR, 0, world);
	MPI_Bcast(tasks, ntasks * (int)sizeof *tasks, MPI_BYTE, 0, world);

	int *todo = malloc((size_t)ntasks * sizeof *todo), ntodo = 0;
	int *status = calloc((size_t)ntasks, sizeof *status);
	int *root = malloc((size_t)ntasks * sizeof *root);
	uint64_t *frames = calloc((size_t)ntasks, sizeof *frames);
	double *secs = calloc((size_t)ntasks, sizeof *secs);
	for (int i = 0; i < ntasks; i++) {
		root[i] = -1;
		if (tasks[i].state == T_PENDING)
			todo[ntodo++] = i;
		else if (tasks[i].state == T_EXISTS)
			status[i] = RES_SKIPPED;
		else if (tasks[i].state == T_BUSY || tasks[i].state == T_OTHER)
			status[i] = RES_FAILED;   /* msgs[i] on rank 0 says why */
		else {
			status[i] = RES_FAILED;
			if (tasks[i].seq < 0)
				agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s: no raw files of module %d", x->raw_dir,
					   tasks[i].module);
			else
				agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s/RAW-R%04ld-AGIPD%02d-S%05d.h5: missing raw file",
					   x->raw_dir, c->run, tasks[i].module, tasks[i].seq);
		}
	}
	/* The plan: every rank computes it alike (frames not known yet: files
	 * count alike). */
	struct agipd_plan plan;
	int node_size;
	MPI_Comm_size(x->node, &node_size);
	if (agipd_plan_make(&plan, NULL, ntodo, x->size, node_size, c->writer == AGIPD_WRITE_SERIAL,
			    AGIPD_PLAN_BALANCED, &e) < 0) {
		if (x->rank == 0)
			fprintf(stderr, "agipd-correct: error: %s\n", e.msg);
		ret = AGIPD_EXIT_USAGE;
		goto done;
	}
	if (c->dry_run) {
		/* Every file that could not be corrected, with its reason: exit 1. */
		if (x->rank == 0) {
			fprintf(out, "conditions:\n");
			agipd_conditions_print(out, &x->cond);
			int bad = print_plan(x, &plan, tasks, todo);
			for (int i = 0; i < ntasks; i++)
				if (status[i] == RES_FAILED) {
					bad++;
					if (tasks[i].seq >= 0)
						fprintf(stderr, "agipd-correct: error: AGIPD%02d S%05d: %s\n", tasks[i].module,
							tasks[i].seq, msgs[i]);
					else
						fprintf(stderr, "agipd-correct: error: AGIPD%02d: %s\n", tasks[i].module, msgs[i]);
				}
			if (bad) {
				fprintf(stderr, "agipd-correct: dry run: %d file(s) could not be corrected\n", bad);
				ret = AGIPD_EXIT_FILES_FAILED;
			}
		}
		goto done;
	}

	/* Buffers for one batch. */
	const size_t B = (size_t)c->batch_frames;
	x->raw = malloc(B * 2 * P * sizeof *x->raw);
	x->data = malloc(B * P * 4);
	x->gain = malloc(B * P);
	x->mask = malloc(B * P * sizeof *x->mask);
	x->scratch = malloc(P * sizeof *x->scratch);
	x->order = malloc(B * sizeof *x->order);
	/* Raw frames are usually read in place from a mapping; the copy buffer
	 * is only touched for chunked or filtered raw data. */
	st = !x->raw || !x->data || !x->gain || !x->mask || !x->scratch || !x->order;
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, world);
	if (st) {
		if (x->rank == 0)
			fprintf(stderr, "agipd-correct: error: out of memory for %zu-frame batches\n", B);
		ret = AGIPD_EXIT_USAGE;
		goto done;
	}

	x->ntodo = ntodo;
	x->t_start = t_start;
	x->tty = isatty(2);
	MPI_Comm pcomm;
	progress_begin(x, world, &pcomm);
	MPI_Barrier(world);

	int stopped = 0;
	for (int round = 0; round < plan.nrounds && !stopped; round++) {
		const struct agipd_plan_group *mg = agipd_plan_group_of(&plan, round, x->rank);
		int mine = mg ? mg->file : -1;
		MPI_Comm g = MPI_COMM_NULL, nm = MPI_COMM_NULL;
		MPI_Comm_split(world, mine >= 0 ? mine : MPI_UNDEFINED, x->rank, &g);
		int module = mine >= 0 ? tasks[todo[mine]].module : -1;
		MPI_Comm_split(x->node, module >= 0 ? module : MPI_UNDEFINED, x->rank, &nm);
		if (mine < 0) {
			cache_release(&x->cache);
		} else {
			int ti = todo[mine], gr;
			uint64_t nf = 0;
			double t0 = now();
			MPI_Comm_rank(g, &gr);
			int rc = do_file(x, &tasks[ti], g, nm, &nf, &e);
			if (gr == 0) {
				root[ti] = x->rank;
				status[ti] = rc == 0 ? RES_OK : RES_FAILED;
				frames[ti] = nf;
				secs[ti] = now() - t0;
				if (rc) {
					snprintf(msgs[ti], AGIPD_ERRLEN, "%s", e.msg);
					fprintf(stderr, "agipd-correct: error [rank %d]: AGIPD%02d S%05d: %s\n", x->rank,
						tasks[ti].module, tasks[ti].seq, e.msg);
				} else if (x->cache.valid && x->cache.meta.warning[0] && !(x->warned >> tasks[ti].module & 1)) {
					x->warned |= 1u << tasks[ti].module;
					fprintf(stderr, "agipd-correct: warning [rank %d]: module %d: %s (--ignore-conditions)\n",
						x->rank, tasks[ti].module, x->cache.meta.warning);
				}
				if (rc == 0 && c->verbosity >= 2) {
					fprintf(stderr, "agipd-correct: [rank %d] AGIPD%02d S%05d: %" PRIu64
							" frames in %.2f s\n", x->rank, tasks[ti].module, tasks[ti].seq,
						nf, now() - t0);
				}
			}
			MPI_Comm_free(&g);
			MPI_Comm_free(&nm);
		}
		progress_show(x, NULL);
		/* Stop everyone after a signal, or after a failure with --fail-fast. */
		int flags[2] = { stop_signal != 0, 0 };
		for (int j = 0; j < ntasks; j++)
			if (status[j] == RES_FAILED && root[j] == x->rank)
				flags[1] = 1;
		allreduce_yielding(flags, 2, MPI_INT, MPI_MAX, world);
		if (flags[0] || (flags[1] && c->fail_fast))
			stopped = flags[0] ? 2 : 1;
	}
	if (stopped == 2)
		ret = AGIPD_EXIT_INTERRUPTED;
	cache_release(&x->cache);
	MPI_Request breq;
	MPI_Ibarrier(world, &breq);
	wait_yielding(&breq);
	progress_end(x, world, &pcomm);

done:;
	/* Every file of this run is complete or removed: let them go. */
	if (x->rank == 0)
		unlock_outputs(x);
	/* Results to rank 0: statuses and frames by reduction, messages by message. */
	MPI_Allreduce(MPI_IN_PLACE, root, ntasks, MPI_INT, MPI_MAX, world);
	if (!c->dry_run) {
		MPI_Allreduce(MPI_IN_PLACE, status, ntasks, MPI_INT, MPI_MAX, world);
		MPI_Allreduce(MPI_IN_PLACE, frames, ntasks, MPI_UINT64_T, MPI_MAX, world);
		MPI_Allreduce(MPI_IN_PLACE, secs, ntasks, MPI_DOUBLE, MPI_MAX, world);
		for (int i = 0; i < ntasks; i++) {
			if (status[i] != RES_FAILED || root[i] <= 0)
				continue;
			if (x->rank == root[i])
				MPI_Send(msgs[i], AGIPD_ERRLEN, MPI_CHAR, 0, i, world);
			else if (x->rank == 0)
				MPI_Recv(msgs[i], AGIPD_ERRLEN, MPI_CHAR, root[i], i, world, MPI_STATUS_IGNORE);
		}
	}
	x->cnt[C_T_TOTAL] = now() - t_start;
	x->cnt[C_PEAK_RSS_MB] = peak_rss_mb();
	double *all = x->rank == 0 ? calloc((size_t)x->size * C_NCOUNTERS, sizeof *all) : NULL;
	MPI_Gather(x->cnt, C_NCOUNTERS, MPI_DOUBLE, all, C_NCOUNTERS, MPI_DOUBLE, 0, world);
	int nfailed = 0;
	for (int i = 0; i < ntasks; i++)
		if (status[i] == RES_FAILED || (status[i] == RES_NONE && tasks[i].state == T_PENDING && !c->dry_run))
			nfailed++;
	if (ret == AGIPD_EXIT_OK && nfailed)
		ret = AGIPD_EXIT_FILES_FAILED;
	if (x->rank == 0 && !c->dry_run) {
		double wall = now() - t_start;
		print_summary(x, tasks, ntasks, status, frames, msgs, all, wall);
		if (c->report[0] && write_report(x, tasks, ntasks, status, frames, secs, msgs, all, wall, ret) < 0) {
			fprintf(stderr, "agipd-correct: error: %s: cannot write the report: %s\n", c->report,
				strerror(errno));
			if (ret == AGIPD_EXIT_OK)
				ret = AGIPD_EXIT_FILES_FAILED;
		}
	}
	if (x->rank == 0 && c->preview && !c->dry_run && c->writer != AGIPD_WRITE_NULL) {
		struct agipd_preview_opts po;
		struct agipd_preview_result pr;
		agipd_err pe = { "" };
		agipd_preview_opts_defaults(&po);
		po.folder = c->out_folder;
		po.run = (int)c->run;
		po.karabo_id = c->karabo_id;
		if (agipd_preview_folder(&po, &pr, &pe) < 0)
			fprintf(stderr, "agipd-correct: warning: no preview: %s\n", pe.msg);
		else if (c->verbosity >= 1)
			fprintf(out, "preview: %s (%d x %d, %d module(s))\n", pr.output, pr.width, pr.height,
				pr.modules_drawn);
	}
	MPI_Bcast(&ret, 1, MPI_INT, 0, world);
	agipd_plan_free(&plan);
	free(local);
	free(all);
	free(todo);
	free(status);
	free(root);
	free(frames);
	free(secs);
	free(msgs);
	free(tasks);
	free(x->raw);
	free(x->data);
	free(x->gain);
	free(x->mask);
	free(x->scratch);
	free(x->order);
	MPI_Comm_free(&x->node);
	return ret;
}

static void print_summary(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			  const uint64_t *frames, char (*msgs)[AGIPD_ERRLEN], const double *all, double wall)
{
	const struct agipd_config *c = x->c;
	FILE *o = x->out;
	int nok = 0, nskip = 0, nfail = 0, nnot = 0;
	uint64_t nframes = 0;
	for (int i = 0; i < ntasks; i++) {
		nok += status[i] == RES_OK;
		nskip += status[i] == RES_SKIPPED;
		nfail += status[i] == RES_FAILED;
		nnot += status[i] == RES_NONE;
		if (status[i] == RES_OK)
			nframes += frames[i];
	}
	if (c->verbosity >= 1) {
		fprintf(o, "conditions:\n");
		agipd_conditions_print(o, &x->cond);
		for (int i = 0; i < ntasks; i++) {
			const struct task *t = &tasks[i];
			if (status[i] == RES_OK)
				fprintf(o, "  AGIPD%02d S%05d  corrected  %" PRIu64 " frames\n", t->module, t->seq, frames[i]);
			else if (status[i] == RES_SKIPPED)
				fprintf(o, "  AGIPD%02d S%05d  skipped    output exists (use --overwrite)\n", t->module,
					t->seq);
			else if (status[i] == RES_NONE)
				fprintf(o, "  AGIPD%02d S%05d  not run\n", t->module, t->seq);
		}
		fprintf(o, "agipd-correct %s: run %ld: %d file(s) corrected, %d skipped, %d failed%s; %" PRIu64
			   " frames in %.2f s (%.0f frames/s, %.2f GB/s of raw data) on %d rank(s)\n",
			AGIPD_VERSION, c->run, nok, nskip, nfail, nnot ? ", some not run" : "", nframes, wall,
			wall > 0 ? (double)nframes / wall : 0, wall > 0 ? (double)nframes * 4 * P / wall / 1e9 : 0,
			x->size);
		double zin = 0, zout = 0;
		for (int q = 0; q < x->size; q++) {
			zin += all[q * C_NCOUNTERS + C_Z_IN];
			zout += all[q * C_NCOUNTERS + C_Z_OUT];
		}
		if (zout > 0)
			fprintf(o, "gain+mask: %.1f MB compressed to %.2f MB (ratio %.1f), shuffle+deflate(%s)+fletcher32 "
				   "on the owning ranks\n", zin / 1e6, zout / 1e6, zin / zout, agipd_deflate_impl());
		/* Per rank, seconds: compress = this rank's gain/mask filtering (for
		 * collective-h5filter: its filtered H5Dwrite calls); write = the rest of
		 * its writes, gather = moving compressed chunks to the file. */
		fprintf(o, "%-5s %8s %7s %7s %7s %8s %7s %7s %7s %9s %8s %8s\n", "rank", "frames", "consts", "read",
			"correct", "compress", "write", "gather", "wait", "gz-chunks", "gz-MB", "peak-MB");
		for (int q = 0; q < x->size; q++) {
			const double *v = all + q * C_NCOUNTERS;
			fprintf(o, "%-5d %8.0f %7.2f %7.2f %7.2f %8.2f %7.2f %7.2f %7.2f %9.0f %8.2f %8.0f\n", q,
				v[C_FRAMES], v[C_T_CONSTS], v[C_T_READ], v[C_T_CORRECT], v[C_Z_SECONDS],
				v[C_T_WRITE] - v[C_Z_SECONDS] - v[C_T_GATHER], v[C_T_GATHER], v[C_T_WAIT], v[C_Z_CHUNKS],
				v[C_Z_OUT] / 1e6, v[C_PEAK_RSS_MB]);
		}
	}
	if (nfail) {
		fprintf(stderr, "agipd-correct: %d file(s) failed:\n", nfail);
		for (int i = 0; i < ntasks; i++)
			if (status[i] == RES_FAILED) {
				if (tasks[i].seq >= 0)
					fprintf(stderr, "  AGIPD%02d S%05d: %s\n", tasks[i].module, tasks[i].seq, msgs[i]);
				else
					fprintf(stderr, "  AGIPD%02d: %s\n", tasks[i].module, msgs[i]);
			}
	}
	fflush(o);
}

/* Bytes of the valid UTF-8 sequence (RFC 3629) at s, 0 when there is none. */
static int utf8_len(const unsigned char *s)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	int n;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* A JSON string.  Bytes that are not UTF-8 (a path may hold any) become
 * \udcXX, as Python's surrogateescape reads them: os.fsencode() of the
 * decoded string gives the bytes back. */
static void json_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	fputc('"', f);
	while (*s) {
		int n = utf8_len(s);
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (*s < 0x20 || *s == 0x7f)
			fprintf(f, "\\u%04x", *s);
		else if (n > 0)
			fwrite(s, 1, (size_t)n, f);
		else
			fprintf(f, "\\udc%02x", *s);
		s += n > 0 ? n : 1;
	}
	fputc('"', f);
}

/* The JSON run report (--report): totals, per file, per rank, parameters.
 * Written to PATH.tmp and renamed, like the data. */
static int write_report(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			const uint64_t *frames, const double *secs, char (*msgs)[AGIPD_ERRLEN], const double *all,
			double wall, int ret)
{
	const struct agipd_config *c = x->c;
	char tmp[4200], end[32], val[4200];
	static const char *const names[] = { "none", "corrected", "skipped", "failed", "not run" };
	if (path_fits(snprintf(tmp, sizeof tmp, "%s.tmp", c->report), sizeof tmp) < 0)
		return -1;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	iso_time(end, sizeof end);
	uint64_t nframes = 0;
	int n[5] = { 0 };
	for (int i = 0; i < ntasks; i++) {
		n[status[i]]++;
		if (status[i] == RES_OK)
			nframes += frames[i];
	}
	double tot[C_NCOUNTERS] = { 0 };
	for (int q = 0; q < x->size; q++)
		for (int j = 0; j < C_NCOUNTERS; j++)
			tot[j] += all[q * C_NCOUNTERS + j];
	double bytes_out = 0;
	fprintf(f, "{\n  \"program\": \"agipd-correct\",\n  \"version\": \"%s\",\n  \"git_revision\": \"%s\",\n",
		AGIPD_VERSION, AGIPD_GIT_REV);
	fprintf(f, "  \"command_line\": ");
	json_str(f, c->command_line);
	fprintf(f, ",\n  \"start_time\": \"%s\",\n  \"end_time\": \"%s\",\n  \"exit_status\": %d,\n", x->start_time,
		end, ret);
	fprintf(f, "  \"n_ranks\": %d,\n  \"frames\": %" PRIu64 ",\n  \"seconds\": %.6f,\n", x->size, nframes, wall);
	fprintf(f, "  \"conditions\": ");
	agipd_conditions_json(f, &x->cond);
	fprintf(f, ",\n");
	fprintf(f, "  \"frames_per_second\": %.3f,\n  \"raw_gb_per_second\": %.6f,\n",
		wall > 0 ? (double)nframes / wall : 0, wall > 0 ? (double)nframes * 4 * P / wall / 1e9 : 0);
	fprintf(f, "  \"bytes_in\": %.0f,\n", (double)nframes * 4 * P);
	fprintf(f, "  \"files_corrected\": %d,\n  \"files_skipped\": %d,\n  \"files_failed\": %d,\n"
		   "  \"files_not_run\": %d,\n", n[RES_OK], n[RES_SKIPPED], n[RES_FAILED], n[RES_NONE]);
	fprintf(f, "  \"gain_mask\": {\"bytes_in\": %.0f, \"bytes_out\": %.0f, \"ratio\": %.3f, \"encoder\": \"%s\"},\n",
		tot[C_Z_IN], tot[C_Z_OUT], tot[C_Z_OUT] > 0 ? tot[C_Z_IN] / tot[C_Z_OUT] : 0, agipd_deflate_impl());
	fprintf(f, "  \"phase_seconds\": {\"constants\": %.6f, \"read\": %.6f, \"correct\": %.6f, "
		   "\"compress\": %.6f, \"write\": %.6f, \"gather\": %.6f, \"wait\": %.6f},\n",
		tot[C_T_CONSTS], tot[C_T_READ], tot[C_T_CORRECT], tot[C_Z_SECONDS],
		tot[C_T_WRITE] - tot[C_Z_SECONDS] - tot[C_T_GATHER], tot[C_T_GATHER], tot[C_T_WAIT]);
	fprintf(f, "  \"constants_loads\": %.3f,\n  \"constants_cells_loaded\": %.0f,\n", tot[C_CONST_LOADS],
		tot[C_CONST_CELLS]);
	fprintf(f, "  \"files\": [\n");
	for (int i = 0; i < ntasks; i++) {
		const struct task *t = &tasks[i];
		char out[4200];
		struct stat st;
		if (corr_name(out, sizeof out, c->out_folder, c->run, t->module, t->seq) < 0)
			out[0] = 0;     /* such a file failed in do_file */
		double osz = status[i] == RES_OK && stat(out, &st) == 0 ? (double)st.st_size : 0;
		bytes_out += osz;
		fprintf(f, "    {\"module\": %d, \"sequence\": %d, \"status\": \"%s\", \"frames\": %" PRIu64
			   ", \"seconds\": %.6f, \"output\": ", t->module, t->seq, names[status[i]],
			status[i] == RES_OK ? frames[i] : 0, secs[i]);
		json_str(f, status[i] == RES_OK || status[i] == RES_SKIPPED ? out : "");
		fprintf(f, ", \"output_bytes\": %.0f, \"error\": ", osz);
		json_str(f, status[i] == RES_FAILED ? msgs[i] : "");
		fprintf(f, "}%s\n", i + 1 < ntasks ? "," : "");
	}
	fprintf(f, "  ],\n  \"bytes_out\": %.0f,\n  \"ranks\": [\n", bytes_out);
	for (int q = 0; q < x->size; q++) {
		const double *v = all + q * C_NCOUNTERS;
		fprintf(f, "    {\"rank\": %d, \"frames\": %.0f, \"constants_s\": %.6f, \"read_s\": %.6f, "
			   "\"correct_s\": %.6f, \"compress_s\": %.6f, \"write_s\": %.6f, \"gather_s\": %.6f, "
			   "\"wait_s\": %.6f, \"total_s\": %.6f, \"gz_chunks\": %.0f, \"gz_bytes_in\": %.0f, "
			   "\"gz_bytes_out\": %.0f, \"constants_cells_loaded\": %.0f, \"constants_loads\": %.3f, "
			   "\"peak_rss_mb\": %.1f}%s\n",
			q, v[C_FRAMES], v[C_T_CONSTS], v[C_T_READ], v[C_T_CORRECT], v[C_Z_SECONDS],
			v[C_T_WRITE] - v[C_Z_SECONDS] - v[C_T_GATHER], v[C_T_GATHER], v[C_T_WAIT], v[C_T_TOTAL],
			v[C_Z_CHUNKS], v[C_Z_IN], v[C_Z_OUT], v[C_CONST_CELLS], v[C_CONST_LOADS], v[C_PEAK_RSS_MB],
			q + 1 < x->size ? "," : "");
	}
	fprintf(f, "  ],\n  \"parameters\": {\n");
	int first = 1;
	for (int i = 0; i < agipd_noptions; i++) {
		if (agipd_opts_value(c, agipd_options[i].name, val, sizeof val) < 0)
			continue;
		fprintf(f, "%s    ", first ? "" : ",\n");
		json_str(f, agipd_options[i].name);
		fprintf(f, ": ");
		json_str(f, val);
		first = 0;
	}
	fprintf(f, "\n  }\n}\n");
	int bad = ferror(f);
	if (fclose(f) != 0 || bad)
		return -1;
	return rename(tmp, c->report);
}
