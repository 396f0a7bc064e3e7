/*
 * consts_share.c - the sharing part of the constants module
 * (agipd_consts_share.h): a module's constants found (constants folder or
 * calibration database, by consts_h5.c and caldb.c), loaded and converted
 * cell range by cell range by the ranks of a node into one MPI-3
 * shared-memory window, checksummed in parts and agreed on; kept across
 * calls.  The module's only MPI code; independent of the run (run*.c).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "agipd_agree.h"
#include "agipd_caldb.h"
#include "agipd_checksum.h"
#include "agipd_consts.h"
#include "agipd_consts_share.h"

/* ---- constants shared per node ---- */

void agipd_consts_share_release(struct agipd_consts_share *s)
{
	if (!s->valid)
		return;
	if (s->win != MPI_WIN_NULL)
		MPI_Win_free(&s->win);
	free(s->priv);
	MPI_Comm_free(&s->comm);
	memset(s, 0, sizeof *s);
	s->win = MPI_WIN_NULL;
}

/* Rank 0 of a module's ranks: where its constants are (constants folder or
 * calibration database), and whether their conditions are the run's. */
static int consts_probe_module(const struct agipd_consts_request *rq, const char *path,
			       struct agipd_consts_meta *m, agipd_err *e)
{
	int st = rq->calibration_metadata && rq->calibration_metadata[0]
		? agipd_caldb_module(rq->calibration_metadata, rq->caldb_root, rq->module, rq->params, m, e)
		: agipd_consts_probe(path, rq->params, m, e);
	if (st == 0 && rq->cond && agipd_consts_check_conditions(m, rq->cond, e) < 0) {
		if (!rq->ignore_conditions)
			return -1;
		agipd_msgf(m->warning, sizeof m->warning, "%s", e->msg);
	}
	return st;
}

/* Memory for `words` words of constants: private when this rank is alone
 * on the module on its node, else a shared-memory window on cc->comm
 * (collective on it).  NULL with cc->msg set when there is none. */
static void *consts_memory(struct agipd_consts_share *cc, int nr, int nn, size_t words, const char *path)
{
	void *base = NULL;
	if (nn == 1) {
		/* Alone on this module on this node: private memory on 2 MiB pages
		 * (a first touch of a 4 KiB page costs microseconds; shared memory
		 * gets no transparent huge pages). */
		size_t bytes = (words * 4 + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
		if (posix_memalign(&base, 2u << 20, bytes ? bytes : (2u << 20)) != 0) {
			agipd_msgf(cc->msg, sizeof cc->msg, "%s: cannot allocate %zu MB for constants", path,
				   words * 4 >> 20);
			return NULL;
		}
		madvise(base, bytes, MADV_HUGEPAGE);
		cc->priv = base;
		return base;
	}
	MPI_Aint sz;
	int du;
	MPI_Info info;
	MPI_Info_create(&info);
	MPI_Info_set(info, "alloc_shared_noncontig", "false");
	/* A full node's constants can exceed a small /dev/shm: report it as
	 * this module's failure instead of aborting the job. */
	MPI_Comm_set_errhandler(cc->comm, MPI_ERRORS_RETURN);
	int mrc = MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)(words * 4) : 0, 4, info, cc->comm, &base, &cc->win);
	MPI_Info_free(&info);
	if (mrc != MPI_SUCCESS) {
		cc->win = MPI_WIN_NULL;
		agipd_msgf(cc->msg, sizeof cc->msg, "%s: cannot allocate %zu MB of shared memory for constants", path,
			   words * 4 >> 20);
		return NULL;
	}
	MPI_Win_shared_query(cc->win, 0, &sz, &du, &base);
	return base;
}

