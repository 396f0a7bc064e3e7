/*
 * test_kernel.c - the correction of SPEC section 4 (include/agipd_kernel.h) on
 * hand-made constants and frames.  Expected values are computed here, in
 * float32 and in the SPEC's order, from the SPEC's words rather than from
 * kernel.c: explicit tables for the edge cases, small reference functions
 * (sort-based medians, a plain common mode) for the random frames.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_kernel.h"
#include "unit.h"

#define P AGIPD_PIXELS
#define PIX(r, c) ((size_t)(r) * AGIPD_COLS + (size_t)(c))
#define NAN_BIT AGIPD_BP_VALUE_IS_NAN
#define OOR_BIT AGIPD_BP_VALUE_OUT_OF_RANGE

/* ------------------------------------------------------------------------ */
/* Small helpers                                                              */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd32(void)   /* splitmix64, upper half */
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}
/* Uniform in [lo, hi), as float. */
static float rndf(float lo, float hi)
{
	return lo + (hi - lo) * (float)((double)rnd32() / 4294967296.0);
}

static float fbits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Frame comparisons: count mismatches, print the first few. */
static int cmp_f32(const float *got, const float *want, const char *what)
{
	int bad = 0;
	for (size_t i = 0; i < P; i++) {
		float a = got[i], b = want[i];
		if ((isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0)
			continue;
		if (bad++ < 4)
			printf("  %s: pixel (%zu, %zu) = %.9g, expected %.9g\n", what, i / AGIPD_COLS, i % AGIPD_COLS,
			       (double)a, (double)b);
	}
	return bad;
}
static int cmp_u32(const uint32_t *got, const uint32_t *want, const char *what)
{
	int bad = 0;
	for (size_t i = 0; i < P; i++)
		if (got[i] != want[i] && bad++ < 4)
			printf("  %s: pixel (%zu, %zu) = 0x%x, expected 0x%x\n", what, i / AGIPD_COLS, i % AGIPD_COLS,
			       got[i], want[i]);
	return bad;
}
static int cmp_u16(const uint16_t *got, const uint16_t *want, const char *what)
{
	int bad = 0;
	for (size_t i = 0; i < P; i++)
		if (got[i] != want[i] && bad++ < 4)
			printf("  %s: pixel (%zu, %zu) = 0x%04x, expected 0x%04x\n", what, i / AGIPD_COLS,
			       i % AGIPD_COLS, got[i], want[i]);
	return bad;
}
static int cmp_u8(const uint8_t *got, const uint8_t *want, const char *what)
{
	int bad = 0;
	for (size_t i = 0; i < P; i++)
		if (got[i] != want[i] && bad++ < 4)
			printf("  %s: pixel (%zu, %zu) = %d, expected %d\n", what, i / AGIPD_COLS, i % AGIPD_COLS,
			       got[i], want[i]);
	return bad;
}

/* ------------------------------------------------------------------------ */
/* Raw constants (struct agipd_raw_consts layout), owned                     */

struct raw {
	int n, ff_cells;
	float *thr;      /* [5][n][P] */
	float *off;      /* [3][n][P] */
	uint32_t *bpd;   /* [3][n][P] */
	float *pc;       /* [10][n][P] */
	uint32_t *bppc;  /* [n][P] */
	float *ff;       /* [ff_cells ? n : 1][P] */
	uint32_t *bpff;  /* [ff_cells ? n : 1][P] */
};

static float *THR(const struct raw *r, int k, int c) { return r->thr + ((size_t)k * r->n + c) * P; }
static float *OFF(const struct raw *r, int g, int c) { return r->off + ((size_t)g * r->n + c) * P; }
static uint32_t *BPD(const struct raw *r, int g, int c) { return r->bpd + ((size_t)g * r->n + c) * P; }
static float *PC(const struct raw *r, int k, int c) { return r->pc + ((size_t)k * r->n + c) * P; }
static uint32_t *BPPC(const struct raw *r, int c) { return r->bppc + (size_t)c * P; }
static float *FF(const struct raw *r, int c) { return r->ff + (size_t)(r->ff_cells ? c : 0) * P; }
static uint32_t *BPFF(const struct raw *r, int c) { return r->bpff + (size_t)(r->ff_cells ? c : 0) * P; }

/* PC indices of the SPEC: ml, bl, mh, bh. */
enum { ML = 0, BL = 1, MH = 3, BH = 4 };

static void fill_f(float *v, float x)
{
	for (size_t i = 0; i < P; i++)
		v[i] = x;
}
static void fill_u(uint32_t *v, uint32_t x)
{
	for (size_t i = 0; i < P; i++)
		v[i] = x;
}

/*
 * Defaults, per cell c: thresholds 100/200 (+50 c), the unused threshold
 * entries NaN; offsets 1000.25, 2000.5, 3000.75 (+100 c); bad pixels one bit
 * per gain stage plus a bit naming the cell; SlopesPC ml 20, bl 5, mh 1.25,
 * bh -40 (others NaN); BadPixelsPC bit 5, SlopesFF 50, BadPixelsFF bit 8.
 */
static void raw_init(struct raw *r, int n, int ff_cells)
{
	const int nff = ff_cells ? n : 1;
	r->n = n;
	r->ff_cells = ff_cells;
	r->thr = xcalloc((size_t)5 * n * P, 4);
	r->off = xcalloc((size_t)3 * n * P, 4);
	r->bpd = xcalloc((size_t)3 * n * P, 4);
	r->pc = xcalloc((size_t)10 * n * P, 4);
	r->bppc = xcalloc((size_t)n * P, 4);
	r->ff = xcalloc((size_t)nff * P, 4);
	r->bpff = xcalloc((size_t)nff * P, 4);
	for (int c = 0; c < n; c++) {
		fill_f(THR(r, 0, c), 100.0f + 50.0f * (float)c);
		fill_f(THR(r, 1, c), 200.0f + 50.0f * (float)c);
		for (int k = 2; k < 5; k++)
			fill_f(THR(r, k, c), NAN);
		fill_f(OFF(r, 0, c), 1000.25f + 100.0f * (float)c);
		fill_f(OFF(r, 1, c), 2000.5f + 100.0f * (float)c);
		fill_f(OFF(r, 2, c), 3000.75f + 100.0f * (float)c);
		for (int g = 0; g < 3; g++)
			fill_u(BPD(r, g, c), (1u << g) | (1u << (24 + c)));
		for (int k = 0; k < 10; k++)
			fill_f(PC(r, k, c), NAN);
		fill_f(PC(r, ML, c), 20.0f);
		fill_f(PC(r, BL, c), 5.0f);
		fill_f(PC(r, MH, c), 1.25f);
		fill_f(PC(r, BH, c), -40.0f);
		fill_u(BPPC(r, c), 1u << 5);
	}
	for (int c = 0; c < nff; c++) {
		fill_f(FF(r, c), 50.0f);
		fill_u(BPFF(r, c), 1u << 8);
	}
}

static void raw_free(struct raw *r)
{
	free(r->thr);
	free(r->off);
	free(r->bpd);
	free(r->pc);
	free(r->bppc);
	free(r->ff);
	free(r->bpff);
}

static struct agipd_raw_consts raw_view(const struct raw *r, int with_thresholds)
{
	struct agipd_raw_consts v = {
		.n = r->n,
		.thresholds = with_thresholds ? r->thr : NULL,
		.offset = r->off,
		.bp_dark = r->bpd,
		.slopes_pc = r->pc,
		.bp_pc = r->bppc,
		.slopes_ff = r->ff,
		.bp_ff = r->bpff,
		.ff_cells = r->ff_cells,
	};
	return v;
}

/* The kernel's constants, laid out and prepared from raw. */
struct kc {
	struct agipd_consts k;
	uint32_t *mem;
};

static int kc_build(struct kc *kc, const struct agipd_params *p, const struct raw *r, char *msg, size_t msglen)
{
	agipd_consts_layout(p, &kc->k);
	size_t words = agipd_consts_words(&kc->k, r->n);
	kc->mem = xcalloc(words, 4);
	memset(kc->mem, 0xff, words * 4);   /* NaN / all bits: whatever is not filled shows */
	agipd_consts_attach(&kc->k, r->n, kc->mem);
	float *scratch = xcalloc(P, 4);
	struct agipd_raw_consts v = raw_view(r, p->gain_mode == AGIPD_GAIN_ADAPTIVE);
	msg[0] = 0;
	int rc = agipd_consts_prepare(p, &v, 0, &kc->k, scratch, msg, msglen);
	free(scratch);
	return rc;
}

/* A frame and the kernel's outputs. */
struct frame {
	uint16_t *A, *D;
	float *out;      /* P floats: room for every data type */
	uint8_t *g;
	uint32_t *m;
	float *scratch;
	/* expectations */
	float *wx;
	uint16_t *wh;
	uint8_t *wg;
	uint32_t *wm;
};

static void frame_init(struct frame *f)
{
	f->A = xcalloc(P, 2);
	f->D = xcalloc(P, 2);
	f->out = xcalloc(P, 4);
	f->g = xcalloc(P, 1);
	f->m = xcalloc(P, 4);
	f->scratch = xcalloc(P, 4);
	f->wx = xcalloc(P, 4);
	f->wh = xcalloc(P, 2);
	f->wg = xcalloc(P, 1);
	f->wm = xcalloc(P, 4);
}

static void frame_free(struct frame *f)
{
	free(f->A);
	free(f->D);
	free(f->out);
	free(f->g);
	free(f->m);
	free(f->scratch);
	free(f->wx);
	free(f->wh);
	free(f->wg);
	free(f->wm);
}

static void run(const struct agipd_params *p, const struct kc *kc, int cell, struct frame *f)
{
	memset(f->out, 0x5a, P * 4);
	memset(f->g, 0x77, P);
	memset(f->m, 0x5a, P * 4);
	agipd_correct_frame(p, &kc->k, cell, f->A, f->D, f->out, f->g, f->m, f->scratch);
}

/* The SPEC's step 8 runtime flags on an expected float32 value. */
static float flag_value(float x, uint32_t *m)
{
	if (!isfinite(x)) {
		*m |= NAN_BIT;
		return 0.0f;
	}
	if (fabsf(x) > 1e7f) {
		*m |= OOR_BIT;
		return 0.0f;
	}
	return x;
}

#define CHECK_FRAME_F32(f, what)                                                \
	do {                                                                    \
		CHECK_EQ_INT(cmp_u8((f)->g, (f)->wg, what " gain"), 0);         \
		CHECK_EQ_INT(cmp_f32((f)->out, (f)->wx, what " data"), 0);      \
		CHECK_EQ_INT(cmp_u32((f)->m, (f)->wm, what " mask"), 0);        \
	} while (0)

/* Independent float16 reference where the compiler has one. */
#ifdef __FLT16_MAX__
#define HAVE_F16_REF 1
static uint16_t ref_f16(float f)
{
	_Float16 h = (_Float16)f;
	uint16_t u;
	memcpy(&u, &h, 2);
	return u;
}
#endif

/* binary16 value from its fields (no conversion code shared with the kernel). */
static double f16_value(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double s = (h & 0x8000) ? -1.0 : 1.0;
	if (e == 0)
		return s * ldexp(m, -24);
	if (e == 31)
		return m ? NAN : s * INFINITY;
	return s * ldexp(1024 + m, e - 25);
}

/* ------------------------------------------------------------------------ */
/* References for medians and common mode                                    */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Sort-based median ignoring NaN; even count: (lo + hi) / 2 in float32. */
static float ref_median(const float *v, size_t n)
{
	float *t = xcalloc(n, 4);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i]))
			t[m++] = v[i];
	float r = NAN;
	if (m) {
		qsort(t, m, 4, cmp_float);
		if (m % 2)
			r = t[m / 2];
		else {
			float lo = t[m / 2 - 1], hi = t[m / 2];
			float sum = lo + hi;
			r = sum / 2.0f;
		}
	}
	free(t);
	return r;
}

