/*
 * agipd_consts_h5.h - the calibration-constants loader (SPEC section 3): an
 * adapter over HDF5 that reads one module's constants file read-only,
 * transposes the facility axis order (128, 512, C, k) to the kernel's layout
 * and prepares it with agipd_consts_prepare().  Independent (not collective).
 */
#ifndef AGIPD_CONSTS_H5_H
#define AGIPD_CONSTS_H5_H

#include <stdint.h>

#include "agipd_err.h"
#include "agipd_kernel.h"

#define AGIPD_CONST_NATTRS 6
extern const char *const agipd_const_attr_names[AGIPD_CONST_NATTRS];

struct agipd_const_attr {
	int present, is_str, is_int;
	double num;
	char str[256];
};

/* What the provenance records of a constants file. */
struct agipd_consts_meta {
	char path[4096];
	uint32_t crc32;                  /* of the whole file */
	uint64_t size;                   /* bytes */
	int cells;                       /* memory cells in the file (min over datasets) */
	int ff_cells;                    /* SlopesFF has a cell axis */
	struct agipd_const_attr attrs[AGIPD_CONST_NATTRS];
};

/* Constants file name of a module: "{folder}/AGIPD{mm}.h5". */
void agipd_consts_path(char *buf, size_t len, const char *folder, int module);

/* Check that the file holds every constant p needs, with valid shapes and
 * types; fills m (not the checksum).  -1 with e naming file and cause. */
int agipd_consts_probe(const char *path, const struct agipd_params *p, struct agipd_consts_meta *m,
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
