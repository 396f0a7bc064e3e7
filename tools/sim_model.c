/*
 * sim_model.c - the physics of agipd-simulate: a seeded detector model per
 * module, the frame plan of a raw file, and the frame generator.  Pure C: no
 * MPI, no HDF5 (see sim_write.c for the files).
 *
 * The model is built so that the correction of SPEC section 4 inverts it:
 * for a pixel with HG-equivalent signal S = photons * E * F (ADU),
 *   HG: A = Off0 + S
 *   MG: A = Off1 + (S - (bl - bh*ml/mh)) * mh/ml
 *   LG: A = Off2 + S * mh / (4.48 * ml)
 * plus noise; the digital value sits around a per-stage level with the
 * thresholds half way between the levels, with a bounded noise far smaller
 * than the margins, so thresholding reproduces the true stage exactly.
 *
 * Every value is a pure function of (seed, module, pixel, cell) for the
 * constants and of (seed, run, module, sequence, frame) for the data, so the
 * output is the same whatever the rank count or the batch sizes.
 */
#include "agipd_sim.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* splitmix64 finaliser: a good 64-bit mixing function. */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ull

static inline uint64_t hash2(uint64_t key, uint64_t a)
{
	return mix64(key ^ mix64(a * GOLDEN + 0x632be59bd9b4e019ull));
}

static inline uint64_t hash3(uint64_t key, uint64_t a, uint64_t b)
{
	return hash2(hash2(key, a), b);
}

/* Uniform in [0, 1) from the top 53 bits. */
static inline double u01(uint64_t h)
{
	return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* Approximately standard normal, bounded to +-2*sqrt(3): Irwin-Hall sum of
 * four 16-bit uniforms.  Bounded tails keep margins (digital levels) safe. */
static inline float zbound(uint64_t h)
{
	uint32_t s = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) +
		     (uint32_t)((h >> 32) & 0xffff) + (uint32_t)(h >> 48);
	/* mean 2 * 65535, sd 65536 / sqrt(3) */
	return ((float)s - 131070.0f) * (1.7320508f / 65536.0f);
}

/* xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
struct rng {
	uint64_t s[4];
};

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		seed += GOLDEN;
		r->s[i] = mix64(seed);
	}
}

/* ---- configuration ------------------------------------------------------ */

void agipd_sim_config_defaults(struct agipd_sim_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->karabo_id = AGIPD_DEFAULT_KARABO_ID;
	cfg->run = 1;
	for (int i = 0; i < 4; i++)
		cfg->modules[i] = i;
	cfg->n_modules = 4;
	cfg->sequences = 1;
	cfg->trains = 4;
	cfg->cells = 32;
	cfg->constants_cells = 32;
	cfg->seed = 1;
	cfg->photon_energy = 9.3;
	cfg->first_train_id = AGIPD_SIM_DEFAULT_FIRST_TRAIN;
	cfg->write_truth = 1;
	cfg->write_constants = 1;
	cfg->control_form = AGIPD_SIM_CONTROL_GAIN;
	cfg->karabo_id_control = AGIPD_SIM_DEFAULT_KARABO_ID_CONTROL;
	cfg->karabo_da_control = AGIPD_SIM_DEFAULT_KARABO_DA_CONTROL;
	cfg->acq_rate = AGIPD_SIM_DEFAULT_ACQ_RATE;
	cfg->pulse_step = 1;
	cfg->integration_time = AGIPD_SIM_DEFAULT_INTEGRATION_TIME;
	cfg->bias_voltage = AGIPD_SIM_DEFAULT_BIAS_VOLTAGE;
	cfg->pattern_type = AGIPD_SIM_DEFAULT_PATTERN_TYPE;
	cfg->control_change = -1;
	for (int i = 0; i < 4; i++)
		cfg->caldb_dims[i] = i;
}

int agipd_sim_parse_control_form(const char *s, int *form, char *err, size_t errlen)
{
	if (s && !strcmp(s, "gain"))
		*form = AGIPD_SIM_CONTROL_GAIN;
	else if (s && !strcmp(s, "setupr"))
		*form = AGIPD_SIM_CONTROL_SETUPR;
	else if (s && !strcmp(s, "none"))
		*form = AGIPD_SIM_CONTROL_NONE;
	else {
		set_err(err, errlen, "unknown control form '%s' (known: gain, setupr, none)",
			s ? s : "");
		return -1;
	}
	return 0;
}

static const char *const key_names[AGIPD_SIM_KEY_N] = {
	[AGIPD_SIM_KEY_GAIN_MODE] = "gainModeIndex", [AGIPD_SIM_KEY_GAIN] = "gain",
	[AGIPD_SIM_KEY_INTEGRATION] = "integrationTime", [AGIPD_SIM_KEY_RATE] = "repetitionRate",
	[AGIPD_SIM_KEY_NPULSES] = "nPulses", [AGIPD_SIM_KEY_BIAS] = "bias",
};

int agipd_sim_parse_control_key(const char *s, int *key, char *err, size_t errlen)
{
	for (int k = 0; k < AGIPD_SIM_KEY_N; k++) {
		if (s && !strcmp(s, key_names[k])) {
			*key = k;
			return 0;
		}
	}
	set_err(err, errlen,
		"unknown control key '%s' (known: gainModeIndex, gain, integrationTime, "
		"repetitionRate, nPulses, bias)",
		s ? s : "");
	return -1;
}

static const char *const axis_names[4] = { "fast_scan", "slow_scan", "cell", "gain" };

const char *agipd_sim_axis_name(int axis)
{
	return axis >= 0 && axis < 4 ? axis_names[axis] : "?";
}

int agipd_sim_parse_dims_order(const char *s, int dims[4], char *err, size_t errlen)
{
	int seen[4] = { 0 }, n = 0;
	const char *p = s;
	while (p && *p) {
		size_t len = strcspn(p, ",");
		int a;
		for (a = 0; a < 4; a++)
			if (strlen(axis_names[a]) == len && !strncmp(p, axis_names[a], len))
				break;
		if (a == 4 || seen[a] || n == 4)
			goto bad;
		seen[a] = 1;
		dims[n++] = a;
		p += len;
		if (*p == ',')
			p++;
	}
	if (n == 4)
		return 0;
bad:
	set_err(err, errlen,
		"bad axis order '%s' (want fast_scan, slow_scan, cell and gain, each once, "
		"comma-separated)",
		s ? s : "");
	return -1;
}

static int parse_int(const char *s, const char **end, long *out)
{
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (e == s || errno)
		return -1;
	*end = e;
	*out = v;
	return 0;
}