/* Step 4 written from the SPEC: ASIC a is rows 64*(a%8).., cols 64*(a/8)... */
static void ref_common_mode(float *X, const uint8_t *g, float lo, float hi, double frac, int nitr)
{
	for (int a = 0; a < 16; a++) {
		int row0 = 64 * (a % 8), col0 = 64 * (a / 8);
		for (int it = 0; it < nitr; it++) {
			double sum = 0;
			long n = 0;
			for (int r = row0; r < row0 + 64; r++)
				for (int c = col0; c < col0 + 64; c++) {
					float x = X[PIX(r, c)];
					if (g[PIX(r, c)] == 0 && isfinite(x) && lo <= x && x <= hi) {
						sum += (double)x;
						n++;
					}
				}
			if ((double)n < frac * 4096.0)   /* n == 0 with frac 0: NaN mean, as SPEC reads */
				break;
			float mean = (float)(sum / (double)n);
			for (int r = row0; r < row0 + 64; r++)
				for (int c = col0; c < col0 + 64; c++)
					if (g[PIX(r, c)] == 0)
						X[PIX(r, c)] = X[PIX(r, c)] - mean;
		}
	}
}

/* Pixel j (0..4095) of ASIC a. */
static size_t asic_pix(int a, int j)
{
	return PIX(64 * (a % 8) + j / 64, 64 * (a / 8) + j % 64);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                      */

static void test_gain_stage(void)
{
	static const struct {
		int r, c;
		float t0, t1;
		uint16_t D;
		uint8_t g;
	} cases[] = {
		{ 0, 0, 100, 200, 100, 0 },          /* equal to thr0: stays high */
		{ 0, 1, 100, 200, 101, 1 },
		{ 0, 2, 100, 200, 200, 1 },          /* equal to thr1: stays medium */
		{ 0, 3, 100, 200, 201, 2 },
		{ 1, 0, 300, 200, 250, 2 },          /* above thr1 but not thr0: low */
		{ 1, 1, 300, 200, 150, 0 },
		{ 1, 2, 300, 200, 200, 0 },
		{ 1, 3, 300, 200, 300, 2 },
		{ 2, 0, NAN, 200, 150, 0 },          /* NaN thresholds compare false */
		{ 2, 1, NAN, 200, 250, 2 },
		{ 2, 2, 100, NAN, 150, 1 },
		{ 2, 3, 100, NAN, 65535, 1 },
		{ 2, 4, NAN, NAN, 65535, 0 },
		{ 3, 0, 100.5f, 200, 100, 0 },       /* fractional thresholds */
		{ 3, 1, 100.5f, 200, 101, 1 },
		{ 3, 2, 100, 200.99f, 200, 1 },
		{ 3, 3, 100, 200.99f, 201, 2 },
		{ 4, 0, -1, -0.5f, 0, 2 },
		{ 4, 1, 65535, 65535, 65535, 0 },
		{ 4, 2, INFINITY, INFINITY, 65535, 0 },
		{ 4, 3, -INFINITY, 65535, 0, 1 },
		{ 4, 4, -INFINITY, -INFINITY, 0, 2 },
		{ 200, 64, 100, 200, 101, 1 },
		{ 511, 127, 100, 200, 201, 2 },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	struct frame f;
	char msg[256];

	agipd_params_default(&p);
	raw_init(&r, 2, 1);
	frame_init(&f);
	/* Per-pixel offsets so that a wrong gain shows in the data. */
	for (int c = 0; c < 2; c++)
		for (size_t i = 0; i < P; i++) {
			OFF(&r, 0, c)[i] = 1000.25f + (float)(i % 17) + 100.0f * (float)c;
			OFF(&r, 1, c)[i] = 2000.5f - (float)(i % 13) + 100.0f * (float)c;
			OFF(&r, 2, c)[i] = 3000.75f + (float)(i % 11) * 0.5f + 100.0f * (float)c;
			for (int g = 0; g < 3; g++)
				BPD(&r, g, c)[i] = (1u << g) | (1u << (24 + c)) | (uint32_t)(i % 3) << 16;
		}
	for (size_t k = 0; k < ncases; k++) {
		THR(&r, 0, 0)[PIX(cases[k].r, cases[k].c)] = cases[k].t0;
		THR(&r, 1, 0)[PIX(cases[k].r, cases[k].c)] = cases[k].t1;
	}
	CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
	for (int cell = 0; cell < 2; cell++) {
		/* Generic pixels: D sweeps 0..399, A anything. */
		for (size_t i = 0; i < P; i++) {
			f.D[i] = (uint16_t)((i * 7) % 400);
			f.A[i] = (uint16_t)(3500 + (i * 37) % 20000);
			float t0 = 100.0f + 50.0f * (float)cell, t1 = 200.0f + 50.0f * (float)cell;
			float D = (float)f.D[i];
			f.wg[i] = D > t1 ? 2 : D > t0 ? 1 : 0;   /* t0 < t1 here */
		}
		if (cell == 0)
			for (size_t k = 0; k < ncases; k++) {
				size_t i = PIX(cases[k].r, cases[k].c);
				f.D[i] = cases[k].D;
				f.wg[i] = cases[k].g;
			}
		for (size_t i = 0; i < P; i++) {
			int g = f.wg[i];
			f.wx[i] = (float)f.A[i] - OFF(&r, g, cell)[i];
			f.wm[i] = BPD(&r, g, cell)[i];
		}
		run(&p, &kc, cell, &f);
		CHECK_FRAME_F32(&f, cell ? "cell 1" : "cell 0");
	}
	free(kc.mem);
	frame_free(&f);
	raw_free(&r);
}

static void test_fixed_gain(void)
{
	static const enum agipd_gain_mode modes[3] = { AGIPD_GAIN_FIXED_HIGH, AGIPD_GAIN_FIXED_MEDIUM,
							AGIPD_GAIN_FIXED_LOW };
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, 2, 1);
	frame_init(&f);
	/* Thresholds would say otherwise (and are not even passed). */
	for (int c = 0; c < 2; c++) {
		fill_f(THR(&r, 0, c), 0.0f);
		fill_f(THR(&r, 1, c), 0.0f);
	}
	for (int mi = 0; mi < 3; mi++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.gain_mode = modes[mi];
		/* Force gain is skipped in fixed gain, whatever the flags say. */
		p.force_mg_if_below = p.force_hg_if_below = 1;
		p.mg_hard_threshold = p.hg_hard_threshold = 1e30f;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		CHECK_EQ_INT(kc.k.field_off[AGIPD_F_THR0], -1);
		CHECK_EQ_INT(kc.k.field_off[AGIPD_F_THR1], -1);
		for (int cell = 0; cell < 2; cell++) {
			for (size_t i = 0; i < P; i++) {
				f.A[i] = (uint16_t)((i * 131) % 65536);
				f.D[i] = (uint16_t)((i * 17) % 65536);
				f.wg[i] = (uint8_t)mi;
				f.wm[i] = BPD(&r, mi, cell)[i];
				f.wx[i] = flag_value((float)f.A[i] - OFF(&r, mi, cell)[i], &f.wm[i]);
			}
			run(&p, &kc, cell, &f);
			CHECK_FRAME_F32(&f, "fixed gain");
		}
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

static void test_force_gain(void)
{
	/* thr 100/200: D 300 -> low, 150 -> medium, 50 -> high; off1 per case;
	 * mg threshold 1000, hg threshold 500. */
	static const struct {
		uint16_t D, A;
		float off1;
		uint8_t none, both, mg, hg;
	} cases[] = {
		{ 300, 1100, 100, 2, 2, 2, 2 },   /* M = 1000: not below 1000 */
		{ 300, 1099, 100, 2, 1, 1, 2 },   /* M = 999 */
		{ 300, 600, 100, 2, 1, 1, 2 },    /* M = 500: not below 500 */
		{ 300, 599, 100, 2, 0, 1, 0 },    /* M = 499 */
		{ 150, 600, 100, 1, 1, 1, 1 },
		{ 150, 599, 100, 1, 0, 1, 0 },
		{ 150, 1099, 100, 1, 1, 1, 1 },   /* medium is never forced by mg */
		{ 50, 0, 100, 0, 0, 0, 0 },
		{ 300, 1100, 100.5f, 2, 1, 1, 2 }, /* M = 999.5 */
		{ 300, 600, 100.5f, 2, 0, 1, 0 },  /* M = 499.5 */
		{ 300, 0, NAN, 2, 2, 2, 2 },      /* M NaN: never below */
		{ 150, 0, NAN, 1, 1, 1, 1 },
		{ 300, 65535, -1e9f, 2, 2, 2, 2 },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, 1, 1);
	frame_init(&f);
	for (size_t k = 0; k < ncases; k++)
		OFF(&r, 1, 0)[k * 3] = cases[k].off1;
	for (int variant = 0; variant < 4; variant++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.force_mg_if_below = variant == 1 || variant == 2;
		p.force_hg_if_below = variant == 1 || variant == 3;
		p.mg_hard_threshold = 1000.0f;
		p.hg_hard_threshold = 500.0f;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		memset(f.A, 0, P * 2);
		memset(f.D, 0, P * 2);
		memset(f.wg, 0, P);
		for (size_t k = 0; k < ncases; k++) {
			size_t i = k * 3;
			f.A[i] = cases[k].A;
			f.D[i] = cases[k].D;
			f.wg[i] = variant == 0 ? cases[k].none
				: variant == 1 ? cases[k].both
				: variant == 2 ? cases[k].mg
					       : cases[k].hg;
		}
		for (size_t i = 0; i < P; i++) {
			f.wm[i] = BPD(&r, f.wg[i], 0)[i];
			f.wx[i] = flag_value((float)f.A[i] - OFF(&r, f.wg[i], 0)[i], &f.wm[i]);
		}
		run(&p, &kc, 0, &f);
		static const char *const names[4] = { "no force", "force mg+hg", "force mg", "force hg" };
		CHECK_FRAME_F32(&f, "force gain");
		if (cmp_u8(f.g, f.wg, names[variant]))
			printf("  (variant %s)\n", names[variant]);
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

/* float32 output: NaN, inf and |X| > 1e7 become 0 with their bit. */
static void test_value_flags(void)
{
	static const struct {
		float off0;
		uint16_t A;
		float x;
		uint32_t bits;
	} cases[] = {
		{ NAN, 10, 0, NAN_BIT },
		{ -INFINITY, 10, 0, NAN_BIT },
		{ INFINITY, 10, 0, NAN_BIT },
		{ -1e7f, 1, 0, OOR_BIT },            /* 10000001 */
		{ -1e7f, 0, 1e7f, 0 },               /* exactly 1e7: kept */
		{ 1e7f, 0, -1e7f, 0 },
		{ 10000001.0f, 0, 0, OOR_BIT },
		{ -9999999.0f, 1, 1e7f, 0 },
		{ -3e38f, 65535, 0, OOR_BIT },
		{ -FLT_MAX, 65535, 0, OOR_BIT },     /* rounds to FLT_MAX: finite, too big */
		{ 0.0f, 0, 0, 0 },
		{ 0.5f, 0, -0.5f, 0 },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	struct frame f;
	char msg[256];

	agipd_params_default(&p);
	raw_init(&r, 1, 1);
	frame_init(&f);
	for (size_t k = 0; k < ncases; k++) {
		OFF(&r, 0, 0)[PIX(k, 5)] = cases[k].off0;
		BPD(&r, 0, 0)[PIX(k, 5)] = 1u << 3;
	}
	CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
	for (size_t i = 0; i < P; i++) {
		f.A[i] = (uint16_t)(i % 5000);
		f.D[i] = 0;
		f.wg[i] = 0;
		f.wm[i] = BPD(&r, 0, 0)[i];
		f.wx[i] = (float)f.A[i] - OFF(&r, 0, 0)[i];
	}
	for (size_t k = 0; k < ncases; k++) {
		size_t i = PIX(k, 5);
		f.A[i] = cases[k].A;
		f.wx[i] = cases[k].x;
		f.wm[i] = (1u << 3) | cases[k].bits;
	}
	run(&p, &kc, 0, &f);
	CHECK_FRAME_F32(&f, "value flags");
	/* Zeroed values are +0. */
	CHECK_EQ_F32(f.out[PIX(0, 5)], 0.0f);
	CHECK_EQ_F32(f.out[PIX(3, 5)], 0.0f);
	free(kc.mem);
	frame_free(&f);
	raw_free(&r);
}

static void test_f16_conversion(void)
{
	/* Hand-picked values. */
	static const struct {
		float f;
		uint16_t h;
	} cases[] = {
		{ 0.0f, 0x0000 },
		{ -0.0f, 0x8000 },
		{ 1.0f, 0x3c00 },
		{ -2.0f, 0xc000 },
		{ 1.5f, 0x3e00 },
		{ 0x1.002p0f, 0x3c00 },                /* 1 + 2^-11: tie, to even 1.0 */
		{ 0x1.006p0f, 0x3c02 },                /* 1 + 3*2^-11: tie, to even 1 + 2^-9 */
		{ 0x1.002002p0f, 0x3c01 },             /* just above the tie */
		{ 0x1.001ffep0f, 0x3c00 },             /* just below */
		{ 65504.0f, 0x7bff },
		{ 65519.99f, 0x7bff },
		{ 65520.0f, 0x7c00 },                  /* tie between 65504 and 2^16: overflow */
		{ -65504.0f, 0xfbff },
		{ -65520.0f, 0xfc00 },
		{ 1e10f, 0x7c00 },
		{ INFINITY, 0x7c00 },
		{ -INFINITY, 0xfc00 },
		{ 0x1p-14f, 0x0400 },                  /* smallest normal */
		{ 0x1p-24f, 0x0001 },                  /* smallest subnormal */
		{ 0x1p-25f, 0x0000 },                  /* tie: to even zero */
		{ 0x1.000002p-25f, 0x0001 },
		{ 0x1.8p-24f, 0x0002 },                /* 1.5 * 2^-24: tie, to even 2 */
		{ 0x1.4p-23f, 0x0002 },                /* 2.5 * 2^-24: tie, to even 2 */
		{ 0x1.ff8p-15f, 0x03ff },              /* largest subnormal */
		{ 0x1.ffcp-15f, 0x0400 },              /* 1023.5 * 2^-24: tie, carries to normal */
		{ -0x1p-24f, 0x8001 },
		{ -0x1p-26f, 0x8000 },
		{ 1e-30f, 0x0000 },
		{ 0.1f, 0x2e66 },
		{ 3.14159265f, 0x4248 },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		uint16_t h = agipd_f32_to_f16(cases[k].f);
		if (h != cases[k].h) {
			printf("  f32_to_f16(%a) = 0x%04x, expected 0x%04x\n", (double)cases[k].f, h, cases[k].h);
			unit_failed_++;
		}
	}
	/* NaN stays NaN (any payload), quiet or signalling, either sign. */
	static const uint32_t nans[] = { 0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0x7f802000u };
	for (size_t k = 0; k < sizeof nans / sizeof nans[0]; k++) {
		uint16_t h = agipd_f32_to_f16(fbits(nans[k]));
		CHECK((h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0);
	}
	/* Every half: value, round trip, and the ties between neighbours. */
	int bad = 0;
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;   /* NaN */
		float f = agipd_f16_to_f32((uint16_t)h);
		double v = f16_value((uint16_t)h);
		if ((double)f != v || !signbit(f) != !signbit(v)) {
			if (bad++ < 4)
				printf("  f16_to_f32(0x%04x) = %a, expected %a\n", h, (double)f, v);
			continue;
		}
		if (agipd_f32_to_f16(f) != h && bad++ < 4)
			printf("  f32_to_f16(f16_to_f32(0x%04x)) = 0x%04x\n", h, agipd_f32_to_f16(f));
		if (h >= 0x7c00 || (h & 0x8000))
			continue;
		/* Midpoint to the next half up (exact in float32), and either side. */
		double next = h == 0x7bff ? 65536.0 : f16_value((uint16_t)(h + 1));
		float mid = (float)((v + next) / 2);
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
		uint16_t want[3] = { (uint16_t)h, even, (uint16_t)(h + 1) };   /* h + 1 = 0x7c00 is inf */
		float probe[3] = { nextafterf(mid, 0.0f), mid, nextafterf(mid, INFINITY) };
		for (int s = 0; s < 3; s++) {
			uint16_t got = agipd_f32_to_f16(probe[s]);
			uint16_t gotn = agipd_f32_to_f16(-probe[s]);
			if ((got != want[s] || gotn != (want[s] | 0x8000)) && bad++ < 4)
				printf("  f32_to_f16(%a) = 0x%04x (negated 0x%04x), expected 0x%04x\n", (double)probe[s],
				       got, gotn, want[s]);
		}
	}
	CHECK_EQ_INT(bad, 0);
	CHECK(isnan(agipd_f16_to_f32(0x7e00)));
	CHECK(isnan(agipd_f16_to_f32(0xfc01)));
	CHECK_EQ_F32(agipd_f16_to_f32(0x7c00), INFINITY);
	CHECK_EQ_F32(agipd_f16_to_f32(0xfc00), -INFINITY);
	CHECK_EQ_F32(agipd_f16_to_f32(0x8000), -0.0f);
#ifdef HAVE_F16_REF
	/* Random floats over every exponent against the compiler's conversion. */
	bad = 0;
	for (int k = 0; k < 2000000; k++) {
		uint32_t u = rnd32();
		if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu))
			continue;
		if (k & 1)   /* bias towards the float16 range */
			u = (u & 0x80000000u) | (0x33000000u + u % (0x47800000u - 0x33000000u));
		float f = fbits(u);
		if (agipd_f32_to_f16(f) != ref_f16(f) && bad++ < 4)
			printf("  f32_to_f16(%a) = 0x%04x, compiler says 0x%04x\n", (double)f, agipd_f32_to_f16(f),
			       ref_f16(f));
	}
	CHECK_EQ_INT(bad, 0);
#endif
}

static void test_f16_output(void)
{
	static const struct {
		float off0;
		uint16_t h;
		uint32_t bits;
	} cases[] = {
		{ -65504.0f, 0x7bff, 0 },
		{ -65503.5f, 0x7bff, 0 },          /* rounds to 65504, in range */
		{ -65505.0f, 0x7bff, OOR_BIT },
		{ -65519.99f, 0x7bff, OOR_BIT },
		{ -65520.0f, 0x7bff, OOR_BIT },    /* would be inf: clamped */
		{ -1e6f, 0x7bff, OOR_BIT },
		{ 65504.0f, 0xfbff, 0 },
		{ 70000.0f, 0xfbff, OOR_BIT },
		{ NAN, 0x0000, NAN_BIT },
		{ -INFINITY, 0x0000, NAN_BIT },
		{ -2e7f, 0x0000, OOR_BIT },        /* |X| > 1e7 first */
		{ -0x1.002p0f, 0x3c00, 0 },        /* 1 + 2^-11 ties to 1.0 */
		{ -0x1.006p0f, 0x3c02, 0 },
		{ -1.5f, 0x3e00, 0 },
		{ 0.25f, 0xb400, 0 },
		{ -0x1p-24f, 0x0001, 0 },
		{ 0.0f, 0x0000, 0 },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	struct frame f;
	char msg[256];

	agipd_params_default(&p);
	p.data_dtype = AGIPD_DTYPE_FLOAT16;
	CHECK_EQ_INT(agipd_dtype_size(AGIPD_DTYPE_FLOAT16), 2);
	raw_init(&r, 1, 1);
	frame_init(&f);
	for (size_t i = 0; i < P; i++)
		OFF(&r, 0, 0)[i] = rndf(-70000.0f, 70000.0f);
	for (size_t k = 0; k < ncases; k++)
		OFF(&r, 0, 0)[PIX(7, k)] = cases[k].off0;
	CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
	int bad = 0;
	for (size_t i = 0; i < P; i++) {
		f.A[i] = (uint16_t)(rnd32() % 65536);
		f.D[i] = 0;
		f.wg[i] = 0;
		f.wm[i] = BPD(&r, 0, 0)[i];
		float x = (float)f.A[i] - OFF(&r, 0, 0)[i];
		if (fabsf(x) > 65504.0f) {
			f.wm[i] |= OOR_BIT;
			x = x > 0 ? 65504.0f : -65504.0f;
		}
		/* Nearest half, ties to even, from the neighbours' values. */
		uint16_t h = agipd_f32_to_f16(x);
		double v = f16_value(h), lo = f16_value((uint16_t)(h - 1)), hi = f16_value((uint16_t)(h + 1));
		double d = fabs((double)x - v);
		if ((h & 0x7fff) != 0 && (h & 0x7fff) < 0x7bff &&
		    (d > fabs((double)x - lo) || d > fabs((double)x - hi) ||
		     ((d == fabs((double)x - lo) || d == fabs((double)x - hi)) && (h & 1))))
			bad++;
		f.wh[i] = h;
#ifdef HAVE_F16_REF
		f.wh[i] = ref_f16(x);
#endif
	}
	CHECK_EQ_INT(bad, 0);
	for (size_t k = 0; k < ncases; k++) {
		size_t i = PIX(7, k);
		f.A[i] = 0;
		f.wh[i] = cases[k].h;
		f.wm[i] = BPD(&r, 0, 0)[i] | cases[k].bits;
	}
	run(&p, &kc, 0, &f);
	CHECK_EQ_INT(cmp_u8(f.g, f.wg, "float16 gain"), 0);
	CHECK_EQ_INT(cmp_u16((const uint16_t *)f.out, f.wh, "float16 data"), 0);
	CHECK_EQ_INT(cmp_u32(f.m, f.wm, "float16 mask"), 0);
	free(kc.mem);
	frame_free(&f);
	raw_free(&r);
}

static void test_int16_output(void)
{
	/* X = -off0 (A = 0); photons of 1 keV at 1 ADU/keV: X / 1. */
	static const struct {
		float off0;
		int round;
		int16_t v;
		uint32_t bits;
	} cases[] = {
		{ -40000.0f, 1, 32767, OOR_BIT },
		{ -32767.0f, 1, 32767, 0 },
		{ -32767.4f, 1, 32767, 0 },     /* floor(32767.4 + 0.5) */
		{ -32767.5f, 1, 32767, OOR_BIT },   /* floor(32768.0) = 32768: clamped */
		{ -32768.0f, 1, 32767, OOR_BIT },
		{ -1e8f, 1, 0, OOR_BIT },       /* |X| > 1e7 */
		{ 5.0f, 1, 0, OOR_BIT },        /* rounds negative */
		{ 0.4f, 1, 0, 0 },              /* floor(-0.4 + 0.5) = 0 */
		{ -2.5f, 1, 3, 0 },
		{ NAN, 1, 0, NAN_BIT },
		/* Without rounding (the kernel itself does not insist): */
		{ 40000.0f, 0, -32768, OOR_BIT },
		{ 32768.0f, 0, -32768, 0 },
		{ 32769.0f, 0, -32768, OOR_BIT },
		{ -32767.0f, 0, 32767, 0 },
		{ -32768.0f, 0, 32767, OOR_BIT },
		{ -7.0f, 0, 7, 0 },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, 1, 1);
	frame_init(&f);
	for (size_t k = 0; k < ncases; k++)
		OFF(&r, 0, 0)[PIX(k, 9)] = cases[k].off0;
	for (int round = 0; round < 2; round++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.data_dtype = AGIPD_DTYPE_INT16;
		p.photon_energy = 1.0;
		p.adu_per_kev = 1.0;
		p.round_photons = round;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		int16_t *out = (int16_t *)f.out;
		memset(f.A, 0, P * 2);
		memset(f.D, 0, P * 2);
		run(&p, &kc, 0, &f);
		for (size_t k = 0; k < ncases; k++) {
			if (cases[k].round != round)
				continue;
			size_t i = PIX(k, 9);
			if (out[i] != cases[k].v || f.m[i] != (BPD(&r, 0, 0)[i] | cases[k].bits)) {
				printf("  int16 (round %d), X = %.9g: %d mask 0x%x, expected %d mask 0x%x\n", round,
				       -(double)cases[k].off0, out[i], f.m[i], cases[k].v,
				       BPD(&r, 0, 0)[i] | cases[k].bits);
				unit_failed_++;
			}
		}
		/* Ordinary pixels: X = -1000.25 -> floor(-999.75) < 0 -> 0, flagged. */
		if (round) {
			CHECK_EQ_INT(out[PIX(300, 100)], 0);
			CHECK_EQ_INT(f.m[PIX(300, 100)], BPD(&r, 0, 0)[0] | OOR_BIT);
		}
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

static void test_round_photons(void)
{
	/* adu 2 ADU/keV, E 3 keV: X / 6, then floor((X + 1) - thr). */
	static const struct {
		float x, thr;
		float v;
		uint32_t bits;
	} cases[] = {
		{ 6.0f, 0.5f, 1.0f, 0 },
		{ 3.0f, 0.5f, 1.0f, 0 },        /* 0.5 photon: floor(1.0) */
		{ 2.99f, 0.5f, 0.0f, 0 },
		{ 0.0f, 0.5f, 0.0f, 0 },
		{ -3.0f, 0.5f, 0.0f, 0 },       /* floor(0.0): not negative */
		{ -3.1f, 0.5f, 0.0f, OOR_BIT }, /* floor(-0.0167) = -1 */
		{ -600.0f, 0.5f, 0.0f, OOR_BIT },
		{ 600.0f, 0.5f, 100.0f, 0 },
		{ 602.9f, 0.5f, 100.0f, 0 },
		{ 603.0f, 0.5f, 101.0f, 0 },
		{ 10.0f, 0.7f, 1.0f, 0 },       /* 1.667 + 0.3 */
		{ 10.5f, 0.7f, 2.0f, 0 },       /* 1.75 + 0.3 */
		{ -1.0f, 0.7f, 0.0f, 0 },       /* floor(-0.167 + 0.3) = floor(0.133): not negative */
		{ -2.0f, 0.7f, 0.0f, OOR_BIT },
		{ NAN, 0.5f, 0.0f, NAN_BIT },
	};
	const size_t ncases = sizeof cases / sizeof cases[0];
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, 1, 1);
	frame_init(&f);
	for (size_t k = 0; k < ncases; k++)
		OFF(&r, 0, 0)[PIX(k, 11)] = -cases[k].x;
	for (int t = 0; t < 2; t++) {
		const float thr = t ? 0.7f : 0.5f;
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.photon_energy = 3.0;
		p.adu_per_kev = 2.0;
		p.round_photons = 1;
		p.rounding_threshold = thr;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (size_t i = 0; i < P; i++) {
			f.A[i] = (uint16_t)(1000 + (i * 7) % 3000);
			f.D[i] = 0;
			f.wg[i] = 0;
			f.wm[i] = BPD(&r, 0, 0)[i];
			float x = (float)f.A[i] - OFF(&r, 0, 0)[i];
			x = x / (2.0f * 3.0f);
			x = floorf((x + 1.0f) - thr);
			if (x < 0.0f) {
				x = 0.0f;
				f.wm[i] |= OOR_BIT;
			}
			f.wx[i] = flag_value(x, &f.wm[i]);
		}
		for (size_t k = 0; k < ncases; k++) {
			size_t i = PIX(k, 11);
			f.A[i] = 0;
			f.wm[i] = BPD(&r, 0, 0)[i];
			if (cases[k].thr != thr) {   /* computed as above */
				float x = -OFF(&r, 0, 0)[i] / 6.0f;
				x = floorf((x + 1.0f) - thr);
				f.wm[i] |= x < 0 ? OOR_BIT : 0;
				f.wx[i] = flag_value(x < 0 ? 0.0f : x, &f.wm[i]);
				continue;
			}
			f.wx[i] = cases[k].v;
			f.wm[i] |= cases[k].bits;
		}
		run(&p, &kc, 0, &f);
		CHECK_FRAME_F32(&f, t ? "round photons thr 0.7" : "round photons thr 0.5");
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

static void test_photon_conversion(void)
{
	struct raw r;
	struct frame f;
	char msg[256];

	frame_init(&f);
	for (int ff_cells = 1; ff_cells >= 0; ff_cells--) {
		raw_init(&r, 2, ff_cells);
		/* Cell 0 (or the only image): 5.5 with NaN here and there: median 5.5.
		 * Cell 1: 1 + 0.5 * (shuffled 0..P-1): even count, median the mean of
		 * 16384.5 and 16385. */
		float *f0 = FF(&r, 0);
		fill_f(f0, 5.5f);
		for (size_t i = 0; i < P; i += 97)
			f0[i] = NAN;
		for (size_t i = 1; i < P; i += 1001)
			f0[i] = 1e6f;
		float med[2] = { 5.5f, 5.5f };
		if (ff_cells) {
			float *f1 = FF(&r, 1);
			for (size_t i = 0; i < P; i++)
				f1[i] = 1.0f + 0.5f * (float)i;
			for (size_t i = P - 1; i > 0; i--) {
				size_t j = rnd32() % (i + 1);
				float t = f1[i];
				f1[i] = f1[j];
				f1[j] = t;
			}
			med[1] = (16384.5f + 16385.0f) / 2.0f;
		}
		for (int given = 0; given < 2; given++) {
			struct agipd_params p;
			struct kc kc;
			agipd_params_default(&p);
			p.photon_energy = 9.3;
			p.adu_per_kev = given ? 7.7 : 0.0;
			CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
			CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
			for (int cell = 0; cell < 2; cell++) {
				const float adu = given ? 7.7f : med[cell];
				if (!given)
					CHECK_EQ_F32(kc.k.ff_median[cell], med[cell]);
				for (size_t i = 0; i < P; i++) {
					f.A[i] = (uint16_t)(rnd32() % 65536);
					f.D[i] = (uint16_t)(rnd32() % 300);
					f.wg[i] = f.D[i] > 200 + 50 * cell ? 2 : f.D[i] > 100 + 50 * cell ? 1 : 0;
					f.wm[i] = BPD(&r, f.wg[i], cell)[i];
					float x = (float)f.A[i] - OFF(&r, f.wg[i], cell)[i];
					x = x / (adu * 9.3f);
					f.wx[i] = flag_value(x, &f.wm[i]);
				}
				run(&p, &kc, cell, &f);
				CHECK_FRAME_F32(&f, given ? "photons, --adu-per-kev" : "photons, SlopesFF median");
			}
			free(kc.mem);
		}
		raw_free(&r);
	}
	/* --adu-per-kev given: SlopesFF is not needed at all. */
	{
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.photon_energy = 12.0;
		p.adu_per_kev = 0.5;
		raw_init(&r, 1, 1);
		free(r.ff);
		free(r.bpff);
		r.ff = NULL;
		r.bpff = NULL;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (size_t i = 0; i < P; i++) {
			f.A[i] = (uint16_t)(i % 60000);
			f.D[i] = 0;
			f.wg[i] = 0;
			f.wm[i] = BPD(&r, 0, 0)[i];
			f.wx[i] = flag_value(((float)f.A[i] - OFF(&r, 0, 0)[i]) / (0.5f * 12.0f), &f.wm[i]);
		}
		run(&p, &kc, 0, &f);
		CHECK_FRAME_F32(&f, "photons without SlopesFF");
		free(kc.mem);
		raw_free(&r);
	}
	/* --adu-per-kev without --photon-energy: no conversion at all. */
	{
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.adu_per_kev = 0.5;
		raw_init(&r, 1, 1);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (size_t i = 0; i < P; i++) {
			f.A[i] = (uint16_t)(i % 60000);
			f.D[i] = 0;
			f.wg[i] = 0;
			f.wm[i] = BPD(&r, 0, 0)[i];
			f.wx[i] = (float)f.A[i] - OFF(&r, 0, 0)[i];
		}
		run(&p, &kc, 0, &f);
		CHECK_FRAME_F32(&f, "--adu-per-kev alone");
		free(kc.mem);
		raw_free(&r);
	}
	/* A conversion factor that underflows to 0: X / 0 is inf or NaN, flagged. */
	{
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.photon_energy = 1e-20;
		p.adu_per_kev = 1e-30;
		raw_init(&r, 1, 1);
		fill_f(OFF(&r, 0, 0), 100.0f);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		memset(f.D, 0, P * 2);
		f.A[0] = 100;   /* 0 / 0 */
		f.A[1] = 105;   /* 5 / 0 */
		f.A[2] = 95;    /* -5 / 0 */
		run(&p, &kc, 0, &f);
		for (int i = 0; i < 3; i++) {
			CHECK_EQ_F32(f.out[i], 0.0f);
			CHECK_EQ_INT(f.m[i], BPD(&r, 0, 0)[i] | NAN_BIT);
		}
		free(kc.mem);
		raw_free(&r);
	}
	frame_free(&f);
}

/* SPEC 7: without --adu-per-kev and without a usable SlopesFF median the run
 * is refused; the header promises -1 from agipd_consts_prepare. */
static void test_photon_factor_refused(void)
{
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	char msg[256];
	agipd_params_default(&p);
	p.photon_energy = 9.3;
	raw_init(&r, 2, 1);
	fill_f(FF(&r, 1), NAN);   /* cell 1 has no median */
	int rc = kc_build(&kc, &p, &r, msg, sizeof msg);
	CHECK_EQ_INT(rc, -1);
	CHECK(msg[0] != 0);
	if (rc == 0)
		printf("  all-NaN SlopesFF accepted: photon_div[1] = %g\n", (double)kc.k.photon_div[1]);
	free(kc.mem);
	raw_free(&r);
}

static void test_common_mode_cases(void)
{
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	struct frame f;
	char msg[256];

	agipd_params_default(&p);
	p.common_mode = 1;
	raw_init(&r, 1, 1);
	fill_f(OFF(&r, 0, 0), 1000.0f);
	fill_f(OFF(&r, 1, 0), 2000.0f);
	fill_f(OFF(&r, 2, 0), 3000.0f);
	frame_init(&f);

	/* X targets per ASIC, then A = off + X.  Medium-gain pixels use D = 150. */
	float *X0 = xcalloc(P, 4);
	uint8_t *G0 = xcalloc(P, 1);
	for (int a = 0; a < 16; a++)
		for (int j = 0; j < 4096; j++)
			X0[asic_pix(a, j)] = (float)-(a % 5);    /* uniform dark: removed entirely */
	/* ASIC 0: all 5 -> 0. */
	for (int j = 0; j < 4096; j++)
		X0[asic_pix(0, j)] = 5;
	/* ASIC 1: 1000 dark at 10, 100 medium at 10, 10 NaN, the rest bright 500. */
	for (int j = 0; j < 4096; j++) {
		size_t i = asic_pix(1, j);
		X0[i] = j < 1000 ? 10.0f : 500.0f;
		if (j >= 1000 && j < 1100) {
			X0[i] = 10.0f;
			G0[i] = 1;
		}
		if (j >= 1100 && j < 1110)
			OFF(&r, 0, 0)[i] = NAN;
	}
	/* ASIC 2: 614 dark (< 0.15 * 4096 = 614.4): untouched.  ASIC 3: 615. */
	for (int j = 0; j < 4096; j++) {
		X0[asic_pix(2, j)] = j < 614 ? 10.0f : 500.0f;
		X0[asic_pix(3, j)] = j < 615 ? 10.0f : 500.0f;
	}
	/* ASIC 4: 400 at 30, 300 at -30, rest 1000: one pass, then 400 < 615 remain. */
	for (int j = 0; j < 4096; j++)
		X0[asic_pix(4, j)] = j < 400 ? 30.0f : j < 700 ? -30.0f : 1000.0f;
	/* ASIC 5: the range is inclusive: 300 at 30 and 315 at -30 count. */
	for (int j = 0; j < 4096; j++)
		X0[asic_pix(5, j)] = j < 300 ? 30.0f : j < 615 ? -30.0f : 31.0f;
	/* ASIC 6: 1000 at 28, 700 at -28, rest 2000: two effective passes. */
	for (int j = 0; j < 4096; j++)
		X0[asic_pix(6, j)] = j < 1000 ? 28.0f : j < 1700 ? -28.0f : 2000.0f;
	/* ASIC 9 (rows 64.., cols 64..): half 7, half 100; low-gain pixels at 7. */
	for (int j = 0; j < 4096; j++) {
		size_t i = asic_pix(9, j);
		X0[i] = j % 2 ? 7.0f : 100.0f;
		if (j % 64 == 0) {
			X0[i] = 7.0f;
			G0[i] = 2;
		}
	}
	for (size_t i = 0; i < P; i++) {
		float off = G0[i] == 0 ? 1000.0f : G0[i] == 1 ? 2000.0f : 3000.0f;
		f.A[i] = (uint16_t)(off + X0[i]);
		f.D[i] = G0[i] == 0 ? 0 : G0[i] == 1 ? 150 : 300;
	}
	CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);

	for (int nitr = 0; nitr <= 4; nitr++) {
		p.common_mode = 1;
		p.cm_n_itr = nitr;
		/* Hand expectations. */
		float *W = f.wx;
		for (size_t i = 0; i < P; i++) {
			W[i] = X0[i];
			f.wg[i] = G0[i];
		}
		for (int a = 0; a < 16; a++) {
			for (int j = 0; j < 4096; j++) {
				size_t i = asic_pix(a, j);
				float x = X0[i];
				if (G0[i] != 0) {
					/* medium and low gain: never shifted */
				} else if (a == 1 && j >= 1100 && j < 1110) {
					x = NAN;   /* NaN offset */
				} else if (nitr == 0 || a == 2) {
					/* nothing subtracted; ASIC 2 has too few dark pixels */
				} else if (a == 1) {
					x = j < 1000 ? 0.0f : 490.0f;
				} else if (a == 3) {
					x = x - 10.0f;
				} else if (a == 4) {
					float m1 = (float)((400.0 * 30.0 + 300.0 * -30.0) / 700.0);
					x = x - m1;   /* then 400 < 615 remain in range */
				} else if (a == 5) {
					float m1 = (float)((300.0 * 30.0 + 315.0 * -30.0) / 615.0);
					x = x - m1;   /* then 315 remain */
				} else if (a == 6) {
					float m1 = (float)((1000.0 * 28.0 + 700.0 * -28.0) / 1700.0);
					float x1 = 28.0f - m1;   /* the 1000 still in range, mean x1 */
					x = x - m1;
					if (nitr >= 2)
						x = x - x1;
				} else if (a == 9) {
					x = x - 7.0f;   /* 2016 dark at 7 */
				} else {
					x = 0.0f;   /* uniform ASICs: x - x */
				}
				W[i] = x;
			}
		}
		for (size_t i = 0; i < P; i++) {
			f.wm[i] = BPD(&r, G0[i], 0)[i];
			W[i] = flag_value(W[i], &f.wm[i]);
		}
		run(&p, &kc, 0, &f);
		char what[64];
		snprintf(what, sizeof what, "common mode, %d iterations", nitr);
		CHECK_EQ_INT(cmp_f32(f.out, f.wx, what), 0);
		CHECK_EQ_INT(cmp_u32(f.m, f.wm, what), 0);
		CHECK_EQ_INT(cmp_u8(f.g, f.wg, what), 0);
		/* The same through the plain reference. */
		for (size_t i = 0; i < P; i++)
			W[i] = (float)f.A[i] - (G0[i] == 0 ? OFF(&r, 0, 0)[i] : G0[i] == 1 ? 2000.0f : 3000.0f);
		ref_common_mode(W, G0, -30.0f, 30.0f, 0.15, nitr);
		for (size_t i = 0; i < P; i++) {
			uint32_t m = 0;
			W[i] = flag_value(W[i], &m);
		}
		CHECK_EQ_INT(cmp_f32(f.out, f.wx, "common mode reference"), 0);
	}
	/* Common mode off: nothing subtracted. */
	p.common_mode = 0;
	p.cm_n_itr = 4;
	run(&p, &kc, 0, &f);
	CHECK_EQ_F32(f.out[asic_pix(0, 0)], 5.0f);
	CHECK_EQ_F32(f.out[asic_pix(3, 0)], 10.0f);
	free(X0);
	free(G0);
	free(kc.mem);
	frame_free(&f);
	raw_free(&r);
}

/* SPEC step 4 fixes the order of the float64 sum: one pixel at a time,
 * row-major over the ASIC's 64 x 64 pixels.  An ASIC where the order shows:
 * 2^-50 everywhere but 16 at (0, 1) and -16 at (63, 62).  Row-major, every
 * 2^-50 after the 16 is lost (less than half an ulp of 16) until the -16
 * cancels it: sum 2 * 2^-50.  Column-major keeps column 0 (2^-44) and the
 * last column; exact summation keeps all 4094. */
static void test_common_mode_order(void)
{
	struct agipd_params p;
	struct raw r;
	struct kc kc;
	struct frame f;
	char msg[256];
	const float tiny = 0x1p-50f;

	agipd_params_default(&p);
	p.common_mode = 1;
	p.cm_n_itr = 1;
	raw_init(&r, 1, 1);
	frame_init(&f);
	float *x = OFF(&r, 0, 0);
	for (size_t i = 0; i < P; i++) {
		f.A[i] = 0;
		f.D[i] = 0;             /* high gain everywhere */
		x[i] = 1000.25f;        /* X = -1000.25: outside the dark range */
	}
	for (int rr = 0; rr < 64; rr++)
		for (int c = 0; c < 64; c++)
			x[PIX(rr, c)] = -tiny;   /* X = A - Offset = 2^-50 */
	x[PIX(0, 1)] = -16.0f;
	x[PIX(63, 62)] = 16.0f;
	double row = 0, col = 0;
	for (int rr = 0; rr < 64; rr++)
		for (int c = 0; c < 64; c++)
			row += (double)-x[PIX(rr, c)];
	for (int c = 0; c < 64; c++)
		for (int rr = 0; rr < 64; rr++)
			col += (double)-x[PIX(rr, c)];
	float m_row = (float)(row / 4096.0), m_col = (float)(col / 4096.0);
	CHECK(m_row != m_col);   /* the case does tell the orders apart */
	CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
	run(&p, &kc, 0, &f);
	CHECK_EQ_F32(f.out[PIX(0, 0)], tiny - m_row);
	CHECK_EQ_F32(f.out[PIX(0, 1)], 16.0f - m_row);
	CHECK_EQ_F32(f.out[PIX(63, 62)], -16.0f - m_row);
	CHECK_EQ_F32(f.out[PIX(100, 100)], -1000.25f);
	free(kc.mem);
	frame_free(&f);
	raw_free(&r);
}

/* Random frames: the kernel against the plain reference, bit for bit
 * (float64 sum, float32 mean). */
static void test_common_mode_random(void)
{
	struct raw r;
	struct frame f;
	char msg[256];
	static const struct {
		float lo, hi;
		double frac;
		int nitr;
	} settings[] = {
		{ -30.0f, 30.0f, 0.15, 4 },
		{ -10.0f, 20.0f, 0.3, 3 },
		{ -30.0f, 30.0f, 0.6, 10 },
		{ -5.5f, 5.5f, 0.0, 2 },
	};
	raw_init(&r, 2, 1);
	frame_init(&f);
	for (int c = 0; c < 2; c++)
		for (size_t i = 0; i < P; i++) {
			OFF(&r, 0, c)[i] = 5000.0f + rndf(-3.0f, 3.0f);
			OFF(&r, 1, c)[i] = 2000.0f + rndf(-3.0f, 3.0f);
			OFF(&r, 2, c)[i] = 1000.0f + rndf(-3.0f, 3.0f);
		}
	for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.common_mode = 1;
		p.cm_dark_lo = settings[s].lo;
		p.cm_dark_hi = settings[s].hi;
		p.cm_dark_fraction = settings[s].frac;
		p.cm_n_itr = settings[s].nitr;
		CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (int cell = 0; cell < 2; cell++) {
			/* Per ASIC a common shift; dark pixels around it, some signal. */
			for (int a = 0; a < 16; a++) {
				float shift = rndf(-20.0f, 20.0f);
				uint32_t signal_pct = rnd32() % 90;
				for (int j = 0; j < 4096; j++) {
					size_t i = asic_pix(a, j);
					uint32_t u = rnd32() % 100;
					int g = u < 90 ? 0 : u < 96 ? 1 : 2;
					float x = shift + rndf(-12.0f, 12.0f);
					if (rnd32() % 100 < signal_pct)
						x += rndf(0.0f, 300.0f);
					float off = OFF(&r, g, cell)[i];
					float a_ = roundf(off + x);
					f.A[i] = (uint16_t)(a_ < 0 ? 0 : a_ > 65535 ? 65535 : a_);
					f.D[i] = g == 0 ? 50 : g == 1 ? (uint16_t)(150 + 50 * cell) : 400;
					f.wg[i] = (uint8_t)g;
				}
			}
			for (size_t i = 0; i < P; i++)
				f.wx[i] = (float)f.A[i] - OFF(&r, f.wg[i], cell)[i];
			ref_common_mode(f.wx, f.wg, settings[s].lo, settings[s].hi, settings[s].frac, settings[s].nitr);
			for (size_t i = 0; i < P; i++) {
				f.wm[i] = BPD(&r, f.wg[i], cell)[i];
				f.wx[i] = flag_value(f.wx[i], &f.wm[i]);
			}
			run(&p, &kc, cell, &f);
			CHECK_FRAME_F32(&f, "common mode random");
		}
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

/* Relative gain: medians, sanitising and the gain ratios, hand-computed. */
static void test_rel_gain(void)
{
	struct raw r;
	struct frame f;
	char msg[256];
	/* Sanitised values of cell 0's special pixels. */
	float *ml = xcalloc(2 * P, 4), *mh = xcalloc(2 * P, 4), *bl = xcalloc(2 * P, 4), *bh = xcalloc(2 * P, 4);

	raw_init(&r, 2, 1);
	frame_init(&f);
	/* Cell 0. ml: 20 mostly (median 20); [16, 24] kept, outside -> 20, NaN -> 20. */
	{
		float *v = PC(&r, ML, 0);
		static const float in[] = { NAN, 21, 30, 10, 24, 16, 24.001f, 15.999f, -20, INFINITY };
		static const float out[] = { 20, 21, 20, 20, 24, 16, 20, 20, 20, 20 };
		for (size_t i = 0; i < P; i++)
			ml[i] = 20.0f;
		for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) {
			v[100 + k] = in[k];
			ml[100 + k] = out[k];
		}
	}
	/* mh: NaN x4, 0.5, 2.0, then 1.0 and 1.1 alternately (32765 each):
	 * 65532 values, median (1.0 + 1.1) / 2; 0.5 and 2.0 are outliers. */
	const float mh_med = (1.0f + 1.1f) / 2.0f;
	{
		float *v = PC(&r, MH, 0);
		int k = 0;
		for (size_t i = 0; i < P; i++) {
			if (i >= 8 && i < 14)
				continue;
			v[i] = (k++ % 2) ? 1.1f : 1.0f;
			mh[i] = v[i];
		}
		for (size_t i = 8; i < 12; i++)
			v[i] = NAN;
		v[12] = 0.5f;
		v[13] = 2.0f;
		for (size_t i = 8; i < 14; i++)
			mh[i] = mh_med;
		CHECK_EQ_INT(k, 65530);
	}
	/* bl, bh: only NaN replaced (no outlier rule for intercepts). */
	for (size_t i = 0; i < P; i++) {
		bl[i] = 5.0f;
		bh[i] = -40.0f;
	}
	PC(&r, BL, 0)[14] = NAN;
	PC(&r, BL, 0)[15] = 1000.0f;
	bl[15] = 1000.0f;
	PC(&r, BH, 0)[16] = NAN;
	PC(&r, BH, 0)[17] = 1e4f;
	bh[17] = 1e4f;
	PC(&r, BH, 0)[18] = -1e4f;
	bh[18] = -1e4f;
	/* Cell 1: ml 25 (27 at one pixel, NaN at one), mh 1.25, bl 7, bh -30 with
	 * an even split of -30 and -31: median -30.5 replaces NaN. */
	fill_f(PC(&r, ML, 1), 25.0f);
	PC(&r, ML, 1)[0] = 27.0f;
	PC(&r, ML, 1)[1] = NAN;
	fill_f(PC(&r, BL, 1), 7.0f);
	for (size_t i = 0; i < P; i++)
		PC(&r, BH, 1)[i] = i < P / 2 ? -30.0f : -31.0f;
	PC(&r, BH, 1)[2] = NAN;   /* now 32767 at -30, 32768 at -31: median -31 */
	PC(&r, BH, 1)[P - 1] = NAN;   /* 32767 each: median -30.5 */
	for (size_t i = 0; i < P; i++) {
		ml[P + i] = i == 0 ? 27.0f : 25.0f;
		mh[P + i] = 1.25f;
		bl[P + i] = 7.0f;
		bh[P + i] = (i == 2 || i == P - 1) ? -30.5f : PC(&r, BH, 1)[i];
	}
	/* Bad pixels of the PC fit. */
	for (size_t i = 0; i < P; i++) {
		BPPC(&r, 0)[i] = i % 5 == 0 ? 1u << 5 : 0;
		BPPC(&r, 1)[i] = i % 7 == 0 ? 1u << 6 : 0;
	}

	for (int base = 0; base < 2; base++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.rel_gain = 1;
		p.adjust_mg_baseline = base;
		CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (int cell = 0; cell < 2; cell++) {
			const float *ML_ = ml + (size_t)cell * P, *MH_ = mh + (size_t)cell * P;
			const float *BL_ = bl + (size_t)cell * P, *BH_ = bh + (size_t)cell * P;
			for (size_t i = 0; i < P; i++) {
				int g = (int)(i % 3);
				f.D[i] = g == 0 ? 0 : g == 1 ? 180 : 400;
				f.A[i] = (uint16_t)(3500 + (i * 37) % 20000);
				f.wg[i] = (uint8_t)g;
				float x = (float)f.A[i] - OFF(&r, g, cell)[i];
				if (g == 1) {
					float rel1 = ML_[i] / MH_[i];
					x = x * rel1;
					if (base) {
						float t = BH_[i] * ML_[i];
						t = t / MH_[i];
						x = x + (BL_[i] - t);
					}
				} else if (g == 2) {
					float rel2 = 4.48f * ML_[i];
					rel2 = rel2 / MH_[i];
					x = x * rel2;
				}
				f.wm[i] = BPD(&r, g, cell)[i] | BPPC(&r, cell)[i];
				f.wx[i] = flag_value(x, &f.wm[i]);
			}
			run(&p, &kc, cell, &f);
			CHECK_FRAME_F32(&f, base ? "rel gain + baseline" : "rel gain");
		}
		free(kc.mem);
	}
	free(ml);
	free(mh);
	free(bl);
	free(bh);
	frame_free(&f);
	raw_free(&r);
}

static void test_flat_field(void)
{
	struct raw r;
	struct frame f;
	char msg[256];
	float *fs = xcalloc(2 * P, 4);   /* sanitised F per cell */
	float med[2];

	frame_init(&f);
	for (int ff_cells = 1; ff_cells >= 0; ff_cells--) {
		raw_init(&r, 2, ff_cells);
		/* Image 0: 50 mostly; [40, 60] kept, the rest and NaN -> 50. */
		static const float in[] = { NAN, 55, 60, 40, 60.01f, 39.99f, -1, INFINITY, 0, 45.5f };
		static const float out[] = { 50, 55, 60, 40, 50, 50, 50, 50, 50, 45.5f };
		float *v = FF(&r, 0);
		for (size_t i = 0; i < P; i++)
			fs[i] = 50.0f;
		for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) {
			v[1000 + 3 * k] = in[k];
			fs[1000 + 3 * k] = out[k];
		}
		med[0] = 50.0f;
		for (size_t i = 0; i < P; i++)
			BPFF(&r, 0)[i] = i % 11 == 0 ? 1u << 8 : 0;
		if (ff_cells) {
			/* Image 1: 45 and 47 alternately, two NaN: median 46. */
			float *w = FF(&r, 1);
			for (size_t i = 0; i < P; i++) {
				w[i] = i % 2 ? 47.0f : 45.0f;
				fs[P + i] = w[i];
			}
			w[10] = w[11] = NAN;
			fs[P + 10] = fs[P + 11] = 46.0f;
			med[1] = 46.0f;
			for (size_t i = 0; i < P; i++)
				BPFF(&r, 1)[i] = i % 13 == 0 ? 1u << 9 : 0;
		} else {
			memcpy(fs + P, fs, P * 4);
			med[1] = med[0];
		}
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.ff_gain = 1;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (int cell = 0; cell < 2; cell++) {
			CHECK_EQ_F32(kc.k.ff_median[cell], med[cell]);
			for (size_t i = 0; i < P; i++) {
				int g = (int)(rnd32() % 3);
				f.D[i] = g == 0 ? 0 : g == 1 ? 180 : 400;
				f.A[i] = (uint16_t)(rnd32() % 65536);
				f.wg[i] = (uint8_t)g;
				float x = (float)f.A[i] - OFF(&r, g, cell)[i];
				x = x * med[cell];
				x = x / fs[(size_t)cell * P + i];
				f.wm[i] = BPD(&r, g, cell)[i] | BPFF(&r, cell)[i];
				f.wx[i] = flag_value(x, &f.wm[i]);
			}
			run(&p, &kc, cell, &f);
			CHECK_FRAME_F32(&f, ff_cells ? "flat field per cell" : "flat field, one image");
		}
		free(kc.mem);
		raw_free(&r);
	}
	free(fs);
	frame_free(&f);
}

/* Masks: BadPixelsDark[g], | BadPixelsPC with rel gain, | BadPixelsFF with ff gain. */
static void test_masks(void)
{
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, 2, 1);
	frame_init(&f);
	for (int c = 0; c < 2; c++)
		for (size_t i = 0; i < P; i++) {
			for (int g = 0; g < 3; g++)
				BPD(&r, g, c)[i] = rnd32() % 4 ? 0 : (1u << (rnd32() % 11)) | (1u << (13 + g));
			BPPC(&r, c)[i] = rnd32() % 4 ? 0 : 1u << (20 + rnd32() % 4);
			BPFF(&r, c)[i] = rnd32() % 4 ? 0 : 1u << (30 + rnd32() % 2);
		}
	for (int v = 0; v < 4; v++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.rel_gain = v & 1;
		p.ff_gain = (v >> 1) & 1;
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (int cell = 0; cell < 2; cell++) {
			for (size_t i = 0; i < P; i++) {
				int g = (int)(rnd32() % 3);
				f.D[i] = g == 0 ? 0 : g == 1 ? 180 : 400;
				f.A[i] = 4000;
				f.wg[i] = (uint8_t)g;
				uint32_t m = BPD(&r, g, cell)[i];
				if (p.rel_gain)
					m |= BPPC(&r, cell)[i];
				if (p.ff_gain)
					m |= BPFF(&r, cell)[i];
				f.wm[i] = m;
			}
			run(&p, &kc, cell, &f);
			static const char *const names[4] = { "mask: dark only", "mask: dark | PC", "mask: dark | FF",
							      "mask: dark | PC | FF" };
			CHECK_EQ_INT(cmp_u8(f.g, f.wg, names[v]), 0);
			CHECK_EQ_INT(cmp_u32(f.m, f.wm, names[v]), 0);
		}
		free(kc.mem);
	}
	frame_free(&f);
	raw_free(&r);
}

/* Everything on, random constants with NaN and outliers, against a reference
 * built here from the SPEC's words (sort-based medians). */
/* Plausible random constants of pixel i of cell c: thresholds, offsets,
 * slopes and flat field in their usual ranges. */
static void random_pixel(struct raw *r, int c, size_t i)
{
	THR(r, 0, c)[i] = rndf(4000.0f, 5000.0f);
	THR(r, 1, c)[i] = rndf(6000.0f, 7000.0f);
	OFF(r, 0, c)[i] = rndf(4000.0f, 6000.0f);
	OFF(r, 1, c)[i] = rndf(4500.0f, 6500.0f);
	OFF(r, 2, c)[i] = rndf(3000.0f, 4000.0f);
	PC(r, ML, c)[i] = rndf(18.0f, 30.0f);
	PC(r, BL, c)[i] = rndf(-100.0f, 300.0f);
	PC(r, MH, c)[i] = rndf(0.6f, 1.1f);
	PC(r, BH, c)[i] = rndf(-2000.0f, 1000.0f);
	FF(r, c)[i] = rndf(40.0f, 70.0f);
}

static void test_all_steps_random(void)
{
	const int n = 2;
	struct raw r;
	struct frame f;
	char msg[256];

	raw_init(&r, n, 1);
	frame_init(&f);
	for (int c = 0; c < n; c++)
		for (size_t i = 0; i < P; i++) {
			random_pixel(&r, c, i);
			if (rnd32() % 50 == 0)
				PC(&r, ML, c)[i] = NAN;
			if (rnd32() % 50 == 0)
				PC(&r, MH, c)[i] = rnd32() % 2 ? NAN : 0.0f;
			if (rnd32() % 50 == 0)
				PC(&r, BL, c)[i] = NAN;
			if (rnd32() % 50 == 0)
				PC(&r, BH, c)[i] = NAN;
			if (rnd32() % 50 == 0)
				FF(&r, c)[i] = rnd32() % 2 ? NAN : 1000.0f;
			if (rnd32() % 1000 == 0)
				OFF(&r, rnd32() % 3, c)[i] = NAN;
		}
	/* Reference constants. */
	float *rel1 = xcalloc((size_t)n * P, 4), *rel2 = xcalloc((size_t)n * P, 4), *bas = xcalloc((size_t)n * P, 4);
	float *ffs = xcalloc((size_t)n * P, 4), ffmed[2];
	for (int c = 0; c < n; c++) {
		float mml = ref_median(PC(&r, ML, c), P), mbl = ref_median(PC(&r, BL, c), P);
		float mmh = ref_median(PC(&r, MH, c), P), mbh = ref_median(PC(&r, BH, c), P);
		ffmed[c] = ref_median(FF(&r, c), P);
		for (size_t i = 0; i < P; i++) {
			float a = PC(&r, ML, c)[i], b = PC(&r, BL, c)[i], m = PC(&r, MH, c)[i], d = PC(&r, BH, c)[i];
			float F = FF(&r, c)[i];
			if (isnan(a) || a < 0.8f * mml || a > 1.2f * mml)
				a = mml;
			if (isnan(m) || m < 0.8f * mmh || m > 1.2f * mmh)
				m = mmh;
			if (isnan(b))
				b = mbl;
			if (isnan(d))
				d = mbh;
			if (isnan(F) || F < 0.8f * ffmed[c] || F > 1.2f * ffmed[c])
				F = ffmed[c];
			size_t k = (size_t)c * P + i;
			rel1[k] = a / m;
			rel2[k] = (4.48f * a) / m;
			bas[k] = b - (d * a) / m;
			ffs[k] = F;
		}
	}
	for (int dt = 0; dt < 2; dt++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.common_mode = 1;
		p.rel_gain = 1;
		p.adjust_mg_baseline = 1;
		p.ff_gain = 1;
		p.photon_energy = 9.3;
		p.data_dtype = dt ? AGIPD_DTYPE_FLOAT16 : AGIPD_DTYPE_FLOAT32;
		CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		for (int cell = 0; cell < n; cell++) {
			CHECK_EQ_F32(kc.k.ff_median[cell], ffmed[cell]);
			CHECK_EQ_F32(kc.k.photon_div[cell], ffmed[cell] * 9.3f);
			for (size_t i = 0; i < P; i++) {
				float a0 = OFF(&r, 0, cell)[i] + rndf(-25.0f, 25.0f);
				f.A[i] = isnan(a0) ? 5000 : (uint16_t)a0;
				if (rnd32() % 10 == 0)
					f.A[i] = (uint16_t)(rnd32() % 65536);
				f.D[i] = (uint16_t)(rnd32() % 8000);
				float D = (float)f.D[i];
				int g = D > THR(&r, 0, cell)[i] ? 1 : 0;
				g = D > THR(&r, 1, cell)[i] ? 2 : g;
				f.wg[i] = (uint8_t)g;
				f.wx[i] = (float)f.A[i] - OFF(&r, g, cell)[i];
			}
			ref_common_mode(f.wx, f.wg, -30.0f, 30.0f, 0.15, 4);
			for (size_t i = 0; i < P; i++) {
				size_t k = (size_t)cell * P + i;
				int g = f.wg[i];
				float x = f.wx[i];
				if (g == 1)
					x = x * rel1[k] + bas[k];
				else if (g == 2)
					x = x * rel2[k];
				x = (x * ffmed[cell]) / ffs[k];
				x = x / (ffmed[cell] * 9.3f);
				uint32_t m = BPD(&r, g, cell)[i] | BPPC(&r, cell)[i] | BPFF(&r, cell)[i];
				x = flag_value(x, &m);
				if (dt && fabsf(x) > 65504.0f) {
					m |= OOR_BIT;
					x = x > 0 ? 65504.0f : -65504.0f;
				}
				f.wx[i] = x;
				f.wm[i] = m;
				f.wh[i] = agipd_f32_to_f16(x);
			}
			run(&p, &kc, cell, &f);
			if (dt) {
				CHECK_EQ_INT(cmp_u8(f.g, f.wg, "all steps f16 gain"), 0);
				CHECK_EQ_INT(cmp_u16((const uint16_t *)f.out, f.wh, "all steps f16 data"), 0);
				CHECK_EQ_INT(cmp_u32(f.m, f.wm, "all steps f16 mask"), 0);
			} else {
				CHECK_FRAME_F32(&f, "all steps");
			}
		}
		free(kc.mem);
	}
	free(rel1);
	free(rel2);
	free(bas);
	free(ffs);
	frame_free(&f);
	raw_free(&r);
}

/* agipd_correct_cell() on a cell's frames, tile by tile, gives what
 * agipd_correct_frame() gives frame by frame, bit for bit, for every switch
 * and output type (the run uses the former, the reference tests the latter). */
static void test_cell_equals_frame(void)
{
	enum { NC = 2, NF = 3 };
	struct raw r;
	char msg[256];
	raw_init(&r, NC, 1);
	for (int c = 0; c < NC; c++)
		for (size_t i = 0; i < P; i++) {
			random_pixel(&r, c, i);
			BPD(&r, rnd32() % 3, c)[i] = rnd32() % 20 == 0;
			if (rnd32() % 1000 == 0)
				OFF(&r, rnd32() % 3, c)[i] = NAN;
		}
	uint16_t *raw = xcalloc((size_t)NF * 2 * P, 2);
	for (size_t i = 0; i < (size_t)NF * 2 * P; i++)
		raw[i] = (uint16_t)(rnd32() % 10 == 0 ? rnd32() % 65536 : 3000 + rnd32() % 5000);
	float *want = xcalloc((size_t)NF * P, 4), *got = xcalloc((size_t)NF * P, 4), *scratch = xcalloc(P, 4);
	uint8_t *wg = xcalloc((size_t)NF * P, 1), *gg = xcalloc((size_t)NF * P, 1);
	uint32_t *wm = xcalloc((size_t)NF * P, 4), *gm = xcalloc((size_t)NF * P, 4);
	for (int variant = 0; variant < 12; variant++) {
		struct agipd_params p;
		struct kc kc;
		agipd_params_default(&p);
		p.gain_mode = variant == 1 ? AGIPD_GAIN_FIXED_MEDIUM : AGIPD_GAIN_ADAPTIVE;
		p.force_mg_if_below = p.force_hg_if_below = variant == 2;
		p.rel_gain = variant >= 3;
		p.adjust_mg_baseline = variant >= 4;
		p.ff_gain = variant >= 5;
		p.photon_energy = variant >= 6 ? 9.3 : 0;
		p.round_photons = variant == 7 || variant == 9;
		p.data_dtype = variant == 8 ? AGIPD_DTYPE_FLOAT16 : variant == 9 ? AGIPD_DTYPE_INT16 : AGIPD_DTYPE_FLOAT32;
		p.common_mode = variant >= 10;
		CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
		CHECK_EQ_INT(kc_build(&kc, &p, &r, msg, sizeof msg), 0);
		const size_t dsz = agipd_dtype_size(p.data_dtype);
		for (int cell = 0; cell < NC; cell++) {
			const uint16_t *an[NF], *dg[NF];
			void *dt[NF];
			uint8_t *gn[NF];
			uint32_t *mk[NF];
			memset(got, 0x5a, (size_t)NF * P * 4);
			memset(gm, 0x5a, (size_t)NF * P * 4);
			for (int j = 0; j < NF; j++) {
				an[j] = raw + (size_t)j * 2 * P;
				dg[j] = an[j] + P;
				agipd_correct_frame(&p, &kc.k, cell, an[j], dg[j], (char *)want + (size_t)j * P * dsz,
						    wg + (size_t)j * P, wm + (size_t)j * P, scratch);
				dt[j] = (char *)got + (size_t)j * P * dsz;
				gn[j] = gg + (size_t)j * P;
				mk[j] = gm + (size_t)j * P;
			}
			agipd_correct_cell(&p, &kc.k, cell, NF, an, dg, dt, gn, mk, scratch);
			CHECK_EQ_INT(memcmp(got, want, (size_t)NF * P * dsz), 0);
			CHECK_EQ_INT(cmp_u8(gg, wg, "cell gain"), 0);
			CHECK_EQ_INT(memcmp(gm, wm, (size_t)NF * P * 4), 0);
		}
		free(kc.mem);
	}
	free(raw);
	free(want);
	free(got);
	free(scratch);
	free(wg);
	free(gg);
	free(wm);
	free(gm);
	raw_free(&r);
}

/* Preparing cells in chunks (cell0 > 0) gives the same constants as at once. */
static void test_prepare_chunks(void)
{
	struct raw r, r0, r1;
	struct agipd_params p;
	struct kc whole;
	char msg[256];
	agipd_params_default(&p);
	p.rel_gain = p.adjust_mg_baseline = p.ff_gain = 1;
	p.photon_energy = 6.0;
	raw_init(&r, 3, 1);
	for (int c = 0; c < 3; c++)
		for (size_t i = 0; i < P; i++) {
			THR(&r, 0, c)[i] = rndf(0, 100);
			OFF(&r, 1, c)[i] = rndf(0, 100);
			PC(&r, ML, c)[i] = rndf(15, 25);
			PC(&r, MH, c)[i] = rndf(0.8f, 1.2f);
			FF(&r, c)[i] = rndf(40, 60);
			BPPC(&r, c)[i] = rnd32() & 0xff;
		}
	CHECK_EQ_INT(kc_build(&whole, &p, &r, msg, sizeof msg), 0);
	/* Cells 0-1 from one raw set, cell 2 from another, into one struct. */
	struct agipd_consts k;
	agipd_consts_layout(&p, &k);
	uint32_t *mem = xcalloc(agipd_consts_words(&k, 3), 4);
	memset(mem, 0xff, agipd_consts_words(&k, 3) * 4);
	agipd_consts_attach(&k, 3, mem);
	float *scratch = xcalloc(P, 4);
	raw_init(&r0, 2, 1);
	raw_init(&r1, 1, 1);
	for (int c = 0; c < 3; c++) {
		struct raw *d = c < 2 ? &r0 : &r1;
		int dc = c < 2 ? c : 0;
		for (int kk = 0; kk < 5; kk++)
			memcpy(THR(d, kk, dc), THR(&r, kk, c), P * 4);
		for (int g = 0; g < 3; g++) {
			memcpy(OFF(d, g, dc), OFF(&r, g, c), P * 4);
			memcpy(BPD(d, g, dc), BPD(&r, g, c), P * 4);
		}
		for (int kk = 0; kk < 10; kk++)
			memcpy(PC(d, kk, dc), PC(&r, kk, c), P * 4);
		memcpy(BPPC(d, dc), BPPC(&r, c), P * 4);
		memcpy(FF(d, dc), FF(&r, c), P * 4);
		memcpy(BPFF(d, dc), BPFF(&r, c), P * 4);
	}
	struct agipd_raw_consts v0 = raw_view(&r0, 1), v1 = raw_view(&r1, 1);
	CHECK_EQ_INT(agipd_consts_prepare(&p, &v0, 0, &k, scratch, msg, sizeof msg), 0);
	CHECK_EQ_INT(agipd_consts_prepare(&p, &v1, 2, &k, scratch, msg, sizeof msg), 0);
	CHECK(memcmp(mem, whole.mem, agipd_consts_words(&k, 3) * 4) == 0);
	for (int c = 0; c < 3; c++) {
		CHECK_EQ_F32(k.ff_median[c], whole.k.ff_median[c]);
		CHECK_EQ_F32(k.photon_div[c], whole.k.photon_div[c]);
	}
	free(scratch);
	free(mem);
	free(whole.mem);
	raw_free(&r);
	raw_free(&r0);
	raw_free(&r1);
}

static void test_median(void)
{
	{
		float v[] = { 3, 1, 2 };
		CHECK_EQ_F32(agipd_median_f32(v, 3), 2.0f);
	}
	{
		float v[] = { 4, 1, 3, 2 };
		CHECK_EQ_F32(agipd_median_f32(v, 4), 2.5f);
	}
	{
		float v[] = { NAN, 1, NAN, 3 };
		CHECK_EQ_F32(agipd_median_f32(v, 4), 2.0f);
	}
	{
		float v[] = { NAN, NAN, NAN };
		CHECK(isnan(agipd_median_f32(v, 3)));
	}
	{
		float v[1] = { 0 };
		CHECK(isnan(agipd_median_f32(v, 0)));
	}
	{
		float v[] = { -7.5f };
		CHECK_EQ_F32(agipd_median_f32(v, 1), -7.5f);
	}
	{
		float v[] = { 5, 5, 5, 1, 5 };
		CHECK_EQ_F32(agipd_median_f32(v, 5), 5.0f);
	}
	{
		float v[] = { 1, 1, 2, 2 };
		CHECK_EQ_F32(agipd_median_f32(v, 4), 1.5f);
	}
	{
		float v[] = { 2, 2, 2, 2, 2, 2 };
		CHECK_EQ_F32(agipd_median_f32(v, 6), 2.0f);
	}
	{
		float v[] = { -INFINITY, 1, 2, INFINITY };
		CHECK_EQ_F32(agipd_median_f32(v, 4), 1.5f);
	}
	{
		float v[] = { INFINITY, NAN, 3, INFINITY };
		CHECK_EQ_F32(agipd_median_f32(v, 4), INFINITY);
	}
	{
		float v[] = { 0.1f, 0.2f };   /* float32 mean */
		CHECK_EQ_F32(agipd_median_f32(v, 2), (0.1f + 0.2f) / 2.0f);
	}
	/* Random arrays of every size 1..300 and some large ones, with NaN and
	 * duplicates, against the sort-based reference. */
	float *v = xcalloc(P + 1, 4), *copy = xcalloc(P + 1, 4);
	int bad = 0;
	for (int trial = 0; trial < 1200; trial++) {
		size_t n = trial < 300 ? (size_t)trial + 1 : trial < 1190 ? 1 + rnd32() % 2000 : P + (size_t)(trial % 2);
		int kind = trial % 4;
		for (size_t i = 0; i < n; i++) {
			switch (kind) {
			case 0:
				v[i] = rndf(-1000.0f, 1000.0f);
				break;
			case 1:   /* many duplicates */
				v[i] = (float)(rnd32() % 5);
				break;
			case 2:   /* NaN sprinkled */
				v[i] = rnd32() % 5 == 0 ? NAN : rndf(0.0f, 1.0f);
				break;
			default:  /* sorted runs, mostly NaN */
				v[i] = rnd32() % 10 < 8 ? NAN : (float)i;
				break;
			}
		}
		memcpy(copy, v, n * 4);
		float want = ref_median(copy, n);
		float got = agipd_median_f32(v, n);
		if (!((isnan(got) && isnan(want)) || memcmp(&got, &want, 4) == 0) && bad++ < 4)
			printf("  median of %zu values (kind %d): %.9g, expected %.9g\n", n, kind, (double)got,
			       (double)want);
	}
	CHECK_EQ_INT(bad, 0);
	free(v);
	free(copy);
}

static void test_params(void)
{
	struct agipd_params p;
	char msg[256];

	agipd_params_default(&p);
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
	CHECK_EQ_F32(p.mg_hard_threshold, 1000.0f);
	CHECK_EQ_F32(p.hg_hard_threshold, 1000.0f);
	CHECK_EQ_F32(p.cm_dark_lo, -30.0f);
	CHECK_EQ_F32(p.cm_dark_hi, 30.0f);
	CHECK(p.cm_dark_fraction == 0.15);
	CHECK_EQ_INT(p.cm_n_itr, 4);
	CHECK_EQ_F32(p.rounding_threshold, 0.5f);
	CHECK_EQ_INT(p.data_dtype, AGIPD_DTYPE_FLOAT32);
	CHECK_EQ_INT(p.gain_mode, AGIPD_GAIN_ADAPTIVE);
	CHECK_EQ_INT(agipd_dtype_size(AGIPD_DTYPE_FLOAT32), 4);
	CHECK_EQ_INT(agipd_dtype_size(AGIPD_DTYPE_INT16), 2);

	/* int16 needs round-photons. */
	agipd_params_default(&p);
	p.data_dtype = AGIPD_DTYPE_INT16;
	msg[0] = 0;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	CHECK(strstr(msg, "int16") != NULL);
	p.photon_energy = 9.3;
	p.round_photons = 1;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
	/* round-photons needs photon energy. */
	agipd_params_default(&p);
	p.round_photons = 1;
	msg[0] = 0;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	CHECK(strstr(msg, "photon-energy") != NULL);
	/* adu-per-kev acts only with photon energy; alone it is no error (SPEC 7
	 * does not make it one; the kernel then converts nothing, see
	 * test_photon_conversion). */
	agipd_params_default(&p);
	p.adu_per_kev = 8.0;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
	p.photon_energy = 9.3;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), 0);
	p.adu_per_kev = -8.0;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	/* Nonsense numbers. */
	agipd_params_default(&p);
	p.photon_energy = -1;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	p.photon_energy = NAN;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	agipd_params_default(&p);
	p.cells_step = 0;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	agipd_params_default(&p);
	p.cells_start = 10;
	p.cells_stop = 5;
	CHECK_EQ_INT(agipd_params_check(&p, msg, sizeof msg), -1);
	/* A tiny message buffer is not overrun. */
	agipd_params_default(&p);
	p.round_photons = 1;
	char tiny[8];
	memset(tiny, 'x', sizeof tiny);
	CHECK_EQ_INT(agipd_params_check(&p, tiny, 4), -1);
	CHECK(tiny[3] == 0 && tiny[4] == 'x');
}

static void test_keep_cell(void)
{
	struct agipd_params p;
	agipd_params_default(&p);
	for (unsigned c = 0; c < AGIPD_MAX_CELLS; c++)
		CHECK(agipd_params_keep_cell(&p, c));
	p.cells_start = 2;
	p.cells_stop = 10;
	p.cells_step = 3;
	static const unsigned yes[] = { 2, 5, 8 }, no[] = { 0, 1, 3, 4, 6, 7, 9, 10, 11, 14, 65535 };
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		CHECK(agipd_params_keep_cell(&p, yes[i]));
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		CHECK(!agipd_params_keep_cell(&p, no[i]));
	p.cells_start = 5;
	p.cells_stop = 6;
	p.cells_step = 1;
	CHECK(agipd_params_keep_cell(&p, 5));
	CHECK(!agipd_params_keep_cell(&p, 4) && !agipd_params_keep_cell(&p, 6));
	p.cells_start = 0;
	p.cells_stop = 352;
	p.cells_step = 2;
	CHECK(agipd_params_keep_cell(&p, 350) && !agipd_params_keep_cell(&p, 351) && !agipd_params_keep_cell(&p, 352));
}

/* Which cells each rank of a node converts: contiguous, disjoint, covering
 * every cell, sizes differing by at most one, also with more ranks than cells. */
static void test_share_range(void)
{
	static const int cells[] = { 1, 2, 7, 352 }, ranks[] = { 1, 2, 3, 5, 8 };
	for (size_t a = 0; a < sizeof cells / sizeof *cells; a++)
		for (size_t b = 0; b < sizeof ranks / sizeof *ranks; b++) {
			int n = cells[a], nn = ranks[b], next = 0, lo, hi;
			int small = n / nn;
			for (int r = 0; r < nn; r++) {
				agipd_consts_share_range(n, r, nn, &lo, &hi);
				CHECK_EQ_INT(lo, next);
				CHECK(hi - lo == small || hi - lo == small + 1);
				next = hi;
			}
			CHECK_EQ_INT(next, n);
		}
}

int main(void)
{
	TEST("kernel: gain stage, strict thresholds, NaN thresholds, offsets")
		test_gain_stage();
	TEST("kernel: fixed gain modes")
		test_fixed_gain();
	TEST("kernel: force-mg/force-hg boundaries")
		test_force_gain();
	TEST("kernel: NaN, inf and |X| > 1e7 flagged and zeroed")
		test_value_flags();
	TEST("kernel: agipd_f32_to_f16 rounding and agipd_f16_to_f32")
		test_f16_conversion();
	TEST("kernel: float16 output, clamping")
		test_f16_output();
	TEST("kernel: int16 output, clamping")
		test_int16_output();
	TEST("kernel: round photons")
		test_round_photons();
	TEST("kernel: photon conversion, --adu-per-kev and SlopesFF median")
		test_photon_conversion();
	TEST("kernel: unusable photon conversion factor refused")
		test_photon_factor_refused();
	TEST("kernel: common mode, hand-made ASICs")
		test_common_mode_cases();
	TEST("kernel: common mode, float64 sum in the SPEC's order (row-major over the ASIC)")
		test_common_mode_order();
	TEST("kernel: common mode, random frames vs reference")
		test_common_mode_random();
	TEST("kernel: relative gain, medians and sanitising")
		test_rel_gain();
	TEST("kernel: flat field, with and without cell axis")
		test_flat_field();
	TEST("kernel: masks")
		test_masks();
	TEST("kernel: all steps, random constants vs reference")
		test_all_steps_random();
	TEST("kernel: a cell's frames in tiles equal frame by frame, every switch and type")
		test_cell_equals_frame();
	TEST("kernel: constants prepared in chunks")
		test_prepare_chunks();
	TEST("kernel: agipd_median_f32")
		test_median();
	TEST("consts: cells per rank of a node")
		test_share_range();
	TEST("kernel: agipd_params_check")
		test_params();
	TEST("kernel: agipd_params_keep_cell")
		test_keep_cell();
	UNIT_EXIT();
}
