/*
 * kernel.c - the per-frame correction of SPEC section 4 over constants laid
 * out by consts.c.  Pure: no MPI, no HDF5, no I/O.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_kernel.h"

#define P AGIPD_PIXELS

size_t agipd_dtype_size(enum agipd_dtype t)
{
	return t == AGIPD_DTYPE_FLOAT32 ? 4 : 2;
}

void agipd_params_default(struct agipd_params *p)
{
	memset(p, 0, sizeof *p);
	p->gain_mode = AGIPD_GAIN_ADAPTIVE;
	p->mg_hard_threshold = 1000.0f;
	p->hg_hard_threshold = 1000.0f;
	p->cm_dark_lo = -30.0f;
	p->cm_dark_hi = 30.0f;
	p->cm_dark_fraction = 0.15;
	p->cm_n_itr = 4;
	p->rounding_threshold = 0.5f;
	p->data_dtype = AGIPD_DTYPE_FLOAT32;
	p->cells_start = 0;
	p->cells_stop = AGIPD_MAX_CELLS * 1000L; /* "all" */
	p->cells_step = 1;
}

int agipd_params_check(const struct agipd_params *p, char *msg, size_t msglen)
{
#define BAD(...) do { snprintf(msg, msglen, __VA_ARGS__); return -1; } while (0)
	if (p->cells_step <= 0)
		BAD("--cells: STEP must be positive (got %ld)", p->cells_step);
	if (p->cells_start < 0 || p->cells_stop < 0)
		BAD("--cells: START and STOP must not be negative");
	if (p->cells_stop <= p->cells_start)
		BAD("--cells %ld:%ld selects no memory cell (STOP must be greater than START)",
		    p->cells_start, p->cells_stop);
	if (p->common_mode) {
		if (!(p->cm_dark_lo <= p->cm_dark_hi))
			BAD("--cm-dark-range: LO must not exceed HI");
		if (!(p->cm_dark_fraction >= 0 && p->cm_dark_fraction <= 1))
			BAD("--cm-dark-fraction must be within [0, 1]");
		if (p->cm_n_itr < 0)
			BAD("--cm-n-itr must not be negative");
	}
	if (p->photon_energy < 0 || isnan(p->photon_energy) || isinf(p->photon_energy))
		BAD("--photon-energy must be a positive number of keV (got %g)", p->photon_energy);
	if (p->adu_per_kev < 0 || isnan(p->adu_per_kev) || isinf(p->adu_per_kev))
		BAD("--adu-per-kev must be positive (got %g)", p->adu_per_kev);
	if (p->round_photons && p->photon_energy == 0)
		BAD("--round-photons needs --photon-energy");
	if (p->data_dtype == AGIPD_DTYPE_INT16 && !p->round_photons)
		BAD("--data-dtype int16 needs --round-photons");
	/* As SPEC section 4 reads, these are no errors: --adjust-mg-baseline acts
	 * only with --rel-gain, --adu-per-kev only with --photon-energy, and
	 * fixed-gain runs skip the forced gain of step 2. */
	return 0;
#undef BAD
}

int agipd_params_keep_cell(const struct agipd_params *p, unsigned cell)
{
	long c = (long)cell;
	return c >= p->cells_start && c < p->cells_stop && (c - p->cells_start) % p->cells_step == 0;
}

uint16_t agipd_f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000u;
	uint32_t ax = x & 0x7fffffffu;
	if (ax >= 0x7f800000u)                          /* inf or NaN */
		return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
	if (ax >= 0x477ff000u)                          /* rounds to >= 65520: overflow */
		return (uint16_t)(sign | 0x7c00u);
	if (ax < 0x38800000u) {                         /* below 2^-14: subnormal or zero */
		if (ax < 0x33000000u)                   /* below half the smallest subnormal */
			return (uint16_t)sign;
		uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
		int shift = 126 - (int)(ax >> 23);      /* 14..24 */
		uint32_t h = mant >> shift;
		uint32_t rem = mant & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	uint32_t h = ((ax - 0x38000000u) >> 13);      /* rebias exponent 127 -> 15 */
	uint32_t rem = ax & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++;                                    /* may carry into the exponent: fine */
	return (uint16_t)(sign | h);
}

