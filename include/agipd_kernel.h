/*
 * agipd_kernel.h - the correction of SPEC section 4, frame by frame or a
 * memory cell's frames at once.
 *
 * Pure code: plain arrays in, plain arrays out; no MPI, no HDF5.  The
 * constants arrive already transposed to C order and laid out per memory cell
 * (struct agipd_consts of agipd_consts.h, built by agipd_consts_prepare()),
 * so one frame streams
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
#include "agipd_consts.h"

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
 * Correct one frame: analog and digital are the raw 512 x 128 images, cell
 * its memory cell (< k->ncells).  Writes data (of p->data_dtype), gain and
 * mask, each 512 x 128.  scratch: AGIPD_PIXELS floats.
 */
void agipd_correct_frame(const struct agipd_params *p, const struct agipd_consts *k, int cell,
			 const uint16_t *analog, const uint16_t *digital,
			 void *data, uint8_t *gain, uint32_t *mask, float *scratch);

/*
 * Correct n frames of one memory cell: frame j's raw images are analog[j]
 * and digital[j], its outputs data[j], gain[j], mask[j].  The frames go
 * through the pixels tile by tile (AGIPD_KERNEL_TILE pixels), so that the
 * cell's constants for a tile stay in cache while the n frames stream past
 * them; every pixel gets agipd_correct_frame()'s arithmetic, so the outputs
 * are bit-identical.  With common mode (a mean over a whole ASIC of a frame)
 * the frames go one by one.  scratch: AGIPD_PIXELS floats.
 */
#ifndef AGIPD_KERNEL_TILE
#define AGIPD_KERNEL_TILE 4096
#endif
void agipd_correct_cell(const struct agipd_params *p, const struct agipd_consts *k, int cell, size_t n,
			const uint16_t *const *analog, const uint16_t *const *digital, void *const *data,
			uint8_t *const *gain, uint32_t *const *mask, float *scratch);

/* float32 -> IEEE binary16, round to nearest, ties to even. */
uint16_t agipd_f32_to_f16(float f);
float agipd_f16_to_f32(uint16_t h);

#endif /* AGIPD_KERNEL_H */
