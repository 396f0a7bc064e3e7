/*
 * preview_h5.c - the preview's adapter side: find the CORR files of a run in
 * a folder, read one frame (or a mean) of each module with serial HDF5, and
 * agipd_preview_folder(), which hands them to the pure renderer (preview.c)
 * and the PNG writer (png_write.c).  Never collective, never prints.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "agipd_names.h"
#include "agipd_preview.h"

void agipd_preview_opts_defaults(struct agipd_preview_opts *o)
{
	memset(o, 0, sizeof *o);
	o->run = -1;
	o->sequence = -1;
	o->module = -1;
	o->pick = AGIPD_PREVIEW_PICK_FIRST;
	o->cell = -1;
	o->mean_stop = UINT64_MAX;
	o->max_width = 1600;
	o->pct_lo = 0.5;
	o->pct_hi = 99.5;
}

/* ------------------------------------------------------------------------
 * Reading one module
 */

/* HDF5 prints its error stack unless told not to; the library must not. */
struct h5_quiet {
	H5E_auto2_t func;
	void *data;
};

static void quiet_begin(struct h5_quiet *q)
{
	q->func = NULL;
	q->data = NULL;
	H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const struct h5_quiet *q)
{
	H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* 1 if every component of path exists as a link from loc (so a missing
 * group in the middle is an answer, not an error). */
static int path_exists(hid_t loc, const char *path)
{
	char buf[1024];
	size_t len = strlen(path);
	if (len >= sizeof buf)
		return 0;
	memcpy(buf, path, len + 1);
	for (char *p = buf; (p = strchr(p, '/')) != NULL; p++) {
		*p = 0;
		htri_t ok = H5Lexists(loc, buf, H5P_DEFAULT);
		*p = '/';
		if (ok <= 0)
			return 0;
	}
	htri_t ok = H5Lexists(loc, buf, H5P_DEFAULT);
	return ok > 0 && H5Oexists_by_name(loc, buf, H5P_DEFAULT) > 0;
}

struct find_kid {
	int module;
	char found[256];
};

/* H5Literate's callback type changed in HDF5 1.12 (H5L_info2_t). */
#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define link_iterate H5Literate2
#else
typedef H5L_info_t link_info;
#define link_iterate H5Literate
#endif

static herr_t find_kid_cb(hid_t g, const char *name, const link_info *info, void *data)
{
	struct find_kid *f = data;
	char p[512];
	(void)info;
	snprintf(p, sizeof p, "%s/DET/%dCH0:xtdf/image/data", name, f->module);
	if (path_exists(g, p)) {
		snprintf(f->found, sizeof f->found, "%s", name);
		return 1;   /* stop */
	}
	return 0;
}

/* The image group of the module's source, "INSTRUMENT/{kid}/DET/{m}CH0:xtdf/image". */
static int find_image_group(hid_t fid, const char *path, int module, const char *karabo_id, char *out,
			    size_t len, agipd_err *e)
{
	char kid[256];
	if (karabo_id) {
		snprintf(kid, sizeof kid, "%s", karabo_id);
	} else {
		struct find_kid f = { module, "" };
		hid_t g = path_exists(fid, "INSTRUMENT") ? H5Gopen2(fid, "INSTRUMENT", H5P_DEFAULT) : -1;
		if (g < 0) {
			H5Eclear2(H5E_DEFAULT);
			return agipd_err_set(e, "%s: no INSTRUMENT group: not a corrected (EXDF) file", path);
		}
		hsize_t idx = 0;
		herr_t rc = link_iterate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, find_kid_cb, &f);
		H5Gclose(g);
		if (rc < 0)
			return agipd_err_h5(e, "%s: cannot list INSTRUMENT", path);
		if (!f.found[0])
			return agipd_err_set(e, "%s: no INSTRUMENT/*/DET/%dCH0:xtdf/image/data in the file", path,
					     module);
		snprintf(kid, sizeof kid, "%s", f.found);
	}
	snprintf(out, len, "INSTRUMENT/%s/DET/%dCH0:xtdf/image", kid, module);
	return 0;
}

