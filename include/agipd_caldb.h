/*
 * agipd_caldb.h - constants from the calibration database's files (SPEC 6.2):
 * the offline pipeline's calibration_metadata.yml (parsed with libyaml) names
 * for each module (karabo_da AGIPD{mm}) the file and dataset of every
 * constant; the arrays are read by the constants loader (agipd_consts_h5.h).
 * Independent (not collective); never prints.
 */
#ifndef AGIPD_CALDB_H
#define AGIPD_CALDB_H

#include "agipd_consts_h5.h"
#include "agipd_err.h"
#include "agipd_kernel.h"

/* Parse the file and check that it is calibration metadata (a mapping with
 * retrieved-constants).  Returns 0, or -1 with e naming the file, line and
 * cause. */
int agipd_caldb_check(const char *yaml_path, agipd_err *e);

/*
 * The sources of module `module`'s constants: every constant p uses, from
 * retrieved-constants/AGIPD{mm}/constants/{name}: path (relative to root, or
 * absolute), dataset (the array is {dataset}/data), ccv_id, creation-time,
 * and the module's physical-name.  Then probes them (agipd_consts_probe_
 * sources).  root NULL or "" means the YAML file's folder.  Returns 0, or -1
 * with e naming the module, the constant and the file.
 */
int agipd_caldb_module(const char *yaml_path, const char *root, int module, const struct agipd_params *p,
		       struct agipd_consts_meta *m, agipd_err *e);

#endif
