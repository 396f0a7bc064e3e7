/*
 * consts_h5.c - loading calibration constants, a few cells at a time, so that
 * a full 352-cell module never needs its float64 file image in memory at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "agipd_consts_h5.h"
#include "agipd_checksum.h"
#include "agipd_mapguard.h"

#define P AGIPD_PIXELS
#define CELL_CHUNK 32

const char *const agipd_const_attr_names[AGIPD_CONST_NATTRS] = {
	"memory_cells", "acquisition_rate", "gain_setting", "bias_voltage", "creation_date", "constant_id",
};

void agipd_consts_path(char *buf, size_t len, const char *folder, int module)
{
	snprintf(buf, len, "%s/AGIPD%02d.h5", folder, module);
}

enum { C_THR, C_OFF, C_NOISE, C_BPD, C_PC, C_BPPC, C_FF, C_BPFF, C_N };
static const char *const cnames[C_N] = {
	"ThresholdsDark", "Offset", "Noise", "BadPixelsDark", "SlopesPC", "BadPixelsPC", "SlopesFF", "BadPixelsFF",
};
/* trailing dimension needed (0: no trailing axis) and whether integer */
static const int cmin_k[C_N] = { 2, 3, 3, 3, 5, 0, 0, 0 };
static const int cis_int[C_N] = { 0, 0, 0, 1, 0, 1, 0, 1 };

static int needed(const struct agipd_params *p, int c)
{
	switch (c) {
	case C_THR: return p->gain_mode == AGIPD_GAIN_ADAPTIVE;
	case C_OFF: case C_BPD: return 1;
	case C_PC: case C_BPPC: return p->rel_gain;
	case C_FF: return p->ff_gain || (p->photon_energy > 0 && p->adu_per_kev == 0);
	case C_BPFF: return p->ff_gain;
	default: return 0;
	}
}

/* Check one constant; returns its cell count (or -2 for an FF image without
 * cells), -1 on error. */
static int check_const(hid_t fid, const char *path, int c, agipd_err *e)
{
	hsize_t dims[8];
	int cells = -1;
	if (H5Lexists(fid, cnames[c], H5P_DEFAULT) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return agipd_err_set(e, "%s: missing constant %s", path, cnames[c]);
	}
	hid_t d = H5Dopen2(fid, cnames[c], H5P_DEFAULT);
	if (d < 0)
		return agipd_err_h5(e, "%s: cannot open constant %s", path, cnames[c]);
	hid_t s = H5Dget_space(d), t = H5Dget_type(d);
	int rank = H5Sget_simple_extent_ndims(s);
	if (rank > 0 && rank <= 8)
		H5Sget_simple_extent_dims(s, dims, NULL);
	H5T_class_t cls = H5Tget_class(t);
	int want_rank = cmin_k[c] ? 4 : 3;
	int ff = c == C_FF || c == C_BPFF;
	if (cis_int[c] ? cls != H5T_INTEGER : (cls != H5T_FLOAT && cls != H5T_INTEGER)) {
		agipd_err_set(e, "%s: constant %s has the wrong type (%s expected)", path, cnames[c],
			      cis_int[c] ? "uint32" : "float32 or float64");
	} else if (!(rank == want_rank || (ff && rank == 2)) || dims[0] != AGIPD_COLS || dims[1] != AGIPD_ROWS ||
		   (rank == 4 && dims[3] < (hsize_t)cmin_k[c])) {
		char shape[128] = "";
		for (int i = 0; i < rank && rank <= 8; i++)
			snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", i ? ", " : "",
				 (unsigned long long)dims[i]);
		agipd_err_set(e, "%s: constant %s has shape (%s), expected (128, 512, C%s)", path, cnames[c], shape,
			      cmin_k[c] == 2 ? ", 5" : cmin_k[c] == 3 ? ", 3" : cmin_k[c] == 5 ? ", 10" : "");
	} else {
		/* AGIPD has at most AGIPD_MAX_CELLS memory cells: more in a file
		 * are never used, and would size the shared constants buffer by
		 * the raw file's largest cellId (up to 65535 cells, 128 GiB). */
		cells = rank == 2 ? -2 : (int)(dims[2] > AGIPD_MAX_CELLS ? AGIPD_MAX_CELLS : dims[2]);
	}
	H5Tclose(t);
	H5Sclose(s);
	H5Dclose(d);
	return cells;
}