/* Open group/name, check it is (n, 512, 128) when rank3, or (n,)/(n, 1)
 * otherwise; returns the dataset and n. */
static hid_t open_checked(hid_t fid, const char *path, const char *group, const char *name, int rank3,
			  hsize_t *n, agipd_err *e)
{
	char full[600];
	hsize_t dims[3] = { 0, 0, 0 };
	snprintf(full, sizeof full, "%s/%s", group, name);
	if (!path_exists(fid, full)) {
		H5Eclear2(H5E_DEFAULT);
		agipd_err_set(e, "%s: missing dataset %s", path, full);
		return -1;
	}
	hid_t d = H5Dopen2(fid, full, H5P_DEFAULT);
	if (d < 0) {
		agipd_err_h5(e, "%s: cannot open %s", path, full);
		return -1;
	}
	hid_t s = H5Dget_space(d);
	int rank = s < 0 ? -1 : H5Sget_simple_extent_ndims(s);
	if (rank >= 1 && rank <= 3)
		H5Sget_simple_extent_dims(s, dims, NULL);
	if (s >= 0)
		H5Sclose(s);
	int ok = rank3 ? rank == 3 && dims[1] == AGIPD_ROWS && dims[2] == AGIPD_COLS
		       : rank == 1 || (rank == 2 && dims[1] == 1);
	if (!ok) {
		if (rank3)
			agipd_err_set(e, "%s: %s must have shape (n, %d, %d)", path, full, AGIPD_ROWS, AGIPD_COLS);
		else
			agipd_err_set(e, "%s: %s must have shape (n,) or (n, 1)", path, full);
		H5Dclose(d);
		return -1;
	}
	*n = dims[0];
	return d;
}

/* Read frame i of a (n, 512, 128) dataset as mtype into buf. */
static int read_frame(hid_t d, hid_t mtype, uint64_t i, void *buf)
{
	hsize_t start[3] = { i, 0, 0 }, count[3] = { 1, AGIPD_ROWS, AGIPD_COLS };
	hid_t fs = H5Dget_space(d);
	if (fs < 0)
		return -1;
	hid_t ms = H5Screate_simple(3, count, NULL);
	int rc = ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
			 H5Dread(d, mtype, ms, fs, H5P_DEFAULT, buf) < 0
		 ? -1
		 : 0;
	if (ms >= 0)
		H5Sclose(ms);
	H5Sclose(fs);
	return rc;
}

enum { DS_DATA, DS_GAIN, DS_MASK, DS_TRAIN, DS_CELL, DS_N };

static int read_module_open(const char *path, int module, const char *karabo_id,
			    const struct agipd_preview_opts *o, float *data, uint32_t *mask, uint8_t *gain,
			    struct agipd_preview_frame_info *fi, agipd_err *e)
{
	static const char *const names[DS_N] = { "data", "gain", "mask", "trainId", "cellId" };
	hid_t ds[DS_N] = { -1, -1, -1, -1, -1 };
	uint64_t *train = NULL, *cell = NULL;
	double *sum = NULL;
	uint32_t *count = NULL, *fmask = NULL;
	float *fdata = NULL;
	uint8_t *fgain = NULL;
	char group[400];
	int rc = -1;

	hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (fid < 0)
		return agipd_err_h5(e, "%s: cannot open", path);
	if (find_image_group(fid, path, module, karabo_id, group, sizeof group, e) < 0)
		goto out;
	hsize_t n = 0, nn;
	for (int k = 0; k < DS_N; k++) {
		ds[k] = open_checked(fid, path, group, names[k], k <= DS_MASK, k == 0 ? &n : &nn, e);
		if (ds[k] < 0)
			goto out;
		if (k > 0 && nn != n) {
			agipd_err_set(e, "%s: %s/%s has %llu entries, data has %llu frames", path, group, names[k],
				      (unsigned long long)nn, (unsigned long long)n);
			goto out;
		}
	}
	if (n > ((hsize_t)1 << 28)) {
		agipd_err_set(e, "%s: %llu frames is not a plausible frame count", path, (unsigned long long)n);
		goto out;
	}
	train = malloc((n ? n : 1) * sizeof *train);
	cell = malloc((n ? n : 1) * sizeof *cell);
	if (!train || !cell) {
		agipd_err_set(e, "%s: out of memory", path);
		goto out;
	}
	if (n && (H5Dread(ds[DS_TRAIN], H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, train) < 0 ||
		  H5Dread(ds[DS_CELL], H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, cell) < 0)) {
		agipd_err_h5(e, "%s: cannot read %s/trainId or cellId", path, group);
		goto out;
	}

	/* Which frames: [i0, i1). */
	uint64_t i0 = 0, i1 = 0;
	switch (o->pick) {
	case AGIPD_PREVIEW_PICK_FIRST:
	case AGIPD_PREVIEW_PICK_FRAME:
		i0 = o->pick == AGIPD_PREVIEW_PICK_FRAME ? o->frame : 0;
		if (i0 >= n) {
			agipd_err_set(e, "%s: no frame %" PRIu64 ": the file has %llu frame(s)", path, i0,
				      (unsigned long long)n);
			rc = 1;
			goto out;
		}
		i1 = i0 + 1;
		break;
	case AGIPD_PREVIEW_PICK_MATCH:
		for (i0 = 0; i0 < n; i0++)
			if ((!o->has_train || train[i0] == o->train) && (o->cell < 0 || cell[i0] == (uint64_t)o->cell))
				break;
		if (i0 >= n) {
			char t[64] = "", c[64] = "";
			if (o->has_train)
				snprintf(t, sizeof t, " train %" PRIu64, o->train);
			if (o->cell >= 0)
				snprintf(c, sizeof c, "%s cell %d", o->has_train ? "," : "", o->cell);
			agipd_err_set(e, "%s: no frame of%s%s", path, t, c);
			rc = 1;
			goto out;
		}
		i1 = i0 + 1;
		break;
	case AGIPD_PREVIEW_PICK_MEAN:
		i0 = o->mean_start;
		i1 = o->mean_stop < n ? o->mean_stop : n;
		if (i0 >= i1) {
			char stop[32] = "";
			if (o->mean_stop != UINT64_MAX)
				snprintf(stop, sizeof stop, "%" PRIu64, o->mean_stop);
			agipd_err_set(e, "%s: no frames in %" PRIu64 ":%s: the file has %llu frame(s)", path, i0,
				      stop, (unsigned long long)n);
			rc = 1;
			goto out;
		}
		break;
	default:
		agipd_err_set(e, "preview: unknown frame choice %d", (int)o->pick);
		goto out;
	}
	fi->index = i0;
	fi->train = train[i0];
	fi->cell = o->pick == AGIPD_PREVIEW_PICK_MEAN ? -1 : (int)cell[i0];
	fi->nframes = i1 - i0;

	if (i1 - i0 == 1) {
		if (read_frame(ds[DS_DATA], H5T_NATIVE_FLOAT, i0, data) < 0 ||
		    read_frame(ds[DS_GAIN], H5T_NATIVE_UINT8, i0, gain) < 0 ||
		    read_frame(ds[DS_MASK], H5T_NATIVE_UINT32, i0, mask) < 0) {
			agipd_err_h5(e, "%s: cannot read frame %" PRIu64 " of %s", path, i0, group);
			goto out;
		}
		rc = 0;
		goto out;
	}

