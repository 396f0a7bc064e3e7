/*
 * agipd_consts_h5.h - the calibration-constants loader (SPEC section 3): an
 * adapter over HDF5 that reads one module's constants file read-only,
 * transposes the facility axis order (128, 512, C, k) to the kernel's layout
 * and prepares it with agipd_consts_prepare().  Independent (not collective).
 * The load part of the constants module: agipd_consts.h tells the whole way
 * from files to the kernel.
 */
#ifndef AGIPD_CONSTS_H5_H
#define AGIPD_CONSTS_H5_H

#include <stdint.h>

#include "agipd_consts.h"
#include "agipd_err.h"
#include "agipd_kernel.h"

#include "agipd_conditions.h"

/* Root attributes of a constants file copied into the provenance; the
 * condition ones (memory_cells ... bias_voltage) are also checked. */
#define AGIPD_CONST_NATTRS 8
extern const char *const agipd_const_attr_names[AGIPD_CONST_NATTRS];

/* The constants of SPEC section 3, in this order. */
enum agipd_const_kind {
	AGIPD_K_THRESHOLDS_DARK = 0, AGIPD_K_OFFSET, AGIPD_K_NOISE, AGIPD_K_BAD_PIXELS_DARK,
	AGIPD_K_SLOPES_PC, AGIPD_K_BAD_PIXELS_PC, AGIPD_K_SLOPES_FF, AGIPD_K_BAD_PIXELS_FF, AGIPD_CONST_KINDS
};
extern const char *const agipd_const_names[AGIPD_CONST_KINDS];
/* Does the correction p use this constant? */
int agipd_const_needed(const struct agipd_params *p, int kind);
/* Dark constants (Offset, Noise, ThresholdsDark, BadPixelsDark) depend on all
 * six conditions, the others on all but Gain mode. */
int agipd_const_is_dark(int kind);

struct agipd_const_attr {
	int present, is_str, is_int;
	double num;
	char str[256];
};

/* Where one constant's array is: a dataset in one of the files of the
 * module's constants, and what the provenance records of it. */
struct agipd_const_src {
	int used;                        /* the correction needs it */
	int file;                        /* index in files[] */
	char dataset[512];               /* the array, e.g. /PDU/Offset/0/data */
	int rank;                        /* of the array in the file */
	int perm[4];                     /* file axis i holds axis perm[i] of SPEC 3's order */
	int permuted;                    /* perm is not the identity (a dims attribute) */
	/* calibration database only */
	char pdu[128], ccv_id[64], creation_time[64], group[512];
	int cond_present[AGIPD_NCOND];   /* conditions on the constant's group */
	double cond_value[AGIPD_NCOND];
};

struct agipd_consts_file {
	char path[4096];
	uint32_t crc32;                  /* of the whole file (filled by the caller) */
	uint64_t size;                   /* bytes */
};

/* What the provenance records of a module's constants.  Plain data (no
 * pointers): the MPI layer broadcasts it as bytes. */
struct agipd_consts_meta {
	char path[4096];                 /* the constants file, or the calibration metadata */
	uint32_t crc32;                  /* of the whole file (constants folder) */
	uint64_t size;                   /* bytes */
	int cells;                       /* memory cells in the file (min over datasets) */
	int ff_cells;                    /* SlopesFF has a cell axis */
	struct agipd_const_attr attrs[AGIPD_CONST_NATTRS];
	int caldb;                       /* from the calibration database (SPEC 6.2) */
	char pdu[128];                   /* physical detector unit (caldb) */
	int nfiles;
	struct agipd_consts_file files[AGIPD_CONST_KINDS];
	struct agipd_const_src src[AGIPD_CONST_KINDS];
	char warning[1024];              /* conditions that differ, with --ignore-conditions */
};

/* Constants file name of a module: "{folder}/AGIPD{mm}.h5". */
void agipd_consts_path(char *buf, size_t len, const char *folder, int module);

/* Check that the file holds every constant p needs, with valid shapes and
 * types; fills m (not the checksum).  -1 with e naming file and cause. */
int agipd_consts_probe(const char *path, const struct agipd_params *p, struct agipd_consts_meta *m,
		       agipd_err *e);

/* The same for constants whose sources m->src[] (dataset, file, used) and
 * m->files[] are filled already (the calibration database): checks each
 * used constant's dataset, shape, type and dims attribute, fills rank, perm,
 * cells and ff_cells.  Errors name the constant and its file. */
int agipd_consts_probe_sources(const struct agipd_params *p, struct agipd_consts_meta *m, agipd_err *e);

/* Check the conditions the used constants carry (group attributes, or the
 * root attributes of a constants-folder file) against the run's.  Returns 0,
 * or -1 with e naming the constant, condition and both values. */
int agipd_consts_check_conditions(const struct agipd_consts_meta *m, const struct agipd_conditions *run,
				  agipd_err *e);

/* Load cells [cell_lo, cell_hi) into k, which is laid out for p and attached
 * to enough words for them; several ranks may fill one shared k with
 * disjoint cell ranges at once. */
int agipd_consts_load(const struct agipd_params *p, int cell_lo, int cell_hi, struct agipd_consts *k,
		      const struct agipd_consts_meta *m, agipd_err *e);

/* CRC-32 of part `part` of `nparts` equal byte ranges of the file, its
 * length, and the file's size; combine parts with agipd_crc32_combine(). */
int agipd_consts_checksum_part(const char *path, int part, int nparts, uint32_t *crc, uint64_t *len,
			       uint64_t *total, agipd_err *e);

#endif
