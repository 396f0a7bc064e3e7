/*
 * consts.c - the constants module's pure part: the layout the kernel streams
 * (one block per memory cell), the conversion of raw constants into it
 * (medians, sanitised slopes, gain ratios, combined masks), the memory it
 * takes and which rank of a node converts which cells.  No MPI, no HDF5:
 * consts_h5.c reads the files and calls agipd_consts_prepare(); consts_share.c
 * (agipd_consts_acquire) shares the result among the ranks of a node.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_consts.h"
#include "agipd_kernel.h"

#define P AGIPD_PIXELS

void agipd_consts_layout(const struct agipd_params *p, struct agipd_consts *k)
{
	size_t w = 0;
	for (int f = 0; f < AGIPD_NFIELDS; f++)
		k->field_off[f] = -1;
#define ADD(f) do { k->field_off[f] = (int)w; w += P; } while (0)
	if (p->gain_mode == AGIPD_GAIN_ADAPTIVE) {
		ADD(AGIPD_F_THR0);
		ADD(AGIPD_F_THR1);
	}
	ADD(AGIPD_F_OFF0);
	ADD(AGIPD_F_OFF1);
	ADD(AGIPD_F_OFF2);
	ADD(AGIPD_F_MASK0);
	ADD(AGIPD_F_MASK1);
	ADD(AGIPD_F_MASK2);
	if (p->rel_gain) {
		ADD(AGIPD_F_REL1);
		ADD(AGIPD_F_REL2);
		if (p->adjust_mg_baseline)
			ADD(AGIPD_F_BASE);
	}
	if (p->ff_gain)
		ADD(AGIPD_F_FF);
#undef ADD
	k->cell_words = w;
}

/* The k-th smallest of v[0..n) (k < n), leaving v[0..k) <= v[k] <= v[k+1..n)
 * (the classic median-of-three selection). */
#define SWAPF(a, b) do { float t_ = (a); (a) = (b); (b) = t_; } while (0)
static float select_kth(float *v, size_t n, size_t k)
{
	size_t l = 0, ir = n - 1;
	for (;;) {
		if (ir <= l + 1) {
			if (ir == l + 1 && v[ir] < v[l])
				SWAPF(v[l], v[ir]);
			return v[k];
		}
		size_t mid = (l + ir) >> 1;
		SWAPF(v[mid], v[l + 1]);
		if (v[l] > v[ir])
			SWAPF(v[l], v[ir]);
		if (v[l + 1] > v[ir])
			SWAPF(v[l + 1], v[ir]);
		if (v[l] > v[l + 1])
			SWAPF(v[l], v[l + 1]);
		size_t i = l + 1, j = ir;
		float a = v[l + 1];
		for (;;) {
			do
				i++;
			while (v[i] < a);
			do
				j--;
			while (v[j] > a);
			if (j < i)
				break;
			SWAPF(v[i], v[j]);
		}
		v[l + 1] = v[j];
		v[j] = a;
		if (j >= k)
			ir = j - 1;
		if (j <= k)
			l = i;
	}
}

float agipd_median_f32(float *v, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)   /* drop NaN */
		if (!isnan(v[i]))
			v[m++] = v[i];
	if (m == 0)
		return NAN;
	if (m % 2)
		return select_kth(v, m, m / 2);
	float hi = select_kth(v, m, m / 2);
	/* The lower middle value is the largest of the lower half. */
	float lo = v[0];
	for (size_t i = 1; i < m / 2; i++)
		if (v[i] > lo)
			lo = v[i];
	return (lo + hi) / 2.0f;
}

static float median_of(const float *src, float *scratch)
{
	memcpy(scratch, src, P * sizeof *scratch);
	return agipd_median_f32(scratch, P);
}

/* NaN, and (when bounded) values outside [0.8, 1.2] x median, become the median. */
static void sanitise(const float *src, float *dst, float med, int bounded)
{
	float lo = 0.8f * med, hi = 1.2f * med;
	for (size_t i = 0; i < P; i++) {
		float v = src[i];
		if (isnan(v) || (bounded && (v < lo || v > hi)))
			v = med;
		dst[i] = v;
	}
}

