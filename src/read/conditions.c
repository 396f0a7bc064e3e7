/*
 * conditions.c - operating conditions from the control data (SPEC 6.1).
 *
 * EXDF slow data: CONTROL/{device}/{key}/value holds one row per train (the
 * rows of train t are INDEX/{device}/first[t] .. + count[t]), RUN/{device}/
 * {key}/value one value for the run, used only when the device has no
 * CONTROL rows for the key.  Every control sequence file of the run is read,
 * so that a key changing in any train is seen.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "agipd_conditions.h"
#include "agipd_json.h"
#include "agipd_raw_h5.h"

const char *const agipd_cond_names[AGIPD_NCOND] = {
	"Memory cells", "Acquisition rate", "Gain setting", "Gain mode", "Integration time", "Sensor Bias Voltage",
};
const char *const agipd_cond_attr_names[AGIPD_NCOND] = {
	"memory_cells", "acquisition_rate", "gain_setting", "gain_mode", "integration_time", "bias_voltage",
};

int agipd_cond_mem_cells_fallback(unsigned max_cell)
{
	static const int opts[] = { 4, 32, 64, 76, 128, 176, 202, 250, 352 };
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
		if ((unsigned)opts[i] > max_cell)
			return opts[i];
	return -1;
}

double agipd_cond_rate_from_spacing(unsigned long long d)
{
	if (d == 0)
		return NAN;
	return nearbyint(floor(45.0 / (double)d)) / 10.0;
}

int agipd_cond_gain_setting_from_setupr(long setupr, long pattern)
{
	if ((setupr == 0 && pattern < 4) || (setupr == 32 && pattern == 4))
		return 0;
	if ((setupr == 8 && pattern < 4) || (setupr == 40 && pattern == 4))
		return 1;
	return -1;
}

enum agipd_gain_mode agipd_conditions_gain_mode(const struct agipd_conditions *c)
{
	if (!c->known[AGIPD_COND_GAIN_MODE])
		return AGIPD_GAIN_ADAPTIVE;
	int v = (int)c->value[AGIPD_COND_GAIN_MODE];
	return v >= 1 && v <= 3 ? (enum agipd_gain_mode)v : AGIPD_GAIN_ADAPTIVE;
}

void agipd_cond_value_text(const struct agipd_conditions *c, int i, char *buf, size_t len)
{
	if (!c->known[i])
		snprintf(buf, len, "unknown");
	else
		snprintf(buf, len, "%.9g", c->value[i]);
}

void agipd_conditions_print(FILE *f, const struct agipd_conditions *c)
{
	static const char *const gm[] = { "adaptive", "fixed-high", "fixed-medium", "fixed-low" };
	char v[64];
	for (int i = 0; i < AGIPD_NCOND; i++) {
		agipd_cond_value_text(c, i, v, sizeof v);
		fprintf(f, "  %-20s %s", agipd_cond_names[i], v);
		if (i == AGIPD_COND_GAIN_MODE)
			fprintf(f, " (corrected as %s)", gm[agipd_conditions_gain_mode(c)]);
		fprintf(f, "%s%s%s\n", c->known[i] ? "  [" : "", c->known[i] ? c->source[i] : "",
			c->known[i] ? "]" : "");
	}
}

void agipd_conditions_json(FILE *f, const struct agipd_conditions *c)
{
	int first = 1;
	fputc('{', f);
	for (int i = 0; i < AGIPD_NCOND; i++) {
		if (!c->known[i])
			continue;
		fprintf(f, "%s", first ? "" : ", ");
		agipd_json_str(f, agipd_cond_names[i]);
		fprintf(f, ": {\"value\": %.9g, \"source\": ", c->value[i]);
		agipd_json_str(f, c->source[i]);
		fputc('}', f);
		first = 0;
	}
	fputc('}', f);
}

int agipd_conditions_check(const struct agipd_conditions *run, const int *present, const double *values,
			   int dark, char *msg, size_t len)
{
	for (int i = 0; i < AGIPD_NCOND; i++) {
		if (!present[i] || !run->known[i] || (!dark && i == AGIPD_COND_GAIN_MODE))
			continue;
		double a = run->value[i], b = values[i];
		double tol = i == AGIPD_COND_BIAS ? 5.0 : i == AGIPD_COND_ACQ_RATE ? 0.05 + 1e-9 : 0;
		if (!(fabs(a - b) <= tol)) {
			snprintf(msg, len, "condition %s: run %.9g, constant %.9g", agipd_cond_names[i], a, b);
			return -1;
		}
	}
	return 0;
}

/* ---- control files ---- */