float agipd_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
	if (e == 0) {
		if (m == 0) {
			x = sign;
		} else {                                /* subnormal: normalise */
			e = 113;
			while (!(m & 0x400u)) {
				m <<= 1;
				e--;
			}
			x = sign | (e << 23) | ((m & 0x3ffu) << 13);
		}
	} else if (e == 31) {
		x = sign | 0x7f800000u | (m << 13);
	} else {
		x = sign | ((e + 112) << 23) | (m << 13);
	}
	float f;
	memcpy(&f, &x, 4);
	return f;
}

/* Step 4: per ASIC, iteratively subtract the mean of the dark high-gain pixels. */
static void common_mode(const struct agipd_params *p, float *X, const uint8_t *g)
{
	const double need = p->cm_dark_fraction * (double)AGIPD_ASIC_PIXELS;
	for (int a = 0; a < AGIPD_ASICS; a++) {
		const int r0 = AGIPD_ASIC_SIZE * (a % 8), c0 = AGIPD_ASIC_SIZE * (a / 8);
		for (int it = 0; it < p->cm_n_itr; it++) {
			double sum = 0;
			long count = 0;
			for (int r = r0; r < r0 + AGIPD_ASIC_SIZE; r++) {
				const float *x = X + (size_t)r * AGIPD_COLS + c0;
				const uint8_t *gg = g + (size_t)r * AGIPD_COLS + c0;
				for (int c = 0; c < AGIPD_ASIC_SIZE; c++) {
					float v = x[c];
					if (gg[c] == 0 && isfinite(v) && v >= p->cm_dark_lo && v <= p->cm_dark_hi) {
						sum += v;
						count++;
					}
				}
			}
			/* Literally as SPEC step 4 reads: with a fraction of 0 and no dark
			 * pixel, the mean of none is NaN and so become the pixels. */
			if (!((double)count >= need))
				break;
			float mean = (float)(sum / (double)count);
			for (int r = r0; r < r0 + AGIPD_ASIC_SIZE; r++) {
				float *x = X + (size_t)r * AGIPD_COLS + c0;
				const uint8_t *gg = g + (size_t)r * AGIPD_COLS + c0;
				for (int c = 0; c < AGIPD_ASIC_SIZE; c++)
					if (gg[c] == 0)
						x[c] -= mean;
			}
		}
	}
}

/*
 * A frame goes through a few simple passes over its pixels, each a straight
 * loop that the compiler vectorises (conditions become blends); only enabled
 * steps run.  agipd_correct_cell() makes the passes over one tile of pixels
 * for all frames of a cell before the next tile: the tile's constants (8
 * planes of the default job: 128 KiB at 4096 pixels) and each frame's part
 * of X, gain and mask stay in L2, where a whole frame's constants (2 MiB)
 * would not.
 * Built twice (AVX2 and baseline x86-64), chosen at load time.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL_CLONES
#endif

static inline uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/*
 * The passes below load every operand of a selection unconditionally (a
 * load under a condition keeps the compiler from vectorising: it might
 * fault), work on pointers offset to the tile's first pixel, and tell the
 * compiler that their arrays do not overlap (ivdep: the inlined restrict
 * qualifiers are not enough for it, and its run-time overlap checks fell back
 * to scalar loops).
 */

/* Steps 1-3 over pixels [i0, i0 + n): gain stage, forced gain, offset into
 * X[0 .. n). */
static inline __attribute__((always_inline)) void
steps_gain_offset(const struct agipd_params *p, const struct agipd_consts *k, int cell, size_t i0, size_t n,
		  const uint16_t *restrict analog, const uint16_t *restrict digital, uint8_t *restrict gain,
		  float *restrict X)
{
	const float *restrict off0 = agipd_consts_f(k, cell, AGIPD_F_OFF0) + i0;
	const float *restrict off1 = agipd_consts_f(k, cell, AGIPD_F_OFF1) + i0;
	const float *restrict off2 = agipd_consts_f(k, cell, AGIPD_F_OFF2) + i0;
	const uint16_t *restrict A = analog + i0;
	uint8_t *restrict G = gain + i0;

	if (p->gain_mode == AGIPD_GAIN_ADAPTIVE) {
		const float *restrict t0 = agipd_consts_f(k, cell, AGIPD_F_THR0) + i0;
		const float *restrict t1 = agipd_consts_f(k, cell, AGIPD_F_THR1) + i0;
		const uint16_t *restrict Dg = digital + i0;
		const float mgt = p->mg_hard_threshold, hgt = p->hg_hard_threshold;
		const int fmg = p->force_mg_if_below, fhg = p->force_hg_if_below;
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++) {
			float D = (float)Dg[i], a = t0[i], b = t1[i];
			uint32_t g = D > a ? 1u : 0u;
			g = D > b ? 2u : g;
			G[i] = (uint8_t)g;
		}
		if (fmg | fhg) {
			_Pragma("GCC ivdep")
			for (size_t i = 0; i < n; i++) {
				float M = (float)A[i] - off1[i];
				int g = G[i];
				if (fmg && g == 2 && M < mgt)
					g = 1;
				if (fhg && g > 0 && M < hgt)
					g = 0;
				G[i] = (uint8_t)g;
			}
		}
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++) {
			uint32_t g = G[i];
			float o0 = off0[i], o1 = off1[i], o2 = off2[i];
			float o = g == 0 ? o0 : o1;
			o = g == 2 ? o2 : o;
			X[i] = (float)A[i] - o;
		}
	} else {
		const uint8_t g = (uint8_t)(p->gain_mode - AGIPD_GAIN_FIXED_HIGH);
		const float *restrict off = g == 0 ? off0 : g == 1 ? off1 : off2;
		memset(G, g, n);
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++)
			X[i] = (float)A[i] - off[i];
	}
}

