/*
 * agipd_sim.h - synthetic AGIPD runs: raw files, calibration constants and
 * ground truth that the correction of SPEC section 4 inverts.
 *
 * Three layers, as in the rest of the project:
 *   - the model (sim_model.c): pure kernels, no MPI and no HDF5.  A module
 *     model holds per-pixel and per-cell detector properties derived from
 *     the seed; a plan lists the frames and INDEX entries of one raw file;
 *     agipd_sim_generate() fills frames of a plan.
 *   - the writer (sim_write.c): the HDF5 adapter that writes raw, truth and
 *     constants files with the serial HDF5 API (one process per file).
 *   - main_simulate.c: command line and MPI (ranks split files round-robin).
 *
 * Everything is a deterministic function of the configuration (seed, run,
 * module, sequence, frame index), never of the rank count or batch sizes.
 * The constants depend on (seed, module) only, so runs with other run
 * numbers share them; their condition attributes are the simulated
 * operating conditions, which the control file (one per sequence) carries.
 *
 * The model (values per pixel p and memory cell c; "+-" gives the spread of
 * a bounded, roughly normal variation, at most 3.5 sigma):
 *   photons   Poisson(lambda); lambda = (background 0.05 + 1.5 exp(-R/180 px)
 *             + six powder rings, 1-4 photons, with an azimuthal modulation)
 *             x (1 +- 10% per train) + 3..8 Gaussian Bragg spots per train
 *             and module, peaks log-uniform in 20..20000 photons.  R is the
 *             distance to the beam in a rough AGIPD1M layout.
 *   signal    S = photons * E * F (HG ADU), F = SlopesFF ~ 7.5 +- 5% ADU/keV.
 *   gain      HG if S < sw1 (4000 HG ADU +- 3% per pixel), MG if
 *             S < 28 * sw1, else LG.
 *   analog    HG: Off0 + S; MG: Off1 + (S - (bl - bh*ml/mh)) * mh/ml;
 *             LG: Off2 + S * mh / (4.48 ml); plus Noise[g] * N(0,1);
 *             rounded and clamped to uint16.
 *             Offsets ~ 5000 / 5500 / 5800 ADU (+-2% per pixel, +-60 per
 *             ASIC, +-60 per cell, +-10 per pixel and cell); Noise ~ 5 / 4 /
 *             3.5 ADU (+-8%); ml ~ 20 (+-1.5%), ml/mh ~ 30 (+-3%, within
 *             25..35), bl ~ 0 +- 20, bh ~ 30 +- 8.
 *   digital   level[g] + uniform noise of +-30 ADU; levels ~ 4500 / 6500 /
 *             8500 (+-80 per pixel, +-15 per cell); ThresholdsDark[0] and
 *             [1] half way between the levels (margins > 700 ADU), so
 *             thresholding gives back the true stage exactly; [2..4] are
 *             the three levels.
 *   fixed gain (--gain-mode 1..3): every pixel responds, and has the
 *             digital level, of the forced stage (HG saturates at 65535).
 *   bad pix.  BadPixelsDark: NOISE_OUT_OF_THRESHOLD where the noise is 20%
 *             above nominal, OFFSET_OUT_OF_THRESHOLD for 0.2% of pixels and
 *             cells; BadPixelsPC/FF: 0.05% of pixels plus the outliers.
 *   outliers  24 pixels each with stored ml x0.5, mh x1.6 and SlopesFF x0.55
 *             or x1.5 (the detector itself is nominal there), so that the
 *             median sanitisation of SPEC steps 5-6 matters.
 *
 *
 * Errors: functions returning int return 0 on success and -1 on failure,
 * with a message naming the file and the cause in err (errlen bytes, always
 * NUL-terminated when errlen > 0).  Nothing here prints or exits.
 */
#ifndef AGIPD_SIM_H
#define AGIPD_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "agipd.h"

