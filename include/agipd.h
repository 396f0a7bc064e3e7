/*
 * agipd.h - detector geometry, bad-pixel bits and file-name conventions
 * shared by every module of agipd-correct.  Pure definitions: no MPI, no HDF5.
 */
#ifndef AGIPD_H
#define AGIPD_H

#include <stddef.h>
#include <stdint.h>

#define AGIPD_VERSION "0.1.0"

/* One module image: 512 rows (slow-scan) x 128 columns (fast-scan). */
#define AGIPD_ROWS 512
#define AGIPD_COLS 128
#define AGIPD_PIXELS (AGIPD_ROWS * AGIPD_COLS)
#define AGIPD_MODULES 16
#define AGIPD_MAX_CELLS 352
/* 16 ASICs of 64 x 64: ASIC a covers rows 64*(a%8).., columns 64*(a/8).. */
#define AGIPD_ASIC_SIZE 64
#define AGIPD_ASICS 16
#define AGIPD_ASIC_PIXELS (AGIPD_ASIC_SIZE * AGIPD_ASIC_SIZE)

#define AGIPD_DEFAULT_KARABO_ID "SPB_DET_AGIPD1M-1"

/* Gain stages. */
enum agipd_gain { AGIPD_GAIN_HIGH = 0, AGIPD_GAIN_MEDIUM = 1, AGIPD_GAIN_LOW = 2 };

/* Bad-pixel bits of the facility's enum (SPEC section 4). */
enum agipd_badpix {
	AGIPD_BP_OFFSET_OUT_OF_THRESHOLD = 1u << 0,
	AGIPD_BP_NOISE_OUT_OF_THRESHOLD = 1u << 1,
	AGIPD_BP_OFFSET_NOISE_EVAL_ERROR = 1u << 2,
	AGIPD_BP_NO_DARK_DATA = 1u << 3,
	AGIPD_BP_CI_GAIN_OF_OF_THRESHOLD = 1u << 4,
	AGIPD_BP_CI_LINEAR_DEVIATION = 1u << 5,
	AGIPD_BP_CI_EVAL_ERROR = 1u << 6,
	AGIPD_BP_FF_GAIN_EVAL_ERROR = 1u << 7,
	AGIPD_BP_FF_GAIN_DEVIATION = 1u << 8,
	AGIPD_BP_FF_NO_ENTRIES = 1u << 9,
	AGIPD_BP_CI2_EVAL_ERROR = 1u << 10,
	AGIPD_BP_VALUE_IS_NAN = 1u << 11,
	AGIPD_BP_VALUE_OUT_OF_RANGE = 1u << 12,
	AGIPD_BP_GAIN_THRESHOLDING_ERROR = 1u << 13,
	AGIPD_BP_DATA_STD_IS_ZERO = 1u << 14,
	AGIPD_BP_ASIC_STD_BELOW_NOISE = 1u << 15,
	AGIPD_BP_INTERPOLATED = 1u << 16,
	AGIPD_BP_NOISY_ADC = 1u << 17,
	AGIPD_BP_OVERSCAN = 1u << 18,
	AGIPD_BP_NON_SENSITIVE = 1u << 19,
	AGIPD_BP_NON_LIN_RESPONSE_REGION = 1u << 20,
	AGIPD_BP_WRONG_GAIN_VALUE = 1u << 21,
	AGIPD_BP_NON_STANDARD_SIZE = 1u << 22,
	AGIPD_BP_EXPERT_CHOICE = 1u << 23,
	AGIPD_BP_USER1 = 1u << 30,
	AGIPD_BP_USER2 = 1u << 31,
};

#endif /* AGIPD_H */