/* Each file's CRC-32 and size from every rank's part (collective on nm). */
static void consts_combine_checksums(struct agipd_consts_share *cc, MPI_Comm nm, int nn, const uint32_t *crc,
				     const uint64_t *len, const uint64_t *total)
{
	uint32_t *crcs = malloc((size_t)nn * AGIPD_CONST_KINDS * sizeof *crcs);
	uint64_t *lens = malloc((size_t)nn * AGIPD_CONST_KINDS * sizeof *lens);
	MPI_Allgather(crc, AGIPD_CONST_KINDS, MPI_UINT32_T, crcs, AGIPD_CONST_KINDS, MPI_UINT32_T, nm);
	MPI_Allgather(len, AGIPD_CONST_KINDS, MPI_UINT64_T, lens, AGIPD_CONST_KINDS, MPI_UINT64_T, nm);
	for (int f = 0; f < cc->meta.nfiles; f++) {
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
}

/* The constants found and checked by rank 0 of nm, their file's path
 * (constants folder) or metadata's (calibration database) into path.
 * Collective on nm; 0, or -1 on every rank with e set. */
static int consts_find(struct agipd_consts_share *cc, MPI_Comm nm, const struct agipd_consts_request *rq,
		       char *path, size_t pathlen, agipd_err *e)
{
	int nr, st = 0;
	MPI_Comm_rank(nm, &nr);
	agipd_consts_path(path, pathlen, rq->constants_folder ? rq->constants_folder : "", rq->module);
	if (nr == 0)
		st = consts_probe_module(rq, path, &cc->meta, e);
	MPI_Bcast(&st, 1, MPI_INT, 0, nm);
	MPI_Bcast(&cc->meta, sizeof cc->meta, MPI_BYTE, 0, nm);
	if (cc->meta.caldb)
		snprintf(path, pathlen, "%s", cc->meta.path);
	if (st == 0 && cc->meta.cells < 1)
		st = agipd_err_set(e, "%s: constants have no memory cells", path);
	if (st)
		MPI_Bcast(e->msg, sizeof e->msg, MPI_CHAR, 0, nm);
	return st ? -1 : 0;
}

/* Every rank of nm loads its share of the cells into base and checksums
 * its share of every file (one, or one per constant from the calibration
 * database); then they agree.  Collective on nm; 0, or -1 with e. */
static int consts_fill(struct agipd_consts_share *cc, MPI_Comm nm, const struct agipd_params *p, void *base,
		       agipd_err *e)
{
	int nr, nn, lo, hi;
	MPI_Comm_rank(nm, &nr);
	MPI_Comm_size(nm, &nn);
	agipd_consts_attach(&cc->k, cc->ncells, base);
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_fence(0, cc->win);
	agipd_consts_share_range(cc->ncells, nr, nn, &lo, &hi);
	int st = agipd_consts_load(p, lo, hi, &cc->k, &cc->meta, e);
	cc->last.cells = hi - lo;   /* this rank's share: a node loads a module once */
	cc->last.loads = 1.0 / nn;
	const int nf = cc->meta.nfiles;
	uint32_t crc[AGIPD_CONST_KINDS] = { 0 };
	uint64_t len[AGIPD_CONST_KINDS] = { 0 }, total[AGIPD_CONST_KINDS] = { 0 };
	for (int f = 0; f < nf && st == 0; f++)
		st = agipd_consts_checksum_part(cc->meta.files[f].path, nr, nn, &crc[f], &len[f], &total[f], e);
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_fence(0, cc->win);
	if (agipd_agree(nm, st, e->msg) != 0)
		return -1;
	consts_combine_checksums(cc, nm, nn, crc, len, total);
	return 0;
}

/* Does cc hold what nm asks for (or the failure it gave)? */
static int consts_kept(struct agipd_consts_share *cc, MPI_Comm nm, int module, int needed)
{
	int result;
	if (!cc->valid || cc->module != module)
		return 0;
	MPI_Comm_compare(cc->comm, nm, &result);
	return (result == MPI_IDENT || result == MPI_CONGRUENT) &&
	       (cc->status != 0 || cc->ncells >= needed || cc->ncells >= cc->meta.cells);
}

int agipd_consts_acquire(struct agipd_consts_share *cc, MPI_Comm nm, const struct agipd_consts_request *rq,
			 agipd_err *e)
{
	int needed = rq->needed, nr, nn;
	MPI_Allreduce(MPI_IN_PLACE, &needed, 1, MPI_INT, MPI_MAX, nm);
	if (needed < 1)
		needed = 1;
	memset(&cc->last, 0, sizeof cc->last);
	if (consts_kept(cc, nm, rq->module, needed)) {
		if (cc->status != 0)
			agipd_msgf(e->msg, sizeof e->msg, "%s", cc->msg);
		return cc->status;
	}
	agipd_consts_share_release(cc);

	double t0 = MPI_Wtime();
	cc->valid = 1;
	cc->module = rq->module;
	cc->win = MPI_WIN_NULL;
	MPI_Comm_dup(nm, &cc->comm);
	MPI_Comm_rank(nm, &nr);
	MPI_Comm_size(nm, &nn);
	agipd_err le = { "" };
	char path[4200];
	int st = consts_find(cc, nm, rq, path, sizeof path, &le);
	void *base = NULL;
	if (st == 0) {
		cc->ncells = needed < cc->meta.cells ? needed : cc->meta.cells;
		agipd_consts_layout(rq->params, &cc->k);
		base = consts_memory(cc, nr, nn, agipd_consts_words(&cc->k, cc->ncells), path);
		if (!base)
			memcpy(le.msg, cc->msg, sizeof le.msg);
		/* Every rank has its memory, or every rank fails. */
		st = agipd_agree(nm, base == NULL, le.msg);
	}
	if (st == 0)
		st = consts_fill(cc, nm, rq->params, base, &le);
	cc->status = st ? -1 : 0;
	if (st) {
		memcpy(cc->msg, le.msg, sizeof cc->msg);
		agipd_msgf(e->msg, sizeof e->msg, "%s", le.msg);
	}
	cc->last.seconds = MPI_Wtime() - t0;
	return cc->status;
}