int agipd_consts_prepare(const struct agipd_params *p, const struct agipd_raw_consts *raw,
			 int cell0, struct agipd_consts *k, float *scratch, char *msg, size_t msglen)
{
	const size_t n = (size_t)raw->n;
	const size_t NP = n * P;
	float *ml = NULL, *bl = NULL, *mh = NULL, *bh = NULL, *ff = NULL;
	int rc = -1;

	if (p->rel_gain || p->ff_gain) {
		ml = malloc(5 * P * sizeof *ml);
		if (!ml) {
			snprintf(msg, msglen, "out of memory preparing constants");
			return -1;
		}
		bl = ml + P;
		mh = bl + P;
		bh = mh + P;
		ff = bh + P;
	}
	for (size_t c = 0; c < n; c++) {
		int kc = cell0 + (int)c;
		if (p->gain_mode == AGIPD_GAIN_ADAPTIVE) {
			memcpy(agipd_consts_f(k, kc, AGIPD_F_THR0), raw->thresholds + 0 * NP + c * P, P * 4);
			memcpy(agipd_consts_f(k, kc, AGIPD_F_THR1), raw->thresholds + 1 * NP + c * P, P * 4);
		}
		for (int g = 0; g < 3; g++)
			memcpy(agipd_consts_f(k, kc, AGIPD_F_OFF0 + g), raw->offset + g * NP + c * P, P * 4);

		float ff_med = NAN;
		if (p->ff_gain || (p->photon_energy > 0 && p->adu_per_kev == 0)) {
			const float *f = raw->slopes_ff + (raw->ff_cells ? c * P : 0);
			ff_med = median_of(f, scratch);
			if (p->ff_gain) {
				sanitise(f, ff, ff_med, 1);
				memcpy(agipd_consts_f(k, kc, AGIPD_F_FF), ff, P * 4);
			}
		}
		if (k->ff_median)
			k->ff_median[kc] = ff_med;
		if (k->photon_div) {
			float adu = p->adu_per_kev > 0 ? (float)p->adu_per_kev : ff_med;
			k->photon_div[kc] = adu * (float)p->photon_energy;
			if (p->photon_energy > 0 && p->adu_per_kev == 0 && !(isfinite(ff_med) && ff_med > 0)) {
				snprintf(msg, msglen, "no usable ADU per keV for memory cell %d (median of SlopesFF %g): "
					 "give --adu-per-kev", kc, (double)ff_med);
				free(ml);
				return -1;
			}
		}
		if (p->rel_gain) {
			const float *pc = raw->slopes_pc;
			static const int idx[4] = { 0, 1, 3, 4 };   /* ml, bl, mh, bh */
			float *dst[4] = { ml, bl, mh, bh };
			for (int j = 0; j < 4; j++) {
				const float *s = pc + (size_t)idx[j] * NP + c * P;
				float med = median_of(s, scratch);
				sanitise(s, dst[j], med, j == 0 || j == 2);
			}
			float *r1 = agipd_consts_f(k, kc, AGIPD_F_REL1);
			float *r2 = agipd_consts_f(k, kc, AGIPD_F_REL2);
			for (size_t i = 0; i < P; i++) {
				r1[i] = ml[i] / mh[i];
				r2[i] = 4.48f * ml[i] / mh[i];
			}
			if (p->adjust_mg_baseline) {
				float *b = agipd_consts_f(k, kc, AGIPD_F_BASE);
				for (size_t i = 0; i < P; i++)
					b[i] = bl[i] - bh[i] * ml[i] / mh[i];
			}
		}
		for (int g = 0; g < 3; g++) {
			uint32_t *m = agipd_consts_u(k, kc, AGIPD_F_MASK0 + g);
			const uint32_t *bd = raw->bp_dark + g * NP + c * P;
			const uint32_t *bpc = raw->bp_pc ? raw->bp_pc + c * P : NULL;
			const uint32_t *bff = raw->bp_ff ? raw->bp_ff + (raw->ff_cells ? c * P : 0) : NULL;
			for (size_t i = 0; i < P; i++) {
				uint32_t v = bd[i];
				if (p->rel_gain)
					v |= bpc[i];
				if (p->ff_gain)
					v |= bff[i];
				m[i] = v;
			}
		}
	}
	rc = 0;
	free(ml);
	return rc;
}

size_t agipd_consts_words(const struct agipd_consts *k, int ncells)
{
	return (size_t)ncells * k->cell_words + 2 * (size_t)ncells;
}

void agipd_consts_attach(struct agipd_consts *k, int ncells, uint32_t *mem)
{
	k->ncells = ncells;
	k->data = mem;
	k->ff_median = (float *)(mem + (size_t)ncells * k->cell_words);
	k->photon_div = k->ff_median + ncells;
}

void agipd_consts_share_range(int ncells, int rank, int nranks, int *lo, int *hi)
{
	*lo = (int)((long)ncells * rank / nranks);
	*hi = (int)((long)ncells * (rank + 1) / nranks);
}
