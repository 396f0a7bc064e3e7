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
#include "agipd_h5.h"
#include "agipd_mapguard.h"

#define P AGIPD_PIXELS
#define CELL_CHUNK 32

const char *const agipd_const_attr_names[AGIPD_CONST_NATTRS] = {
	"memory_cells", "acquisition_rate", "gain_setting", "bias_voltage", "creation_date", "constant_id",
	"gain_mode", "integration_time",
};

void agipd_consts_path(char *buf, size_t len, const char *folder, int module)
{
	snprintf(buf, len, "%s/AGIPD%02d.h5", folder, module);
}

enum { C_THR, C_OFF, C_NOISE, C_BPD, C_PC, C_BPPC, C_FF, C_BPFF, C_N };
const char *const agipd_const_names[AGIPD_CONST_KINDS] = {
	"ThresholdsDark", "Offset", "Noise", "BadPixelsDark", "SlopesPC", "BadPixelsPC", "SlopesFF", "BadPixelsFF",
};
#define cnames agipd_const_names
/* trailing dimension needed (0: no trailing axis) and whether integer */
static const int cmin_k[C_N] = { 2, 3, 3, 3, 5, 0, 0, 0 };
static const int cis_int[C_N] = { 0, 0, 0, 1, 0, 1, 0, 1 };

int agipd_const_needed(const struct agipd_params *p, int c)
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
#define needed agipd_const_needed

int agipd_const_is_dark(int c)
{
	return c == C_THR || c == C_OFF || c == C_NOISE || c == C_BPD;
}