/* Steps 8's mask and runtime flags over X[0 .. n), pixels from i0;
 * flag_or: OR in what step 7 marked in mask.  A constant at each call. */
static inline __attribute__((always_inline)) void
step_mask(const struct agipd_consts *k, int cell, size_t i0, size_t n, float *restrict X,
	  const uint8_t *restrict gain, uint32_t *restrict mask, const int flag_or)
{
	const uint32_t *restrict m0 = agipd_consts_u(k, cell, AGIPD_F_MASK0) + i0;
	const uint32_t *restrict m1 = agipd_consts_u(k, cell, AGIPD_F_MASK1) + i0;
	const uint32_t *restrict m2 = agipd_consts_u(k, cell, AGIPD_F_MASK2) + i0;
	const uint8_t *restrict G = gain + i0;
	uint32_t *restrict Mk = mask + i0;
	_Pragma("GCC ivdep")
	for (size_t i = 0; i < n; i++) {
		uint32_t g = G[i];
		uint32_t a = m0[i], b = m1[i], c = m2[i];
		uint32_t m = g == 0 ? a : b;
		m = g == 2 ? c : m;
		if (flag_or)
			m |= Mk[i];
		float x = X[i];
		uint32_t nonfinite = (f32_bits(x) & 0x7f800000u) == 0x7f800000u;
		m |= nonfinite ? (uint32_t)AGIPD_BP_VALUE_IS_NAN : 0u;
		x = nonfinite ? 0.0f : x;
		uint32_t big = fabsf(x) > 1e7f;
		m |= big ? (uint32_t)AGIPD_BP_VALUE_OUT_OF_RANGE : 0u;
		X[i] = big ? 0.0f : x;
		Mk[i] = m;
	}
}

/* Steps 5-9 over pixels [i0, i0 + n) of X[0 .. n): relative gain,
 * baseline, flat field, photons, mask and runtime flags, the output type. */
