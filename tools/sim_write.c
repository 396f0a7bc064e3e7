/*
 * sim_write.c - the HDF5 adapter of agipd-simulate: raw EXDF files (SPEC
 * section 2, with the header/detector/trailer groups of real files), truth
 * files and calibration constants files (SPEC section 3).
 *
 * Serial HDF5 (default file access, sec2 driver): one process writes a whole
 * file.  Each file is written under a temporary name and renamed when it is
 * complete; a failure removes it.  HDF5's automatic error printing is off
 * while we work, and the innermost message of its error stack goes into err.
 */
#include "agipd_names.h"
#include "agipd_sim.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- error handling ----------------------------------------------------- */

struct ctx {
	const char *path; /* final name, for messages */
	char *err;
	size_t errlen;
	H5E_auto2_t old_func;
	void *old_data;
	int daq;          /* 1: datasets as the DAQ writes them (see create_ds) */
};

struct walk {
	char msg[320];
};

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	struct walk *w = data;
	(void)n;
	/* Downward walk: the last call leaves the innermost error. */
	snprintf(w->msg, sizeof w->msg, "%s: %s", e->func_name ? e->func_name : "?",
		 e->desc ? e->desc : "?");
	return 0;
}

static void fail(struct ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ctx *x, const char *fmt, ...)
{
	char what[256];
	struct walk w = { "" };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &w);
	H5Eclear2(H5E_DEFAULT);
	if (x->err && x->errlen)
		snprintf(x->err, x->errlen, "%s: %s%s%s%s", x->path, what, w.msg[0] ? " (" : "",
			 w.msg, w.msg[0] ? ")" : "");
}

static void ctx_begin(struct ctx *x, const char *path, char *err, size_t errlen)
{
	x->path = path;
	x->err = err;
	x->errlen = errlen;
	x->daq = 0;
	H5Eget_auto2(H5E_DEFAULT, &x->old_func, &x->old_data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void ctx_end(struct ctx *x)
{
	H5Eset_auto2(H5E_DEFAULT, x->old_func, x->old_data);
}

/* ---- paths and folders -------------------------------------------------- */

static int fmt_path(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fmt_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int agipd_sim_raw_path(const struct agipd_sim_config *cfg, int module, int sequence,
		       char *buf, size_t len)
{
	char dir[4096];
	if (fmt_path(dir, sizeof dir, "%s/r%04d", cfg->out_folder, cfg->run) < 0)
		return -1;
	return agipd_raw_name(buf, len, dir, cfg->run, module, sequence);
}

int agipd_sim_truth_path(const struct agipd_sim_config *cfg, int module, int sequence,
			 char *buf, size_t len)
{
	return fmt_path(buf, len, "%s/truth/TRUTH-R%04d-AGIPD%02d-S%05d.h5", cfg->out_folder,
			cfg->run, module, sequence);
}

int agipd_sim_constants_path(const struct agipd_sim_config *cfg, int module, char *buf,
			     size_t len)
{
	return fmt_path(buf, len, "%s/AGIPD%02d.h5", cfg->constants_folder, module);
}

static int mkdir_p(const char *path, char *err, size_t errlen)
{
	char buf[4096];
	if (strlen(path) >= sizeof buf) {
		snprintf(err, errlen, "%.200s...: path too long", path);
		return -1;
	}
	strcpy(buf, path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;
			*p = '\0';
			if (mkdir(buf, 0777) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "%s: cannot create folder: %s", buf,
					 strerror(errno));
				return -1;
			}
			*p = save;
			if (!save)
				break;
		}
	}
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a folder", path);
		return -1;
	}
	return 0;
}

int agipd_sim_make_folders(const struct agipd_sim_config *cfg, char *err, size_t errlen)
{
	char buf[4096];
	if (fmt_path(buf, sizeof buf, "%s/r%04d", cfg->out_folder, cfg->run) < 0 ||
	    mkdir_p(buf, err, errlen) < 0)
		return -1;
	if (cfg->write_truth &&
	    (fmt_path(buf, sizeof buf, "%s/truth", cfg->out_folder) < 0 ||
	     mkdir_p(buf, err, errlen) < 0))
		return -1;
	if (cfg->write_constants && mkdir_p(cfg->constants_folder, err, errlen) < 0)
		return -1;
	for (int i = 0; cfg->write_caldb && i < cfg->n_modules; i++)
		if (fmt_path(buf, sizeof buf, "%s/caldb/xfel/cal/agipd-type/agipd_siv1_agipdv11_m3%02d",
			     cfg->out_folder, cfg->modules[i]) < 0 ||
		    mkdir_p(buf, err, errlen) < 0)
			return -1;
	return 0;
}

/* ---- dataset helpers ---------------------------------------------------- */

/* Rows per chunk of the DAQ layout's small datasets (train and frame
 * records); image/data takes one frame a chunk. */
#define DAQ_CHUNK_ROWS 1024

/* Create a dataset (and its parent groups), never filled: every element is
 * written by us.  Contiguous, or with x->daq as the DAQ writes raw files:
 * first axis unlimited, hence chunked, unfiltered; a frame (rank 4) a chunk,
 * DAQ_CHUNK_ROWS rows a chunk for everything else. */