int agipd_sim_parse_modules(const char *list, int modules[AGIPD_MODULES], int *n_modules,
			    char *err, size_t errlen)
{
	int used[AGIPD_MODULES] = { 0 };
	const char *p = list;
	if (!list || !*list) {
		set_err(err, errlen, "empty module list");
		return -1;
	}
	while (*p) {
		long a, b;
		const char *e;
		if (parse_int(p, &e, &a) < 0)
			goto bad;
		b = a;
		p = e;
		if (*p == '-') {
			if (parse_int(p + 1, &e, &b) < 0)
				goto bad;
			p = e;
		}
		if (a < 0 || b >= AGIPD_MODULES || a > b)
			goto bad;
		for (long i = a; i <= b; i++)
			used[i] = 1;
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	*n_modules = 0;
	for (int i = 0; i < AGIPD_MODULES; i++)
		if (used[i])
			modules[(*n_modules)++] = i;
	return 0;
bad:
	set_err(err, errlen, "bad module list '%s' (want e.g. 0-3,7,9 with modules 0..%d)", list,
		AGIPD_MODULES - 1);
	return -1;
}

static const struct {
	const char *name;
	unsigned bit;
} edge_names[] = {
	{ "empty-train", AGIPD_SIM_EDGE_EMPTY_TRAIN },
	{ "zero-train", AGIPD_SIM_EDGE_ZERO_TRAIN },
	{ "cell-order", AGIPD_SIM_EDGE_CELL_ORDER },
	{ "nan-constants", AGIPD_SIM_EDGE_NAN_CONSTANTS },
	{ "uneven-trains", AGIPD_SIM_EDGE_UNEVEN_TRAINS },
	{ "all", AGIPD_SIM_EDGE_ALL },
	{ "none", 0 },
};

int agipd_sim_parse_edge_cases(const char *list, unsigned *edge_cases, char *err, size_t errlen)
{
	unsigned bits = 0;
	const char *p = list;
	while (p && *p) {
		size_t len = strcspn(p, ",");
		size_t i, n = sizeof edge_names / sizeof edge_names[0];
		for (i = 0; i < n; i++)
			if (strlen(edge_names[i].name) == len && !strncmp(p, edge_names[i].name, len))
				break;
		if (i == n) {
			set_err(err, errlen,
				"unknown edge case '%.*s' (known: empty-train, zero-train, cell-order, "
				"nan-constants, uneven-trains, all)",
				(int)len, p);
			return -1;
		}
		bits |= edge_names[i].bit;
		p += len;
		if (*p == ',')
			p++;
	}
	*edge_cases = bits;
	return 0;
}

int agipd_sim_config_check(const struct agipd_sim_config *cfg, char *err, size_t errlen)
{
	if (!cfg->out_folder || !*cfg->out_folder) {
		set_err(err, errlen, "no output folder (--out-folder)");
		return -1;
	}
	if (cfg->write_constants && (!cfg->constants_folder || !*cfg->constants_folder)) {
		set_err(err, errlen, "no constants folder");
		return -1;
	}
	if (!cfg->karabo_id || !*cfg->karabo_id || strlen(cfg->karabo_id) > 200) {
		set_err(err, errlen, "bad karabo id");
		return -1;
	}
	if (cfg->run < 0 || cfg->run > 9999) {
		set_err(err, errlen, "run %d out of range 0..9999", cfg->run);
		return -1;
	}
	if (cfg->n_modules < 1 || cfg->n_modules > AGIPD_MODULES) {
		set_err(err, errlen, "need 1..%d modules", AGIPD_MODULES);
		return -1;
	}
	if (cfg->sequences < 1 || cfg->sequences > 99999) {
		set_err(err, errlen, "sequences %d out of range 1..99999", cfg->sequences);
		return -1;
	}
	if (cfg->last_trains < 0 || cfg->last_trains > cfg->trains) {
		set_err(err, errlen, "last-trains %d out of range 0..trains (%d)", cfg->last_trains, cfg->trains);
		return -1;
	}
	if (cfg->trains < 1 || cfg->trains > 1000000) {
		set_err(err, errlen, "trains %d out of range 1..1000000", cfg->trains);
		return -1;
	}
	if (cfg->cells < 1 || cfg->cells > AGIPD_MAX_CELLS) {
		set_err(err, errlen, "cells %d out of range 1..%d", cfg->cells, AGIPD_MAX_CELLS);
		return -1;
	}
	if (cfg->constants_cells < 1 || cfg->constants_cells > AGIPD_MAX_CELLS) {
		set_err(err, errlen, "constants cells %d out of range 1..%d", cfg->constants_cells,
			AGIPD_MAX_CELLS);
		return -1;
	}
	if (!(cfg->photon_energy > 0.1 && cfg->photon_energy < 1000.0)) {
		set_err(err, errlen, "photon energy %g keV out of range 0.1..1000", cfg->photon_energy);
		return -1;
	}
	if (cfg->mem_cells < 0 || cfg->mem_cells > AGIPD_MAX_CELLS) {
		set_err(err, errlen, "memory cells %d out of range 1..%d", cfg->mem_cells,
			AGIPD_MAX_CELLS);
		return -1;
	}
	if (!(cfg->acq_rate > 0.0 && cfg->acq_rate <= 4.5)) {
		set_err(err, errlen, "acquisition rate %g MHz out of range (0, 4.5]", cfg->acq_rate);
		return -1;
	}
	if (cfg->pulse_step < 1 || cfg->pulse_step > 1000) {
		set_err(err, errlen, "pulse step %d out of range 1..1000", cfg->pulse_step);
		return -1;
	}
	if (cfg->gain_setting < 0 || cfg->gain_setting > 1) {
		set_err(err, errlen, "gain setting %d is not 0 or 1", cfg->gain_setting);
		return -1;
	}
	if (cfg->gain_mode < 0 || cfg->gain_mode > 3) {
		set_err(err, errlen, "gain mode %d out of range 0..3", cfg->gain_mode);
		return -1;
	}
	if (cfg->integration_time < 0) {
		set_err(err, errlen, "integration time %d is negative", cfg->integration_time);
		return -1;
	}
	if (!(cfg->bias_voltage >= 0.0 && cfg->bias_voltage < 1000.0)) {
		set_err(err, errlen, "bias voltage %g V out of range 0..1000", cfg->bias_voltage);
		return -1;
	}
	if (cfg->control_form != AGIPD_SIM_CONTROL_NONE) {
		const char *ids[2] = { cfg->karabo_id_control, cfg->karabo_da_control };
		for (int i = 0; i < 2; i++) {
			if (!ids[i] || strlen(ids[i]) < 2 || strlen(ids[i]) > 200 || strchr(ids[i], '/')) {
				set_err(err, errlen, "bad karabo %s control '%s'", i ? "da" : "id",
					ids[i] ? ids[i] : "");
				return -1;
			}
		}
	}
	if (cfg->first_train_id < 1 ||
	    cfg->first_train_id > UINT64_MAX / 2) {
		set_err(err, errlen, "first train id must be positive");
		return -1;
	}
	return 0;
}

/* ---- the module model --------------------------------------------------- */

/* Nominal values (the model is described in agipd_sim.h). */
static const float OFF_NOMINAL[3] = { 5000.0f, 5500.0f, 5800.0f };
static const float NOISE_NOMINAL[3] = { 5.0f, 4.0f, 3.5f };
static const float DLEV_NOMINAL[3] = { 4500.0f, 6500.0f, 8500.0f };
#define ML_NOMINAL 20.0f  /* HG pulse-capacitor slope, ADU per DAC step */
#define RATIO_NOMINAL 30.0f /* ml / mh */
#define BL_NOMINAL 0.0f
#define BH_NOMINAL 30.0f
#define DNOISE_HALF 30.0f /* digital noise: uniform, +-30 ADU (sd 17) */
#define ZTAB_BITS 12      /* analog noise: 4096 normal quantiles (|z| < 3.7) */
#define ZTAB_SIZE (1 << ZTAB_BITS)
#define JITTER_OFF 10.0f  /* per pixel-and-cell offset jitter, +-10 ADU */

#define POISSON_KMAX 160 /* inversion stops there (lam <= 30: p < 1e-60) */

/* Per-pixel flags: the public ones of agipd_sim.h plus internal ones. */
enum {
	PF_OUT_ML = AGIPD_SIM_PF_OUT_ML, /* stored ml is an outlier; true ml nominal */
	PF_OUT_MH = AGIPD_SIM_PF_OUT_MH,
	PF_OUT_FF = AGIPD_SIM_PF_OUT_FF,
	PF_NAN_OFFSET = AGIPD_SIM_PF_NAN_OFFSET,
	PF_INF_OFFSET = AGIPD_SIM_PF_INF_OFFSET,
	PF_NAN_THR = AGIPD_SIM_PF_NAN_THR,
	PF_NAN_ML = AGIPD_SIM_PF_NAN_ML,
	PF_NAN_BH = AGIPD_SIM_PF_NAN_BH,
	PF_NAN_FF = AGIPD_SIM_PF_NAN_FF,
	PF_PUBLIC = (1u << 9) - 1,
	PF_BAD_PC = 1u << 9,
	PF_BAD_FF = 1u << 10,
};

/* True per-pixel properties (cell dependence comes from struct cellp). */
struct pixp {
	float off[3];   /* pixel part of the offsets (with an ASIC term) */
	float noise[3];
	float ff;       /* true SlopesFF before the cell factor */
	float ml, mh;   /* true PC slopes before the cell factors */
	float rel;      /* ml / mh */
	float bl, bh;
	float sw1;      /* HG->MG switch, HG ADU */
	float dlev[3];  /* digital levels before the cell term */
	uint32_t flags;
};

/* Per-cell properties. */
struct cellp {
	float off[3];   /* additive */
	float noise;    /* factor */
	float ff;       /* factor */
	float ml, mh;   /* factors */
	float rel;      /* ml / mh factor */
	float dlev[3];  /* additive */
};

/* The per-pixel tables of the frame kernel, structure of arrays (the same
 * float values as struct pixp, so data and constants agree bit for bit). */
struct ktab {
	float *off;   /* [3][AGIPD_PIXELS] */
	float *noise; /* [3][AGIPD_PIXELS] */
	float *dlev;  /* [3][AGIPD_PIXELS] */
	float *ff, *rel, *irel, *bl, *bh, *sw1, *sw2; /* [AGIPD_PIXELS] */
};
#define KTAB_ARRAYS 16

struct agipd_sim_module {
	const struct agipd_sim_config *cfg;
	int module;
	uint64_t key_const;  /* constants: (seed, module) */
	uint64_t key_run;    /* data: (seed, run, module) */
	int fixed_stage;     /* -1 adaptive gain, else the stage of every pixel */
	struct pixp *pix;    /* AGIPD_PIXELS */
	struct cellp cell[AGIPD_MAX_CELLS];
	float *lam0;         /* static photon pattern (rings + background) */
	float inv_k[POISSON_KMAX + 1]; /* 1/k for the Poisson sampler */
	float *jit;          /* [3][AGIPD_PIXELS] offset jitter, +-JITTER_OFF */
	float *ztab;         /* [ZTAB_SIZE] standard normal quantiles */
	float *kbuf;         /* storage of kt */
	struct ktab kt;
	/* Scratch of agipd_sim_generate, kept between calls (no page faults
	 * per batch); this is why a model serves one caller at a time. */
	struct {
		size_t maps, frames; /* capacities */
		float *lam;
		uint32_t *cdf;
		float *tmp;
		struct train_map *map;
		struct rng *rngs;
	} scratch;
};

int agipd_sim_module_number(const struct agipd_sim_module *m)
{
	return m->module;
}

/* Lab position of a module pixel (pixels from the beam), a rough AGIPD1M
 * layout: four quadrants of four modules around a central hole. */
static void lab_xy(int module, int row, int col, float *x, float *y)
{
	int q = module / 4, k = module % 4;
	float sx = q < 2 ? -1.0f : 1.0f;
	float sy = (q == 0 || q == 3) ? 1.0f : -1.0f;
	*x = sx * (20.0f + (float)row);
	*y = sy * (20.0f + (float)k * 158.0f + (float)col);
}

/* Pick `count` distinct pixels without flags by hashing, set `flag`. */
static void sprinkle(struct agipd_sim_module *m, uint64_t key, int count, uint32_t flag)
{
	uint64_t i = 0;
	for (int got = 0; got < count; i++) {
		int p = (int)(hash2(key, i) % AGIPD_PIXELS);
		if (m->pix[p].flags & (PF_OUT_ML | PF_OUT_MH | PF_OUT_FF | PF_NAN_OFFSET |
				       PF_INF_OFFSET | PF_NAN_THR | PF_NAN_ML | PF_NAN_BH |
				       PF_NAN_FF))
			continue;
		m->pix[p].flags |= flag;
		got++;
	}
}

static void build_static_pattern(struct agipd_sim_module *m)
{
	static const float ring_r[6] = { 140, 230, 320, 430, 540, 690 };
	static const float ring_w[6] = { 2.5f, 3.0f, 3.0f, 3.5f, 4.0f, 4.5f };
	static const float ring_a[6] = { 4.0f, 2.5f, 3.0f, 1.5f, 2.0f, 1.0f };
	float phase[6];
	uint64_t key = hash2(m->cfg->seed ^ 0x5157a71cull, 0); /* same for all modules */
	for (int k = 0; k < 6; k++)
		phase[k] = (float)(u01(hash2(key, (uint64_t)k)) * 6.283185307179586);
	for (int row = 0; row < AGIPD_ROWS; row++) {
		for (int col = 0; col < AGIPD_COLS; col++) {
			float x, y;
			lab_xy(m->module, row, col, &x, &y);
			float r = sqrtf(x * x + y * y);
			float phi = atan2f(y, x);
			float lam = 0.05f + 1.5f * expf(-r / 180.0f);
			for (int k = 0; k < 6; k++) {
				float d = (r - ring_r[k]) / ring_w[k];
				if (fabsf(d) < 6.0f)
					lam += ring_a[k] * (1.0f + 0.3f * cosf(2.0f * phi + phase[k])) *
					       expf(-0.5f * d * d);
			}
			m->lam0[row * AGIPD_COLS + col] = lam;
		}
	}
}

/* Quantile of the standard normal distribution, 0 < q < 1 (P. J. Acklam's
 * rational approximation, relative error below 1.2e-9). */
static double inv_normal(double q)
{
	static const double a[6] = { -3.969683028665376e+01, 2.209460984245205e+02,
				     -2.759285104469687e+02, 1.383577518672690e+02,
				     -3.066479806614716e+01, 2.506628277459239e+00 };
	static const double b[5] = { -5.447609879822406e+01, 1.615858368580409e+02,
				     -1.556989798598866e+02, 6.680131188771972e+01,
				     -1.328068155288572e+01 };
	static const double c[6] = { -7.784894002430293e-03, -3.223964580411365e-01,
				     -2.400758277161838e+00, -2.549732539343734e+00,
				     4.374664141464968e+00, 2.938163982698783e+00 };
	static const double d[4] = { 7.784695709041462e-03, 3.224671290700398e-01,
				     2.445134137142996e+00, 3.754408661907416e+00 };
	double lo = 0.02425, r, t;
	if (q < lo) {
		t = sqrt(-2.0 * log(q));
		return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
		       ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1.0);
	}
	if (q > 1.0 - lo) {
		t = sqrt(-2.0 * log(1.0 - q));
		return -(((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
		       ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1.0);
	}
	t = q - 0.5;
	r = t * t;
	return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * t /
	       (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

int agipd_sim_module_new(const struct agipd_sim_config *cfg, int module,
			 struct agipd_sim_module **out, char *err, size_t errlen)
{
	struct agipd_sim_module *m = calloc(1, sizeof *m);
	if (!m)
		goto oom;
	m->pix = calloc(AGIPD_PIXELS, sizeof *m->pix);
	m->lam0 = malloc(AGIPD_PIXELS * sizeof *m->lam0);
	m->kbuf = malloc((size_t)KTAB_ARRAYS * AGIPD_PIXELS * sizeof *m->kbuf);
	m->jit = malloc(3 * AGIPD_PIXELS * sizeof *m->jit);
	m->ztab = malloc(ZTAB_SIZE * sizeof *m->ztab);
	if (!m->pix || !m->lam0 || !m->kbuf || !m->jit || !m->ztab)
		goto oom;
	m->cfg = cfg;
	m->module = module;
	m->fixed_stage = cfg->gain_mode >= 1 && cfg->gain_mode <= 3 ? cfg->gain_mode - 1 : -1;
	m->key_const = hash3(cfg->seed, 0xc0475a475ull, (uint64_t)module);
	m->key_run = hash3(hash2(cfg->seed, 0xda7aull), (uint64_t)cfg->run, (uint64_t)module);

	/* ASIC terms of the offsets. */
	float asic_off[AGIPD_ASICS][3];
	for (int a = 0; a < AGIPD_ASICS; a++)
		for (int g = 0; g < 3; g++)
			asic_off[a][g] = 60.0f * zbound(hash3(m->key_const, 1, (uint64_t)(a * 3 + g)));

	for (int p = 0; p < AGIPD_PIXELS; p++) {
		struct pixp *x = &m->pix[p];
		int row = p / AGIPD_COLS, col = p % AGIPD_COLS;
		int asic = row / AGIPD_ASIC_SIZE + 8 * (col / AGIPD_ASIC_SIZE);
		uint64_t k = hash3(m->key_const, 2, (uint64_t)p);
		for (int g = 0; g < 3; g++) {
			x->off[g] = OFF_NOMINAL[g] * (1.0f + 0.02f * zbound(hash2(k, 10 + g))) +
				    asic_off[asic][g];
			x->noise[g] = NOISE_NOMINAL[g] * (1.0f + 0.08f * zbound(hash2(k, 20 + g)));
			x->dlev[g] = DLEV_NOMINAL[g] + 80.0f * zbound(hash2(k, 30 + g));
		}
		x->ff = AGIPD_SIM_FF_NOMINAL * (1.0f + 0.05f * zbound(hash2(k, 40)));
		x->ml = ML_NOMINAL * (1.0f + 0.015f * zbound(hash2(k, 41)));
		float ratio = RATIO_NOMINAL * (1.0f + 0.03f * zbound(hash2(k, 42)));
		x->mh = x->ml / ratio;
		x->bl = BL_NOMINAL + 20.0f * zbound(hash2(k, 43));
		x->bh = BH_NOMINAL + 8.0f * zbound(hash2(k, 44));
		x->sw1 = AGIPD_SIM_SWITCH_HG * (1.0f + 0.03f * zbound(hash2(k, 45)));
		double u = u01(hash2(k, 46));
		if (u < 0.0005)
			x->flags |= PF_BAD_PC;
		else if (u < 0.001)
			x->flags |= PF_BAD_FF;
	}

	/* Outliers in the stored slopes (always): the stored value is off, the
	 * detector itself is nominal, so the sanitised correction is right. */
	sprinkle(m, hash2(m->key_const, 100), 24, PF_OUT_ML);
	sprinkle(m, hash2(m->key_const, 101), 24, PF_OUT_MH);
	sprinkle(m, hash2(m->key_const, 102), 24, PF_OUT_FF);
	if (cfg->edge_cases & AGIPD_SIM_EDGE_NAN_CONSTANTS) {
		sprinkle(m, hash2(m->key_const, 110), 4, PF_NAN_OFFSET);
		sprinkle(m, hash2(m->key_const, 111), 1, PF_INF_OFFSET);
		sprinkle(m, hash2(m->key_const, 112), 4, PF_NAN_THR);
		sprinkle(m, hash2(m->key_const, 113), 4, PF_NAN_ML);
		sprinkle(m, hash2(m->key_const, 114), 4, PF_NAN_BH);
		sprinkle(m, hash2(m->key_const, 115), 4, PF_NAN_FF);
	}
	for (int p = 0; p < AGIPD_PIXELS; p++) {
		struct pixp *x = &m->pix[p];
		if (x->flags & (PF_OUT_ML | PF_NAN_ML))
			x->ml = ML_NOMINAL;
		if (x->flags & PF_OUT_MH)
			x->mh = ML_NOMINAL / RATIO_NOMINAL;
		if (x->flags & PF_NAN_BH)
			x->bh = BH_NOMINAL;
		if (x->flags & (PF_OUT_FF | PF_NAN_FF))
			x->ff = AGIPD_SIM_FF_NOMINAL;
		x->rel = x->ml / x->mh;
	}
	float *kb = m->kbuf;
	m->kt.off = kb;
	m->kt.noise = kb + 3 * AGIPD_PIXELS;
	m->kt.dlev = kb + 6 * AGIPD_PIXELS;
	m->kt.ff = kb + 9 * AGIPD_PIXELS;
	m->kt.rel = kb + 10 * AGIPD_PIXELS;
	m->kt.irel = kb + 11 * AGIPD_PIXELS;
	m->kt.bl = kb + 12 * AGIPD_PIXELS;
	m->kt.bh = kb + 13 * AGIPD_PIXELS;
	m->kt.sw1 = kb + 14 * AGIPD_PIXELS;
	m->kt.sw2 = kb + 15 * AGIPD_PIXELS;
	for (int p = 0; p < AGIPD_PIXELS; p++) {
		const struct pixp *x = &m->pix[p];
		for (int g = 0; g < 3; g++) {
			m->kt.off[g * AGIPD_PIXELS + p] = x->off[g];
			m->kt.noise[g * AGIPD_PIXELS + p] = x->noise[g];
			m->kt.dlev[g * AGIPD_PIXELS + p] = x->dlev[g];
		}
		m->kt.ff[p] = x->ff;
		m->kt.rel[p] = x->rel;
		m->kt.irel[p] = x->mh / x->ml;
		m->kt.bl[p] = x->bl;
		m->kt.bh[p] = x->bh;
		m->kt.sw1[p] = x->sw1;
		m->kt.sw2[p] = x->sw1 * AGIPD_SIM_SWITCH_MG_FACTOR;
	}

	for (int c = 0; c < AGIPD_MAX_CELLS; c++) {
		struct cellp *y = &m->cell[c];
		uint64_t k = hash3(m->key_const, 3, (uint64_t)c);
		for (int g = 0; g < 3; g++) {
			y->off[g] = 60.0f * zbound(hash2(k, 10 + g));
			y->dlev[g] = 15.0f * zbound(hash2(k, 30 + g));
		}
		y->noise = 1.0f + 0.03f * zbound(hash2(k, 20));
		y->ff = 1.0f + 0.003f * zbound(hash2(k, 40));
		y->ml = 1.0f + 0.003f * zbound(hash2(k, 41));
		y->mh = 1.0f + 0.003f * zbound(hash2(k, 42));
		y->rel = y->ml / y->mh;
	}

	for (int i = 1; i <= POISSON_KMAX; i++)
		m->inv_k[i] = 1.0f / (float)i;
	for (int i = 0; i < 3 * AGIPD_PIXELS; i++)
		m->jit[i] = JITTER_OFF * (float)(2.0 * u01(hash3(m->key_const, 4, (uint64_t)i)) - 1.0);
	for (int i = 0; i < ZTAB_SIZE; i++)
		m->ztab[i] = (float)inv_normal((i + 0.5) / ZTAB_SIZE);
	build_static_pattern(m);
	*out = m;
	return 0;
oom:
	agipd_sim_module_free(m);
	set_err(err, errlen, "module %d: out of memory for the detector model", module);
	return -1;
}

size_t agipd_sim_special_pixels(const struct agipd_sim_module *m, int32_t *out)
{
	size_t n = 0;
	for (int p = 0; p < AGIPD_PIXELS; p++) {
		uint32_t f = m->pix[p].flags & PF_PUBLIC;
		if (!f)
			continue;
		if (out) {
			out[3 * n] = p / AGIPD_COLS;
			out[3 * n + 1] = p % AGIPD_COLS;
			out[3 * n + 2] = (int32_t)f;
		}
		n++;
	}
	return n;
}

void agipd_sim_module_free(struct agipd_sim_module *m)
{
	if (!m)
		return;
	free(m->pix);
	free(m->lam0);
	free(m->kbuf);
	free(m->jit);
	free(m->ztab);
	free(m->scratch.lam);
	free(m->scratch.cdf);
	free(m->scratch.tmp);
	free(m->scratch.map);
	free(m->scratch.rngs);
	free(m);
}

/* Hash of a pixel and cell (bad-pixel flags of the constants). */
static inline uint64_t pc_hash(uint64_t key_const, int p, int c)
{
	return mix64(key_const + ((uint64_t)p * AGIPD_MAX_CELLS + (uint64_t)c) * GOLDEN);
}

/* Offset jitter per pixel and cell: cell c reads the module's jitter table
 * shifted by c * JITTER_STRIDE (odd, so every cell sees another pattern). */
#define JITTER_STRIDE 40503u
static inline size_t jitter_index(int p, int c)
{
	return ((unsigned)p + (unsigned)c * JITTER_STRIDE) & (AGIPD_PIXELS - 1);
}

/* The true offset, identical in the constants and in the data. */
static inline float true_offset(const struct agipd_sim_module *m, int p, int c, int g)
{
	float o = m->pix[p].off[g] + m->cell[c].off[g];
	return o + m->jit[(size_t)g * AGIPD_PIXELS + jitter_index(p, c)];
}

static inline float true_dlev(const struct agipd_sim_module *m, int p, int c, int g)
{
	return m->pix[p].dlev[g] + m->cell[c].dlev[g];
}

void agipd_sim_constants_at(const struct agipd_sim_module *m, int p, int c,
			    struct agipd_sim_constants *o)
{
	const struct pixp *x = &m->pix[p];
	const struct cellp *y = &m->cell[c];
	uint64_t h2 = pc_hash(m->key_const, p, c);
	const float nan = NAN;

	float d[3];
	for (int g = 0; g < 3; g++) {
		d[g] = true_dlev(m, p, c, g);
		o->offset[g] = true_offset(m, p, c, g);
		o->noise[g] = x->noise[g] * y->noise;
	}
	o->thresholds[0] = 0.5f * (d[0] + d[1]);
	o->thresholds[1] = 0.5f * (d[1] + d[2]);
	o->thresholds[2] = d[0];
	o->thresholds[3] = d[1];
	o->thresholds[4] = d[2];

	float ml = x->ml * y->ml, mh = x->mh * y->mh;
	if (x->flags & PF_OUT_ML)
		ml *= 0.5f;
	if (x->flags & PF_OUT_MH)
		mh *= 1.6f;
	o->slopes_pc[0] = ml;
	o->slopes_pc[1] = x->bl;
	o->slopes_pc[2] = 0.02f * ml;        /* deviation of the HG fit */
	o->slopes_pc[3] = mh;
	o->slopes_pc[4] = x->bh;
	o->slopes_pc[5] = 0.02f * mh;        /* deviation of the MG fit */
	o->slopes_pc[6] = 0.0f;              /* unused fit parameters */
	o->slopes_pc[7] = 1.0f;
	o->slopes_pc[8] = 0.0f;
	o->slopes_pc[9] = 0.0f;
	float ff = x->ff * y->ff;
	if (x->flags & PF_OUT_FF)
		ff *= (p & 1) ? 1.5f : 0.55f;
	o->slopes_ff = ff;

	/* Bad pixels: noisy pixels, some offsets out of range per cell. */
	uint32_t all = 0;
	if (u01(h2) < 0.002)
		all |= AGIPD_BP_OFFSET_OUT_OF_THRESHOLD;
	for (int g = 0; g < 3; g++) {
		o->bp_dark[g] = all;
		if (x->noise[g] > 1.2f * NOISE_NOMINAL[g])
			o->bp_dark[g] |= AGIPD_BP_NOISE_OUT_OF_THRESHOLD;
	}
	o->bp_pc = 0;
	if (x->flags & PF_BAD_PC)
		o->bp_pc |= AGIPD_BP_CI_EVAL_ERROR;
	if (x->flags & (PF_OUT_ML | PF_OUT_MH))
		o->bp_pc |= AGIPD_BP_CI_GAIN_OF_OF_THRESHOLD;
	o->bp_ff = 0;
	if (x->flags & PF_BAD_FF)
		o->bp_ff |= AGIPD_BP_FF_GAIN_EVAL_ERROR;
	if (x->flags & PF_OUT_FF)
		o->bp_ff |= AGIPD_BP_FF_GAIN_DEVIATION;

	/* Edge case nan-constants. */
	if (x->flags & PF_NAN_OFFSET) {
		for (int g = 0; g < 3; g++) {
			o->offset[g] = nan;
			o->bp_dark[g] |= AGIPD_BP_OFFSET_NOISE_EVAL_ERROR;
		}
	}
	if (x->flags & PF_INF_OFFSET)
		o->offset[0] = INFINITY;
	if (x->flags & PF_NAN_THR)
		o->thresholds[0] = o->thresholds[1] = nan;
	if (x->flags & PF_NAN_ML)
		o->slopes_pc[0] = nan;
	if (x->flags & PF_NAN_BH)
		o->slopes_pc[4] = nan;
	if (x->flags & PF_NAN_FF)
		o->slopes_ff = nan;
}

/* ---- the file plan ------------------------------------------------------ */

void agipd_sim_plan_free(struct agipd_sim_plan *pl)
{
	if (!pl)
		return;
	free(pl->train_id);
	free(pl->timestamp);
	free(pl->flag);
	free(pl->first);
	free(pl->count);
	free(pl->slot);
	free(pl->cell_id);
	free(pl->pulse_id);
	free(pl->frame_train_id);
	free(pl->frame_entry);
	free(pl);
}


int agipd_sim_plan_new(const struct agipd_sim_config *cfg, int module, int sequence,
		       struct agipd_sim_plan **out, char *err, size_t errlen)
{
	struct agipd_sim_plan *pl = calloc(1, sizeof *pl);
	size_t T = (size_t)(sequence == cfg->sequences - 1 && cfg->last_trains > 0 ? cfg->last_trains : cfg->trains);
	size_t n_pad = 0;
	unsigned ec = cfg->edge_cases;
	int *n_t = NULL;
	if (!pl)
		goto oom;
	pl->module = module;
	pl->sequence = sequence;
	if (ec & AGIPD_SIM_EDGE_ZERO_TRAIN)
		n_pad = 2;
	pl->n_trains = T;
	pl->n_entries = T + n_pad;
	size_t E = pl->n_entries;
	pl->train_id = calloc(E, sizeof *pl->train_id);
	pl->timestamp = calloc(E, sizeof *pl->timestamp);
	pl->flag = calloc(E, sizeof *pl->flag);
	pl->first = calloc(E, sizeof *pl->first);
	pl->count = calloc(E, sizeof *pl->count);
	pl->slot = calloc(E, sizeof *pl->slot);
	n_t = calloc(T, sizeof *n_t);
	if (!pl->train_id || !pl->timestamp || !pl->flag || !pl->first || !pl->count ||
	    !pl->slot || !n_t)
		goto oom;

	/* Frames per train. */
	/* the zero train sits between valid trains when there are enough */
	size_t t_empty = T >= 2 ? 1 : 0, t_zero = T >= 4 ? T / 2 : (T == 3 ? 2 : 0);
	size_t N = 0;
	for (size_t t = 0; t < T; t++) {
		int n = cfg->cells;
		if ((ec & AGIPD_SIM_EDGE_UNEVEN_TRAINS) && t % 3 != 0) {
			int half = cfg->cells / 2 > 0 ? cfg->cells / 2 : 1;
			n = cfg->cells - 1 - (int)((t * 7) % (size_t)half);
			n = n > 0 ? n : 1;
		}
		if ((ec & AGIPD_SIM_EDGE_EMPTY_TRAIN) && t == t_empty)
			n = 0;
		n_t[t] = n;
		N += (size_t)n;
	}
	pl->n_frames = N;
	pl->cell_id = malloc((N ? N : 1) * sizeof *pl->cell_id);
	pl->pulse_id = malloc((N ? N : 1) * sizeof *pl->pulse_id);
	pl->frame_train_id = malloc((N ? N : 1) * sizeof *pl->frame_train_id);
	pl->frame_entry = malloc((N ? N : 1) * sizeof *pl->frame_entry);
	if (!pl->cell_id || !pl->pulse_id || !pl->frame_train_id || !pl->frame_entry)
		goto oom;

	size_t f = 0;
	for (size_t t = 0; t < T; t++) {
		uint64_t slot = (uint64_t)sequence * (uint64_t)cfg->trains + t;
		uint64_t tid = cfg->first_train_id + slot;
		int zero = (ec & AGIPD_SIM_EDGE_ZERO_TRAIN) && t == t_zero;
		pl->slot[t] = (int64_t)slot;
		pl->train_id[t] = zero ? 0 : tid;
		pl->timestamp[t] = AGIPD_SIM_TIMESTAMP_BASE_NS + tid * 100000000ull;
		pl->flag[t] = zero ? 0 : 1;
		pl->first[t] = f;
		pl->count[t] = (uint64_t)n_t[t];
		int n = n_t[t];
		uint16_t *cid = pl->cell_id + f;
		for (int i = 0; i < n; i++)
			cid[i] = (uint16_t)i;
		if ((ec & AGIPD_SIM_EDGE_CELL_ORDER) && n > 1) {
			if (t % 2 == 0) {
				for (int i = 0; i < n; i++)
					cid[i] = (uint16_t)(n - 1 - i);
			} else {
				uint64_t k = hash3(cfg->seed ^ 0xce11ull, slot, (uint64_t)module);
				for (int i = n - 1; i > 0; i--) {
					int j = (int)(hash2(k, (uint64_t)i) % (uint64_t)(i + 1));
					uint16_t tmp = cid[i];
					cid[i] = cid[j];
					cid[j] = tmp;
				}
				if (cid[0] == 0 && cid[n - 1] == n - 1) { /* make sure it's out of order */
					uint16_t tmp = cid[0];
					cid[0] = cid[n - 1];
					cid[n - 1] = tmp;
				}
			}
		}
		for (int i = 0; i < n; i++) {
			pl->pulse_id[f + (size_t)i] = (uint64_t)i * (uint64_t)cfg->pulse_step;
			pl->frame_train_id[f + (size_t)i] = pl->train_id[t];
			pl->frame_entry[f + (size_t)i] = (uint32_t)t;
		}
		f += (size_t)n;
	}
	for (size_t e = T; e < E; e++) {
		pl->slot[e] = -1;
		pl->first[e] = N;
	}
	free(n_t);
	*out = pl;
	return 0;
oom:
	free(n_t);
	agipd_sim_plan_free(pl);
	set_err(err, errlen, "module %d sequence %d: out of memory for the frame plan", module,
		sequence);
	return -1;
}

/* ---- frame generation --------------------------------------------------- */

static inline uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

/* Photon rates of one train: lam per pixel, and cdf[k * AGIPD_PIXELS + p] =
 * P(X <= k) * 2^32 (saturated) for the branchless sampler (k-major, so that
 * the comparisons vectorise across pixels).  Pixels with lam >
 * POISSON_INV_MAX have cdf 0 everywhere and go the slow way. */
struct train_map {
	float *lam;
	uint32_t *cdf;
	float *tmp; /* 2 * AGIPD_PIXELS of scratch */
};

#define POISSON_INV_MAX 30.0f
#define CDF_K 8

/* The CDF steps of the photon sampler, in loops over pixels that
 * vectorise (restrict parameters: GCC honours those best).  exp in float is
 * ample: floats near 2^32 are 256 apart, the thresholds are capped at
 * 2^32 - 256, and the comparisons are with 32-bit uniforms. */
static void cdf_rows(const float *restrict lam, float *restrict pk, float *restrict acc,
		     uint32_t *restrict cdf)
{
	const int32_t cap = (int32_t)fbits(4294967040.0f), lmax = (int32_t)fbits(POISSON_INV_MAX);
	for (int p = 0; p < AGIPD_PIXELS; p++)
		pk[p] = acc[p] = expf(-(lam[p] < POISSON_INV_MAX ? lam[p] : POISSON_INV_MAX));
	for (int j = 0; j < CDF_K; j++) {
		uint32_t *restrict row = cdf + (size_t)j * AGIPD_PIXELS;
		const float inv = 1.0f / (float)(j + 1);
		for (int p = 0; p < AGIPD_PIXELS; p++) {
			/* all values >= 0: clamp and compare their bit patterns as
			 * integers (float conditionals would stop the vectoriser) */
			union {
				float f;
				int32_t i;
			} v = { .f = acc[p] * 4294967296.0f }, l = { .f = lam[p] };
			v.i = v.i < cap ? v.i : cap;
			/* float -> uint32 through int32 (what SSE2 has) */
			uint32_t t = (uint32_t)(int32_t)(v.f - 2147483648.0f) ^ 0x80000000u;
			row[p] = t & -(uint32_t)(l.i <= lmax);
			pk[p] *= lam[p] * inv;
			acc[p] += pk[p];
		}
	}
}

static void build_train_map(const struct agipd_sim_module *m, int64_t slot,
			    const struct train_map *map)
{
	uint64_t k = hash2(m->key_run, (uint64_t)slot);
	float scale = 1.0f + 0.1f * zbound(hash2(k, 1));
	float *lam = map->lam;
	for (int p = 0; p < AGIPD_PIXELS; p++)
		lam[p] = m->lam0[p] * scale;
	/* Bragg spots: 3..8 Gaussian spots, peaks log-uniform in 20..20000. */
	int n_spots = 3 + (int)(hash2(k, 2) % 6);
	for (int s = 0; s < n_spots; s++) {
		uint64_t h = hash3(k, 3, (uint64_t)s);
		float r0 = 4.0f + (float)(u01(hash2(h, 0)) * (AGIPD_ROWS - 8));
		float c0 = 4.0f + (float)(u01(hash2(h, 1)) * (AGIPD_COLS - 8));
		float sigma = 0.7f + 0.8f * (float)u01(hash2(h, 2));
		float peak = 20.0f * expf((float)u01(hash2(h, 3)) * 6.9077553f);
		int rad = (int)ceilf(4.0f * sigma);
		for (int r = (int)r0 - rad; r <= (int)r0 + rad + 1; r++) {
			if (r < 0 || r >= AGIPD_ROWS)
				continue;
			for (int c = (int)c0 - rad; c <= (int)c0 + rad + 1; c++) {
				if (c < 0 || c >= AGIPD_COLS)
					continue;
				float dr = ((float)r - r0) / sigma, dc = ((float)c - c0) / sigma;
				lam[r * AGIPD_COLS + c] += peak * expf(-0.5f * (dr * dr + dc * dc));
			}
		}
	}
	cdf_rows(lam, map->tmp, map->tmp + AGIPD_PIXELS, map->cdf);
}

/* The rare cases: k >= CDF_K by inversion, or lam > POISSON_INV_MAX by a
 * rounded normal.  u is the same 32-bit uniform the fast path compared; the
 * normal deviate comes from a hash of the pixel's draw r (no generator state
 * here, so the caller keeps it in registers). */
static uint32_t poisson_slow(const struct agipd_sim_module *m, float lamf, uint32_t u32,
			     uint64_t r)
{
	if (lamf > POISSON_INV_MAX) {
		float v = lamf + sqrtf(lamf) * m->ztab[mix64(r) >> (64 - ZTAB_BITS)] + 0.5f;
		return v > 0.0f ? (uint32_t)v : 0;
	}
	double l = lamf, u = (double)u32 * (1.0 / 4294967296.0);
	double p = exp(-l), cdf = p;
	uint32_t k = 0;
	while (u >= cdf && k < POISSON_KMAX) {
		k++;
		p *= l * (double)m->inv_k[k];
		cdf += p;
	}
	return k < CDF_K ? CDF_K : k; /* rounding: never below the fast path's verdict */
}

/* Round and clamp into uint16; |v| < 2^31 here (no NaN), so the integer
 * clamp is exact and compiles to conditional moves. */
static inline uint16_t to_u16(float v)
{
	int32_t i = (int32_t)(v + 0.5f);
	i = i < 0 ? 0 : i;
	i = i > 65535 ? 65535 : i;
	return (uint16_t)i;
}

#define PIXEL_BLOCK 512

/* Generate pixels [p0, p0 + PIXEL_BLOCK) of one frame in cell c, in
 * passes that keep the common case cheap: the random draws (scalar: the
 * generator is sequential), the photon counts (vectorised comparisons with
 * the cumulative distribution), the high-gain response (vectorised), and a
 * scalar fix-up for the few pixels in medium or low gain or with many
 * photons. */
static void frame_block(const struct agipd_sim_module *m, int c, const struct train_map *map,
			struct rng *rng, int p0, uint16_t *restrict ana, uint16_t *restrict dig,
			float *restrict photons, uint8_t *restrict gain)
{
	uint32_t ub[PIXEL_BLOCK], lb[PIXEL_BLOCK], kk[PIXEL_BLOCK];
	float kph[PIXEL_BLOCK], zn[PIXEL_BLOCK];
	const float *restrict ztab = m->ztab;

	/* Draws: one per pixel, 32 bits for the photons, 12 for the analog
	 * noise, 16 for the digital noise. */
	struct rng st = *rng;
	for (int i = 0; i < PIXEL_BLOCK; i++) {
		uint64_t r = rng_next(&st);
		ub[i] = (uint32_t)(r >> 32);
		lb[i] = (uint32_t)r;
		zn[i] = ztab[r & (ZTAB_SIZE - 1)];
	}
	*rng = st;

	/* Photons: k = number of CDF steps below u, for k < CDF_K. */
	const uint32_t *restrict cdf = map->cdf + p0;
	uint32_t slow = 0;
	for (int i = 0; i < PIXEL_BLOCK; i++) {
		uint32_t k = 0;
		for (int j = 0; j < CDF_K; j++)
			k += ub[i] >= cdf[(size_t)j * AGIPD_PIXELS + (size_t)i];
		kk[i] = k;
		slow |= k == CDF_K;
	}
	if (slow)
		for (int i = 0; i < PIXEL_BLOCK; i++)
			if (kk[i] == CDF_K)
				kk[i] = poisson_slow(m, map->lam[p0 + i], ub[i],
						     ((uint64_t)ub[i] << 32) | lb[i]);
	for (int i = 0; i < PIXEL_BLOCK; i++)
		kph[i] = (float)kk[i];

	/* High gain everywhere, noting whether any pixel switched. */
	const struct cellp *y = &m->cell[c];
	const float *restrict off0 = m->kt.off + p0, *restrict no0 = m->kt.noise + p0;
	const float *restrict dl0 = m->kt.dlev + p0, *restrict t_ff = m->kt.ff + p0;
	const float *restrict t_sw1 = m->kt.sw1 + p0;
	/* The jitter table, shifted for this cell: contiguous unless the block
	 * wraps around the end of the table. */
	size_t j0 = jitter_index(p0, c);
	const float *jt[3] = { m->jit + j0, m->jit + j0 + AGIPD_PIXELS,
			       m->jit + j0 + 2 * AGIPD_PIXELS };
	float jbuf[3][PIXEL_BLOCK];
	if (j0 + PIXEL_BLOCK > AGIPD_PIXELS) {
		for (int g = 0; g < 3; g++) {
			for (int i = 0; i < PIXEL_BLOCK; i++)
				jbuf[g][i] = m->jit[(size_t)g * AGIPD_PIXELS + jitter_index(p0 + i, c)];
			jt[g] = jbuf[g];
		}
	}
	const float *restrict jt0 = jt[0];
	const float gpp_c = y->ff * (float)m->cfg->photon_energy; /* ADU per photon per F */
	const float noise_c = y->noise, oc0 = y->off[0], dc0 = y->dlev[0];
	uint16_t *restrict A = ana + p0, *restrict D = dig + p0;
	uint32_t any = 0;
	for (int i = 0; i < PIXEL_BLOCK; i++) {
		float S = kph[i] * (t_ff[i] * gpp_c);
		/* S, sw1 >= 0: their bit patterns order like the values */
		any |= fbits(S) >= fbits(t_sw1[i]);
		/* identical sums to true_offset() / true_dlev() */
		float off = (off0[i] + oc0) + jt0[i];
		A[i] = to_u16(off + S + no0[i] * noise_c * zn[i]);
		float dn = (float)((int32_t)(lb[i] >> 16) - 32768) * (DNOISE_HALF / 32768.0f);
		D[i] = to_u16((dl0[i] + dc0) + dn);
	}
	if (photons)
		memcpy(photons + p0, kph, sizeof kph);
	if (gain)
		memset(gain + p0, 0, PIXEL_BLOCK);
	const int fixed = m->fixed_stage;
	if (fixed == 0 || (fixed < 0 && !any))
		return;

	/* Medium and low gain: the few pixels above the switching point, or
	 * every pixel of a fixed medium or low gain run. */
	const float rel_c = y->rel, irel_c = 1.0f / y->rel;
	const float *t_rel = m->kt.rel + p0, *t_irel = m->kt.irel + p0;
	const float *t_bl = m->kt.bl + p0, *t_bh = m->kt.bh + p0, *t_sw2 = m->kt.sw2 + p0;
	for (int i = 0; i < PIXEL_BLOCK; i++) {
		float S = kph[i] * (t_ff[i] * gpp_c);
		int g = fixed;
		if (fixed < 0) {
			if (!(fbits(S) >= fbits(t_sw1[i])))
				continue;
			g = fbits(S) >= fbits(t_sw2[i]) ? 2 : 1;
		}
		float rel = t_rel[i] * rel_c, mgs = t_irel[i] * irel_c;
		float sig = g == 1 ? (S - (t_bl[i] - t_bh[i] * rel)) * mgs
				   : S * mgs * (1.0f / AGIPD_SIM_REL_LG);
		size_t gi = (size_t)g * AGIPD_PIXELS + (size_t)(p0 + i);
		float off = (m->kt.off[gi] + y->off[g]) + jt[g][i];
		A[i] = to_u16(off + sig + m->kt.noise[gi] * noise_c * zn[i]);
		float dn = (float)((int32_t)(lb[i] >> 16) - 32768) * (DNOISE_HALF / 32768.0f);
		D[i] = to_u16((m->kt.dlev[gi] + y->dlev[g]) + dn);
		if (gain)
			gain[p0 + i] = (uint8_t)g;
	}
}

int agipd_sim_generate(struct agipd_sim_module *m, const struct agipd_sim_plan *plan,
		       size_t f0, size_t n, uint16_t *raw, float *photons, uint8_t *gain,
		       char *err, size_t errlen)
{
	if (n == 0)
		return 0;
	if (f0 + n > plan->n_frames || plan->module != m->module) {
		set_err(err, errlen, "module %d: bad frame range %zu+%zu of %zu", m->module, f0, n,
			plan->n_frames);
		return -1;
	}
	size_t e0 = plan->frame_entry[f0], e1 = plan->frame_entry[f0 + n - 1];
	size_t n_maps = e1 - e0 + 1;
	struct agipd_sim_module *w = m;
	if (n_maps > m->scratch.maps) {
		free(w->scratch.lam);
		free(w->scratch.cdf);
		free(w->scratch.map);
		w->scratch.lam = malloc(n_maps * AGIPD_PIXELS * sizeof *w->scratch.lam);
		w->scratch.cdf = malloc(n_maps * AGIPD_PIXELS * CDF_K * sizeof *w->scratch.cdf);
		w->scratch.map = malloc(n_maps * sizeof *w->scratch.map);
		w->scratch.maps = n_maps;
	}
	if (n > m->scratch.frames) {
		free(w->scratch.rngs);
		w->scratch.rngs = malloc(n * sizeof *w->scratch.rngs);
		w->scratch.frames = n;
	}
	if (!m->scratch.tmp)
		w->scratch.tmp = malloc(2 * AGIPD_PIXELS * sizeof *w->scratch.tmp);
	if (!m->scratch.lam || !m->scratch.cdf || !m->scratch.map || !m->scratch.rngs ||
	    !m->scratch.tmp) {
		set_err(err, errlen, "module %d: out of memory for %zu photon maps", m->module,
			n_maps);
		w->scratch.maps = w->scratch.frames = 0;
		return -1;
	}
	struct train_map *maps = m->scratch.map;
	struct rng *rngs = m->scratch.rngs;
	for (size_t e = e0; e <= e1; e++) {
		maps[e - e0].lam = m->scratch.lam + (e - e0) * AGIPD_PIXELS;
		maps[e - e0].cdf = m->scratch.cdf + (e - e0) * AGIPD_PIXELS * CDF_K;
		maps[e - e0].tmp = m->scratch.tmp;
		if (plan->count[e] > 0)
			build_train_map(m, plan->slot[e], &maps[e - e0]);
	}
	uint64_t kseq = hash2(m->key_run, 0x5e9000000ull + (uint64_t)plan->sequence);
	for (size_t i = 0; i < n; i++)
		rng_seed(&rngs[i], hash2(kseq, f0 + i));

	/* Pixel blocks outside, frames inside: a block's tables stay in cache
	 * while the frames of a train go by. */
	for (int p0 = 0; p0 < AGIPD_PIXELS; p0 += PIXEL_BLOCK) {
		for (size_t i = 0; i < n; i++) {
			size_t f = f0 + i;
			uint16_t *ana = raw + i * 2 * AGIPD_PIXELS;
			frame_block(m, plan->cell_id[f], &maps[plan->frame_entry[f] - e0], &rngs[i],
				    p0, ana, ana + AGIPD_PIXELS,
				    photons ? photons + i * AGIPD_PIXELS : NULL,
				    gain ? gain + i * AGIPD_PIXELS : NULL);
		}
	}
	return 0;
}