static inline __attribute__((always_inline)) void
steps_gain_to_output(const struct agipd_params *p, const struct agipd_consts *k, int cell, size_t i0, size_t n,
		     float *restrict X, void *data, const uint8_t *restrict gain, uint32_t *restrict mask)
{
	const uint8_t *restrict G = gain + i0;
	uint32_t *restrict Mk = mask + i0;
	/* Step 5: X * rel[g] (rel[0] = 1 leaves X as it is), medium-gain baseline. */
	if (p->rel_gain) {
		const float *restrict r1 = agipd_consts_f(k, cell, AGIPD_F_REL1) + i0;
		const float *restrict r2 = agipd_consts_f(k, cell, AGIPD_F_REL2) + i0;
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++) {
			uint32_t g = G[i];
			float a = r1[i], b = r2[i];
			float r = g == 1 ? a : 1.0f;
			r = g == 2 ? b : r;
			X[i] = X[i] * r;
		}
		if (p->adjust_mg_baseline) {
			const float *restrict bl = agipd_consts_f(k, cell, AGIPD_F_BASE) + i0;
			_Pragma("GCC ivdep")
			for (size_t i = 0; i < n; i++) {
				float x = X[i], y = x + bl[i];
				X[i] = G[i] == 1 ? y : x;
			}
		}
	}
	/* Step 6. */
	if (p->ff_gain) {
		const float *restrict ff = agipd_consts_f(k, cell, AGIPD_F_FF) + i0;
		const float med = k->ff_median[cell];
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++)
			X[i] = X[i] * med / ff[i];
	}
	/* Step 7; rounding marks what it clipped at 0 in mask (0/1 for now). */
	int flag_or = 0;
	if (p->photon_energy > 0) {
		const float div = k->photon_div[cell];
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++)
			X[i] = X[i] / div;
		if (p->round_photons) {
			const float thr = p->rounding_threshold;
			_Pragma("GCC ivdep")
			for (size_t i = 0; i < n; i++) {
				float x = floorf((X[i] + 1.0f) - thr);
				uint32_t neg = x < 0.0f;
				X[i] = neg ? 0.0f : x;
				Mk[i] = neg ? AGIPD_BP_VALUE_OUT_OF_RANGE : 0;
			}
			flag_or = 1;
		}
	}

	/* Steps 8-9: mask, runtime flags, output type. */
	if (flag_or)
		step_mask(k, cell, i0, n, X, gain, mask, 1);
	else
		step_mask(k, cell, i0, n, X, gain, mask, 0);
	switch (p->data_dtype) {
	case AGIPD_DTYPE_FLOAT32: {
		float *out = (float *)data + i0;
		if (out != X)
			memcpy(out, X, n * sizeof *X);
		break;
	}
	case AGIPD_DTYPE_FLOAT16: {
		uint16_t *restrict out = (uint16_t *)data + i0;
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++) {
			float x = X[i];
			uint32_t clip = fabsf(x) > 65504.0f;
			Mk[i] |= clip ? (uint32_t)AGIPD_BP_VALUE_OUT_OF_RANGE : 0u;
			x = clip ? (x > 0 ? 65504.0f : -65504.0f) : x;
			out[i] = agipd_f32_to_f16(x);
		}
		break;
	}
	case AGIPD_DTYPE_INT16: {
		int16_t *restrict out = (int16_t *)data + i0;
		_Pragma("GCC ivdep")
		for (size_t i = 0; i < n; i++) {
			float x = X[i];
			uint32_t clip = x > 32767.0f || x < -32768.0f;
			Mk[i] |= clip ? (uint32_t)AGIPD_BP_VALUE_OUT_OF_RANGE : 0u;
			x = x > 32767.0f ? 32767.0f : x;
			x = x < -32768.0f ? -32768.0f : x;
			out[i] = (int16_t)x;
		}
		break;
	}
	}
}

KERNEL_CLONES
void agipd_correct_frame(const struct agipd_params *p, const struct agipd_consts *k, int cell,
			 const uint16_t *restrict analog, const uint16_t *restrict digital,
			 void *data, uint8_t *restrict gain, uint32_t *restrict mask, float *restrict X)
{
	/* float32 data is computed in place; other types through X. */
	if (p->data_dtype == AGIPD_DTYPE_FLOAT32)
		X = data;
	steps_gain_offset(p, k, cell, 0, P, analog, digital, gain, X);
	/* Step 4: over whole ASICs of the frame. */
	if (p->common_mode)
		common_mode(p, X, gain);
	steps_gain_to_output(p, k, cell, 0, P, X, data, gain, mask);
}

KERNEL_CLONES
void agipd_correct_cell(const struct agipd_params *p, const struct agipd_consts *k, int cell, size_t n,
			const uint16_t *const *analog, const uint16_t *const *digital, void *const *data,
			uint8_t *const *gain, uint32_t *const *mask, float *scratch)
{
	if (p->common_mode) {
		for (size_t j = 0; j < n; j++)
			agipd_correct_frame(p, k, cell, analog[j], digital[j], data[j], gain[j], mask[j], scratch);
		return;
	}
	for (size_t i0 = 0; i0 < P; i0 += AGIPD_KERNEL_TILE) {
		const size_t nt = P - i0 < AGIPD_KERNEL_TILE ? P - i0 : AGIPD_KERNEL_TILE;
		for (size_t j = 0; j < n; j++) {
			float *X = p->data_dtype == AGIPD_DTYPE_FLOAT32 ? (float *)data[j] + i0 : scratch;
			steps_gain_offset(p, k, cell, i0, nt, analog[j], digital[j], gain[j], X);
			steps_gain_to_output(p, k, cell, i0, nt, X, data[j], gain[j], mask[j]);
		}
	}
}
