/*
 * run_file.c - one file: a group of ranks reads its trains, corrects them
 * batch by batch, and writes the corrected file collectively, agreeing on
 * every rank's status before each collective step.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agipd_compress.h"
#include "agipd_mapguard.h"
#include "agipd_names.h"
#include "agipd_sha256.h"
#include "agipd_writer_h5.h"
#include "run_internal.h"

#define P AGIPD_PIXELS

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
	enum { RUN = 64 };
	const struct batch *b = arg;
	struct ctx *x = b->x;
	const struct agipd_raw *r = b->r;
	const struct agipd_params *p = &x->c->params;
	const uint16_t *an[RUN], *dg[RUN];
	void *dt[RUN];
	uint8_t *gn[RUN];
	uint32_t *mk[RUN];
	/* x->order holds the batch's frames cell by cell: each run of one cell
	 * (up to RUN frames) goes to the kernel at once. */
	for (uint64_t j = 0; j < b->n;) {
		const int cell = r->cell[r->kept[b->f0 + x->order[j]]];
		size_t m = 0;
		for (; j < b->n && m < RUN && r->cell[r->kept[b->f0 + x->order[j]]] == cell; j++, m++) {
			const uint64_t i = x->order[j];
			const uint16_t *fr = r->frames ? agipd_raw_frame(r, b->f0 + i) : x->raw + i * 2 * P;
			an[m] = fr;
			dg[m] = fr + P;
			dt[m] = (char *)x->data + i * P * b->dsz;
			gn[m] = x->gain + i * P;
			mk[m] = x->mask + i * P;
		}
		agipd_correct_cell(p, &x->cache.k, cell, m, an, dg, dt, gn, mk, x->scratch);
	}
}

/* First kept frame of group rank i of g: train-aligned, balanced by frames. */
static uint64_t split_point(const struct agipd_raw *r, int i, int g)
{
	return agipd_plan_split(r->out_first, r->nout, r->nkept, i, g);
}

