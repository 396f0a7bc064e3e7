/*
 * agipd_kernel.h - the correction of SPEC section 4, frame by frame.
 *
 * Pure code: plain arrays in, plain arrays out; no MPI, no HDF5.  The
 * constants arrive already transposed to C order and laid out per memory cell
 * (struct agipd_consts, built by agipd_consts_prepare()), so one frame streams
 * one contiguous block of constants.
 *
 * All arithmetic is float32 in the SPEC's order; the build disables
 * floating-point contraction so that results are bit-identical to any other
 * conforming implementation (NumPy reference, other compilers).
 */
#ifndef AGIPD_KERNEL_H
#define AGIPD_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "agipd.h"

enum agipd_gain_mode {
	AGIPD_GAIN_ADAPTIVE = 0,
	AGIPD_GAIN_FIXED_HIGH,
	AGIPD_GAIN_FIXED_MEDIUM,
	AGIPD_GAIN_FIXED_LOW,
};

enum agipd_dtype { AGIPD_DTYPE_FLOAT32 = 0, AGIPD_DTYPE_FLOAT16, AGIPD_DTYPE_INT16 };

/* Bytes per pixel of the corrected data for a data type. */
size_t agipd_dtype_size(enum agipd_dtype t);

/* Every switch and value of SPEC section 4.  agipd_params_default() fills the
 * SPEC's defaults; agipd_params_check() validates a set and explains what is
 * wrong in msg (returns 0 when valid). */
struct agipd_params {
	enum agipd_gain_mode gain_mode;
	int force_mg_if_below, force_hg_if_below;
	float mg_hard_threshold, hg_hard_threshold;     /* default 1000 */
	int common_mode;
	float cm_dark_lo, cm_dark_hi;                   /* default -30, 30 */
	double cm_dark_fraction;                        /* default 0.15 */
	int cm_n_itr;                                   /* default 4 */
	int rel_gain, adjust_mg_baseline, ff_gain;
	double photon_energy;                           /* keV; 0 = off */
	double adu_per_kev;                             /* 0 = from SlopesFF */
	int round_photons;
	float rounding_threshold;                       /* default 0.5 */
	enum agipd_dtype data_dtype;
	/* Frame selection: keep cellId in range(start, stop, step). */
	long cells_start, cells_stop, cells_step;
};

void agipd_params_default(struct agipd_params *p);
int agipd_params_check(const struct agipd_params *p, char *msg, size_t msglen);

/* Does the frame selection keep this cell? */
int agipd_params_keep_cell(const struct agipd_params *p, unsigned cell);

/*
 * Constants of one module, laid out for the kernel: for each memory cell one
 * block of `cell_words` 32-bit words holding the fields below, each a full
 * 512 x 128 image; fields that the parameters do not need are absent
 * (offset -1).  `data` is either owned (malloc) or points into a shared
 * memory window; the struct never frees it.
 */
enum agipd_field {
	AGIPD_F_THR0 = 0,  /* ThresholdsDark[...,0] */
	AGIPD_F_THR1,      /* ThresholdsDark[...,1] */
	AGIPD_F_OFF0, AGIPD_F_OFF1, AGIPD_F_OFF2,
	AGIPD_F_MASK0, AGIPD_F_MASK1, AGIPD_F_MASK2,  /* bad pixels per gain, OR-ed */
	AGIPD_F_REL1,      /* ml/mh */
	AGIPD_F_REL2,      /* 4.48*ml/mh */
	AGIPD_F_BASE,      /* bl - bh*ml/mh */
	AGIPD_F_FF,        /* sanitised SlopesFF */
	AGIPD_NFIELDS
};

struct agipd_consts {
	int ncells;                      /* cells held: 0 .. ncells-1 */
	int field_off[AGIPD_NFIELDS];    /* word offset in a cell block, or -1 */
	size_t cell_words;               /* words per cell block */
	uint32_t *data;                  /* ncells * cell_words words */
	float *ff_median;                /* [ncells] median of SlopesFF, or NULL */
	float *photon_div;               /* [ncells] adu_per_kev * E, or NULL */
};