static void read_attrs(hid_t fid, struct agipd_consts_meta *m)
{
	for (int i = 0; i < AGIPD_CONST_NATTRS; i++) {
		struct agipd_const_attr *a = &m->attrs[i];
		memset(a, 0, sizeof *a);
		if (H5Aexists(fid, agipd_const_attr_names[i]) <= 0)
			continue;
		hid_t at = H5Aopen(fid, agipd_const_attr_names[i], H5P_DEFAULT);
		hid_t t = H5Aget_type(at), s = H5Aget_space(at);
		hssize_t np = H5Sget_simple_extent_npoints(s);
		H5T_class_t cls = H5Tget_class(t);
		if (cls == H5T_STRING && np == 1) {
			hid_t mt = H5Tcopy(H5T_C_S1);
			H5Tset_cset(mt, H5Tget_cset(t));   /* h5py writes UTF-8 */
			if (H5Tis_variable_str(t) > 0) {
				char *v = NULL;
				H5Tset_size(mt, H5T_VARIABLE);
				if (H5Aread(at, mt, &v) >= 0 && v) {
					snprintf(a->str, sizeof a->str, "%s", v);
					a->present = a->is_str = 1;
					H5free_memory(v);
				}
			} else {
				size_t n = H5Tget_size(t);
				char *v = calloc(1, n + 1);
				H5Tset_size(mt, n + 1);
				if (v && H5Aread(at, mt, v) >= 0) {
					snprintf(a->str, sizeof a->str, "%s", v);
					a->present = a->is_str = 1;
				}
				free(v);
			}
			H5Tclose(mt);
		} else if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && np >= 1 && np < 1 << 20) {
			double *v = malloc((size_t)np * sizeof *v);
			if (v && H5Aread(at, H5T_NATIVE_DOUBLE, v) >= 0) {
				a->num = v[0];
				a->is_int = cls == H5T_INTEGER;
				a->present = 1;
			}
			free(v);
		}
		H5Sclose(s);
		H5Tclose(t);
		H5Aclose(at);
	}
	H5Eclear2(H5E_DEFAULT);
}