	/* The mean of the unmasked samples, one frame at a time. */
	sum = calloc(AGIPD_PIXELS, sizeof *sum);
	count = calloc(AGIPD_PIXELS, sizeof *count);
	fdata = malloc(AGIPD_PIXELS * sizeof *fdata);
	fmask = malloc(AGIPD_PIXELS * sizeof *fmask);
	fgain = malloc(AGIPD_PIXELS);
	if (!sum || !count || !fdata || !fmask || !fgain) {
		agipd_err_set(e, "%s: out of memory", path);
		goto out;
	}
	memset(mask, 0, AGIPD_PIXELS * sizeof *mask);
	memset(gain, 0, AGIPD_PIXELS);
	for (uint64_t i = i0; i < i1; i++) {
		if (read_frame(ds[DS_DATA], H5T_NATIVE_FLOAT, i, fdata) < 0 ||
		    read_frame(ds[DS_GAIN], H5T_NATIVE_UINT8, i, fgain) < 0 ||
		    read_frame(ds[DS_MASK], H5T_NATIVE_UINT32, i, fmask) < 0) {
			agipd_err_h5(e, "%s: cannot read frame %" PRIu64 " of %s", path, i, group);
			goto out;
		}
		for (size_t p = 0; p < AGIPD_PIXELS; p++) {
			if (fgain[p] > gain[p])
				gain[p] = fgain[p];
			if (fmask[p] == 0 && isfinite(fdata[p])) {
				sum[p] += fdata[p];
				count[p]++;
			} else {
				mask[p] |= fmask[p] ? fmask[p] : AGIPD_BP_VALUE_IS_NAN;
			}
		}
	}
	for (size_t p = 0; p < AGIPD_PIXELS; p++) {
		if (count[p]) {
			data[p] = (float)(sum[p] / count[p]);
			mask[p] = 0;
		} else {
			data[p] = NAN;
		}
	}
	rc = 0;
out:
	for (int k = 0; k < DS_N; k++)
		if (ds[k] >= 0)
			H5Dclose(ds[k]);
	if (H5Fclose(fid) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: cannot close", path);
	free(train);
	free(cell);
	free(sum);
	free(count);
	free(fdata);
	free(fmask);
	free(fgain);
	return rc;
}

int agipd_preview_read_module(const char *path, int module, const char *karabo_id,
			      const struct agipd_preview_opts *o, float *data, uint32_t *mask, uint8_t *gain,
			      struct agipd_preview_frame_info *fi, agipd_err *e)
{
	agipd_err local;
	struct h5_quiet q;
	if (!e)
		e = &local;
	if (!path || !o || !data || !mask || !gain || !fi)
		return agipd_err_set(e, "preview: agipd_preview_read_module: NULL argument");
	quiet_begin(&q);
	int rc = read_module_open(path, module, karabo_id, o, data, mask, gain, fi, e);
	quiet_end(&q);
	return rc;
}

/* ------------------------------------------------------------------------
 * Finding the files
 */

struct corr_file {
	int run, module, seq;
};

/* "CORR-R0001-AGIPD03-S00000.h5" exactly (SPEC section 5). */
static int parse_corr_name(const char *name, struct corr_file *f)
{
	char back[64];
	int n = -1;
	if (strlen(name) != 28 ||
	    sscanf(name, "CORR-R%4d-AGIPD%2d-S%5d.h5%n", &f->run, &f->module, &f->seq, &n) != 3 || n != 28)
		return -1;
	snprintf(back, sizeof back, "CORR-R%04d-AGIPD%02d-S%05d.h5", f->run, f->module, f->seq);
	if (strcmp(back, name) != 0 || f->module >= AGIPD_MODULES)
		return -1;
	return 0;
}

static int cmp_corr(const void *a, const void *b)
{
	const struct corr_file *x = a, *y = b;
	if (x->run != y->run)
		return x->run < y->run ? -1 : 1;
	if (x->module != y->module)
		return x->module < y->module ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int scan_folder(const char *folder, struct corr_file **out, size_t *nout, agipd_err *e)
{
	*out = NULL;
	*nout = 0;
	DIR *d = opendir(folder);
	if (!d)
		return agipd_err_set(e, "%s: cannot open folder: %s", folder, strerror(errno));
	size_t n = 0, cap = 0;
	struct corr_file *v = NULL, f;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (parse_corr_name(de->d_name, &f) < 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 64;
			struct corr_file *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				free(v);
				closedir(d);
				return agipd_err_set(e, "%s: out of memory listing the folder", folder);
			}
			v = nv;
			cap = nc;
		}
		v[n++] = f;
		errno = 0;
	}
	int err = errno;
	closedir(d);
	if (err) {
		free(v);
		return agipd_err_set(e, "%s: cannot list folder: %s", folder, strerror(err));
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_corr);
	*out = v;
	*nout = n;
	return 0;
}