/* Edge cases (--edge-cases), bits of agipd_sim_config.edge_cases. */
enum agipd_sim_edge {
	AGIPD_SIM_EDGE_EMPTY_TRAIN = 1u << 0,   /* one train with count 0 */
	AGIPD_SIM_EDGE_ZERO_TRAIN = 1u << 1,    /* trainId 0 entry + 2 pads */
	AGIPD_SIM_EDGE_CELL_ORDER = 1u << 2,    /* cellIds out of order */
	AGIPD_SIM_EDGE_NAN_CONSTANTS = 1u << 3, /* NaN / inf in constants */
	AGIPD_SIM_EDGE_UNEVEN_TRAINS = 1u << 4, /* trains of different lengths */
	AGIPD_SIM_EDGE_ALL = (1u << 5) - 1,
};

/* Model constants (documented in one place; tests rely on the orders of
 * magnitude, not on exact values). */
#define AGIPD_SIM_REL_LG 4.48f        /* LG/MG gain ratio of SPEC step 5 */
#define AGIPD_SIM_FF_NOMINAL 7.5f     /* HG ADU per keV */
#define AGIPD_SIM_SWITCH_HG 4000.0f   /* HG -> MG, in HG ADU (per pixel +-3%) */
#define AGIPD_SIM_SWITCH_MG_FACTOR 28.0f /* MG -> LG at this times the HG switch */
#define AGIPD_SIM_DEFAULT_FIRST_TRAIN 10000
/* 2024-01-01T00:00:00Z in ns: train t has timestamp base + t * 0.1 s. */
#define AGIPD_SIM_TIMESTAMP_BASE_NS 1704067200000000000ull

/* The run to simulate.  Plain values; strings are borrowed, not copied. */
struct agipd_sim_config {
	const char *out_folder;       /* raw files go to out_folder/rNNNN */
	const char *constants_folder; /* CONST files (AGIPDmm.h5) */
	const char *karabo_id;        /* e.g. AGIPD_DEFAULT_KARABO_ID */
	int run;                      /* 0..9999 */
	int modules[AGIPD_MODULES];   /* module numbers, n_modules of them */
	int n_modules;
	int sequences;                /* files per module */
	int trains;                   /* trains per sequence file */
	int last_trains;              /* trains of the last sequence file; 0: trains */
	int cells;                    /* frames per full train, 1..352 */
	int constants_cells;          /* C of the constants, 1..352 */
	uint64_t seed;
	double photon_energy;         /* keV */
	uint64_t first_train_id;
	unsigned edge_cases;          /* enum agipd_sim_edge bits */
	int write_truth;              /* 1: truth files beside the raw run */
	int write_constants;          /* 1: constants files */
	time_t creation_time;         /* for METADATA dates and creation_date */
	/* Operating conditions (SPEC 6.1): written to the control file and, as
	 * the conditions the constants were made for, to the constants. */
	int control_form;             /* enum agipd_sim_control_form */
	const char *karabo_id_control; /* e.g. SPB_IRU_AGIPD1M1 */
	const char *karabo_da_control; /* e.g. AGIPD1MCTRL00 */
	int mem_cells;                /* bunchStructure.nPulses; 0: constants_cells */
	double acq_rate;              /* MHz, bunchStructure.repetitionRate */
	int pulse_step;               /* pulseId spacing within a train (1) */
	int gain_setting;             /* 0 or 1 */
	int gain_mode;                /* 0 adaptive, 1..3 fixed high/medium/low */
	int integration_time;
	double bias_voltage;          /* V */
	int pattern_type;             /* patternTypeIndex of the setupr form */
	int control_change;           /* enum agipd_sim_control_key, or -1 */
	int write_caldb;              /* 1: calibration-database store in out_folder/caldb */
	int caldb_dims[4];            /* axis of the file per position, enum agipd_sim_axis */
	int contiguous;               /* 1: raw datasets contiguous (the old layout);
				       * 0: as the DAQ writes them: first axis
				       * unlimited, chunked, image/data one frame a
				       * chunk */
};