int agipd_consts_probe(const char *path, const struct agipd_params *p, struct agipd_consts_meta *m,
		       agipd_err *e)
{
	memset(m, 0, sizeof *m);
	snprintf(m->path, sizeof m->path, "%s", path);
	if (H5Fis_hdf5(path) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		FILE *f = fopen(path, "rb");
		if (!f)
			return agipd_err_set(e, "%s: cannot open constants file: %s", path, strerror(errno));
		fclose(f);
		return agipd_err_set(e, "%s: constants file is not an HDF5 file (or truncated)", path);
	}
	hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (fid < 0)
		return agipd_err_h5(e, "%s: cannot open constants file", path);
	int cells = 1 << 30, rc = 0;
	m->ff_cells = 1;
	for (int c = 0; c < C_N && rc == 0; c++) {
		if (!needed(p, c))
			continue;
		int n = check_const(fid, path, c, e);
		if (n == -1)
			rc = -1;
		else if (n == -2 && c == C_FF)
			m->ff_cells = 0;
		else if (n >= 0 && n < cells)
			cells = n;
	}
	if (rc == 0 && needed(p, C_BPFF)) {
		/* BadPixelsFF must have the same form as SlopesFF. */
		int nf = check_const(fid, path, C_BPFF, e);
		if ((nf == -2) != (m->ff_cells == 0))
			rc = agipd_err_set(e, "%s: BadPixelsFF and SlopesFF differ in having a cell axis", path);
	}
	m->cells = cells == 1 << 30 ? 0 : cells;
	if (rc == 0)
		read_attrs(fid, m);
	if (H5Fclose(fid) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing constants file", path);
	return rc;
}

/* Read cells [c0, c0+n) and the trailing entries [0, kd) of a constant into
 * dst laid out [kd][n][P] (float32 or uint32).  For an FF image without cells
 * (rank 2), reads the one image.  tmp holds n*kd*P doubles. */
/* Element types a mapped constant may have. */
enum { MT_NONE = 0, MT_F64, MT_F32, MT_U32 };

/* Transpose cells [c0, c0+n), entries [0, kd) straight from the file's bytes
 * (dims (128, 512, C, K), or (128, 512, C) / (128, 512) with K = 1). */
#define TRANSPOSE_FN(name, T, D, CONV)                                                                  \
	static void name(const T *base, size_t C, size_t K, int c0, int n, int kd, D *dst)                \
	{                                                                                             \
		const size_t np = (size_t)n * P;                                                      \
		/* y outer, x inner: each destination row (128 values) fills in      \
		 * order, and the 128 source streams (one per x) advance together. */ \
		for (size_t y = 0; y < AGIPD_ROWS; y++) {                                             \
			D *row = dst + y * AGIPD_COLS;                                                \
			for (size_t x = 0; x < AGIPD_COLS; x++) {                                     \
				const T *s = base + ((x * AGIPD_ROWS + y) * C + (size_t)c0) * K;      \
				for (size_t cc = 0; cc < (size_t)n; cc++, s += K)                     \
					for (size_t g = 0; g < (size_t)kd; g++)                       \
						row[g * np + cc * P + x] = CONV(s[g]);                \
			}                                                                             \
		}                                                                                     \
	}
#define AS_FLOAT(v) ((float)(v))
#define AS_IS(v) (v)
TRANSPOSE_FN(transpose_f64, double, float, AS_FLOAT)
TRANSPOSE_FN(transpose_f32, float, float, AS_IS)
TRANSPOSE_FN(transpose_u32, uint32_t, uint32_t, AS_IS)

/* Transpose cells [c0, c0+n), entries [0, kd) straight from the file's bytes
 * (dims (128, 512, C, K), or (128, 512, C) / (128, 512) with K = 1). */
static void transpose_mapped(const void *base, int type, size_t C, size_t K, int c0, int n, int kd, void *dst)
{
	if (type == MT_U32)
		transpose_u32(base, C, K, c0, n, kd, dst);
	else if (type == MT_F32)
		transpose_f32(base, C, K, c0, n, kd, dst);
	else
		transpose_f64(base, C, K, c0, n, kd, dst);
}

/* Does obj live in the file fid (not reached through an external link)? */
static int in_file(hid_t obj, hid_t fid)
{
	H5O_info_t a, b;
	int same = H5Oget_info2(obj, &a, H5O_INFO_BASIC) >= 0 && H5Oget_info2(fid, &b, H5O_INFO_BASIC) >= 0 &&
		   a.fileno == b.fileno;
	H5Eclear2(H5E_DEFAULT);
	return same;
}

struct transpose_args {
	const void *base;
	int type;
	size_t C, K;
	int c0, n, kd;
	void *dst;
};

static void transpose_guarded(void *arg)
{
	const struct transpose_args *a = arg;
	transpose_mapped(a->base, a->type, a->C, a->K, a->c0, a->n, a->kd, a->dst);
}

/* Is the dataset's data a plain array in the mapped file fid (contiguous,
 * unfiltered, a little-endian type we read, stored in fid itself: not
 * behind an external link, not in external raw-data files, not virtual)?
 * Returns its MT_ type and offset. */
static int mappable(hid_t d, hid_t fid, int is_int, haddr_t *off)
{
	hid_t dcpl = H5Dget_create_plist(d), t = H5Dget_type(d);
	int type = MT_NONE;
	if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
	    H5Pget_external_count(dcpl) == 0 && in_file(d, fid)) {
		if (is_int && (H5Tequal(t, H5T_STD_U32LE) > 0 || H5Tequal(t, H5T_STD_I32LE) > 0))
			type = MT_U32;
		else if (!is_int && H5Tequal(t, H5T_IEEE_F64LE) > 0)
			type = MT_F64;
		else if (!is_int && H5Tequal(t, H5T_IEEE_F32LE) > 0)
			type = MT_F32;
	}
	if (dcpl >= 0)
		H5Pclose(dcpl);
	H5Tclose(t);
	*off = type ? H5Dget_offset(d) : HADDR_UNDEF;
	H5Eclear2(H5E_DEFAULT);
	return *off == HADDR_UNDEF ? MT_NONE : type;
}