static hid_t create_ds(struct ctx *x, hid_t file, const char *name, hid_t ftype, int rank,
		       const hsize_t *dims)
{
	hid_t space = -1, lcpl = -1, dcpl = -1, ds = -1;
	hsize_t maxdims[4], chunk[4];
	const int daq = x->daq && rank >= 1 && rank <= 4;
	for (int i = 0; daq && i < rank; i++) {
		maxdims[i] = i == 0 ? H5S_UNLIMITED : dims[i];
		chunk[i] = dims[i] ? dims[i] : 1;
	}
	if (daq)
		chunk[0] = rank == 4 ? 1 : (dims[0] > 0 && dims[0] < DAQ_CHUNK_ROWS ? dims[0] : DAQ_CHUNK_ROWS);
	if ((space = H5Screate_simple(rank, dims, daq ? maxdims : NULL)) < 0 ||
	    (lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0 ||
	    H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
	    (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
	    (daq ? H5Pset_chunk(dcpl, rank, chunk) : H5Pset_layout(dcpl, H5D_CONTIGUOUS)) < 0 ||
	    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
	    H5Pset_alloc_time(dcpl, daq ? H5D_ALLOC_TIME_INCR : H5D_ALLOC_TIME_LATE) < 0)
		fail(x, "cannot set up dataset %s", name);
	else if ((ds = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0)
		fail(x, "cannot create dataset %s", name);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (lcpl >= 0)
		H5Pclose(lcpl);
	if (space >= 0)
		H5Sclose(space);
	return ds;
}

static int close_ds(struct ctx *x, hid_t ds, const char *name)
{
	if (H5Dclose(ds) < 0) {
		fail(x, "cannot close dataset %s", name);
		return -1;
	}
	return 0;
}

/* Create and write a whole dataset from memory of type mtype. */
static int write_ds(struct ctx *x, hid_t file, const char *name, hid_t ftype, hid_t mtype,
		    int rank, const hsize_t *dims, const void *data)
{
	hid_t ds = create_ds(x, file, name, ftype, rank, dims);
	if (ds < 0)
		return -1;
	hsize_t n = 1;
	for (int i = 0; i < rank; i++)
		n *= dims[i];
	if (n > 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
		fail(x, "cannot write dataset %s", name);
		H5Dclose(ds);
		return -1;
	}
	return close_ds(x, ds, name);
}

/* Write frames [f0, f0+n) of a dataset whose first axis is frames. */
static int write_rows(struct ctx *x, hid_t ds, const char *name, hid_t mtype, int rank,
		      const hsize_t *dims, hsize_t f0, hsize_t n, const void *data)
{
	hsize_t start[4] = { f0, 0, 0, 0 }, count[4];
	hid_t fspace = -1, mspace = -1;
	int rc = -1;
	for (int i = 0; i < rank; i++)
		count[i] = dims[i];
	count[0] = n;
	if ((fspace = H5Dget_space(ds)) < 0 ||
	    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
	    (mspace = H5Screate_simple(rank, count, NULL)) < 0)
		fail(x, "cannot select frames %llu..%llu of %s", (unsigned long long)f0,
		     (unsigned long long)(f0 + n), name);
	else if (H5Dwrite(ds, mtype, mspace, fspace, H5P_DEFAULT, data) < 0)
		fail(x, "cannot write frames %llu..%llu of %s", (unsigned long long)f0,
		     (unsigned long long)(f0 + n), name);
	else
		rc = 0;
	if (mspace >= 0)
		H5Sclose(mspace);
	if (fspace >= 0)
		H5Sclose(fspace);
	return rc;
}

/* Fixed-length ASCII string dataset of shape (n,). */
static int write_strings(struct ctx *x, hid_t file, const char *name, const char *const *s,
			 size_t n)
{
	size_t w = 1;
	for (size_t i = 0; i < n; i++)
		if (strlen(s[i]) > w)
			w = strlen(s[i]);
	char *buf = calloc(n ? n : 1, w);
	hid_t t = -1;
	int rc = -1;
	if (!buf) {
		fail(x, "out of memory for %s", name);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		memcpy(buf + i * w, s[i], strlen(s[i]));
	if ((t = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(t, w) < 0 ||
	    H5Tset_strpad(t, H5T_STR_NULLPAD) < 0 || H5Tset_cset(t, H5T_CSET_ASCII) < 0) {
		fail(x, "cannot make the string type of %s", name);
	} else {
		hsize_t dims[1] = { n };
		rc = write_ds(x, file, name, t, t, 1, dims, buf);
	}
	if (t >= 0)
		H5Tclose(t);
	free(buf);
	return rc;
}

static int write_u32_1(struct ctx *x, hid_t file, const char *name, uint32_t v)
{
	hsize_t dims[1] = { 1 };
	return write_ds(x, file, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, dims, &v);
}

/* Attribute `name` of obj: file type ftype over space (closed here; < 0:
 * creating it failed), values v in memory type mtype. */
static int attr_put(struct ctx *x, hid_t obj, const char *name, hid_t ftype, hid_t mtype, hid_t space,
		    const void *v)
{
	hid_t a = -1;
	int rc = -1;
	if (space < 0 || (a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
	    H5Awrite(a, mtype, v) < 0)
		fail(x, "cannot write attribute %s", name);
	else
		rc = 0;
	if (a >= 0 && H5Aclose(a) < 0 && rc == 0) {
		fail(x, "cannot close attribute %s", name);
		rc = -1;
	}
	if (space >= 0)
		H5Sclose(space);
	return rc;
}

static int attr_write(struct ctx *x, hid_t obj, const char *name, hid_t ftype, hid_t mtype,
		      const void *v)
{
	return attr_put(x, obj, name, ftype, mtype, H5Screate(H5S_SCALAR), v);
}

static int attr_string(struct ctx *x, hid_t obj, const char *name, const char *s)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	int rc = -1;
	if (t < 0 || H5Tset_size(t, strlen(s) ? strlen(s) : 1) < 0 ||
	    H5Tset_cset(t, H5T_CSET_ASCII) < 0)
		fail(x, "cannot make the string type of attribute %s", name);
	else
		rc = attr_write(x, obj, name, t, t, s);
	if (t >= 0)
		H5Tclose(t);
	return rc;
}

/* ---- files: create under a temporary name, rename when done ------------- */

static hid_t create_file(struct ctx *x, const char *tmp)
{
	hid_t f;
	unlink(tmp);
	if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0)
		fail(x, "cannot create the file (as %s)", tmp);
	return f;
}

static int finish_file(struct ctx *x, hid_t f, const char *tmp, int ok)
{
	if (f >= 0 && H5Fclose(f) < 0) {
		if (ok)
			fail(x, "cannot close the file");
		ok = 0;
	}
	if (ok && rename(tmp, x->path) < 0) {
		snprintf(x->err, x->errlen, "%s: cannot rename from %s: %s", x->path, tmp,
			 strerror(errno));
		ok = 0;
	}
	if (!ok)
		unlink(tmp);
	return ok ? 0 : -1;
}

static void date_strings(time_t t, char *compact, size_t n1, char *iso, size_t n2)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	if (compact)
		strftime(compact, n1, "%Y%m%dT%H%M%SZ", &tm);
	if (iso)
		strftime(iso, n2, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- raw files ---------------------------------------------------------- */

#define BATCH_FRAMES 128  /* frames generated and written per call (32 MiB raw) */
#define BATCH_ENTRIES 16  /* at most this many photon maps per batch */
#define DETECTOR_DATA_SIZE 5408

static int write_metadata(struct ctx *x, hid_t f, const struct agipd_sim_config *cfg,
			  const char *src, int sequence)
{
	static const char *const parts[4] = { "detector", "header", "image", "trailer" };
	char date[32], ids[4][512], devs[4][512];
	const char *idp[4], *devp[4], *roots[4];
	date_strings(cfg->creation_time, date, sizeof date, NULL, 0);
	const char *one[1];
	for (int i = 0; i < 4; i++) {
		snprintf(ids[i], sizeof ids[i], "INSTRUMENT/%s/%s", src, parts[i]);
		snprintf(devs[i], sizeof devs[i], "%s/%s", src, parts[i]);
		idp[i] = ids[i];
		devp[i] = devs[i];
		roots[i] = "INSTRUMENT";
	}
	one[0] = "1.0";
	if (write_strings(x, f, "METADATA/dataFormatVersion", one, 1) < 0)
		return -1;
	one[0] = date;
	if (write_strings(x, f, "METADATA/creationDate", one, 1) < 0 ||
	    write_strings(x, f, "METADATA/updateDate", one, 1) < 0)
		return -1;
	one[0] = "agipd-simulate-" AGIPD_VERSION;
	if (write_strings(x, f, "METADATA/daqLibrary", one, 1) < 0)
		return -1;
	one[0] = "2.16.0";
	if (write_strings(x, f, "METADATA/karaboFramework", one, 1) < 0)
		return -1;
	one[0] = "Simulated";
	if (write_strings(x, f, "METADATA/runType", one, 1) < 0)
		return -1;
	if (write_u32_1(x, f, "METADATA/proposalNumber", 900000) < 0 ||
	    write_u32_1(x, f, "METADATA/runNumber", (uint32_t)cfg->run) < 0 ||
	    write_u32_1(x, f, "METADATA/sequenceNumber", (uint32_t)sequence) < 0)
		return -1;
	if (write_strings(x, f, "METADATA/dataSources/dataSourceId", idp, 4) < 0 ||
	    write_strings(x, f, "METADATA/dataSources/root", roots, 4) < 0 ||
	    write_strings(x, f, "METADATA/dataSources/deviceId", devp, 4) < 0)
		return -1;
	return 0;
}

static int write_index_and_small(struct ctx *x, hid_t f, const struct agipd_sim_plan *pl,
				 const char *src)
{
	static const char *const parts[3] = { "detector", "header", "trailer" };
	char name[512];
	size_t E = pl->n_entries, T = pl->n_trains, N = pl->n_frames;
	hsize_t dE[1] = { E }, dT[1] = { T }, dN2[2] = { N, 1 };
	uint64_t *pfirst = calloc(E, sizeof *pfirst), *pcount = calloc(E, sizeof *pcount);
	uint64_t *tids = calloc(T ? T : 1, sizeof *tids);
	uint64_t *zeros64 = calloc(N > T ? N : (T ? T : 1), sizeof *zeros64);
	uint32_t *u32 = calloc(N > T ? N : (T ? T : 1), sizeof *u32);
	uint8_t *bytes = calloc((T ? T : 1) * DETECTOR_DATA_SIZE, 1);
	int rc = -1;
	if (!pfirst || !pcount || !tids || !zeros64 || !u32 || !bytes) {
		fail(x, "out of memory");
		goto out;
	}
	for (size_t e = 0; e < E; e++) {
		pfirst[e] = e < T ? e : T;
		pcount[e] = e < T ? 1 : 0;
	}
	for (size_t t = 0; t < T; t++)
		tids[t] = pl->train_id[t];

	/* INDEX */
	if (write_ds(x, f, "INDEX/trainId", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pl->train_id) < 0 ||
	    write_ds(x, f, "INDEX/timestamp", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pl->timestamp) < 0 ||
	    write_ds(x, f, "INDEX/flag", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dE, pl->flag) < 0)
		goto out;
	snprintf(name, sizeof name, "INDEX/%s/image/first", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pl->first) < 0)
		goto out;
	snprintf(name, sizeof name, "INDEX/%s/image/count", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pl->count) < 0)
		goto out;
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "INDEX/%s/%s/first", src, parts[i]);
		if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pfirst) < 0)
			goto out;
		snprintf(name, sizeof name, "INDEX/%s/%s/count", src, parts[i]);
		if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dE, pcount) < 0)
			goto out;
	}

	/* image: per-frame scalars of shape (N, 1) */
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/cellId", src);
	if (write_ds(x, f, name, H5T_STD_U16LE, H5T_NATIVE_UINT16, 2, dN2, pl->cell_id) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/pulseId", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 2, dN2, pl->pulse_id) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/trainId", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 2, dN2, pl->frame_train_id) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/status", src);
	if (write_ds(x, f, name, H5T_STD_U16LE, H5T_NATIVE_UINT16, 2, dN2, zeros64) < 0)
		goto out;
	for (size_t i = 0; i < N; i++)
		u32[i] = 2 * AGIPD_PIXELS * 2; /* bytes of one frame */
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/length", src);
	if (write_ds(x, f, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 2, dN2, u32) < 0)
		goto out;

	/* header / detector / trailer: one row per train */
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/%s/trainId", src, parts[i]);
		if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, tids) < 0)
			goto out;
	}
	hsize_t dT8[2] = { T, 8 }, dT16[2] = { T, 16 }, dTD[2] = { T, DETECTOR_DATA_SIZE };
	snprintf(name, sizeof name, "INSTRUMENT/%s/detector/data", src);
	if (write_ds(x, f, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, dTD, bytes) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/dataId", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, zeros64) < 0)
		goto out;
	for (size_t t = 0; t < T; t++)
		zeros64[t] = (uint64_t)pl->module;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/linkId", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, zeros64) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/pulseCount", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, pl->count) < 0)
		goto out;
	for (size_t t = 0; t < T; t++)
		u32[t] = 2;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/majorTrainFormatVersion", src);
	if (write_ds(x, f, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, dT, u32) < 0)
		goto out;
	for (size_t t = 0; t < T; t++)
		u32[t] = 1;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/minorTrainFormatVersion", src);
	if (write_ds(x, f, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, dT, u32) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/reserved", src);
	if (write_ds(x, f, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, dT16, bytes) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/trailer/checksum", src);
	if (write_ds(x, f, name, H5T_STD_I8LE, H5T_NATIVE_INT8, 2, dT16, bytes) < 0)
		goto out;
	memset(zeros64, 0, (N > T ? N : (T ? T : 1)) * sizeof *zeros64);
	snprintf(name, sizeof name, "INSTRUMENT/%s/trailer/status", src);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, zeros64) < 0)
		goto out;
	for (size_t t = 0; t < T; t++)
		memcpy(bytes + 8 * t, "XTDF\0\0\0\0", 8);
	snprintf(name, sizeof name, "INSTRUMENT/%s/header/magicNumberBegin", src);
	if (write_ds(x, f, name, H5T_STD_I8LE, H5T_NATIVE_INT8, 2, dT8, bytes) < 0)
		goto out;
	snprintf(name, sizeof name, "INSTRUMENT/%s/trailer/magicNumberEnd", src);
	if (write_ds(x, f, name, H5T_STD_I8LE, H5T_NATIVE_INT8, 2, dT8, bytes) < 0)
		goto out;
	rc = 0;