/* What the control file holds (--control). */
enum agipd_sim_control_form {
	AGIPD_SIM_CONTROL_NONE = 0,  /* no control file */
	AGIPD_SIM_CONTROL_GAIN = 1,  /* current form: `gain` */
	AGIPD_SIM_CONTROL_SETUPR = 2 /* older form: `setupr` + `patternTypeIndex` */
};

/* Control keys that --control-change can make change in the run's last train. */
enum agipd_sim_control_key {
	AGIPD_SIM_KEY_GAIN_MODE,   /* gainModeIndex: (mode + 1) % 4 */
	AGIPD_SIM_KEY_GAIN,        /* gain (or setupr): the other gain setting */
	AGIPD_SIM_KEY_INTEGRATION, /* integrationTime: + 1 */
	AGIPD_SIM_KEY_RATE,        /* repetitionRate: 4.5 (2.2 when it is 4.5) */
	AGIPD_SIM_KEY_NPULSES,     /* nPulses: half (the largest value stays) */
	AGIPD_SIM_KEY_BIAS,        /* measurementSenseVoltage of every module: + 10 V */
	AGIPD_SIM_KEY_N
};

/* Axes of a constant in the facility's order (SPEC 3 and 6.2). */
enum agipd_sim_axis { AGIPD_SIM_AX_FAST, AGIPD_SIM_AX_SLOW, AGIPD_SIM_AX_CELL, AGIPD_SIM_AX_GAIN };

/* Defaults of the operating conditions. */
#define AGIPD_SIM_DEFAULT_KARABO_ID_CONTROL "SPB_IRU_AGIPD1M1"
#define AGIPD_SIM_DEFAULT_KARABO_DA_CONTROL "AGIPD1MCTRL00"
#define AGIPD_SIM_DEFAULT_ACQ_RATE 1.1
#define AGIPD_SIM_DEFAULT_INTEGRATION_TIME 12
#define AGIPD_SIM_DEFAULT_BIAS_VOLTAGE 300.0
#define AGIPD_SIM_DEFAULT_PATTERN_TYPE 4

/* Fill cfg with the defaults of the command line (out_folder and
 * constants_folder NULL, modules 0-3, creation_time = 0). */
void agipd_sim_config_defaults(struct agipd_sim_config *cfg);

/* Parse "0-3,7,9" into modules (sorted, unique, each 0..15). */
int agipd_sim_parse_modules(const char *list, int modules[AGIPD_MODULES], int *n_modules,
			    char *err, size_t errlen);

/* Parse "empty-train,zero-train" or "all" (or "none") into enum bits. */
int agipd_sim_parse_edge_cases(const char *list, unsigned *edge_cases, char *err, size_t errlen);

/* Parse --control FORM ("gain", "setupr", "none"), --control-change KEY
 * (gainModeIndex, gain, integrationTime, repetitionRate, nPulses, bias) and
 * --caldb-dims-order ("cell,slow_scan,fast_scan,gain": each axis once). */
int agipd_sim_parse_control_form(const char *s, int *form, char *err, size_t errlen);
int agipd_sim_parse_control_key(const char *s, int *key, char *err, size_t errlen);
int agipd_sim_parse_dims_order(const char *s, int dims[4], char *err, size_t errlen);

/* Name of an axis as the `dims` attribute writes it. */
const char *agipd_sim_axis_name(int axis);

/* Check a configuration for consistency (ranges, folders set). */
int agipd_sim_config_check(const struct agipd_sim_config *cfg, char *err, size_t errlen);

/* ---- module model ------------------------------------------------------ */

/* Per-module detector model (opaque): ~5 MB of per-pixel tables. */
struct agipd_sim_module;

/* Build the model of module `module` for cfg (cfg must outlive it). */
int agipd_sim_module_new(const struct agipd_sim_config *cfg, int module,
			 struct agipd_sim_module **out, char *err, size_t errlen);