/* Which fields a parameter set needs; fills field_off and cell_words. */
void agipd_consts_layout(const struct agipd_params *p, struct agipd_consts *k);

static inline float *agipd_consts_f(const struct agipd_consts *k, int cell, enum agipd_field f)
{
	return (float *)(k->data + (size_t)cell * k->cell_words + k->field_off[f]);
}
static inline uint32_t *agipd_consts_u(const struct agipd_consts *k, int cell, enum agipd_field f)
{
	return k->data + (size_t)cell * k->cell_words + k->field_off[f];
}

/*
 * Raw constants of `n` cells in C order, as float32 (uint32 for bad pixels),
 * each pointer an array [k][n][512*128], k the leading entries of the
 * trailing dimension of the facility's shape that the correction uses: 2 of
 * ThresholdsDark's 5 (high->medium, medium->low), 3 for Offset and
 * BadPixelsDark, 5 of SlopesPC's 10 (ml, bl, unused, mh, bh), 1 for
 * BadPixelsPC/SlopesFF/BadPixelsFF.  Only those are read: the arrays need
 * be no larger.  Fields the parameters do not need may be NULL.  ff_cells is
 * 0 when SlopesFF/BadPixelsFF have no cell axis (then they hold one image
 * each).
 */
struct agipd_raw_consts {
	int n;
	const float *thresholds;     /* [2][n][P] */
	const float *offset;         /* [3][n][P] */
	const uint32_t *bp_dark;     /* [3][n][P] */
	const float *slopes_pc;      /* [5][n][P] */
	const uint32_t *bp_pc;       /* [n][P] */
	const float *slopes_ff;      /* [ff_cells ? n : 1][P] */
	const uint32_t *bp_ff;       /* [ff_cells ? n : 1][P] */
	int ff_cells;
};

/*
 * Fill cells [cell0, cell0 + raw->n) of k from raw constants: sanitise the
 * slopes (SPEC steps 5 and 6), combine the masks, precompute the gain ratios.
 * k must be laid out and allocated for at least cell0 + raw->n cells.
 * scratch needs AGIPD_PIXELS floats.  Returns 0, or -1 with msg set when the
 * photon conversion factor is not usable.
 */
int agipd_consts_prepare(const struct agipd_params *p, const struct agipd_raw_consts *raw,
			 int cell0, struct agipd_consts *k, float *scratch, char *msg, size_t msglen);

/* Median of n floats ignoring NaN (even count: mean of the two middle values,
 * in float32).  Reorders v.  NaN when every value is NaN. */
float agipd_median_f32(float *v, size_t n);

/*
 * Correct one frame: analog and digital are the raw 512 x 128 images, cell
 * its memory cell (< k->ncells).  Writes data (of p->data_dtype), gain and
 * mask, each 512 x 128.  scratch: AGIPD_PIXELS floats.
 */
void agipd_correct_frame(const struct agipd_params *p, const struct agipd_consts *k, int cell,
			 const uint16_t *analog, const uint16_t *digital,
			 void *data, uint8_t *gain, uint32_t *mask, float *scratch);

/* float32 -> IEEE binary16, round to nearest, ties to even. */
uint16_t agipd_f32_to_f16(float f);
float agipd_f16_to_f32(uint16_t h);



/* 32-bit words a module's constants of ncells cells occupy: the cell blocks,
 * then ff_median[ncells] and photon_div[ncells]. */
size_t agipd_consts_words(const struct agipd_consts *k, int ncells);
/* Point k (laid out) at mem, which holds agipd_consts_words() words. */
void agipd_consts_attach(struct agipd_consts *k, int ncells, uint32_t *mem);
#endif /* AGIPD_KERNEL_H */