struct ctl {
	int n;
	char **path;
	hid_t *fid;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ctl_close(struct ctl *c)
{
	for (int i = 0; i < c->n; i++) {
		if (c->fid && c->fid[i] >= 0)
			H5Fclose(c->fid[i]);
		free(c->path[i]);
	}
	free(c->path);
	free(c->fid);
	memset(c, 0, sizeof *c);
}

static int ctl_open(struct ctl *c, const char *dir, long run, const char *da, agipd_err *e)
{
	char prefix[256];
	DIR *d = opendir(dir);
	struct dirent *de;
	int cap = 0;
	memset(c, 0, sizeof *c);
	if (!d)
		return agipd_err_set(e, "%s: cannot read run folder: %s", dir, strerror(errno));
	snprintf(prefix, sizeof prefix, "RAW-R%04ld-%s-S", run, da);
	size_t pl = strlen(prefix);
	while ((de = readdir(d)) != NULL) {
		const char *s = de->d_name;
		if (strncmp(s, prefix, pl) || strlen(s) != pl + 8 || strcmp(s + pl + 5, ".h5"))
			continue;
		int digits = 1;
		for (int i = 0; i < 5; i++)
			digits &= s[pl + i] >= '0' && s[pl + i] <= '9';
		if (!digits)
			continue;
		if (c->n == cap) {
			cap = cap ? 2 * cap : 8;
			char **np = realloc(c->path, (size_t)cap * sizeof *np);
			if (!np)
				break;
			c->path = np;
		}
		size_t L = strlen(dir) + strlen(s) + 2;
		c->path[c->n] = malloc(L);
		if (!c->path[c->n])
			break;
		snprintf(c->path[c->n], L, "%s/%s", dir, s);
		c->n++;
	}
	closedir(d);
	if (c->n > 1)
		qsort(c->path, (size_t)c->n, sizeof *c->path, cmp_str);
	c->fid = malloc((size_t)(c->n ? c->n : 1) * sizeof *c->fid);
	if (!c->fid) {
		ctl_close(c);
		return agipd_err_set(e, "out of memory");
	}
	for (int i = 0; i < c->n; i++)
		c->fid[i] = -1;
	for (int i = 0; i < c->n; i++) {
		c->fid[i] = H5Fopen(c->path[i], H5F_ACC_RDONLY, H5P_DEFAULT);
		if (c->fid[i] < 0) {
			agipd_err_h5(e, "%s: cannot open control file", c->path[i]);
			ctl_close(c);
			return -1;
		}
	}
	return 0;
}

static int exists(hid_t fid, const char *name)
{
	htri_t r = H5Lexists(fid, name, H5P_DEFAULT) > 0 ? H5Oexists_by_name(fid, name, H5P_DEFAULT) : 0;
	H5Eclear2(H5E_DEFAULT);
	return r > 0;
}

/* A numeric dataset of shape (n,) or (n, 1) as doubles (malloc). */
static int read_doubles(hid_t fid, const char *file, const char *name, double **out, size_t *n, agipd_err *e)
{
	hsize_t dims[4] = { 0, 0, 0, 0 };
	int rc = -1;
	*out = NULL;
	*n = 0;
	hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
	if (d < 0)
		return agipd_err_h5(e, "%s: cannot open %s", file, name);
	hid_t s = H5Dget_space(d), t = H5Dget_type(d);
	int rank = H5Sget_simple_extent_ndims(s);
	H5T_class_t cls = H5Tget_class(t);
	if (rank >= 1 && rank <= 4)
		H5Sget_simple_extent_dims(s, dims, NULL);
	if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
		agipd_err_set(e, "%s: %s: unreadable value (not a number)", file, name);
	} else if (rank < 1 || rank > 2 || (rank == 2 && dims[1] != 1) || dims[0] > (1u << 26)) {
		agipd_err_set(e, "%s: %s: unreadable value (shape (n,) or (n, 1) expected)", file, name);
	} else {
		*out = malloc((size_t)(dims[0] ? dims[0] : 1) * sizeof **out);
		if (!*out)
			agipd_err_set(e, "out of memory");
		else if (dims[0] && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
			agipd_err_h5(e, "%s: %s: unreadable value", file, name);
		else {
			*n = (size_t)dims[0];
			rc = 0;
		}
	}
	H5Tclose(t);
	H5Sclose(s);
	H5Dclose(d);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

struct vals {
	double *v;
	size_t n, cap;
};

static int vals_push(struct vals *v, double x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 64;
		double *p = realloc(v->v, cap * sizeof *p);
		if (!p)
			return -1;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

/*
 * The values of one key over the run's trains: 1 found (out), 0 absent from
 * every control file, -1 error.
 */
static int read_key(const struct ctl *c, const char *dev, const char *key, struct vals *out, agipd_err *e)
{
	char name[1024];
	out->n = 0;
	for (int f = 0; f < c->n; f++) {
		snprintf(name, sizeof name, "CONTROL/%s/%s/value", dev, key);
		if (!exists(c->fid[f], name))
			continue;
		double *v = NULL, *tid = NULL, *first = NULL, *count = NULL;
		size_t nv, nt = 0, nfirst = 0, ncount = 0;
		int rc = read_doubles(c->fid[f], c->path[f], name, &v, &nv, e);
		if (rc == 0 && exists(c->fid[f], "INDEX/trainId"))
			rc = read_doubles(c->fid[f], c->path[f], "INDEX/trainId", &tid, &nt, e);
		snprintf(name, sizeof name, "INDEX/%s/count", dev);
		if (rc == 0 && exists(c->fid[f], name)) {
			rc = read_doubles(c->fid[f], c->path[f], name, &count, &ncount, e);
			snprintf(name, sizeof name, "INDEX/%s/first", dev);
			if (rc == 0 && exists(c->fid[f], name))
				rc = read_doubles(c->fid[f], c->path[f], name, &first, &nfirst, e);
		}
		if (rc == 0) {
			if (tid && count && first) {
				/* The rows of the trains with a non-zero trainId. */
				for (size_t t = 0; t < nt && t < ncount && t < nfirst && rc == 0; t++) {
					if (tid[t] == 0)
						continue;
					for (double r = first[t]; r < first[t] + count[t] && r < (double)nv && rc == 0; r++)
						rc = vals_push(out, v[(size_t)r]);
				}
			} else {
				for (size_t t = 0; t < nv && rc == 0; t++)
					if (!tid || (t < nt && tid[t] != 0))
						rc = vals_push(out, v[t]);
			}
			if (rc)
				agipd_err_set(e, "out of memory");
		}
		free(v);
		free(tid);
		free(first);
		free(count);
		if (rc)
			return -1;
	}
	if (out->n)
		return 1;
	for (int f = 0; f < c->n; f++) {
		snprintf(name, sizeof name, "RUN/%s/%s/value", dev, key);
		if (!exists(c->fid[f], name))
			continue;
		double *v = NULL;
		size_t nv;
		if (read_doubles(c->fid[f], c->path[f], name, &v, &nv, e) < 0)
			return -1;
		int rc = nv ? vals_push(out, v[0]) : 0;
		free(v);
		if (rc)
			return agipd_err_set(e, "out of memory");
		if (nv)
			return 1;
	}
	return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One value for the run (all within tol); else an error naming device, key
 * and the distinct values seen. */
static int one_value(struct vals *v, double tol, const char *dev, const char *key, double *out, agipd_err *e)
{
	qsort(v->v, v->n, sizeof *v->v, cmp_dbl);
	if (v->v[v->n - 1] - v->v[0] <= tol) {
		*out = v->v[v->n / 2];   /* all equal, or the median of values agreeing within tol */
		if (v->n % 2 == 0)
			*out = (v->v[v->n / 2 - 1] + v->v[v->n / 2]) / 2;
		return 0;
	}
	char seen[512] = "";
	size_t pos = 0;
	int shown = 0;
	for (size_t i = 0; i < v->n && pos < sizeof seen - 32; i++) {
		if (i && v->v[i] == v->v[i - 1])
			continue;
		if (shown == 8) {
			pos += (size_t)snprintf(seen + pos, sizeof seen - pos, ", ...");
			break;
		}
		pos += (size_t)snprintf(seen + pos, sizeof seen - pos, "%s%.9g", shown ? ", " : "", v->v[i]);
		shown++;
	}
	return agipd_err_set(e, "control data: %s key %s changes during the run (values seen: %s)", dev, key, seen);
}

/* File paths of keys to Karabo names: "a/b" -> "a.b" (in place). */
static char *dots(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '/')
			*p = '.';
	return s;
}

static void set_cond(struct agipd_conditions *o, int i, double v, const char *src)
{
	o->known[i] = 1;
	o->value[i] = v;
	snprintf(o->source[i], sizeof o->source[i], "%s", src);
}

/* Smallest difference of distinct sorted pulseIds inside a train (0: none). */
static unsigned long long pulse_spacing(const struct agipd_raw *r)
{
	unsigned long long best = 0;
	size_t esz = H5Tget_size(r->pf_type[AGIPD_PF_PULSE]);
	uint64_t *p = malloc((size_t)(r->nframes ? r->nframes : 1) * (esz > 8 ? esz : 8));
	if (!p)
		return 0;
	memcpy(p, r->pf[AGIPD_PF_PULSE], (size_t)r->nframes * esz);
	if (H5Tconvert(r->pf_type[AGIPD_PF_PULSE], H5T_NATIVE_UINT64, (size_t)r->nframes, p, NULL, H5P_DEFAULT) < 0) {
		H5Eclear2(H5E_DEFAULT);
		free(p);
		return 0;
	}
	uint64_t *tmp = malloc((size_t)(r->nframes ? r->nframes : 1) * sizeof *tmp);
	for (size_t t = 0; tmp && t < r->ntrains; t++) {
		if (r->train_id[t] == 0 || r->first[t] >= r->nframes)
			continue;
		uint64_t n = r->count[t];
		if (n > r->nframes - r->first[t])
			n = r->nframes - r->first[t];
		memcpy(tmp, p + r->first[t], (size_t)n * sizeof *tmp);
		for (uint64_t i = 1; i < n; i++)   /* insertion sort: trains are short */
			for (uint64_t j = i; j > 0 && tmp[j - 1] > tmp[j]; j--) {
				uint64_t s = tmp[j];
				tmp[j] = tmp[j - 1];
				tmp[j - 1] = s;
			}
		for (uint64_t i = 1; i < n; i++)
			if (tmp[i] != tmp[i - 1] && (best == 0 || tmp[i] - tmp[i - 1] < best))
				best = tmp[i] - tmp[i - 1];
	}
	free(tmp);
	free(p);
	return best;
}

/* Sources name the Karabo key (dots), as the facility writes it (uses a
 * buffer `src` of the caller). */
#define SRC(d, k) (snprintf(src, sizeof src, "control:%s/%s", d, k), dots(src + strlen(d) + 9), src)

/* Memory cells and acquisition rate from the raw files (SPEC 6.1's
 * fallbacks): the largest kept cellId, the smallest pulse spacing. */
static void raw_fallbacks(const struct agipd_cond_input *in, struct agipd_conditions *o)
{
	unsigned maxc = 0;
	int any = 0;
	unsigned long long d = 0;
	for (int i = 0; i < in->nraw; i++) {
		struct agipd_raw r;
		agipd_err re;
		if (agipd_raw_open(&r, in->raw_files[i], in->raw_sources[i], in->params, &re) < 0)
			continue;   /* the file's own error comes with its correction */
		if (r.nkept) {
			any = 1;
			if (r.max_kept_cell > maxc)
				maxc = r.max_kept_cell;
		}
		unsigned long long s = pulse_spacing(&r);
		if (s && (d == 0 || s < d))
			d = s;
		agipd_raw_close(&r);
	}
	int mc = agipd_cond_mem_cells_fallback(maxc);
	if (!o->known[AGIPD_COND_MEM_CELLS] && any && mc > 0)
		set_cond(o, AGIPD_COND_MEM_CELLS, mc, "fallback");
	if (!o->known[AGIPD_COND_ACQ_RATE] && d)
		set_cond(o, AGIPD_COND_ACQ_RATE, agipd_cond_rate_from_spacing(d), "fallback");
}

/* The gain setting from the control data: its `gain` key, else setupr with
 * patternTypeIndex.  0 (set or not there), or -1 with e set. */
static int read_gain_setting(struct ctl *c, const char *dev, struct vals *v, struct vals *v2,
			     struct agipd_conditions *o, agipd_err *e)
{
	char src[640];
	double x;
	int f;
	if ((f = read_key(c, dev, "gain", v, e)) < 0)
		return -1;
	if (f) {
		if (one_value(v, 0, dev, "gain", &x, e) < 0)
			return -1;
		if (x != 0 && x != 1) {
			agipd_err_set(e, "control data: %s key gain: unreadable value %.9g (0 or 1 expected)", dev, x);
			return -1;
		}
		set_cond(o, AGIPD_COND_GAIN_SETTING, x, SRC(dev, "gain"));
	} else {
		if ((f = read_key(c, dev, "setupr", v, e)) < 0)
			return -1;
		if (f) {
			double s, pt;
			if (one_value(v, 0, dev, "setupr", &s, e) < 0)
				return -1;
			if ((f = read_key(c, dev, "patternTypeIndex", v2, e)) < 0)
				return -1;
			if (!f) {
				agipd_err_set(e, "control data: %s has setupr but no patternTypeIndex: no gain setting",
					      dev);
				return -1;
			}
			if (one_value(v2, 0, dev, "patternTypeIndex", &pt, e) < 0)
				return -1;
			int gs = agipd_cond_gain_setting_from_setupr((long)s, (long)pt);
			if (gs < 0 || s != floor(s) || pt != floor(pt)) {
				agipd_err_set(e, "control data: %s: setupr %.9g with patternTypeIndex %.9g gives no "
					      "gain setting", dev, s, pt);
				return -1;
			}
			set_cond(o, AGIPD_COND_GAIN_SETTING, gs, SRC(dev, "setupr"));
		}
	}
	return 0;
}

int agipd_conditions_resolve(const struct agipd_cond_input *in, struct agipd_conditions *o, agipd_err *e)
{
	struct ctl c;
	struct vals v = { 0 }, v2 = { 0 };
	char dev[256], hv[256], src[640], key[128];
	double x;
	int rc = -1, f;

	memset(o, 0, sizeof *o);
	for (int i = 0; i < AGIPD_NCOND; i++)
		if (in->given && in->given[i])
			set_cond(o, i, in->given_value[i], "command line");
	if (ctl_open(&c, in->raw_dir, in->run, in->karabo_da_control, e) < 0)
		return -1;
	snprintf(dev, sizeof dev, "%s/MDL/FPGA_COMP", in->karabo_id_control);
	size_t L = strlen(in->karabo_id_control);
	snprintf(hv, sizeof hv, "%.*s/PSC/HV", (int)(L ? L - 1 : 0), in->karabo_id_control);

	if (!o->known[AGIPD_COND_MEM_CELLS]) {
		if ((f = read_key(&c, dev, "bunchStructure/nPulses", &v, e)) < 0)
			goto out;
		if (f) {
			qsort(v.v, v.n, sizeof *v.v, cmp_dbl);
			x = v.v[v.n - 1];
			if (!(x >= 1 && x <= 100000 && x == floor(x))) {
				agipd_err_set(e, "control data: %s key bunchStructure/nPulses: unreadable value %.9g", dev, x);
				goto out;
			}
			set_cond(o, AGIPD_COND_MEM_CELLS, x, SRC(dev, "bunchStructure/nPulses"));
		}
	}
	if (!o->known[AGIPD_COND_ACQ_RATE]) {
		if ((f = read_key(&c, dev, "bunchStructure/repetitionRate", &v, e)) < 0)
			goto out;
		if (f) {
			if (one_value(&v, 0, dev, "bunchStructure/repetitionRate", &x, e) < 0)
				goto out;
			if (!isfinite(x) || x < 0) {
				agipd_err_set(e, "control data: %s key bunchStructure/repetitionRate: unreadable value %.9g",
					      dev, x);
				goto out;
			}
			set_cond(o, AGIPD_COND_ACQ_RATE, nearbyint(x * 10.0) / 10.0, SRC(dev, "bunchStructure/repetitionRate"));
		}
	}
	if (!o->known[AGIPD_COND_GAIN_SETTING] && read_gain_setting(&c, dev, &v, &v2, o, e) < 0)
		goto out;
	if (!o->known[AGIPD_COND_GAIN_MODE]) {
		if ((f = read_key(&c, dev, "gainModeIndex", &v, e)) < 0)
			goto out;
		if (f) {
			if (one_value(&v, 0, dev, "gainModeIndex", &x, e) < 0)
				goto out;
			if (!(x == 0 || x == 1 || x == 2 || x == 3)) {
				agipd_err_set(e, "control data: %s key gainModeIndex: unreadable value %.9g (0..3 expected)",
					      dev, x);
				goto out;
			}
			set_cond(o, AGIPD_COND_GAIN_MODE, x, SRC(dev, "gainModeIndex"));
		}
	}
	if (!o->known[AGIPD_COND_INTEG_TIME]) {
		if ((f = read_key(&c, dev, "integrationTime", &v, e)) < 0)
			goto out;
		if (f) {
			if (one_value(&v, 0, dev, "integrationTime", &x, e) < 0)
				goto out;
			set_cond(o, AGIPD_COND_INTEG_TIME, x, SRC(dev, "integrationTime"));
		} else if (c.n) {
			set_cond(o, AGIPD_COND_INTEG_TIME, 12, "fallback");
		}
	}
	if (!o->known[AGIPD_COND_BIAS]) {
		for (int m = 0; m < in->nmodules; m++) {
			snprintf(key, sizeof key, "channels/U%d/measurementSenseVoltage", in->modules[m]);
			if ((f = read_key(&c, hv, key, &v, e)) < 0)
				goto out;
			if (!f)
				continue;
			if (one_value(&v, 1.0, hv, key, &x, e) < 0)
				goto out;
			if (x > 0 && x < 1e6) {
				set_cond(o, AGIPD_COND_BIAS, (double)(long)x, SRC(hv, key));
				break;
			}
		}
	}
	/* An unknown gain mode is adaptive (SPEC 6.1). */
	if (!o->known[AGIPD_COND_GAIN_MODE])
		set_cond(o, AGIPD_COND_GAIN_MODE, 0, "fallback");
	/* Fallbacks from the raw data. */
	if (!o->known[AGIPD_COND_MEM_CELLS] || !o->known[AGIPD_COND_ACQ_RATE])
		raw_fallbacks(in, o);
	rc = 0;
out:
	free(v.v);
	free(v2.v);
	ctl_close(&c);
	return rc;
}
#undef SRC