/* A `dims` attribute of the array, as up to 4 axis names; 0 when absent. */
static int read_dims_attr(hid_t d, char names[4][64], int *n)
{
	*n = 0;
	if (H5Aexists(d, "dims") <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return 0;
	}
	int rc = -1;
	hid_t a = H5Aopen(d, "dims", H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
	hssize_t np = H5Sget_simple_extent_npoints(s);
	if (a >= 0 && H5Tget_class(t) == H5T_STRING && np >= 1 && np <= 4) {
		hid_t mt = H5Tcopy(H5T_C_S1);
		H5Tset_cset(mt, H5Tget_cset(t));
		if (H5Tis_variable_str(t) > 0) {
			char *v[4] = { NULL, NULL, NULL, NULL };
			H5Tset_size(mt, H5T_VARIABLE);
			if (H5Aread(a, mt, v) >= 0) {
				for (int i = 0; i < np; i++)
					snprintf(names[i], 64, "%s", v[i] ? v[i] : "");
				H5Dvlen_reclaim(mt, s, H5P_DEFAULT, v);
				rc = 0;
			}
		} else {
			size_t sz = H5Tget_size(t);
			char *buf = calloc((size_t)np, sz + 1);
			H5Tset_size(mt, sz + 1);
			if (buf && H5Aread(a, mt, buf) >= 0) {
				for (int i = 0; i < np; i++)
					snprintf(names[i], 64, "%s", buf + (size_t)i * (sz + 1));
				rc = 0;
			}
			free(buf);
		}
		H5Tclose(mt);
		*n = (int)np;
	}
	H5Sclose(s);
	H5Tclose(t);
	H5Aclose(a);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

/* Map axis names to SPEC 3's order (fast_scan, slow_scan, cell, last). */
static int map_dims(char names[4][64], int n, int rank, int perm[4])
{
	static const char *const want[3] = { "fast_scan", "slow_scan", "cell" };
	int seen[4] = { 0, 0, 0, 0 };
	if (n != rank)
		return -1;
	for (int i = 0; i < n; i++) {
		int L = -1;
		for (int j = 0; j < 3; j++)
			if (!strcmp(names[i], want[j]))
				L = j;
		if (L < 0 && rank == 4)
			L = 3;            /* the last axis, whatever it is called */
		if (L < 0 || seen[L] || (rank == 2 && L > 1) || (rank == 3 && L > 2))
			return -1;
		seen[L] = 1;
		perm[i] = L;
	}
	return 0;
}

/* Check one constant; returns its cell count (or -2 for an FF image without
 * cells), -1 on error.  Fills the source's rank and axis order. */
static int check_const(hid_t fid, const char *path, int c, struct agipd_const_src *src, agipd_err *e)
{
	hsize_t fdims[8], dims[8];
	int cells = -1;
	const char *dn = src->dataset;
	if (H5Lexists(fid, dn, H5P_DEFAULT) <= 0 || H5Oexists_by_name(fid, dn, H5P_DEFAULT) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		if (strcmp(dn, cnames[c]))
			return agipd_err_set(e, "%s: constant %s: missing dataset %s", path, cnames[c], dn);
		return agipd_err_set(e, "%s: missing constant %s", path, cnames[c]);
	}
	H5Eclear2(H5E_DEFAULT);
	hid_t d = H5Dopen2(fid, dn, H5P_DEFAULT);
	if (d < 0)
		return agipd_err_h5(e, "%s: cannot open constant %s", path, cnames[c]);
	hid_t s = H5Dget_space(d), t = H5Dget_type(d);
	int rank = H5Sget_simple_extent_ndims(s);
	if (rank > 0 && rank <= 8)
		H5Sget_simple_extent_dims(s, fdims, NULL);
	H5T_class_t cls = H5Tget_class(t);
	int want_rank = cmin_k[c] ? 4 : 3;
	int ff = c == C_FF || c == C_BPFF;
	char names[4][64];
	int nn = 0, perm[4] = { 0, 1, 2, 3 }, bad_dims = 0;
	if (rank >= 1 && rank <= 4) {
		if (read_dims_attr(d, names, &nn) < 0 || (nn && map_dims(names, nn, rank, perm) < 0))
			bad_dims = 1;
	}
	for (int i = 0; i < rank && i < 8; i++)
		dims[i] = fdims[i];
	if (!bad_dims && rank >= 1 && rank <= 4)
		for (int i = 0; i < rank; i++)
			dims[perm[i]] = fdims[i];
	src->rank = rank;
	src->permuted = 0;
	for (int i = 0; i < 4; i++) {
		src->perm[i] = perm[i];
		if (i < rank && perm[i] != i)
			src->permuted = 1;
	}
	if (bad_dims) {
		char list[300] = "";
		for (int i = 0; i < nn; i++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
		agipd_err_set(e, "%s: constant %s: dims (%s) cannot be mapped to (fast_scan, slow_scan, cell%s) "
			      "for an array of rank %d", path, cnames[c], nn ? list : "unreadable", cmin_k[c] ? ", ..." : "",
			      rank);
	} else if (cis_int[c] ? cls != H5T_INTEGER : (cls != H5T_FLOAT && cls != H5T_INTEGER)) {
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

/* A numeric (or numeric-string) attribute of an object; 1 when read. */
static int attr_number(hid_t obj, const char *name, double *v)
{
	int ok = 0;
	if (H5Aexists(obj, name) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return 0;
	}
	hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
	hssize_t np = H5Sget_simple_extent_npoints(s);
	H5T_class_t cls = H5Tget_class(t);
	if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && np >= 1 && np < 1 << 20) {
		double *b = malloc((size_t)np * sizeof *b);
		if (b && H5Aread(a, H5T_NATIVE_DOUBLE, b) >= 0) {
			*v = b[0];
			ok = 1;
		}
		free(b);
	} else if (cls == H5T_STRING && np == 1) {
		hid_t mt = H5Tcopy(H5T_C_S1);
		char *str = NULL, fixed[256] = "";
		H5Tset_cset(mt, H5Tget_cset(t));
		if (H5Tis_variable_str(t) > 0) {
			H5Tset_size(mt, H5T_VARIABLE);
			if (H5Aread(a, mt, &str) >= 0 && str) {
				snprintf(fixed, sizeof fixed, "%s", str);
				H5free_memory(str);
			}
		} else if (H5Tget_size(t) < sizeof fixed) {
			H5Tset_size(mt, H5Tget_size(t) + 1);
			H5Aread(a, mt, fixed);
		}
		H5Tclose(mt);
		char *end;
		double x = strtod(fixed, &end);
		if (end != fixed) {
			*v = x;
			ok = 1;
		}
	}
	H5Sclose(s);
	H5Tclose(t);
	H5Aclose(a);
	H5Eclear2(H5E_DEFAULT);
	return ok;
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

/* Open one constants file read-only, with the messages of a missing or
 * broken file. */
static hid_t open_consts_file(const char *path, agipd_err *e)
{
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
	return fid;
}

/* Probe the sources of m (files and datasets set). */
static int probe_sources(const struct agipd_params *p, struct agipd_consts_meta *m, int root_attrs, agipd_err *e)
{
	hid_t fids[AGIPD_CONST_KINDS];
	int rc = 0, cells = 1 << 30;
	for (int f = 0; f < m->nfiles; f++)
		fids[f] = -1;
	for (int c = 0; c < C_N; c++)
		m->src[c].used = needed(p, c);
	for (int f = 0; f < m->nfiles && rc == 0; f++) {
		int any = 0;
		for (int c = 0; c < C_N; c++)
			any |= m->src[c].used && m->src[c].file == f;
		if (any && (fids[f] = open_consts_file(m->files[f].path, e)) < 0) {
			rc = -1;
			if (m->caldb) {
				/* One file per constant: name the constant. */
				char msg[AGIPD_ERRLEN];
				int c = 0;
				while (c < C_N - 1 && !(m->src[c].used && m->src[c].file == f))
					c++;
				snprintf(msg, sizeof msg, "%s", e->msg);
				agipd_err_set(e, "constant %s: %s", cnames[c], msg);
			}
		}
	}
	m->ff_cells = 1;
	for (int c = 0; c < C_N && rc == 0; c++) {
		if (!m->src[c].used || c == C_BPFF)
			continue;
		int n = check_const(fids[m->src[c].file], m->files[m->src[c].file].path, c, &m->src[c], e);
		if (n == -1)
			rc = -1;
		else if (n == -2 && c == C_FF)
			m->ff_cells = 0;
		else if (n >= 0 && n < cells)
			cells = n;
	}
	if (rc == 0 && m->src[C_BPFF].used) {
		/* BadPixelsFF must have the same form as SlopesFF. */
		int nf = check_const(fids[m->src[C_BPFF].file], m->files[m->src[C_BPFF].file].path, C_BPFF,
				     &m->src[C_BPFF], e);
		if (nf == -1)
			rc = -1;
		else if ((nf == -2) != (m->ff_cells == 0))
			rc = agipd_err_set(e, "%s: BadPixelsFF and SlopesFF differ in having a cell axis",
					   m->files[m->src[C_BPFF].file].path);
		else if (nf >= 0 && nf < cells)
			cells = nf;
	}
	m->cells = cells == 1 << 30 ? 0 : cells;
	/* Conditions on each constant's group (calibration database). */
	for (int c = 0; c < C_N && rc == 0; c++) {
		struct agipd_const_src *s = &m->src[c];
		if (!s->used || !s->group[0])
			continue;
		hid_t g = H5Oopen(fids[s->file], s->group, H5P_DEFAULT);
		if (g < 0) {
			H5Eclear2(H5E_DEFAULT);
			continue;
		}
		for (int i = 0; i < AGIPD_NCOND; i++)
			s->cond_present[i] = attr_number(g, agipd_cond_names[i], &s->cond_value[i]);
		H5Oclose(g);
	}
	if (rc == 0 && root_attrs && fids[0] >= 0)
		read_attrs(fids[0], m);
	for (int f = 0; f < m->nfiles; f++)
		if (fids[f] >= 0 && H5Fclose(fids[f]) < 0 && rc == 0)
			rc = agipd_err_h5(e, "%s: closing constants file", m->files[f].path);
	return rc;
}

int agipd_consts_probe(const char *path, const struct agipd_params *p, struct agipd_consts_meta *m,
		       agipd_err *e)
{
	memset(m, 0, sizeof *m);
	snprintf(m->path, sizeof m->path, "%s", path);
	m->nfiles = 1;
	snprintf(m->files[0].path, sizeof m->files[0].path, "%s", path);
	for (int c = 0; c < C_N; c++)
		snprintf(m->src[c].dataset, sizeof m->src[c].dataset, "%s", cnames[c]);
	if (probe_sources(p, m, 1, e) < 0)
		return -1;
	/* The root attributes hold the conditions of every constant in the file. */
	for (int c = 0; c < C_N; c++)
		for (int i = 0; i < AGIPD_NCOND; i++)
			for (int a = 0; a < AGIPD_CONST_NATTRS; a++)
				if (!strcmp(agipd_const_attr_names[a], agipd_cond_attr_names[i]) && m->attrs[a].present &&
				    !m->attrs[a].is_str) {
					m->src[c].cond_present[i] = 1;
					m->src[c].cond_value[i] = m->attrs[a].num;
				}
	return 0;
}

int agipd_consts_probe_sources(const struct agipd_params *p, struct agipd_consts_meta *m, agipd_err *e)
{
	return probe_sources(p, m, 0, e);
}

int agipd_consts_check_conditions(const struct agipd_consts_meta *m, const struct agipd_conditions *run,
				  agipd_err *e)
{
	char msg[512];
	for (int c = 0; c < C_N; c++) {
		const struct agipd_const_src *s = &m->src[c];
		if (!s->used)
			continue;
		if (agipd_conditions_check(run, s->cond_present, s->cond_value, agipd_const_is_dark(c), msg,
					   sizeof msg) < 0)
			return agipd_err_set(e, "constant %s (%s%s%s): %s", cnames[c], m->files[s->file].path,
					     s->group[0] ? ":" : "", s->group, msg);
	}
	return 0;
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
	    H5Pget_external_count(dcpl) == 0 && agipd_h5_in_file(d, fid)) {
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

/* A constant stored in another axis order (a dims attribute): read the
 * hyperslab in the file's order, then gather it into [g][c][y][x]. */
static int read_permuted(hid_t d, hid_t fs, const struct agipd_const_src *src, const char *path, int c, int c0,
			 int n, int kd, void *dst, double *tmp, agipd_err *e)
{
	const int rank = src->rank;
	hsize_t start[4] = { 0, 0, 0, 0 }, count[4] = { 1, 1, 1, 1 };
	const hsize_t st_l[4] = { 0, 0, (hsize_t)c0, 0 }, cnt_l[4] = { AGIPD_COLS, AGIPD_ROWS, (hsize_t)n, (hsize_t)kd };
	size_t sl[4] = { 0, 0, 0, 0 }, stride = 1;
	for (int i = 0; i < rank; i++) {
		start[i] = st_l[src->perm[i]];
		count[i] = cnt_l[src->perm[i]];
	}
	for (int i = rank - 1; i >= 0; i--) {
		sl[src->perm[i]] = stride;
		stride *= (size_t)count[i];
	}
	hsize_t total = (hsize_t)stride;
	hid_t ms = H5Screate_simple(1, &total, NULL);
	int rc = 0;
	H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
	if (H5Dread(d, cis_int[c] ? H5T_NATIVE_UINT32 : H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, tmp) < 0)
		rc = agipd_err_h5(e, "%s: cannot read constant %s", path, cnames[c]);
	H5Sclose(ms);
	if (rc)
		return rc;
	const size_t np = (size_t)n * P;
	for (size_t y = 0; y < AGIPD_ROWS; y++)
		for (size_t x = 0; x < AGIPD_COLS; x++)
			for (size_t cc = 0; cc < (size_t)n; cc++)
				for (size_t g = 0; g < (size_t)kd; g++) {
					size_t o = g * np + cc * P + y * AGIPD_COLS + x;
					size_t si = x * sl[0] + y * sl[1] + cc * sl[2] + g * sl[3];
					if (cis_int[c])
						((uint32_t *)dst)[o] = ((const uint32_t *)tmp)[si];
					else
						((float *)dst)[o] = (float)tmp[si];
				}
	return 0;
}

/* Rank 2 constants, (128, 512), have one cell and one entry; rank 3 ones,
 * (128, 512, C), one entry per cell. */
static void fit_rank(int rank, int *c0, int *n, int *kd)
{
	if (rank == 2)
		*c0 = 0, *n = *kd = 1;
	else if (rank == 3)
		*kd = 1;
}

/* A constant stored as a plain array of type mt at offset off of the
 * mapped file (mappable()): transposed straight from the mapping. */
static int read_mapped(hid_t fs, int rank, int mt, haddr_t off, const char *path, int c, int c0, int n, int kd,
		       void *dst, const char *map, size_t map_len, agipd_err *e)
{
	hsize_t dims[4] = { 1, 1, 1, 1 };
	H5Sget_simple_extent_dims(fs, dims, NULL);
	size_t C = rank >= 3 ? (size_t)dims[2] : 1, K = rank == 4 ? (size_t)dims[3] : 1;
	size_t esize = mt == MT_F64 ? 8 : 4;
	uint64_t bytes = (uint64_t)AGIPD_COLS * AGIPD_ROWS * C * K * esize;
	if ((uint64_t)map_len < off || (uint64_t)map_len - off < bytes)
		return agipd_err_set(e, "%s: truncated file: constant %s needs %llu bytes at offset %llu", path,
				     cnames[c], (unsigned long long)bytes, (unsigned long long)off);
	fit_rank(rank, &c0, &n, &kd);
	struct transpose_args ta = { map + off, mt, C, K, c0, n, kd, dst };
	if (agipd_mapguard_run(map, map_len, transpose_guarded, &ta) < 0)
		return agipd_err_set(e, "%s: constants file changed while it was read (bus error reading "
				     "constant %s from the mapped file: truncated or rewritten in place?)", path,
				     cnames[c]);
	return 0;
}

/* The memory type constant c of dataset d is read as.  Bad-pixel masks:
 * HDF5's conversion would clamp what uint32 cannot hold (an int32 -1
 * became 0).  A 32-bit mask keeps its bits, as the mapped read does; wider
 * or narrower signed types are read as 64-bit values (*wide 1: unsigned,
 * 2: signed) that narrow_masks() checks hold 0..2^32-1. */
static hid_t read_type(hid_t d, int c, int *wide)
{
	*wide = 0;
	if (!cis_int[c])
		return H5T_NATIVE_DOUBLE;
	hid_t ft = H5Dget_type(d), mtype = H5T_NATIVE_UINT32;
	size_t fsz = H5Tget_size(ft);
	int sgn = H5Tget_sign(ft) == H5T_SGN_2;
	if (fsz == 4 && sgn)
		mtype = H5T_NATIVE_INT32;
	else if (fsz > 4 || sgn) {
		mtype = sgn ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64;
		*wide = sgn ? 2 : 1;
	}
	H5Tclose(ft);
	return mtype;
}

/* The file index [x, y(, cell(, g))] of entry i of a read of cells from c0,
 * n cells and kd entries each, of a constant of the given rank. */
static void file_index(char *at, size_t len, size_t i, int rank, int c0, int n, int kd)
{
	size_t g = i % (size_t)kd, r2 = i / (size_t)kd, cc = r2 % (size_t)n, xy = r2 / (size_t)n;
	if (rank == 4)
		snprintf(at, len, "%zu, %zu, %zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS, (size_t)c0 + cc, g);
	else if (rank == 3)
		snprintf(at, len, "%zu, %zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS, (size_t)c0 + cc);
	else
		snprintf(at, len, "%zu, %zu", xy / AGIPD_ROWS, xy % AGIPD_ROWS);
}

/* The total 8-byte mask values of tmp (read_type()'s wide) to uint32 in
 * place (entry i is read before any later write reaches its bytes); a
 * value out of range is an error naming its index in the file. */
static int narrow_masks(void *tmp, size_t total, int wide, int rank, int c0, int n, int kd, const char *path,
			int c, agipd_err *e)
{
	for (size_t i = 0; i < total; i++) {
		int64_t sv;
		uint64_t uv;
		memcpy(&uv, (const char *)tmp + i * 8, 8);
		memcpy(&sv, &uv, 8);
		if ((wide == 2 && sv < 0) || (wide == 2 ? (uint64_t)sv : uv) > UINT32_MAX) {
			char v[32], at[96];
			if (wide == 2)
				snprintf(v, sizeof v, "%lld", (long long)sv);
			else
				snprintf(v, sizeof v, "%llu", (unsigned long long)uv);
			file_index(at, sizeof at, i, rank, c0, n, kd);
			return agipd_err_set(e, "%s: constant %s[%s] is %s, not a uint32 bad-pixel value", path,
					     cnames[c], at, v);
		}
		uint32_t u = (uint32_t)uv;
		memcpy((char *)tmp + i * 4, &u, 4);
	}
	return 0;
}

/* file order [x][y][c][g] -> [g][c][y][x], in blocks of 16 rows so that
 * both the reads and the written rows stay in cache */
static void transpose_read(const double *tmp, int is_int, int n, int kd, void *dst)
{
	const size_t np = (size_t)n * P, run = (size_t)n * kd;
	for (size_t y0 = 0; y0 < AGIPD_ROWS; y0 += 16)
		for (size_t x = 0; x < AGIPD_COLS; x++) {
			size_t s0 = (x * AGIPD_ROWS + y0) * run;
			for (size_t y = y0; y < y0 + 16; y++, s0 += run)
				for (size_t cc = 0; cc < (size_t)n; cc++)
					for (size_t g = 0; g < (size_t)kd; g++) {
						size_t o = g * np + cc * P + y * AGIPD_COLS + x;
						if (is_int)
							((uint32_t *)dst)[o] = ((const uint32_t *)tmp)[s0 + cc * kd + g];
						else
							((float *)dst)[o] = (float)tmp[s0 + cc * kd + g];
					}
		}
}

/* A constant read through HDF5: the hyperslab of cells [c0, c0 + n) into
 * tmp in the file's order, then transposed into dst. */
static int read_hyperslab(hid_t d, hid_t fs, int rank, const char *path, int c, int c0, int n, int kd, void *dst,
			  double *tmp, agipd_err *e)
{
	fit_rank(rank, &c0, &n, &kd);
	hsize_t start[4] = { 0, 0, (hsize_t)c0, 0 };
	hsize_t count[4] = { AGIPD_COLS, AGIPD_ROWS, (hsize_t)n, (hsize_t)kd };
	hsize_t total = (hsize_t)AGIPD_COLS * AGIPD_ROWS * n * kd;
	hid_t ms = H5Screate_simple(1, &total, NULL);
	int wide, rc = 0;
	hid_t mtype = read_type(d, c, &wide);
	H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
	if (H5Dread(d, mtype, ms, fs, H5P_DEFAULT, tmp) < 0)
		rc = agipd_err_h5(e, "%s: cannot read constant %s", path, cnames[c]);
	else if (wide)
		rc = narrow_masks(tmp, (size_t)total, wide, rank, c0, n, kd, path, c, e);
	H5Sclose(ms);
	if (rc == 0)
		transpose_read(tmp, cis_int[c], n, kd, dst);
	return rc;
}

/* Cells [c0, c0 + n), entries [0, kd) of constant c into dst as
 * [g][c][y][x]: from another axis order, from the mapped file (map, when
 * not NULL and the dataset is a plain array in it) or through HDF5. */
static int read_const(hid_t fid, const char *path, const struct agipd_const_src *src, int c, int c0, int n,
		      int kd, void *dst, double *tmp, const char *map, size_t map_len, agipd_err *e)
{
	hid_t d = H5Dopen2(fid, src->dataset, H5P_DEFAULT);
	if (d < 0)
		return agipd_err_h5(e, "%s: cannot open constant %s", path, cnames[c]);
	hid_t fs = H5Dget_space(d);
	int rank = H5Sget_simple_extent_ndims(fs), rc, mt;
	haddr_t off;
	if (src->permuted) {
		fit_rank(rank, &c0, &n, &kd);
		rc = read_permuted(d, fs, src, path, c, c0, n, kd, dst, tmp, e);
	} else if (map && (mt = mappable(d, fid, cis_int[c], &off)) != MT_NONE)
		rc = read_mapped(fs, rank, mt, off, path, c, c0, n, kd, dst, map, map_len, e);
	else
		rc = read_hyperslab(d, fs, rank, path, c, c0, n, kd, dst, tmp, e);
	H5Sclose(fs);
	if (H5Dclose(d) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing constant %s", path, cnames[c]);
	return rc;
}

/* One load of constants: the files open (HDF5 and, where it can be, a
 * read-only mapping), and the buffers of one chunk of cells. */
struct const_load {
	const struct agipd_consts_meta *m;
	hid_t fids[AGIPD_CONST_KINDS];
	const char *maps[AGIPD_CONST_KINDS];
	size_t map_lens[AGIPD_CONST_KINDS];
	float *thr, *off, *pc, *ff, *scratch;
	uint32_t *bpd, *bppc, *bpff;
	double *tmp;
};

/* Constant c, cells [c0, c0 + n), kd entries each, into dst. */
static int load_const(struct const_load *L, int c, int c0, int n, int kd, void *dst, agipd_err *e)
{
	const int f = L->m->src[c].file;
	return read_const(L->fids[f], L->m->files[f].path, &L->m->src[c], c, c0, n, kd, dst, L->tmp, L->maps[f],
			  L->map_lens[f], e);
}

/* Opens constants file f, with a large sieve buffer (a few cells of every
 * pixel are many short runs), and maps it when it can. */
static int load_open(struct const_load *L, int f, agipd_err *e)
{
	const char *fp = L->m->files[f].path;
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (fapl < 0 || H5Pset_sieve_buf_size(fapl, 8 << 20) < 0) {
		if (fapl >= 0)
			H5Pclose(fapl);
		return agipd_err_h5(e, "%s: cannot set up file access", fp);
	}
	L->fids[f] = H5Fopen(fp, H5F_ACC_RDONLY, fapl);
	H5Pclose(fapl);
	/* Constants stored as plain arrays are transposed straight from a
	 * read-only mapping of the file: no HDF5 buffer copies. */
	struct stat fst;
	int mfd = open(fp, O_RDONLY | O_CLOEXEC);
	if (mfd >= 0 && fstat(mfd, &fst) == 0 && fst.st_size > 0) {
		void *mm = mmap(NULL, (size_t)fst.st_size, PROT_READ, MAP_SHARED, mfd, 0);
		if (mm != MAP_FAILED) {
			L->maps[f] = mm;
			L->map_lens[f] = (size_t)fst.st_size;
		}
	}
	if (mfd >= 0)
		close(mfd);
	if (L->maps[f])
		agipd_mapguard_test_pause(fp);
	if (L->fids[f] < 0)
		return agipd_err_h5(e, "%s: cannot open constants file", fp);
	return 0;
}

/* Opens the files that hold a constant in use. */
static int load_open_all(struct const_load *L, agipd_err *e)
{
	const struct agipd_consts_meta *m = L->m;
	for (int f = 0; f < m->nfiles; f++) {
		int any = 0;
		for (int c = 0; c < C_N; c++)
			any |= m->src[c].used && m->src[c].file == f;
		if (any && load_open(L, f, e) < 0)
			return -1;
	}
	return 0;
}

/* The buffers of a chunk of np pixel-cells, for the constants p uses. */
static int load_alloc(struct const_load *L, const struct agipd_params *p, size_t np, agipd_err *e)
{
	L->tmp = malloc(np * 5 * sizeof *L->tmp);
	L->thr = malloc(np * 2 * sizeof *L->thr);
	L->off = malloc(np * 3 * sizeof *L->off);
	L->bpd = malloc(np * 3 * sizeof *L->bpd);
	L->scratch = malloc(P * sizeof *L->scratch);
	if (p->rel_gain) {
		L->pc = malloc(np * 5 * sizeof *L->pc);
		L->bppc = malloc(np * sizeof *L->bppc);
	}
	if (needed(p, C_FF))
		L->ff = malloc(np * sizeof *L->ff);
	if (p->ff_gain)
		L->bpff = malloc(np * sizeof *L->bpff);
	if (!L->tmp || !L->thr || !L->off || !L->bpd || !L->scratch || (p->rel_gain && (!L->pc || !L->bppc)) ||
	    (needed(p, C_FF) && !L->ff) || (p->ff_gain && !L->bpff))
		return agipd_err_set(e, "%s: out of memory loading constants", L->m->path);
	return 0;
}

/* Reads cells [c0, c0 + n) of every constant in use and prepares them
 * into k. */
static int load_cells(struct const_load *L, const struct agipd_params *p, int c0, int n, struct agipd_consts *k,
		      agipd_err *e)
{
	const int ff_cells = L->m->ff_cells;
	struct agipd_raw_consts raw = { .n = n, .ff_cells = ff_cells };
	if (p->gain_mode == AGIPD_GAIN_ADAPTIVE) {
		if (load_const(L, C_THR, c0, n, 2, L->thr, e) < 0)
			return -1;
		raw.thresholds = L->thr;
	}
	if (load_const(L, C_OFF, c0, n, 3, L->off, e) < 0 || load_const(L, C_BPD, c0, n, 3, L->bpd, e) < 0)
		return -1;
	raw.offset = L->off;
	raw.bp_dark = L->bpd;
	if (p->rel_gain) {
		if (load_const(L, C_PC, c0, n, 5, L->pc, e) < 0 || load_const(L, C_BPPC, c0, n, 1, L->bppc, e) < 0)
			return -1;
		raw.slopes_pc = L->pc;
		raw.bp_pc = L->bppc;
	}
	if (L->ff) {
		if (ff_cells && load_const(L, C_FF, c0, n, 1, L->ff, e) < 0)
			return -1;
		raw.slopes_ff = L->ff;
	}
	if (L->bpff) {
		if (ff_cells && load_const(L, C_BPFF, c0, n, 1, L->bpff, e) < 0)
			return -1;
		raw.bp_ff = L->bpff;
	}
	return agipd_consts_prepare(p, &raw, c0, k, L->scratch, e->msg, sizeof e->msg);
}

/* Closes the files (an error closing one counts when rc is 0) and frees
 * the buffers; returns rc. */
static int load_close(struct const_load *L, int rc, agipd_err *e)
{
	for (int f = 0; f < AGIPD_CONST_KINDS; f++) {
		if (L->fids[f] >= 0 && H5Fclose(L->fids[f]) < 0 && rc == 0)
			rc = agipd_err_h5(e, "%s: closing constants file", L->m->files[f].path);
		if (L->maps[f])
			munmap((void *)L->maps[f], L->map_lens[f]);
	}
	free(L->tmp);
	free(L->thr);
	free(L->off);
	free(L->bpd);
	free(L->pc);
	free(L->bppc);
	free(L->ff);
	free(L->bpff);
	free(L->scratch);
	return rc;
}

int agipd_consts_load(const struct agipd_params *p, int cell_lo, int cell_hi, struct agipd_consts *k,
		      const struct agipd_consts_meta *m, agipd_err *e)
{
	const int ncells = cell_hi - cell_lo;
	const int CH = ncells < CELL_CHUNK ? (ncells > 0 ? ncells : 1) : CELL_CHUNK;
	struct const_load L = { .m = m };
	int rc = -1;

	if (ncells <= 0)
		return 0;
	for (int f = 0; f < AGIPD_CONST_KINDS; f++)
		L.fids[f] = -1;
	if (load_open_all(&L, e) < 0 || load_alloc(&L, p, (size_t)CH * P, e) < 0)
		goto out;
	/* An FF image without cells is read once. */
	if (L.ff && !m->ff_cells && load_const(&L, C_FF, 0, 1, 1, L.ff, e) < 0)
		goto out;
	if (L.bpff && !m->ff_cells && load_const(&L, C_BPFF, 0, 1, 1, L.bpff, e) < 0)
		goto out;
	for (int c0 = cell_lo; c0 < cell_hi; c0 += CH)
		if (load_cells(&L, p, c0, cell_hi - c0 < CH ? cell_hi - c0 : CH, k, e) < 0)
			goto out;
	rc = 0;
out:
	return load_close(&L, rc, e);
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