static int read_const(hid_t fid, const char *path, int c, int c0, int n, int kd, void *dst, double *tmp,
		      const char *map, size_t map_len, agipd_err *e)
{
	hid_t d = H5Dopen2(fid, cnames[c], H5P_DEFAULT);
	if (d < 0)
		return agipd_err_h5(e, "%s: cannot open constant %s", path, cnames[c]);
	hid_t fs = H5Dget_space(d);
	int rank = H5Sget_simple_extent_ndims(fs), rc = 0;
	haddr_t off;
	int mt = map ? mappable(d, fid, cis_int[c], &off) : MT_NONE;
	if (mt != MT_NONE) {
		hsize_t dims[4] = { 1, 1, 1, 1 };
		H5Sget_simple_extent_dims(fs, dims, NULL);
		size_t C = rank >= 3 ? (size_t)dims[2] : 1, K = rank == 4 ? (size_t)dims[3] : 1;
		size_t esize = mt == MT_F64 ? 8 : 4;
		uint64_t bytes = (uint64_t)AGIPD_COLS * AGIPD_ROWS * C * K * esize;
		H5Sclose(fs);
		H5Dclose(d);
		if ((uint64_t)map_len < off || (uint64_t)map_len - off < bytes)
			return agipd_err_set(e, "%s: truncated file: constant %s needs %llu bytes at offset %llu", path,
					     cnames[c], (unsigned long long)bytes, (unsigned long long)off);
		if (rank == 2)
			c0 = 0, n = kd = 1;
		else if (rank == 3)
			kd = 1;
		struct transpose_args ta = { map + off, mt, C, K, c0, n, kd, dst };
		if (agipd_mapguard_run(map, map_len, transpose_guarded, &ta) < 0)
			return agipd_err_set(e, "%s: constants file changed while it was read (bus error reading "
					     "constant %s from the mapped file: truncated or rewritten in place?)", path,
					     cnames[c]);
		return 0;
	}
	hsize_t start[4] = { 0, 0, (hsize_t)c0, 0 };
	hsize_t count[4] = { AGIPD_COLS, AGIPD_ROWS, (hsize_t)n, (hsize_t)kd };
	if (rank == 2)
		n = kd = 1;
	else if (rank == 3)
		kd = 1;
	hsize_t total = (hsize_t)AGIPD_COLS * AGIPD_ROWS * n * kd;
	hid_t ms = H5Screate_simple(1, &total, NULL);
	H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
	/* Bad-pixel masks: HDF5's conversion would clamp what uint32 cannot
	 * hold (an int32 -1 became 0).  A 32-bit mask keeps its bits, as the
	 * mapped read does; wider or narrower signed types must hold values
	 * 0..2^32-1, checked here. */
	hid_t mtype = cis_int[c] ? H5T_NATIVE_UINT32 : H5T_NATIVE_DOUBLE;
	int wide = 0;
	if (cis_int[c]) {
		hid_t ft = H5Dget_type(d);
		size_t fsz = H5Tget_size(ft);
		int sgn = H5Tget_sign(ft) == H5T_SGN_2;
		if (fsz == 4 && sgn)
			mtype = H5T_NATIVE_INT32;
		else if (fsz > 4 || sgn) {
			mtype = sgn ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64;
			wide = sgn ? 2 : 1;
		}
		H5Tclose(ft);
	}
	if (H5Dread(d, mtype, ms, fs, H5P_DEFAULT, tmp) < 0)
		rc = agipd_err_h5(e, "%s: cannot read constant %s", path, cnames[c]);
	for (size_t i = 0; rc == 0 && wide && i < (size_t)total; i++) {
		/* 8-byte values to uint32 in place (entry i is read before any
		 * later write reaches its bytes) */
		int64_t sv;
		uint64_t uv;
		memcpy(&uv, (const char *)tmp + i * 8, 8);
		memcpy(&sv, &uv, 8);
		if ((wide == 2 && sv < 0) || (wide == 2 ? (uint64_t)sv : uv) > UINT32_MAX) {
			/* its index in the file: [x, y(, cell(, g))] */
			size_t g = i % (size_t)kd, r2 = i / (size_t)kd, cc = r2 % (size_t)n, xy = r2 / (size_t)n;
			char v[32], at[96];
			if (wide == 2)
				snprintf(v, sizeof v, "%lld", (long long)sv);
			else
				snprintf(v, sizeof v, "%llu", (unsigned long long)uv);
			if (rank == 4)
				snprintf(at, sizeof at, "%zu, %zu, %zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS,
					 (size_t)c0 + cc, g);
			else if (rank == 3)
				snprintf(at, sizeof at, "%zu, %zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS, (size_t)c0 + cc);
			else
				snprintf(at, sizeof at, "%zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS);
			rc = agipd_err_set(e, "%s: constant %s[%s] is %s, not a uint32 bad-pixel value", path, cnames[c],
					   at, v);
			break;
		}
		uint32_t u = (uint32_t)uv;
		memcpy((char *)tmp + i * 4, &u, 4);
	}
	H5Sclose(ms);
	H5Sclose(fs);
	if (H5Dclose(d) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing constant %s", path, cnames[c]);
	if (rc)
		return rc;
	/* file order [x][y][c][g] -> [g][c][y][x], in blocks of 16 rows so that
	 * both the reads and the written rows stay in cache */
	const size_t np = (size_t)n * P, run = (size_t)n * kd;
	for (size_t y0 = 0; y0 < AGIPD_ROWS; y0 += 16)
		for (size_t x = 0; x < AGIPD_COLS; x++) {
			size_t s0 = (x * AGIPD_ROWS + y0) * run;
			for (size_t y = y0; y < y0 + 16; y++, s0 += run)
				for (size_t cc = 0; cc < (size_t)n; cc++)
					for (size_t g = 0; g < (size_t)kd; g++) {
						size_t o = g * np + cc * P + y * AGIPD_COLS + x;
						if (cis_int[c])
							((uint32_t *)dst)[o] = ((const uint32_t *)tmp)[s0 + cc * kd + g];
						else
							((float *)dst)[o] = (float)tmp[s0 + cc * kd + g];
					}
		}
	return 0;
}

int agipd_consts_load(const struct agipd_params *p, int cell_lo, int cell_hi, struct agipd_consts *k,
		      const struct agipd_consts_meta *m, agipd_err *e)
{
	const char *path = m->path;
	const int ncells = cell_hi - cell_lo;
	const int CH = ncells < CELL_CHUNK ? (ncells > 0 ? ncells : 1) : CELL_CHUNK;
	const size_t np = (size_t)CH * P;
	float *thr = NULL, *off = NULL, *pc = NULL, *ff = NULL, *scratch = NULL;
	uint32_t *bpd = NULL, *bppc = NULL, *bpff = NULL;
	double *tmp = NULL;
	int rc = -1;

	if (ncells <= 0)
		return 0;
	/* A large sieve buffer: a few cells of every pixel are many short runs. */
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (fapl < 0 || H5Pset_sieve_buf_size(fapl, 8 << 20) < 0) {
		if (fapl >= 0)
			H5Pclose(fapl);
		return agipd_err_h5(e, "%s: cannot set up file access", path);
	}
	hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
	H5Pclose(fapl);
	/* Constants stored as plain arrays are transposed straight from a
	 * read-only mapping of the file: no HDF5 buffer copies. */
	const char *map = NULL;
	size_t map_len = 0;
	struct stat fst;
	int mfd = open(path, O_RDONLY | O_CLOEXEC);
	if (mfd >= 0 && fstat(mfd, &fst) == 0 && fst.st_size > 0) {
		void *mm = mmap(NULL, (size_t)fst.st_size, PROT_READ, MAP_SHARED, mfd, 0);
		if (mm != MAP_FAILED) {
			map = mm;
			map_len = (size_t)fst.st_size;
		}
	}
	if (mfd >= 0)
		close(mfd);
	if (map)
		agipd_mapguard_test_pause(path);
	if (fid < 0)
		return agipd_err_h5(e, "%s: cannot open constants file", path);

	tmp = malloc(np * 5 * sizeof *tmp);
	thr = malloc(np * 2 * sizeof *thr);
	off = malloc(np * 3 * sizeof *off);
	bpd = malloc(np * 3 * sizeof *bpd);
	scratch = malloc(P * sizeof *scratch);
	if (p->rel_gain) {
		pc = malloc(np * 5 * sizeof *pc);
		bppc = malloc(np * sizeof *bppc);
	}
	if (needed(p, C_FF))
		ff = malloc(np * sizeof *ff);
	if (p->ff_gain)
		bpff = malloc(np * sizeof *bpff);
	if (!tmp || !thr || !off || !bpd || !scratch || (p->rel_gain && (!pc || !bppc)) ||
	    (needed(p, C_FF) && !ff) || (p->ff_gain && !bpff)) {
		agipd_err_set(e, "%s: out of memory loading constants", path);
		goto out;
	}
	/* An FF image without cells is read once. */
	if (ff && !m->ff_cells && read_const(fid, path, C_FF, 0, 1, 1, ff, tmp, map, map_len, e) < 0)
		goto out;
	if (bpff && !m->ff_cells && read_const(fid, path, C_BPFF, 0, 1, 1, bpff, tmp, map, map_len, e) < 0)
		goto out;

	for (int c0 = cell_lo; c0 < cell_hi; c0 += CH) {
		int n = cell_hi - c0 < CH ? cell_hi - c0 : CH;
		struct agipd_raw_consts raw = { .n = n, .ff_cells = m->ff_cells };
		if (p->gain_mode == AGIPD_GAIN_ADAPTIVE) {
			if (read_const(fid, path, C_THR, c0, n, 2, thr, tmp, map, map_len, e) < 0)
				goto out;
			raw.thresholds = thr;
		}
		if (read_const(fid, path, C_OFF, c0, n, 3, off, tmp, map, map_len, e) < 0 ||
		    read_const(fid, path, C_BPD, c0, n, 3, bpd, tmp, map, map_len, e) < 0)
			goto out;
		raw.offset = off;
		raw.bp_dark = bpd;
		if (p->rel_gain) {
			if (read_const(fid, path, C_PC, c0, n, 5, pc, tmp, map, map_len, e) < 0 ||
			    read_const(fid, path, C_BPPC, c0, n, 1, bppc, tmp, map, map_len, e) < 0)
				goto out;
			raw.slopes_pc = pc;
			raw.bp_pc = bppc;
		}
		if (ff) {
			if (m->ff_cells && read_const(fid, path, C_FF, c0, n, 1, ff, tmp, map, map_len, e) < 0)
				goto out;
			raw.slopes_ff = ff;
		}
		if (bpff) {
			if (m->ff_cells && read_const(fid, path, C_BPFF, c0, n, 1, bpff, tmp, map, map_len, e) < 0)
				goto out;
			raw.bp_ff = bpff;
		}
		if (agipd_consts_prepare(p, &raw, c0, k, scratch, e->msg, sizeof e->msg) < 0)
			goto out;
	}
	rc = 0;
out:
	if (H5Fclose(fid) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing constants file", path);
	if (map)
		munmap((void *)map, map_len);
	free(tmp);
	free(thr);
	free(off);
	free(bpd);
	free(pc);
	free(bppc);
	free(ff);
	free(bpff);
	free(scratch);
	return rc;
}

int agipd_consts_checksum_part(const char *path, int part, int nparts, uint32_t *crc, uint64_t *len,
			       uint64_t *total, agipd_err *e)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return agipd_err_set(e, "%s: %s", path, strerror(errno));
	uint64_t size = (uint64_t)st.st_size;
	uint64_t a = size * (uint64_t)part / (uint64_t)nparts, b = size * (uint64_t)(part + 1) / (uint64_t)nparts;
	*total = size;
	*len = b - a;
	if (agipd_crc32_file_range(path, a, b - a, crc) < 0)
		return agipd_err_set(e, "%s: cannot read constants file: %s", path, strerror(errno));
	return 0;
}