void agipd_sim_module_free(struct agipd_sim_module *m); /* NULL is fine */

/* The stored calibration constants of one pixel (row * 128 + column) and
 * memory cell (0..351), as float32 values (Offset and ThresholdsDark are
 * written as float64 copies of exactly these values) - including the
 * outliers, NaN and inf that the stored constants carry. */
struct agipd_sim_constants {
	float thresholds[5];  /* [0] HG->MG, [1] MG->LG on the digital value */
	float offset[3];
	float noise[3];
	float slopes_pc[10];  /* [0] ml, [1] bl, [3] mh, [4] bh */
	float slopes_ff;      /* HG ADU per keV */
	uint32_t bp_dark[3];
	uint32_t bp_pc;
	uint32_t bp_ff;
};
void agipd_sim_constants_at(const struct agipd_sim_module *m, int pixel, int cell,
			    struct agipd_sim_constants *out);

/* Pixels whose stored constants differ from the detector (all cells):
 * outliers that the SPEC's sanitisation replaces by the median, and the
 * NaN/inf of the nan-constants edge case.  Bits of the third column of
 * the truth files' `special_pixels` dataset (row, column, flags). */
enum agipd_sim_pixel_flag {
	AGIPD_SIM_PF_OUT_ML = 1u << 0,     /* SlopesPC[...,0] x 0.5 */
	AGIPD_SIM_PF_OUT_MH = 1u << 1,     /* SlopesPC[...,3] x 1.6 */
	AGIPD_SIM_PF_OUT_FF = 1u << 2,     /* SlopesFF x 0.55 (even pixel) or 1.5 */
	AGIPD_SIM_PF_NAN_OFFSET = 1u << 3, /* Offset NaN, every gain */
	AGIPD_SIM_PF_INF_OFFSET = 1u << 4, /* Offset[...,0] +inf */
	AGIPD_SIM_PF_NAN_THR = 1u << 5,    /* ThresholdsDark[...,0:2] NaN */
	AGIPD_SIM_PF_NAN_ML = 1u << 6,     /* SlopesPC[...,0] NaN */
	AGIPD_SIM_PF_NAN_BH = 1u << 7,     /* SlopesPC[...,4] NaN */
	AGIPD_SIM_PF_NAN_FF = 1u << 8,     /* SlopesFF NaN */
};

/* Number of special pixels; fills out[3 * i + {0,1,2}] = row, column,
 * flags when out is not NULL (room for the returned count). */
size_t agipd_sim_special_pixels(const struct agipd_sim_module *m, int32_t *out);

/* ---- file plan --------------------------------------------------------- */

/* Frames and INDEX entries of one raw file (all arrays owned by the plan). */
struct agipd_sim_plan {
	int module, sequence;
	size_t n_frames;
	size_t n_entries;      /* INDEX entries, padding included */
	size_t n_trains;       /* entries that are not padding (header rows) */
	/* per INDEX entry */
	uint64_t *train_id;    /* 0 for the zero-train and for padding */
	uint64_t *timestamp;   /* ns since the epoch, 0 for padding */
	int32_t *flag;
	uint64_t *first, *count;
	int64_t *slot;         /* global train slot, -1 for padding */
	/* per frame */
	uint16_t *cell_id;
	uint64_t *pulse_id;
	uint64_t *frame_train_id;
	uint32_t *frame_entry; /* INDEX entry of the frame */
};

int agipd_sim_plan_new(const struct agipd_sim_config *cfg, int module, int sequence,
		       struct agipd_sim_plan **out, char *err, size_t errlen);
void agipd_sim_plan_free(struct agipd_sim_plan *plan); /* NULL is fine */

/* ---- frame generation -------------------------------------------------- */