out:
	free(pfirst);
	free(pcount);
	free(tids);
	free(zeros64);
	free(u32);
	free(bytes);
	return rc;
}

/* Next batch: whole frames from f0, at most BATCH_FRAMES and BATCH_ENTRIES. */
static size_t batch_end(const struct agipd_sim_plan *pl, size_t f0)
{
	size_t f1 = f0 + BATCH_FRAMES;
	if (f1 > pl->n_frames)
		f1 = pl->n_frames;
	uint32_t e0 = pl->frame_entry[f0];
	for (size_t f = f0 + 1; f < f1; f++)
		if (pl->frame_entry[f] >= e0 + BATCH_ENTRIES)
			return f;
	return f1;
}

/* special_pixels (n, 3) int32: row, column, enum agipd_sim_pixel_flag. */
static int write_special(struct ctx *x, hid_t f, const struct agipd_sim_module *m)
{
	size_t n = agipd_sim_special_pixels(m, NULL);
	int32_t *sp = malloc((n ? n : 1) * 3 * sizeof *sp);
	hid_t ds;
	int rc = -1;
	if (!sp) {
		fail(x, "out of memory");
		return -1;
	}
	agipd_sim_special_pixels(m, sp);
	hsize_t dims[2] = { n, 3 };
	if ((ds = create_ds(x, f, "special_pixels", H5T_STD_I32LE, 2, dims)) >= 0) {
		if (n && H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, sp) < 0)
			fail(x, "cannot write special_pixels");
		else if (attr_string(x, ds, "columns", "row, column, flags") == 0 &&
			 attr_string(x, ds, "flags",
				     "1 SlopesPC ml x0.5, 2 SlopesPC mh x1.6, 4 SlopesFF x0.55|x1.5, "
				     "8 Offset NaN, 16 Offset[0] inf, 32 ThresholdsDark[0:2] NaN, "
				     "64 SlopesPC ml NaN, 128 SlopesPC bh NaN, 256 SlopesFF NaN") == 0)
			rc = 0;
		if (close_ds(x, ds, "special_pixels") < 0)
			rc = -1;
	}
	free(sp);
	return rc;
}