/* "0, 3, 7" style list of the distinct values of a field (runs or modules). */
static void list_values(const struct corr_file *v, size_t n, int run, char *buf, size_t len)
{
	int seen[AGIPD_MODULES] = { 0 }, last = -1, k = 0;
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && used + 16 < len; i++) {
		int val;
		if (run < 0) {
			if (v[i].run == last)
				continue;
			val = last = v[i].run;
		} else {
			if (v[i].run != run || seen[v[i].module])
				continue;
			seen[v[i].module] = 1;
			val = v[i].module;
		}
		used += (size_t)snprintf(buf + used, len - used, "%s%d", k++ ? ", " : "", val);
	}
}

/* ------------------------------------------------------------------------
 * The whole job
 */

struct module_buf {
	float *data;
	uint32_t *mask;
	uint8_t *gain;
	struct agipd_preview_frame_info fi;
	int seq;
	int drawn;
};

static int check_opts(const struct agipd_preview_opts *o, agipd_err *e)
{
	if (!o->folder || !*o->folder)
		return agipd_err_set(e, "preview: no folder given");
	if (o->module < -1 || o->module >= AGIPD_MODULES)
		return agipd_err_set(e, "preview: module %d is not 0..%d", o->module, AGIPD_MODULES - 1);
	if (o->run < -1 || o->run > 9999)
		return agipd_err_set(e, "preview: run %d is not 0..9999", o->run);
	if (o->sequence < -1 || o->sequence > 99999)
		return agipd_err_set(e, "preview: sequence %d is not 0..99999", o->sequence);
	if (o->pick < AGIPD_PREVIEW_PICK_FIRST || o->pick > AGIPD_PREVIEW_PICK_MEAN)
		return agipd_err_set(e, "preview: unknown frame choice %d", (int)o->pick);
	if (o->pick == AGIPD_PREVIEW_PICK_MATCH && !o->has_train && o->cell < 0)
		return agipd_err_set(e, "preview: choosing a frame by train or cell needs one of them");
	if (o->pick == AGIPD_PREVIEW_PICK_MEAN && o->mean_start >= o->mean_stop)
		return agipd_err_set(e, "preview: empty frame range %" PRIu64 ":%" PRIu64, o->mean_start,
				     o->mean_stop);
	if (!(o->pct_lo >= 0 && o->pct_lo < o->pct_hi && o->pct_hi <= 100))
		return agipd_err_set(e, "preview: percentiles %g, %g must satisfy 0 <= low < high <= 100",
				     o->pct_lo, o->pct_hi);
	if (o->max_width < 0)
		return agipd_err_set(e, "preview: maximum width %d is negative", o->max_width);
	return 0;
}

static void append_note(char *note, size_t len, const char *text)
{
	size_t used = strlen(note);
	if (used + 3 < len)
		agipd_msgf(note + used, len - used, "%s%s", used ? "; " : "", text);
}

/* "%.4g" without a trailing "e+00" surprise for ordinary numbers. */
static void fmt_num(char *buf, size_t len, double v)
{
	snprintf(buf, len, fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0) ? "%.3g" : "%.4g", v);
}