/* Generate frames f0 .. f0+n of plan with the model m (same module):
 * raw: n x 2 x 512 x 128 uint16 ([.,0] analog, [.,1] digital);
 * photons: n x 512 x 128 float32 true photon counts, or NULL;
 * gain: n x 512 x 128 uint8 true gain stage, or NULL.
 * The result does not depend on how a file's frames are split into calls.
 * m keeps scratch memory between calls (photon maps of the trains of a
 * batch, ~2.3 MB each): one caller at a time per model. */
int agipd_sim_generate(struct agipd_sim_module *m, const struct agipd_sim_plan *plan,
		       size_t f0, size_t n, uint16_t *raw, float *photons, uint8_t *gain,
		       char *err, size_t errlen);

/* ---- files (sim_write.c, HDF5) ----------------------------------------- */

/* Bytes written, for the summary. */
struct agipd_sim_stats {
	uint64_t files;
	uint64_t frames;
	uint64_t raw_bytes;      /* image data of raw files */
	uint64_t truth_bytes;
	uint64_t constants_bytes;
};

/* File names: out_folder/rNNNN/RAW-RNNNN-AGIPDmm-SNNNNN.h5,
 * out_folder/truth/TRUTH-RNNNN-AGIPDmm-SNNNNN.h5, constants/AGIPDmm.h5. */
int agipd_sim_raw_path(const struct agipd_sim_config *cfg, int module, int sequence,
		       char *buf, size_t len);
int agipd_sim_truth_path(const struct agipd_sim_config *cfg, int module, int sequence,
			 char *buf, size_t len);
int agipd_sim_constants_path(const struct agipd_sim_config *cfg, int module, char *buf,
			     size_t len);

/* mkdir -p of the run, truth and constants folders that cfg asks for. */
int agipd_sim_make_folders(const struct agipd_sim_config *cfg, char *err, size_t errlen);

/* Write the raw file of (m's module, sequence), and its truth file when
 * cfg->write_truth.  Files appear under their names only when complete; a
 * failure removes them.  stats (may be NULL) is incremented. */
int agipd_sim_write_raw(const struct agipd_sim_config *cfg, struct agipd_sim_module *m,
			int sequence, struct agipd_sim_stats *stats, char *err, size_t errlen);

/* Write the constants file of m's module (SPEC section 3, facility axis
 * order (128, 512, C, k)). */
int agipd_sim_write_constants(const struct agipd_sim_config *cfg,
			      const struct agipd_sim_module *m, struct agipd_sim_stats *stats,
			      char *err, size_t errlen);

/* The control file of one sequence (SPEC 6.1):
 * out_folder/rNNNN/RAW-RNNNN-{karabo_da_control}-SNNNNN.h5 with the trains of
 * the module files; CONTROL, RUN and INDEX of {karabo_id_control}/MDL/FPGA_COMP
 * and of the MPOD {karabo_id_control minus its last character}/PSC/HV. */
int agipd_sim_control_path(const struct agipd_sim_config *cfg, int sequence, char *buf,
			   size_t len);
int agipd_sim_write_control(const struct agipd_sim_config *cfg, int sequence,
			    struct agipd_sim_stats *stats, char *err, size_t errlen);

/* The calibration-database store (SPEC 6.2) under out_folder/caldb: one
 * file per constant of m's module, /{PDU}/{Constant}/0/data with a `dims`
 * attribute and the conditions as attributes of the group, the same values
 * as agipd_sim_write_constants().  PDU of module mm: AGIPD_SIV1_AGIPDV11_M3mm. */
int agipd_sim_write_caldb(const struct agipd_sim_config *cfg, const struct agipd_sim_module *m,
			  struct agipd_sim_stats *stats, char *err, size_t errlen);

/* out_folder/caldb/calibration_metadata.yml naming those files. */
int agipd_sim_write_caldb_metadata(const struct agipd_sim_config *cfg, char *err,
				   size_t errlen);

/* Module number of a model. */
int agipd_sim_module_number(const struct agipd_sim_module *m);

#endif /* AGIPD_SIM_H */
