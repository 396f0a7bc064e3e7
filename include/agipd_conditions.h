/*
 * agipd_conditions.h - the detector's operating conditions (SPEC 6.1): read
 * from the run's control data (an adapter over HDF5, read-only), with the
 * fallbacks from the raw data and the command-line overrides, and checked
 * against the conditions the constants carry (SPEC 6.2).  Independent (not
 * collective): one rank resolves them and the MPI layer shares the result.
 */
#ifndef AGIPD_CONDITIONS_H
#define AGIPD_CONDITIONS_H

#include <stdio.h>

#include "agipd_err.h"
#include "agipd_kernel.h"

enum agipd_cond {
	AGIPD_COND_MEM_CELLS = 0,    /* Memory cells */
	AGIPD_COND_ACQ_RATE,         /* Acquisition rate, MHz */
	AGIPD_COND_GAIN_SETTING,     /* Gain setting, 0 or 1 */
	AGIPD_COND_GAIN_MODE,        /* Gain mode, 0 adaptive .. 3 fixed low */
	AGIPD_COND_INTEG_TIME,       /* Integration time */
	AGIPD_COND_BIAS,             /* Sensor Bias Voltage, V */
	AGIPD_NCOND
};

/* Database names ("Memory cells", ...), the attribute names of a constant's
 * group in the calibration database and of the provenance. */
extern const char *const agipd_cond_names[AGIPD_NCOND];
/* Root-attribute names of the constants-folder files ("memory_cells", ...). */
extern const char *const agipd_cond_attr_names[AGIPD_NCOND];

#define AGIPD_DEFAULT_KARABO_ID_CONTROL "SPB_IRU_AGIPD1M1"
#define AGIPD_DEFAULT_KARABO_DA_CONTROL "AGIPD1MCTRL00"

struct agipd_conditions {
	int known[AGIPD_NCOND];              /* 0: unknown (not checked, not recorded) */
	double value[AGIPD_NCOND];
	/* Where each came from: "control:{device}/{key}", "fallback" or "command line". */
	char source[AGIPD_NCOND][640];
};

/* What agipd_conditions_resolve() needs to know about the run. */
struct agipd_cond_input {
	const char *raw_dir;                 /* the run folder */
	long run;
	const char *karabo_id_control, *karabo_da_control;
	const int *modules;                  /* modules corrected, ascending (bias voltage) */
	int nmodules;
	/* Raw files corrected and their sources, for the fallbacks (opened only
	 * when a fallback is needed). */
	const char *const *raw_files, *const *raw_sources;
	int nraw;
	const struct agipd_params *params;   /* frame selection of the fallback */
	const int *given;                    /* [AGIPD_NCOND]: given on the command line */
	const double *given_value;           /* [AGIPD_NCOND] */
};

/*
 * Resolve the conditions: command line, else the control files
 * RAW-R{run}-{karabo_da_control}-S*.h5 of the run folder (every sequence),
 * else the fallbacks.  Returns 0, or -1 with e naming file, device, key and
 * cause (a key that changes during the run, an unreadable value).
 */
int agipd_conditions_resolve(const struct agipd_cond_input *in, struct agipd_conditions *out, agipd_err *e);

/* The gain mode the correction uses: the known Gain mode, else adaptive. */
enum agipd_gain_mode agipd_conditions_gain_mode(const struct agipd_conditions *c);

/* Pure rules of SPEC 6.1 (exposed for the unit tests). */
int agipd_cond_mem_cells_fallback(unsigned max_cell);          /* 4, 32, 64, ... 352; -1 above */
double agipd_cond_rate_from_spacing(unsigned long long d);     /* round(floor(45/d)/10, 1) */
int agipd_cond_gain_setting_from_setupr(long setupr, long pattern);  /* 0, 1, or -1 */

/* One condition's value as text ("352", "1.1"). */
void agipd_cond_value_text(const struct agipd_conditions *c, int i, char *buf, size_t len);

/* The conditions as lines "  Memory cells: 352 (control:...)" into f,
 * unknown ones as "unknown". */
void agipd_conditions_print(FILE *f, const struct agipd_conditions *c);
/* As a JSON object {"Memory cells": {"value": 352, "source": "..."}, ...}. */
void agipd_conditions_json(FILE *f, const struct agipd_conditions *c);

/*
 * Check one constant's conditions (attrs[i] present/value for each condition,
 * i as enum agipd_cond) against the run's, for a constant of kind `dark`
 * (all six) or not (all but Gain mode).  Unknown run conditions are not
 * checked; bias within 5 V, rate within 0.05 MHz, the others equal.
 * Returns 0, or -1 with msg "condition NAME: run V, constant W".
 */
int agipd_conditions_check(const struct agipd_conditions *run, const int *present, const double *values,
			   int dark, char *msg, size_t len);

#endif