int agipd_preview_folder(const struct agipd_preview_opts *o, struct agipd_preview_result *res, agipd_err *e)
{
	agipd_err local;
	struct agipd_preview_result rlocal;
	struct corr_file *files = NULL;
	size_t nfiles = 0;
	struct module_buf mb[AGIPD_MODULES];
	struct agipd_preview_mosaic mosaic = { 0 };
	struct agipd_preview_canvas canvas = { 0, 0, NULL };
	float *good = NULL;
	int rc = -1;

	if (!e)
		e = &local;
	if (!res)
		res = &rlocal;
	memset(res, 0, sizeof *res);
	memset(mb, 0, sizeof mb);
	if (!o)
		return agipd_err_set(e, "preview: no options");
	if (check_opts(o, e) < 0)
		return -1;
	if (o->output)
		snprintf(res->output, sizeof res->output, "%s", o->output);
	else if ((size_t)snprintf(res->output, sizeof res->output, "%s/preview.png", o->folder) >=
		 sizeof res->output)
		return agipd_err_set(e, "%s: path too long", o->folder);

	if (scan_folder(o->folder, &files, &nfiles, e) < 0)
		return -1;
	if (nfiles == 0) {
		agipd_err_set(e, "%s: no corrected files (CORR-Rnnnn-AGIPDmm-Snnnnn.h5) in this folder",
			      o->folder);
		goto out;
	}
	int run = o->run >= 0 ? o->run : files[0].run;
	int any_run = 0, lowest_seq = -1;
	for (size_t i = 0; i < nfiles; i++) {
		if (files[i].run != run)
			continue;
		any_run = 1;
		if ((o->module < 0 || files[i].module == o->module) &&
		    (lowest_seq < 0 || files[i].seq < lowest_seq))
			lowest_seq = files[i].seq;
	}
	if (!any_run) {
		char runs[256];
		list_values(files, nfiles, -1, runs, sizeof runs);
		agipd_err_set(e, "%s: no corrected files of run %d (runs found: %s)", o->folder, run, runs);
		goto out;
	}
	if (lowest_seq < 0) {
		char mods[256];
		list_values(files, nfiles, run, mods, sizeof mods);
		agipd_err_set(e, "%s: no corrected file of module %d in run %d (modules found: %s)", o->folder,
			      o->module, run, mods);
		goto out;
	}
	/* Sequences to look in: the one asked for; or, picking by train or
	 * cell, every one in order; otherwise the lowest. */
	int search_all = o->sequence < 0 && o->pick == AGIPD_PREVIEW_PICK_MATCH;
	int seq = o->sequence >= 0 ? o->sequence : lowest_seq;

	struct agipd_preview_opts q = *o;
	char first_why[AGIPD_ERRLEN] = "";
	int m0 = o->module >= 0 ? o->module : 0, m1 = o->module >= 0 ? o->module + 1 : AGIPD_MODULES;
	int with_files = 0;
	for (int m = m0; m < m1; m++) {
		int tried = 0;
		agipd_err why;
		why.msg[0] = 0;
		for (size_t i = 0; i < nfiles && !mb[m].drawn; i++) {
			const struct corr_file *f = &files[i];
			if (f->run != run || f->module != m || (!search_all && f->seq != seq))
				continue;
			if (!mb[m].data) {
				mb[m].data = malloc(AGIPD_PIXELS * sizeof(float));
				mb[m].mask = malloc(AGIPD_PIXELS * sizeof(uint32_t));
				mb[m].gain = malloc(AGIPD_PIXELS);
				if (!mb[m].data || !mb[m].mask || !mb[m].gain) {
					agipd_err_set(e, "preview: out of memory");
					goto out;
				}
			}
			char path[4200];
			if (agipd_corr_name(path, sizeof path, o->folder, f->run, f->module, f->seq) < 0) {
				agipd_err_set(e, "preview: %s: folder name too long", o->folder);
				goto out;
			}
			tried++;
			int r = agipd_preview_read_module(path, m, o->karabo_id, &q, mb[m].data, mb[m].mask,
							  mb[m].gain, &mb[m].fi, &why);
			if (r < 0) {
				*e = why;
				goto out;
			}
			if (r == 0) {
				mb[m].drawn = 1;
				mb[m].seq = f->seq;
				/* Every other module shows the same train and cell as the first. */
				if (o->module < 0 && o->pick == AGIPD_PREVIEW_PICK_FIRST) {
					q.pick = AGIPD_PREVIEW_PICK_MATCH;
					q.has_train = 1;
					q.train = mb[m].fi.train;
					q.cell = mb[m].fi.cell;
				}
			}
		}
		with_files += tried > 0;
		if (!mb[m].drawn && tried) {
			char line[AGIPD_ERRLEN + 32];
			snprintf(line, sizeof line, "module %d: %s", m, why.msg);
			append_note(res->note, sizeof res->note, line);
			if (!first_why[0])
				snprintf(first_why, sizeof first_why, "%s", why.msg);
		}
	}
	if (with_files == 0) {
		agipd_err_set(e, "%s: no corrected files of run %d, sequence %d", o->folder, run, seq);
		goto out;
	}

	/* What was drawn. */
	struct agipd_preview_module mods[AGIPD_MODULES];
	size_t nmasked = 0, npix = 0, ngood = 0;
	int first = -1, same_seq = 1, same_frame = 1;
	memset(mods, 0, sizeof mods);
	for (int m = m0; m < m1; m++) {
		if (!mb[m].drawn)
			continue;
		if (first < 0)
			first = m;
		res->modules_drawn++;
		res->modules_present |= 1u << m;
		same_seq &= mb[m].seq == mb[first].seq;
		same_frame &= mb[m].fi.train == mb[first].fi.train && mb[m].fi.cell == mb[first].fi.cell;
		if (mb[m].fi.nframes > res->frames)
			res->frames = mb[m].fi.nframes;
		mods[m].data = mb[m].data;
		mods[m].mask = mb[m].mask;
		mods[m].gain = mb[m].gain;
		npix += AGIPD_PIXELS;
	}
	if (first < 0) {
		agipd_err_set(e, "no frame to show in run %d: %s", run, first_why);
		goto out;
	}
	res->run = run;
	res->sequence = same_seq ? mb[first].seq : -1;
	res->train = mb[first].fi.train;
	res->cell = mb[first].fi.cell;

	/* Colour limits: percentiles of the unmasked pixels at full resolution. */
	good = malloc(npix * sizeof *good);
	if (!good) {
		agipd_err_set(e, "preview: out of memory");
		goto out;
	}
	for (int m = m0; m < m1; m++) {
		if (!mb[m].drawn)
			continue;
		for (size_t p = 0; p < AGIPD_PIXELS; p++) {
			int bad = mb[m].mask[p] != 0 || !isfinite(mb[m].data[p]);
			nmasked += (size_t)bad;
			good[ngood++] = bad ? NAN : mb[m].data[p];
		}
	}
	res->masked_fraction = (double)nmasked / (double)npix;
	long nfin = agipd_preview_percentiles(good, ngood, o->pct_lo, o->pct_hi, &res->lo, &res->hi);
	if (nfin < 0) {
		agipd_err_set(e, "preview: out of memory");
		goto out;
	}

	/* Text. */
	char title[512], subtitle[512], what[256], lo_s[32], hi_s[32], note[96], seq_s[32];
	if (res->sequence >= 0)
		snprintf(seq_s, sizeof seq_s, "sequence %d", res->sequence);
	else
		snprintf(seq_s, sizeof seq_s, "several sequences");
	if (o->pick == AGIPD_PREVIEW_PICK_MEAN) {
		uint64_t a = o->mean_start, b = o->mean_start + res->frames;
		snprintf(what, sizeof what, "mean of frames %" PRIu64 "-%" PRIu64 " (%" PRIu64 " frame%s%s)", a,
			 b - 1, res->frames, res->frames == 1 ? "" : "s",
			 o->module < 0 ? " per module" : "");
	} else if (!same_frame) {
		snprintf(what, sizeof what, "frame %" PRIu64 " of each file (trains/cells differ)", o->frame);
	} else if (o->module >= 0) {
		snprintf(what, sizeof what, "train %" PRIu64 ", cell %d (frame %" PRIu64 ")", res->train, res->cell,
			 mb[first].fi.index);
	} else {
		snprintf(what, sizeof what, "train %" PRIu64 ", cell %d", res->train, res->cell);
	}
	if (o->module >= 0)
		snprintf(title, sizeof title, "AGIPD module %d - run %d, %s, %s", o->module, run, seq_s, what);
	else
		snprintf(title, sizeof title, "AGIPD1M, %d of 16 modules - run %d, %s, %s", res->modules_drawn,
			 run, seq_s, what);
	fmt_num(lo_s, sizeof lo_s, res->lo);
	fmt_num(hi_s, sizeof hi_s, res->hi);
	snprintf(subtitle, sizeof subtitle, "%.2f%% of pixels masked; colours from %s to %s", 100.0 * res->masked_fraction,
		 lo_s, hi_s);
	snprintf(note, sizeof note, "limits: percentiles %g-%g", o->pct_lo, o->pct_hi);

	struct agipd_preview_figure fig = {
		.title = title,
		.subtitle = subtitle,
		.data_label = o->pick == AGIPD_PREVIEW_PICK_MEAN ? "corrected data, mean over frames" : "corrected data",
		.gain_label = o->pick == AGIPD_PREVIEW_PICK_MEAN ? "gain stage (highest over frames)" : "gain stage",
		.limits_note = note,
		.lo = res->lo,
		.hi = res->hi,
		.scale = 1,
		.side_by_side = o->module < 0,
		.text_scale = 2,
	};
	enum agipd_preview_layout lay = o->module >= 0 ? AGIPD_PREVIEW_SINGLE : AGIPD_PREVIEW_QUADRANTS;
	struct agipd_preview_module *mp = o->module >= 0 ? &mods[o->module] : mods;
	int nm = o->module >= 0 ? 1 : AGIPD_MODULES;
	int max_w = o->max_width > 0 ? o->max_width : 1600;
	/* The largest magnification (scale / bin) whose figure fits max_w. */
	static const int bins[4] = { 1, 2, 4, 8 };
	int chosen = 0;
	for (int b = 0; b < 4 && !chosen; b++) {
		agipd_preview_mosaic_free(&mosaic);
		if (agipd_preview_mosaic_build(&mosaic, mp, nm, lay, bins[b], e) < 0)
			goto out;
		for (int s = 4; s >= 1 && !chosen; s--) {
			fig.scale = s;
			agipd_preview_figure_geometry(&mosaic, &fig, &res->geom);
			chosen = res->geom.width <= max_w;
		}
	}
	if (!chosen) {
		fig.scale = 1;   /* the smallest there is: bin 8, scale 1 */
		agipd_preview_figure_geometry(&mosaic, &fig, &res->geom);
	}
	res->bin = mosaic.bin;
	res->scale = fig.scale;
	if (agipd_preview_render(&mosaic, &fig, &canvas, e) < 0)
		goto out;
	if (agipd_preview_png_write(res->output, &canvas, e) < 0)
		goto out;
	res->width = canvas.width;
	res->height = canvas.height;
	rc = 0;
out:
	agipd_preview_canvas_free(&canvas);
	agipd_preview_mosaic_free(&mosaic);
	for (int m = 0; m < AGIPD_MODULES; m++) {
		free(mb[m].data);
		free(mb[m].mask);
		free(mb[m].gain);
	}
	free(good);
	free(files);
	return rc;
}
