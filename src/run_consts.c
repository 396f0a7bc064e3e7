/*
 * run_consts.c - the sharing part of the constants module (agipd_consts.h):
 * a module's constants found (constants folder or calibration database, by
 * consts_h5.c and caldb.c), loaded and converted cell range by cell range by
 * the ranks of a node into one MPI-3 shared-memory window, checksummed in
 * parts and agreed on; kept across rounds.  The module's only MPI code.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "agipd_caldb.h"
#include "agipd_checksum.h"
#include "agipd_consts.h"
#include "run_internal.h"

/* ---- constants shared per node ---- */

void run_consts_release(struct consts_cache *cc)
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
		agipd_msgf(m->warning, sizeof m->warning, "%s", e->msg);
	}
	return st;
}

/* Memory for `words` words of constants: private when this rank is alone
 * on the module on its node, else a shared-memory window on cc->comm
 * (collective on it).  NULL with cc->msg set when there is none. */
static void *consts_memory(struct consts_cache *cc, int nr, int nn, size_t words, const char *path)
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
static void consts_combine_checksums(struct consts_cache *cc, MPI_Comm nm, int nn, const uint32_t *crc,
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

/*
 * Make sure the cache holds this module's constants for at least `needed`
 * cells, for the ranks of nm (this node, this module).  Collective on nm.
 * Returns the load status (0 or -1 with cc->msg).
 */
int run_consts_acquire(struct ctx *x, MPI_Comm nm, int module, int needed)
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
	run_consts_release(cc);

	double t0 = run_now();
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
		x->cnt[C_T_CONSTS] += run_now() - t0;
		return -1;
	}
	cc->ncells = needed < cc->meta.cells ? needed : cc->meta.cells;
	agipd_consts_layout(p, &cc->k);
	size_t words = agipd_consts_words(&cc->k, cc->ncells);
	int nn;
	MPI_Comm_size(nm, &nn);
	void *base = consts_memory(cc, nr, nn, words, path);
	if (!base) {
		cc->status = -1;
		return -1;
	}
	agipd_consts_attach(&cc->k, cc->ncells, base);
	/* Every rank of the node and module loads its share of the cells and
	 * checksums its share of the file. */
	if (cc->win != MPI_WIN_NULL)
		MPI_Win_fence(0, cc->win);
	int lo, hi;
	agipd_consts_share_range(cc->ncells, nr, nn, &lo, &hi);
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
	if (run_agree(nm, st, e.msg) == 0) {
		consts_combine_checksums(cc, nm, nn, crc, len, total);
		st = 0;
	} else {
		st = -1;
		memcpy(cc->msg, e.msg, sizeof cc->msg);
	}
	cc->status = st ? -1 : 0;
	x->cnt[C_T_CONSTS] += run_now() - t0;
	return cc->status;
}