int agipd_sim_write_raw(const struct agipd_sim_config *cfg, struct agipd_sim_module *m,
			int sequence, struct agipd_sim_stats *stats, char *err, size_t errlen)
{
	char path[4096], tpath[4096], tmp[4200], ttmp[4200], src[300], name[512];
	struct agipd_sim_plan *pl = NULL;
	struct ctx x, xt;
	hid_t f = -1, tf = -1, ds = -1, pds = -1, gds = -1;
	uint16_t *raw = NULL;
	float *ph = NULL;
	uint8_t *gain = NULL;
	int ok = 0, module = agipd_sim_module_number(m), truth = cfg->write_truth;
	int truth_started = 0;
	size_t N = 0;

	if (agipd_sim_raw_path(cfg, module, sequence, path, sizeof path) < 0 ||
	    agipd_sim_truth_path(cfg, module, sequence, tpath, sizeof tpath) < 0) {
		snprintf(err, errlen, "%s: output path too long", cfg->out_folder);
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s.part", path);
	snprintf(ttmp, sizeof ttmp, "%s.part", tpath);
	snprintf(src, sizeof src, "%s/DET/%dCH0:xtdf", cfg->karabo_id, module);
	ctx_begin(&x, path, err, errlen);
	xt = x;
	xt.path = tpath;
	x.daq = !cfg->contiguous;   /* the truth file stays contiguous */

	if (agipd_sim_plan_new(cfg, module, sequence, &pl, err, errlen) < 0)
		goto out;
	N = pl->n_frames;
	raw = malloc((size_t)BATCH_FRAMES * 2 * AGIPD_PIXELS * sizeof *raw);
	if (truth) {
		ph = malloc((size_t)BATCH_FRAMES * AGIPD_PIXELS * sizeof *ph);
		gain = malloc((size_t)BATCH_FRAMES * AGIPD_PIXELS);
	}
	if (!raw || (truth && (!ph || !gain))) {
		fail(&x, "out of memory for frame buffers");
		goto out;
	}

	if ((f = create_file(&x, tmp)) < 0)
		goto out;
	if (write_metadata(&x, f, cfg, src, sequence) < 0 ||
	    write_index_and_small(&x, f, pl, src) < 0)
		goto out;
	hsize_t dims[4] = { N, 2, AGIPD_ROWS, AGIPD_COLS };
	hsize_t tdims[3] = { N, AGIPD_ROWS, AGIPD_COLS };
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/data", src);
	if ((ds = create_ds(&x, f, name, H5T_STD_U16LE, 4, dims)) < 0)
		goto out;

	if (truth) {
		truth_started = 1;
		if ((tf = create_file(&xt, ttmp)) < 0)
			goto out;
		double e = cfg->photon_energy;
		int32_t mod32 = module, run32 = cfg->run, seq32 = sequence;
		uint64_t seed = cfg->seed;
		hsize_t dN[1] = { N };
		if ((pds = create_ds(&xt, tf, "photons", H5T_IEEE_F32LE, 3, tdims)) < 0 ||
		    attr_write(&xt, pds, "photon_energy", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e) < 0 ||
		    attr_string(&xt, pds, "units", "photons") < 0 ||
		    (gds = create_ds(&xt, tf, "gain", H5T_STD_U8LE, 3, tdims)) < 0 ||
		    attr_write(&xt, tf, "photon_energy", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e) < 0 ||
		    attr_write(&xt, tf, "module", H5T_STD_I32LE, H5T_NATIVE_INT32, &mod32) < 0 ||
		    attr_write(&xt, tf, "run", H5T_STD_I32LE, H5T_NATIVE_INT32, &run32) < 0 ||
		    attr_write(&xt, tf, "sequence", H5T_STD_I32LE, H5T_NATIVE_INT32, &seq32) < 0 ||
		    attr_write(&xt, tf, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed) < 0 ||
		    write_ds(&xt, tf, "cellId", H5T_STD_U16LE, H5T_NATIVE_UINT16, 1, dN, pl->cell_id) < 0 ||
		    write_ds(&xt, tf, "trainId", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dN,
			     pl->frame_train_id) < 0 ||
		    write_special(&xt, tf, m) < 0)
			goto out;
	}

	for (size_t f0 = 0; f0 < N;) {
		size_t f1 = batch_end(pl, f0), n = f1 - f0;
		if (agipd_sim_generate(m, pl, f0, n, raw, ph, gain, err, errlen) < 0)
			goto out;
		if (write_rows(&x, ds, name, H5T_NATIVE_UINT16, 4, dims, f0, n, raw) < 0)
			goto out;
		if (truth && (write_rows(&xt, pds, "photons", H5T_NATIVE_FLOAT, 3, tdims, f0, n, ph) < 0 ||
			      write_rows(&xt, gds, "gain", H5T_NATIVE_UINT8, 3, tdims, f0, n, gain) < 0))
			goto out;
		f0 = f1;
	}
	ok = 1;
out:
	if (ds >= 0 && close_ds(&x, ds, name) < 0)
		ok = 0;
	if (pds >= 0 && close_ds(&xt, pds, "photons") < 0)
		ok = 0;
	if (gds >= 0 && close_ds(&xt, gds, "gain") < 0)
		ok = 0;
	if (finish_file(&x, f, tmp, ok) < 0)
		ok = 0;
	if (truth_started && finish_file(&xt, tf, ttmp, ok) < 0) {
		ok = 0;
		unlink(path); /* the raw file without its truth is no good either */
	}
	if (ok && stats) {
		stats->files += 1 + (truth ? 1 : 0);
		stats->frames += N;
		stats->raw_bytes += (uint64_t)N * 2 * AGIPD_PIXELS * 2;
		if (truth)
			stats->truth_bytes += (uint64_t)N * AGIPD_PIXELS * 5;
	}
	ctx_end(&x);
	agipd_sim_plan_free(pl);
	free(raw);
	free(ph);
	free(gain);
	return ok ? 0 : -1;
}

/* ---- constants ---------------------------------------------------------- */

#define SLAB_COLS 4 /* columns (first file axis) per write */

enum { K_THR, K_OFF, K_NOISE, K_BPD, K_SPC, K_BPPC, K_SFF, K_BPFF, K_N };

static const char *const names[K_N] = { "ThresholdsDark", "Offset", "Noise", "BadPixelsDark",
					"SlopesPC", "BadPixelsPC", "SlopesFF", "BadPixelsFF" };
static const int depth[K_N] = { 5, 3, 3, 3, 10, 1, 1, 1 }; /* 1: no gain axis */
static const int rank[K_N] = { 4, 4, 4, 4, 4, 3, 3, 3 };
static const int esize[K_N] = { 8, 8, 4, 4, 4, 4, 4, 4 };
static const int is_dark[K_N] = { 1, 1, 1, 1, 0, 0, 0, 0 };

static hid_t k_ftype(int k)
{
	const hid_t t[K_N] = { H5T_IEEE_F64LE, H5T_IEEE_F64LE, H5T_IEEE_F32LE, H5T_STD_U32LE,
			       H5T_IEEE_F32LE, H5T_STD_U32LE, H5T_IEEE_F32LE, H5T_STD_U32LE };
	return t[k];
}

static hid_t k_mtype(int k)
{
	const hid_t t[K_N] = { H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, H5T_NATIVE_FLOAT,
			       H5T_NATIVE_UINT32, H5T_NATIVE_FLOAT, H5T_NATIVE_UINT32,
			       H5T_NATIVE_FLOAT, H5T_NATIVE_UINT32 };
	return t[k];
}

/* The memory cells of the simulated conditions. */
static int cond_mem_cells(const struct agipd_sim_config *cfg)
{
	return cfg->mem_cells > 0 ? cfg->mem_cells : cfg->constants_cells;
}

/* Fill the slab of columns x0 .. x0+SLAB_COLS of every constant, in the
 * facility's axis order (column, row, cell, k). */
static void fill_slab(const struct agipd_sim_module *m, int C, int x0, void *const buf[K_N])
{
	double *thr = buf[K_THR], *off = buf[K_OFF];
	float *noise = buf[K_NOISE], *spc = buf[K_SPC], *sff = buf[K_SFF];
	uint32_t *bpd = buf[K_BPD], *bppc = buf[K_BPPC], *bpff = buf[K_BPFF];
	for (int xl = 0; xl < SLAB_COLS; xl++) {
		for (int y = 0; y < AGIPD_ROWS; y++) {
			int p = y * AGIPD_COLS + x0 + xl;
			for (int c = 0; c < C; c++) {
				struct agipd_sim_constants k;
				size_t i = ((size_t)xl * AGIPD_ROWS + (size_t)y) * (size_t)C + (size_t)c;
				agipd_sim_constants_at(m, p, c, &k);
				for (int g = 0; g < 5; g++)
					thr[i * 5 + (size_t)g] = k.thresholds[g];
				for (int g = 0; g < 3; g++) {
					off[i * 3 + (size_t)g] = k.offset[g];
					noise[i * 3 + (size_t)g] = k.noise[g];
					bpd[i * 3 + (size_t)g] = k.bp_dark[g];
				}
				for (int g = 0; g < 10; g++)
					spc[i * 10 + (size_t)g] = k.slopes_pc[g];
				bppc[i] = k.bp_pc;
				sff[i] = k.slopes_ff;
				bpff[i] = k.bp_ff;
			}
		}
	}
}

int agipd_sim_write_constants(const struct agipd_sim_config *cfg,
			      const struct agipd_sim_module *m, struct agipd_sim_stats *stats,
			      char *err, size_t errlen)
{
	hid_t ftype[K_N], mtype[K_N];
	char path[4096], tmp[4200];
	int module = agipd_sim_module_number(m), C = cfg->constants_cells, ok = 0;
	hid_t f = -1, ds[K_N];
	void *buf[K_N] = { NULL };
	hsize_t dims[K_N][4];
	struct ctx x;
	uint64_t bytes = 0;

	for (int k = 0; k < K_N; k++) {
		ds[k] = -1;
		ftype[k] = k_ftype(k);
		mtype[k] = k_mtype(k);
	}
	if (agipd_sim_constants_path(cfg, module, path, sizeof path) < 0) {
		snprintf(err, errlen, "%s: constants path too long", cfg->constants_folder);
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s.part", path);
	ctx_begin(&x, path, err, errlen);
	size_t slab_elems = (size_t)SLAB_COLS * AGIPD_ROWS * (size_t)C;
	for (int k = 0; k < K_N; k++) {
		buf[k] = malloc(slab_elems * (size_t)depth[k] * (size_t)esize[k]);
		if (!buf[k]) {
			fail(&x, "out of memory for the constants");
			goto out;
		}
		dims[k][0] = AGIPD_COLS;
		dims[k][1] = AGIPD_ROWS;
		dims[k][2] = (hsize_t)C;
		dims[k][3] = (hsize_t)depth[k];
		bytes += (uint64_t)AGIPD_PIXELS * (uint64_t)C * (uint64_t)depth[k] * (uint64_t)esize[k];
	}
	if ((f = create_file(&x, tmp)) < 0)
		goto out;
	{
		char iso[32];
		int32_t mc = cond_mem_cells(cfg), gs = cfg->gain_setting, gm = cfg->gain_mode;
		int32_t it = cfg->integration_time;
		double rate = cfg->acq_rate, bias = cfg->bias_voltage;
		char cid[128];
		date_strings(cfg->creation_time, NULL, 0, iso, sizeof iso);
		snprintf(cid, sizeof cid, "sim-seed%llu-AGIPD%02d",
			 (unsigned long long)cfg->seed, module);
		if (attr_write(&x, f, "memory_cells", H5T_STD_I32LE, H5T_NATIVE_INT32, &mc) < 0 ||
		    attr_write(&x, f, "acquisition_rate", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &rate) < 0 ||
		    attr_write(&x, f, "gain_setting", H5T_STD_I32LE, H5T_NATIVE_INT32, &gs) < 0 ||
		    attr_write(&x, f, "bias_voltage", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &bias) < 0 ||
		    attr_string(&x, f, "creation_date", iso) < 0 ||
		    attr_string(&x, f, "constant_id", cid) < 0 ||
		    attr_write(&x, f, "gain_mode", H5T_STD_I32LE, H5T_NATIVE_INT32, &gm) < 0 ||
		    attr_write(&x, f, "integration_time", H5T_STD_I32LE, H5T_NATIVE_INT32, &it) < 0)
			goto out;
	}
	for (int k = 0; k < K_N; k++)
		if ((ds[k] = create_ds(&x, f, names[k], ftype[k], rank[k], dims[k])) < 0)
			goto out;

	for (int x0 = 0; x0 < AGIPD_COLS; x0 += SLAB_COLS) {
		fill_slab(m, C, x0, buf);
		for (int k = 0; k < K_N; k++)
			if (write_rows(&x, ds[k], names[k], mtype[k], rank[k], dims[k], (hsize_t)x0,
				       SLAB_COLS, buf[k]) < 0)
				goto out;
	}
	ok = 1;
out:
	for (int k = 0; k < K_N; k++) {
		if (ds[k] >= 0 && close_ds(&x, ds[k], names[k]) < 0)
			ok = 0;
		free(buf[k]);
	}
	if (finish_file(&x, f, tmp, ok) < 0)
		ok = 0;
	ctx_end(&x);
	if (ok && stats) {
		stats->files++;
		stats->constants_bytes += bytes;
	}
	return ok ? 0 : -1;
}

/* ---- calibration-database store (SPEC 6.2) ------------------------------ */

/* Store file names are a function of the configuration only: a fixed time
 * stamp and a number unique per module and constant. */
#define CALDB_FILE_TIME 1704067200LL
#define CALDB_REL_DIR "xfel/cal/agipd-type"

static void pdu_name(int module, char *buf, size_t len)
{
	snprintf(buf, len, "AGIPD_SIV1_AGIPDV11_M3%02d", module);
}

/* Path of the store file of (module, constant k), relative to the store root. */
static int caldb_rel_path(int module, int k, char *buf, size_t len)
{
	return fmt_path(buf, len, CALDB_REL_DIR "/agipd_siv1_agipdv11_m3%02d/cal.%lld.%06d.h5",
			module, CALDB_FILE_TIME, module * 100 + k);
}

static int caldb_ccv_id(int module, int k)
{
	return 10000 + module * 100 + k;
}

/* Scalar float64 attribute. */
static int attr_double(struct ctx *x, hid_t obj, const char *name, double v)
{
	return attr_write(x, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* One-dimensional attribute of variable-length UTF-8 strings. */
static int attr_vlen_strings(struct ctx *x, hid_t obj, const char *name, const char *const *s,
			     size_t n)
{
	hsize_t dims[1] = { n };
	hid_t t = H5Tcopy(H5T_C_S1);
	int rc;
	if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
		fail(x, "cannot write attribute %s", name);
		rc = -1;
	} else
		rc = attr_put(x, obj, name, t, t, H5Screate_simple(1, dims, NULL), s);
	if (t >= 0)
		H5Tclose(t);
	return rc;
}

/* The conditions a constant of kind k was made for, as the database names
 * them (dark constants: all six; the others all but the gain mode). */
static int caldb_conditions(struct ctx *x, hid_t grp, const struct agipd_sim_config *cfg, int k)
{
	if (attr_double(x, grp, "Memory cells", (double)cond_mem_cells(cfg)) < 0 ||
	    attr_double(x, grp, "Acquisition rate", cfg->acq_rate) < 0 ||
	    attr_double(x, grp, "Gain setting", (double)cfg->gain_setting) < 0 ||
	    attr_double(x, grp, "Integration time", (double)cfg->integration_time) < 0 ||
	    attr_double(x, grp, "Sensor Bias Voltage", cfg->bias_voltage) < 0)
		return -1;
	if (is_dark[k] && attr_double(x, grp, "Gain mode", (double)cfg->gain_mode) < 0)
		return -1;
	return 0;
}

/* Permutation of constant k in the file: perm[i] = canonical axis of file
 * axis i (canonical: column, row, cell[, k]); the gain axis is left out of
 * rank-3 constants. */
static int caldb_perm(const struct agipd_sim_config *cfg, int k, int perm[4])
{
	int n = 0;
	for (int i = 0; i < 4; i++)
		if (rank[k] == 4 || cfg->caldb_dims[i] != AGIPD_SIM_AX_GAIN)
			perm[n++] = cfg->caldb_dims[i];
	return n;
}

/* Copy a canonical slab (dims cd, C order) into file order (perm). */
static void permute_slab(const void *src, void *dst, const hsize_t cd[4], const int perm[4], int r,
			 size_t es)
{
	hsize_t fd[4], fstride[4], cstride_of_axis[4];
	for (int i = 0; i < r; i++)
		fd[i] = cd[perm[i]];
	fstride[r - 1] = 1;
	for (int i = r - 2; i >= 0; i--)
		fstride[i] = fstride[i + 1] * fd[i + 1];
	for (int i = 0; i < r; i++)
		cstride_of_axis[perm[i]] = fstride[i]; /* file stride of canonical axis */
	hsize_t d3 = r == 4 ? cd[3] : 1, s3 = r == 4 ? cstride_of_axis[3] : 0;
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (hsize_t a = 0; a < cd[0]; a++)
		for (hsize_t b = 0; b < cd[1]; b++)
			for (hsize_t c = 0; c < cd[2]; c++)
				for (hsize_t e = 0; e < d3; e++, i++) {
					hsize_t o = a * cstride_of_axis[0] + b * cstride_of_axis[1] +
						    c * cstride_of_axis[2] + e * s3;
					memcpy(d + o * es, s + i * es, es);
				}
}

int agipd_sim_write_caldb(const struct agipd_sim_config *cfg, const struct agipd_sim_module *m,
			  struct agipd_sim_stats *stats, char *err, size_t errlen)
{
	int module = agipd_sim_module_number(m), C = cfg->constants_cells, ok = 0;
	char rel[K_N][512], path[K_N][4096], tmp[K_N][4200], pdu[64], dsname[256];
	struct ctx x[K_N];
	hid_t f[K_N], ds[K_N];
	void *buf[K_N] = { NULL }, *pbuf = NULL;
	hsize_t fdims[K_N][4], cdims[K_N][4];
	int perm[K_N][4], started[K_N] = { 0 }, identity = 1;
	uint64_t bytes = 0;

	pdu_name(module, pdu, sizeof pdu);
	for (int i = 0; i < 4; i++)
		identity &= cfg->caldb_dims[i] == i;
	for (int k = 0; k < K_N; k++) {
		f[k] = ds[k] = -1;
		if (caldb_rel_path(module, k, rel[k], sizeof rel[k]) < 0 ||
		    fmt_path(path[k], sizeof path[k], "%s/caldb/%s", cfg->out_folder, rel[k]) < 0) {
			snprintf(err, errlen, "%s: calibration store path too long", cfg->out_folder);
			return -1;
		}
		snprintf(tmp[k], sizeof tmp[k], "%s.part", path[k]);
	}
	for (int k = 0; k < K_N; k++)
		ctx_begin(&x[k], path[k], err, errlen);

	size_t slab_elems = (size_t)SLAB_COLS * AGIPD_ROWS * (size_t)C, most = 0;
	for (int k = 0; k < K_N; k++) {
		size_t b = slab_elems * (size_t)depth[k] * (size_t)esize[k];
		buf[k] = malloc(b);
		most = b > most ? b : most;
		cdims[k][0] = AGIPD_COLS;
		cdims[k][1] = AGIPD_ROWS;
		cdims[k][2] = (hsize_t)C;
		cdims[k][3] = (hsize_t)depth[k];
		int r = caldb_perm(cfg, k, perm[k]);
		for (int i = 0; i < r; i++)
			fdims[k][i] = cdims[k][perm[k][i]];
		bytes += (uint64_t)AGIPD_PIXELS * (uint64_t)C * (uint64_t)depth[k] * (uint64_t)esize[k];
	}
	pbuf = identity ? NULL : malloc(most);
	for (int k = 0; k < K_N; k++) {
		if (!buf[k] || (!identity && !pbuf)) {
			fail(&x[k], "out of memory for the constants");
			goto out;
		}
	}

	for (int k = 0; k < K_N; k++) {
		const char *dn[4];
		hid_t g = -1;
		started[k] = 1;
		if ((f[k] = create_file(&x[k], tmp[k])) < 0)
			goto out;
		snprintf(dsname, sizeof dsname, "/%s/%s/0/data", pdu, names[k]);
		if ((ds[k] = create_ds(&x[k], f[k], dsname, k_ftype(k), rank[k], fdims[k])) < 0)
			goto out;
		for (int i = 0; i < rank[k]; i++)
			dn[i] = agipd_sim_axis_name(perm[k][i]);
		if (attr_vlen_strings(&x[k], ds[k], "dims", dn, (size_t)rank[k]) < 0)
			goto out;
		snprintf(dsname, sizeof dsname, "/%s/%s/0", pdu, names[k]);
		if ((g = H5Gopen2(f[k], dsname, H5P_DEFAULT)) < 0) {
			fail(&x[k], "cannot open group %s", dsname);
			goto out;
		}
		int rc = caldb_conditions(&x[k], g, cfg, k);
		if (H5Gclose(g) < 0 && rc == 0) {
			fail(&x[k], "cannot close group %s", dsname);
			rc = -1;
		}
		if (rc < 0)
			goto out;
	}

	for (int x0 = 0; x0 < AGIPD_COLS; x0 += SLAB_COLS) {
		fill_slab(m, C, x0, buf);
		for (int k = 0; k < K_N; k++) {
			hsize_t start[4] = { 0, 0, 0, 0 }, count[4];
			hid_t fspace = -1, mspace = -1;
			int r = rank[k], rc = -1;
			hsize_t sd[4] = { SLAB_COLS, AGIPD_ROWS, (hsize_t)C, (hsize_t)depth[k] };
			const void *src = buf[k];
			if (!identity) {
				permute_slab(buf[k], pbuf, sd, perm[k], r, (size_t)esize[k]);
				src = pbuf;
			}
			for (int i = 0; i < r; i++) {
				count[i] = sd[perm[k][i]];
				if (perm[k][i] == AGIPD_SIM_AX_FAST)
					start[i] = (hsize_t)x0;
			}
			if ((fspace = H5Dget_space(ds[k])) < 0 ||
			    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
			    (mspace = H5Screate_simple(r, count, NULL)) < 0)
				fail(&x[k], "cannot select columns %d..%d of %s", x0, x0 + SLAB_COLS,
				     names[k]);
			else if (H5Dwrite(ds[k], k_mtype(k), mspace, fspace, H5P_DEFAULT, src) < 0)
				fail(&x[k], "cannot write columns %d..%d of %s", x0, x0 + SLAB_COLS,
				     names[k]);
			else
				rc = 0;
			if (mspace >= 0)
				H5Sclose(mspace);
			if (fspace >= 0)
				H5Sclose(fspace);
			if (rc < 0)
				goto out;
		}
	}
	ok = 1;
out:
	for (int k = 0; k < K_N; k++) {
		if (ds[k] >= 0 && close_ds(&x[k], ds[k], "data") < 0)
			ok = 0;
	}
	/* Close every file; on failure remove all of them (the first message stays). */
	for (int k = 0; k < K_N; k++) {
		if (!started[k])
			continue;
		char keep[1024] = "";
		if (!ok && err && errlen)
			snprintf(keep, sizeof keep, "%s", err);
		if (finish_file(&x[k], f[k], tmp[k], ok) < 0)
			ok = 0;
		if (keep[0])
			snprintf(err, errlen, "%s", keep);
	}
	if (!ok)
		for (int k = 0; k < K_N; k++)
			unlink(path[k]);
	for (int k = K_N - 1; k >= 0; k--)
		ctx_end(&x[k]);
	for (int k = 0; k < K_N; k++)
		free(buf[k]);
	free(pbuf);
	if (ok && stats) {
		stats->files += K_N;
		stats->constants_bytes += bytes;
	}
	return ok ? 0 : -1;
}

/* A YAML single-quoted scalar. */
static void yaml_quoted(FILE *fp, const char *s)
{
	fputc('\'', fp);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', fp);
		fputc(*s, fp);
	}
	fputc('\'', fp);
}

int agipd_sim_write_caldb_metadata(const struct agipd_sim_config *cfg, char *err, size_t errlen)
{
	char path[4096], tmp[4200], rel[512], pdu[64], iso[40];
	struct tm tm;
	time_t t = cfg->creation_time;
	if (fmt_path(path, sizeof path, "%s/caldb/calibration_metadata.yml", cfg->out_folder) < 0) {
		snprintf(err, errlen, "%s: calibration store path too long", cfg->out_folder);
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s.part", path);
	gmtime_r(&t, &tm);
	strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
	FILE *fp = fopen(tmp, "w");
	if (!fp) {
		snprintf(err, errlen, "%s: cannot create the file (as %s): %s", path, tmp,
			 strerror(errno));
		return -1;
	}
	fprintf(fp, "# Constants of agipd-simulate's calibration-database store (seed %llu),\n"
		    "# as the offline pipeline's constant retrieval writes them.\n",
		(unsigned long long)cfg->seed);
	fprintf(fp, "calibration-configurations:\n  karabo-id: ");
	yaml_quoted(fp, cfg->karabo_id);
	fprintf(fp, "\n  run: %d\n  modules: [", cfg->run);
	for (int i = 0; i < cfg->n_modules; i++)
		fprintf(fp, "%s%d", i ? ", " : "", cfg->modules[i]);
	fprintf(fp, "]\nretrieved-constants:\n");
	for (int i = 0; i < cfg->n_modules; i++) {
		int module = cfg->modules[i];
		pdu_name(module, pdu, sizeof pdu);
		fprintf(fp, "  AGIPD%02d:\n    physical-name: %s\n    constants:\n", module, pdu);
		for (int k = 0; k < K_N; k++) {
			caldb_rel_path(module, k, rel, sizeof rel);
			fprintf(fp,
				"      %s:\n        path: %s\n        dataset: /%s/%s/0\n"
				"        ccv_id: %d\n        creation-time: '%s'\n",
				names[k], rel, pdu, names[k], caldb_ccv_id(module, k), iso);
		}
	}
	fprintf(fp, "  time-summary:\n    SAll:\n      begin-at: '%s'\n      end-at: '%s'\n", iso,
		iso);
	int bad = ferror(fp);
	if (fclose(fp) != 0 || bad) {
		snprintf(err, errlen, "%s: cannot write (as %s): %s", path, tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ---- control data (SPEC 6.1) -------------------------------------------- */

int agipd_sim_control_path(const struct agipd_sim_config *cfg, int sequence, char *buf,
			   size_t len)
{
	return fmt_path(buf, len, "%s/r%04d/RAW-R%04d-%s-S%05d.h5", cfg->out_folder, cfg->run,
			cfg->run, cfg->karabo_da_control, sequence);
}

/* setupr of a gain setting in the older form (SPEC 6.1's table): 0 / 8 with
 * a pattern below 4, else 32 / 40 (an error for patterns above 4). */
static int setupr_of(int gain_setting, int pattern)
{
	return (pattern < 4 ? 0 : 32) + 8 * gain_setting;
}

/* Per-train values of one key and its RUN value (the first train's). */
struct ckey {
	const char *dev; /* device */
	char key[96];    /* key with '/' for '.' */
	hid_t ftype;
	double v0, v_last; /* value of every train, and of the run's last train */
	double jitter;     /* bias: + jitter * ((module + slot) % 3) */
	int module;
};

static int write_ckey(struct ctx *x, hid_t f, const struct ckey *k, size_t T, int last_here,
		      const uint64_t *ts_train, uint64_t ts_run, int64_t slot0)
{
	char name[512];
	double *v = malloc((T ? T : 1) * sizeof *v);
	int rc = -1;
	if (!v) {
		fail(x, "out of memory");
		return -1;
	}
	for (size_t t = 0; t < T; t++)
		v[t] = k->v0 + k->jitter * (double)(((int64_t)k->module + slot0 + (int64_t)t) % 3);
	if (last_here && T)
		v[T - 1] = k->v_last;
	double run_v = k->v0 + k->jitter * (double)(k->module % 3);
	hsize_t dT[1] = { T }, d1[1] = { 1 };
	/* H5Dwrite converts from double to the key's type (integral values). */
	snprintf(name, sizeof name, "CONTROL/%s/%s/value", k->dev, k->key);
	if (write_ds(x, f, name, k->ftype, H5T_NATIVE_DOUBLE, 1, dT, v) < 0)
		goto out;
	snprintf(name, sizeof name, "CONTROL/%s/%s/timestamp", k->dev, k->key);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, ts_train) < 0)
		goto out;
	snprintf(name, sizeof name, "RUN/%s/%s/value", k->dev, k->key);
	if (write_ds(x, f, name, k->ftype, H5T_NATIVE_DOUBLE, 1, d1, &run_v) < 0)
		goto out;
	snprintf(name, sizeof name, "RUN/%s/%s/timestamp", k->dev, k->key);
	if (write_ds(x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, d1, &ts_run) < 0)
		goto out;
	rc = 0;
out:
	free(v);
	return rc;
}

int agipd_sim_write_control(const struct agipd_sim_config *cfg, int sequence,
			    struct agipd_sim_stats *stats, char *err, size_t errlen)
{
	char path[4096], tmp[4200], fpga[300], hv[300], name[512], date[32];
	struct ctx x;
	hid_t f = -1;
	int ok = 0;
	size_t T = (size_t)(sequence == cfg->sequences - 1 && cfg->last_trains > 0 ? cfg->last_trains : cfg->trains);
	int64_t slot0 = (int64_t)sequence * (int64_t)cfg->trains;
	int last_here = sequence == cfg->sequences - 1;
	uint64_t *tid = NULL, *ts = NULL, *first = NULL, *count = NULL;
	int32_t *flag = NULL;
	struct ckey keys[8 + AGIPD_MODULES];
	int nk = 0, change = cfg->control_change;

	if (agipd_sim_control_path(cfg, sequence, path, sizeof path) < 0) {
		snprintf(err, errlen, "%s: control file path too long", cfg->out_folder);
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s.part", path);
	snprintf(fpga, sizeof fpga, "%s/MDL/FPGA_COMP", cfg->karabo_id_control);
	snprintf(hv, sizeof hv, "%.*s/PSC/HV", (int)strlen(cfg->karabo_id_control) - 1,
		 cfg->karabo_id_control);
	ctx_begin(&x, path, err, errlen);

	tid = calloc(T ? T : 1, sizeof *tid);
	ts = calloc(T ? T : 1, sizeof *ts);
	first = calloc(T ? T : 1, sizeof *first);
	count = calloc(T ? T : 1, sizeof *count);
	flag = calloc(T ? T : 1, sizeof *flag);
	if (!tid || !ts || !first || !count || !flag) {
		fail(&x, "out of memory");
		goto out;
	}
	for (size_t t = 0; t < T; t++) {
		tid[t] = cfg->first_train_id + (uint64_t)slot0 + t;
		ts[t] = AGIPD_SIM_TIMESTAMP_BASE_NS + tid[t] * 100000000ull;
		first[t] = t;
		count[t] = 1;
		flag[t] = 1;
	}
	uint64_t ts_run = AGIPD_SIM_TIMESTAMP_BASE_NS + cfg->first_train_id * 100000000ull;

	/* The keys of the composite device. */
	int mc = cond_mem_cells(cfg), gs = cfg->gain_setting, gm = cfg->gain_mode;
	struct ckey *k;
#define KEY(DEV, NAME, FT, V0, VLAST, CHANGE)                                     \
	do {                                                                      \
		k = &keys[nk++];                                                  \
		memset(k, 0, sizeof *k);                                          \
		k->dev = (DEV);                                                   \
		snprintf(k->key, sizeof k->key, "%s", (NAME));                    \
		k->ftype = (FT);                                                  \
		k->v0 = (V0);                                                     \
		k->v_last = change == (CHANGE) ? (VLAST) : (V0);                  \
	} while (0)
	KEY(fpga, "bunchStructure/nPulses", H5T_STD_U32LE, mc, mc > 1 ? mc / 2 : 2,
	    AGIPD_SIM_KEY_NPULSES);
	KEY(fpga, "bunchStructure/repetitionRate", H5T_IEEE_F64LE, cfg->acq_rate,
	    cfg->acq_rate == 4.5 ? 2.2 : 4.5, AGIPD_SIM_KEY_RATE);
	if (cfg->control_form == AGIPD_SIM_CONTROL_SETUPR) {
		KEY(fpga, "setupr", H5T_STD_U8LE, setupr_of(gs, cfg->pattern_type),
		    setupr_of(1 - gs, cfg->pattern_type), AGIPD_SIM_KEY_GAIN);
		KEY(fpga, "patternTypeIndex", H5T_STD_I32LE, cfg->pattern_type, 0, -2);
	} else {
		KEY(fpga, "gain", H5T_STD_U8LE, gs, 1 - gs, AGIPD_SIM_KEY_GAIN);
	}
	KEY(fpga, "gainModeIndex", H5T_STD_I32LE, gm, (gm + 1) % 4, AGIPD_SIM_KEY_GAIN_MODE);
	KEY(fpga, "integrationTime", H5T_STD_U32LE, cfg->integration_time,
	    cfg->integration_time + 1, AGIPD_SIM_KEY_INTEGRATION);
	/* The MPOD: one channel per module, a little above the set voltage. */
	for (int i = 0; i < cfg->n_modules; i++) {
		char key[96];
		snprintf(key, sizeof key, "channels/U%d/measurementSenseVoltage", cfg->modules[i]);
		KEY(hv, key, H5T_IEEE_F32LE, cfg->bias_voltage, cfg->bias_voltage + 10.0,
		    AGIPD_SIM_KEY_BIAS);
		k->module = cfg->modules[i];
		k->jitter = cfg->bias_voltage > 0 ? 0.125 : 0.0;
		if (change == AGIPD_SIM_KEY_BIAS)
			k->v_last += k->jitter * (double)((k->module + slot0 + (int64_t)T - 1) % 3);
	}
#undef KEY

	if ((f = create_file(&x, tmp)) < 0)
		goto out;
	/* METADATA, EXDF 1.0 */
	{
		const char *one[1], *ids[2], *roots[2] = { "CONTROL", "CONTROL" }, *devs[2] = { fpga, hv };
		char id0[320], id1[320];
		date_strings(cfg->creation_time, date, sizeof date, NULL, 0);
		snprintf(id0, sizeof id0, "CONTROL/%s", fpga);
		snprintf(id1, sizeof id1, "CONTROL/%s", hv);
		ids[0] = id0;
		ids[1] = id1;
		one[0] = "1.0";
		if (write_strings(&x, f, "METADATA/dataFormatVersion", one, 1) < 0)
			goto out;
		one[0] = date;
		if (write_strings(&x, f, "METADATA/creationDate", one, 1) < 0 ||
		    write_strings(&x, f, "METADATA/updateDate", one, 1) < 0)
			goto out;
		one[0] = "agipd-simulate-" AGIPD_VERSION;
		if (write_strings(&x, f, "METADATA/daqLibrary", one, 1) < 0)
			goto out;
		one[0] = "2.16.0";
		if (write_strings(&x, f, "METADATA/karaboFramework", one, 1) < 0)
			goto out;
		one[0] = "Simulated";
		if (write_strings(&x, f, "METADATA/runType", one, 1) < 0)
			goto out;
		if (write_u32_1(&x, f, "METADATA/proposalNumber", 900000) < 0 ||
		    write_u32_1(&x, f, "METADATA/runNumber", (uint32_t)cfg->run) < 0 ||
		    write_u32_1(&x, f, "METADATA/sequenceNumber", (uint32_t)sequence) < 0)
			goto out;
		if (write_strings(&x, f, "METADATA/dataSources/dataSourceId", ids, 2) < 0 ||
		    write_strings(&x, f, "METADATA/dataSources/root", roots, 2) < 0 ||
		    write_strings(&x, f, "METADATA/dataSources/deviceId", devs, 2) < 0)
			goto out;
	}
	/* INDEX: every train, one entry per train for each device. */
	hsize_t dT[1] = { T };
	if (write_ds(&x, f, "INDEX/trainId", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, tid) < 0 ||
	    write_ds(&x, f, "INDEX/timestamp", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, ts) < 0 ||
	    write_ds(&x, f, "INDEX/flag", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dT, flag) < 0)
		goto out;
	for (int d = 0; d < 2; d++) {
		snprintf(name, sizeof name, "INDEX/%s/first", d ? hv : fpga);
		if (write_ds(&x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, first) < 0)
			goto out;
		snprintf(name, sizeof name, "INDEX/%s/count", d ? hv : fpga);
		if (write_ds(&x, f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dT, count) < 0)
			goto out;
	}
	for (int i = 0; i < nk; i++)
		if (write_ckey(&x, f, &keys[i], T, last_here, ts, ts_run, slot0) < 0)
			goto out;
	ok = 1;
out:
	if (finish_file(&x, f, tmp, ok) < 0)
		ok = 0;
	ctx_end(&x);
	free(tid);
	free(ts);
	free(first);
	free(count);
	free(flag);
	if (ok && stats)
		stats->files++;
	return ok ? 0 : -1;
}