void run_index_checksum(const struct agipd_raw *r, char hex[65])
{
	struct agipd_sha256 s;
	agipd_sha256_init(&s);
	agipd_sha256_update(&s, r->train_id, r->ntrains * 8);
	agipd_sha256_update(&s, r->first, r->ntrains * 8);
	agipd_sha256_update(&s, r->count, r->ntrains * 8);
	agipd_sha256_hex(&s, hex);
}


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
	const struct agipd_consts_share *cc = &x->cache;
	char end[32], idx[65], nranks[32], granks[32];
	int gsize;
	MPI_Comm_size(g, &gsize);
	run_iso_time(end, sizeof end);
	MPI_Bcast(end, sizeof end, MPI_CHAR, 0, g);
	run_index_checksum(r, idx);
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
		if (run_param_value(c, agipd_options[i].name, vals[n], sizeof vals[n]) == 0) {
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

/* The group's frames of r corrected and written in batches: this rank's
 * train-aligned share, every rank making the same number of collective
 * writes.  Returns 0, or -1 when the group agreed on a failure (e set).
 * done_out: the frames this rank wrote.  Collective on g. */
static int correct_frames(struct ctx *x, struct agipd_raw *r, struct agipd_writer *w, MPI_Comm g,
			  const char *raw_path, uint64_t *done_out, agipd_err *e)
{
	const struct agipd_params *p = &x->c->params;
	int gr, gs;
	MPI_Comm_rank(g, &gr);
	MPI_Comm_size(g, &gs);
	const uint64_t k0 = split_point(r, gr, gs), k1 = split_point(r, gr + 1, gs);
	const uint64_t B = (uint64_t)x->c->batch_frames, mine = k1 - k0;
	int nb = (int)((mine + B - 1) / B);
	MPI_Allreduce(MPI_IN_PLACE, &nb, 1, MPI_INT, MPI_MAX, g);
	const size_t dsz = agipd_dtype_size(p->data_dtype);
	uint64_t done = 0;
	double t0;
	int st;
	for (int b = 0; b < nb; b++) {
		uint64_t f0 = k0 + (uint64_t)b * B;
		uint64_t n = f0 < k1 ? (k1 - f0 < B ? k1 - f0 : B) : 0;
		t0 = run_now();
		/* Mapped raw data is read in place (its page faults taken here,
		 * so that they count as read time); else a copy through HDF5. */
		if (r->frames) {
			st = 0;
			if (f0 + n < k1)
				agipd_raw_prefetch(r, f0 + n, k1 - f0 - n < B ? k1 - f0 - n : B);
			if (agipd_raw_touch(r, f0, n) < 0)
				st = agipd_err_set(e, "%s: raw file changed while it was read (bus error reading "
						   "image/data from the mapped file: truncated or rewritten in place?)",
						   raw_path);
		} else {
			st = agipd_raw_read(r, f0, n, x->raw, e);
		}
		double t1 = run_now();
		x->cnt[C_T_READ] += t1 - t0;
		/* The batch's frames cell by cell: a cell's frames share its
		 * constants, tile by tile in cache (agipd_correct_cell). */
		if (st == 0) {
			order_by_cell(r, f0, n, x->order);
			/* A mapped raw file truncated meanwhile faults (SIGBUS):
			 * an error of this file, not the end of the job. */
			struct batch bt = { x, r, f0, n, dsz };
			if (agipd_mapguard_run(r->frames ? r->map : NULL, r->map_len, correct_batch, &bt) < 0)
				st = agipd_err_set(e, "%s: raw file changed while it was read (bus error reading "
						   "image/data from the mapped file: truncated or rewritten in place?)",
						   raw_path);
		}
		double t2 = run_now();
		x->cnt[C_T_CORRECT] += t2 - t1;
		if (run_stop_signal() && st == 0)
			st = agipd_err_set(e, "interrupted by signal %d", run_stop_signal());
		if (run_agree(g, st, e->msg))
			return -1;
		double t3 = run_now();
		x->cnt[C_T_WAIT] += t3 - t2;
		st = out_error(x, agipd_writer_write_frames(w, f0 < k1 ? f0 : 0, n, x->data, x->gain, x->mask, e),
			       e);
		x->cnt[C_T_WRITE] += run_now() - t3;
		if (run_agree(g, st, e->msg))
			return -1;
		done += n;
		*done_out = done;
		run_progress_add(x, (int64_t)n, 0, 0, 0);
		run_progress_show(x, NULL);
		x->cnt[C_BYTES_IN] += (double)n * 4 * P;
	}
	return 0;
}

/* The writer closed, its compression counts added to this rank's. */
static int close_output(struct ctx *x, struct agipd_writer *w, agipd_err *e)
{
	struct agipd_writer_stats ws;
	int st = out_error(x, agipd_writer_close(w, &ws, e), e);
	x->cnt[C_Z_CHUNKS] += (double)ws.chunks;
	x->cnt[C_Z_IN] += (double)ws.bytes_in;
	x->cnt[C_Z_OUT] += (double)ws.bytes_out;
	x->cnt[C_Z_SECONDS] += ws.t_filter;
	x->cnt[C_T_GATHER] += ws.t_gather;
	return st;
}

/* The module's constants for `needed` cells into x->cache, their cost
 * into this rank's counters.  Collective on nm; 0, or -1 with ce. */
static int acquire_consts(struct ctx *x, int module, MPI_Comm nm, int needed, agipd_err *ce)
{
	const struct agipd_config *c = x->c;
	struct agipd_consts_request rq = {
		.module = module, .needed = needed, .constants_folder = c->constants_folder,
		.calibration_metadata = c->calibration_metadata, .caldb_root = c->caldb_root,
		.params = &c->params, .cond = &x->cond, .ignore_conditions = c->ignore_conditions,
	};
	int st = agipd_consts_acquire(&x->cache, nm, &rq, ce);
	x->cnt[C_T_CONSTS] += x->cache.last.seconds;
	x->cnt[C_CONST_CELLS] += x->cache.last.cells;
	x->cnt[C_CONST_LOADS] += x->cache.last.loads;
	return st;
}

/*
 * Correct one file with the ranks of g.  Collective on g (and, for the
 * constants, on nm).  Returns 0, or -1 with e set identically on every rank.
 */
int run_file(struct ctx *x, const struct task *t, MPI_Comm g, MPI_Comm nm, uint64_t *frames_out,
		   agipd_err *e)
{
	const struct agipd_config *c = x->c;
	const struct agipd_params *p = &c->params;
	char src[256], raw_path[4200], tmp_path[4400], final_path[4200];
	struct agipd_raw r;
	struct agipd_writer *w = NULL;
	int gr, st, opened = 0;
	double t0;

	MPI_Comm_rank(g, &gr);
	agipd_source_name(src, sizeof src, c->karabo_id, t->module);
	int named = agipd_raw_name(raw_path, sizeof raw_path, x->raw_dir, c->run, t->module, t->seq) |
		    agipd_tmp_name(tmp_path, sizeof tmp_path, c->out_folder, c->run, t->module, t->seq, x->tmp_tag) |
		    agipd_corr_name(final_path, sizeof final_path, c->out_folder, c->run, t->module, t->seq);

	/* Raw file: every rank of the group reads INDEX itself. */
	t0 = run_now();
	if (named < 0)
		st = agipd_err_set(e, "AGIPD%02d S%05d: file name too long under %s or %s", t->module, t->seq,
				   x->raw_dir, c->out_folder);
	else
		st = agipd_raw_open(&r, raw_path, src, p, e);
	opened = st == 0;
	x->cnt[C_T_READ] += run_now() - t0;
	int needed = opened && r.nkept ? (int)r.max_kept_cell + 1 : 0;

	/* Constants (collective on nm, which every rank of g belongs to). */
	agipd_err ce = { "" };
	int cst = acquire_consts(x, t->module, nm, needed, &ce);
	if (st == 0 && cst != 0)
		st = agipd_err_set(e, "module %d: %s", t->module, ce.msg);
	if (st == 0 && needed > x->cache.ncells)
		st = agipd_err_set(e, "%s: cellId %d is not covered by the constants of module %d (%s has %d memory "
				   "cells)", raw_path, needed - 1, t->module, x->cache.meta.path, x->cache.meta.cells);
	if (run_agree(g, st, e->msg))
		goto fail;
	if (gr == 0)
		run_progress_add(x, 0, (int64_t)r.nkept, 0, 1);

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
		.mpi_info = c->mpi_info,
		.independent_data = c->io_transfer == AGIPD_IO_INDEPENDENT,
	};
	t0 = run_now();
	st = out_error(x, agipd_writer_create(&w, &wc, e), e);
	if (run_agree(g, st, e->msg))
		goto fail;
	st = out_error(x, agipd_writer_write_index(w, &r, e), e);
	x->cnt[C_T_WRITE] += run_now() - t0;
	if (run_agree(g, st, e->msg))
		goto fail;

	/* Frames: my trains, in batches; every rank makes the same writes. */
	uint64_t done = 0;
	if (correct_frames(x, &r, w, g, raw_path, &done, e) < 0)
		goto fail;

	t0 = run_now();
	st = out_error(x, write_provenance(x, w, &r, g, e), e);
	if (run_agree(g, st, e->msg))
		goto fail;
	st = close_output(x, w, e);
	w = NULL;
	if (run_agree(g, st, e->msg))
		goto fail;
	/* Complete: only now does it get its final name. */
	if (gr == 0 && wc.kind != AGIPD_WRITER_NULL && rename(tmp_path, final_path) < 0)
		st = agipd_err_set(e, "%s: cannot rename to %s: %s", tmp_path, final_path, strerror(errno));
	x->cnt[C_T_WRITE] += run_now() - t0;
	if (run_agree(g, st, e->msg))
		goto fail;
	*frames_out = r.nkept;
	x->cnt[C_FRAMES] += (double)done;   /* frames of files that were completed */
	if (gr == 0)
		run_progress_add(x, 0, 0, 1, 0);
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

/*
 * The value of option `name` as the provenance stores it: paths resolved to
 * absolute ones, and for --adu-per-kev, where SlopesFF's median per memory
 * cell is used, a pointer to the values used.  -1 as agipd_opts_value().
 */
int run_param_value(const struct agipd_config *c, const char *name, char *buf, size_t len)
{
	static const char *const paths[] = { "in-folder", "out-folder", "constants-folder", "calibration-metadata",
					      "caldb-root", "report" };
	if (agipd_opts_value(c, name, buf, len) < 0)
		return -1;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		char abs[PATH_MAX];
		if (!strcmp(name, paths[i]) && buf[0] && run_resolve_future(buf, abs) == 0 &&
		    agipd_path_fits(snprintf(buf, len, "%s", abs), len) < 0)
			return -1;
	}
	if (!strcmp(name, "adu-per-kev") && c->params.photon_energy > 0 && c->params.adu_per_kev == 0)
		snprintf(buf, len, "median of SlopesFF per memory cell (METADATA/calibration/adu_per_kev_used)");
	return 0;
}
