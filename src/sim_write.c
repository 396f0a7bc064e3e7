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
	return fmt_path(buf, len, "%s/r%04d/RAW-R%04d-AGIPD%02d-S%05d.h5", cfg->out_folder,
			cfg->run, cfg->run, module, sequence);
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
	return 0;
}

/* ---- dataset helpers ---------------------------------------------------- */

/* Create a dataset (and its parent groups).  Contiguous, never filled: every
 * element is written by us. */
static hid_t create_ds(struct ctx *x, hid_t file, const char *name, hid_t ftype, int rank,
		       const hsize_t *dims)
{
	hid_t space = -1, lcpl = -1, dcpl = -1, ds = -1;
	if ((space = H5Screate_simple(rank, dims, NULL)) < 0 ||
	    (lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0 ||
	    H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
	    (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
	    H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
	    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
	    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE) < 0)
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

static int attr_write(struct ctx *x, hid_t obj, const char *name, hid_t ftype, hid_t mtype,
		      const void *v)
{
	hid_t space = H5Screate(H5S_SCALAR), a = -1;
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

int agipd_sim_write_constants(const struct agipd_sim_config *cfg,
			      const struct agipd_sim_module *m, struct agipd_sim_stats *stats,
			      char *err, size_t errlen)
{
	static const char *const names[K_N] = { "ThresholdsDark", "Offset", "Noise",
						"BadPixelsDark", "SlopesPC", "BadPixelsPC",
						"SlopesFF", "BadPixelsFF" };
	static const int depth[K_N] = { 5, 3, 3, 3, 10, 1, 1, 1 }; /* 1: no gain axis */
	static const int rank[K_N] = { 4, 4, 4, 4, 4, 3, 3, 3 };
	static const int esize[K_N] = { 8, 8, 4, 4, 4, 4, 4, 4 };
	const hid_t ftype[K_N] = { H5T_IEEE_F64LE, H5T_IEEE_F64LE, H5T_IEEE_F32LE, H5T_STD_U32LE,
				   H5T_IEEE_F32LE, H5T_STD_U32LE, H5T_IEEE_F32LE, H5T_STD_U32LE };
	const hid_t mtype[K_N] = { H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, H5T_NATIVE_FLOAT,
				   H5T_NATIVE_UINT32, H5T_NATIVE_FLOAT, H5T_NATIVE_UINT32,
				   H5T_NATIVE_FLOAT, H5T_NATIVE_UINT32 };
	char path[4096], tmp[4200];
	int module = agipd_sim_module_number(m), C = cfg->constants_cells, ok = 0;
	hid_t f = -1, ds[K_N];
	void *buf[K_N] = { NULL };
	hsize_t dims[K_N][4];
	struct ctx x;
	uint64_t bytes = 0;

	for (int k = 0; k < K_N; k++)
		ds[k] = -1;
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
		int32_t mc = C, gs = 0;
		double rate = 1.1, bias = 300.0;
		char cid[128];
		date_strings(cfg->creation_time, NULL, 0, iso, sizeof iso);
		snprintf(cid, sizeof cid, "sim-seed%llu-AGIPD%02d",
			 (unsigned long long)cfg->seed, module);
		if (attr_write(&x, f, "memory_cells", H5T_STD_I32LE, H5T_NATIVE_INT32, &mc) < 0 ||
		    attr_write(&x, f, "acquisition_rate", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &rate) < 0 ||
		    attr_write(&x, f, "gain_setting", H5T_STD_I32LE, H5T_NATIVE_INT32, &gs) < 0 ||
		    attr_write(&x, f, "bias_voltage", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &bias) < 0 ||
		    attr_string(&x, f, "creation_date", iso) < 0 ||
		    attr_string(&x, f, "constant_id", cid) < 0)
			goto out;
	}
	for (int k = 0; k < K_N; k++)
		if ((ds[k] = create_ds(&x, f, names[k], ftype[k], rank[k], dims[k])) < 0)
			goto out;

	for (int x0 = 0; x0 < AGIPD_COLS; x0 += SLAB_COLS) {
		double *thr = buf[K_THR], *off = buf[K_OFF];
		float *noise = buf[K_NOISE], *spc = buf[K_SPC], *sff = buf[K_SFF];
		uint32_t *bpd = buf[K_BPD], *bppc = buf[K_BPPC], *bpff = buf[K_BPFF];
		for (int xl = 0; xl < SLAB_COLS; xl++) {
			for (int y = 0; y < AGIPD_ROWS; y++) {
				int p = y * AGIPD_COLS + x0 + xl;
				for (int c = 0; c < C; c++) {
					struct agipd_sim_constants k;
					size_t i = ((size_t)xl * AGIPD_ROWS + (size_t)y) * (size_t)C +
						   (size_t)c;
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
