/*
 * agipd_writer_h5.h - the corrected-file writer (SPEC section 5): an adapter
 * over HDF5 that writes one CORR file, either collectively from every rank of
 * a communicator through the MPI-IO driver (parallel HDF5; gain and mask
 * chunks are filtered - shuffle, deflate, fletcher32 - by the rank whose
 * frames they hold), or from one rank with the serial driver.
 *
 * Calls marked "collective on comm" must be made by every rank of the
 * writer's communicator, in the same order, with the same arguments unless
 * said otherwise; a rank with nothing to write still calls.
 */
#ifndef AGIPD_WRITER_H5_H
#define AGIPD_WRITER_H5_H

#include <stdint.h>

#include <mpi.h>

#include "agipd_conditions.h"
#include "agipd_consts_h5.h"
#include "agipd_err.h"
#include "agipd_kernel.h"
#include "agipd_raw_h5.h"

struct agipd_writer;

enum agipd_writer_kind {
	/* MPI-IO driver, collective transfers of data; each rank runs the
	 * gain/mask chunks of its frames through shuffle + deflate (ISA-L) +
	 * fletcher32 itself, and rank 0 writes those small chunks with
	 * H5Dwrite_chunk once the collective part is closed. */
	AGIPD_WRITER_COLLECTIVE = 0,
	/* MPI-IO driver, collective transfers of everything; HDF5's own filters
	 * (zlib) run on the rank that writes each chunk. */
	AGIPD_WRITER_COLLECTIVE_H5FILTER,
	AGIPD_WRITER_SERIAL,          /* one rank, sec2 driver, HDF5's filters */
	AGIPD_WRITER_NULL,            /* writes nothing: tests and benchmarks */
};

struct agipd_writer_config {
	MPI_Comm comm;                /* ranks writing this file (1 for serial) */
	enum agipd_writer_kind kind;
	const char *path;             /* where to create the file (a temporary name) */
	const char *source;           /* e.g. SPB_DET_AGIPD1M-1/DET/0CH0:xtdf */
	enum agipd_dtype dtype;
	uint64_t nframes;             /* frames in the file */
	int deflate_level;            /* 1 unless told otherwise */
	const char *mpi_info;         /* MPI-IO hints "KEY=VAL,..." for the
				       * collective kinds' MPI_Info; NULL or "": none */
	int independent_data;         /* AGIPD_WRITER_COLLECTIVE: the data's
				       * transfers independent (each rank its
				       * own preallocated chunks), not collective */
};

/* Create the file and every dataset.  Collective on comm. */
int agipd_writer_create(struct agipd_writer **w, const struct agipd_writer_config *cfg, agipd_err *e);

/* INDEX, per-frame arrays and METADATA from the raw file's selection.
 * Collective on comm (rank 0 of comm does the writing). */
int agipd_writer_write_index(struct agipd_writer *w, const struct agipd_raw *r, agipd_err *e);

/* Frames [first, first + n) of the file from this rank; n may be 0, and
 * first/n differ between ranks.  data is n frames of the file's dtype, gain
 * n x 512 x 128 uint8, mask n x 512 x 128 uint32.  Collective on comm: every
 * rank makes the same number of calls. */
int agipd_writer_write_frames(struct agipd_writer *w, uint64_t first, uint64_t n, const void *data,
			      const uint8_t *gain, const uint32_t *mask, agipd_err *e);

/* A key and a value for the provenance attributes. */
struct agipd_kv {
	const char *key;
	const char *str;              /* NULL: numeric, use num */
	double num;
	int integer;                  /* numeric: store as int64, not float64 */
};

/* Attributes on group `group` (created when missing).  Collective on comm,
 * with the same values on every rank. */
int agipd_writer_attrs(struct agipd_writer *w, const char *group, const struct agipd_kv *kv, size_t n,
		       agipd_err *e);

/* A float32 array attribute `key` of n values on group `group` (created when
 * missing).  Collective on comm, with the same values on every rank. */
int agipd_writer_attr_floats(struct agipd_writer *w, const char *group, const char *key, const float *v, size_t n,
			     agipd_err *e);
/*
 * The provenance of the constants and the conditions: METADATA/calibration/
 * constants (the constants file with its checksum and root attributes, or
 * the calibration metadata with one subgroup per constant: PDU, file,
 * dataset, ccv_id, creation time, checksum), .../conditions (one attribute
 * per known condition, named as in SPEC 6.1), .../conditions_source (where
 * each came from) and .../conditions_check (ignore_conditions, warnings).
 * Collective on comm, with the same values on every rank.
 */
int agipd_writer_calibration_sources(struct agipd_writer *w, const struct agipd_consts_meta *m, int ncells_loaded,
				     const struct agipd_conditions *cond, int ignore_conditions, agipd_err *e);

/* This rank's share of the work (valid until close). */
struct agipd_writer_stats {
	uint64_t chunks;              /* gain/mask chunks this rank filtered */
	uint64_t bytes_in, bytes_out; /* their bytes before and after (0 when HDF5 filtered) */
	double t_data;                /* seconds writing data */
	double t_filter;              /* seconds filtering gain/mask (or in HDF5's filtered writes) */
	double t_gather;              /* seconds moving and writing the compressed chunks */
};

/* Close the file (for AGIPD_WRITER_COLLECTIVE, then add the gathered
 * gain/mask chunks), with METADATA/calibration `completed` written last;
 * every error counts.  Collective on comm.  Frees w in
 * every case; *stats (may be NULL) gets the final counters. */
int agipd_writer_close(struct agipd_writer *w, struct agipd_writer_stats *stats, agipd_err *e);

/* Close without reporting (after a failure); frees w.  Collective on comm. */
void agipd_writer_abort(struct agipd_writer *w);

/*
 * Is the CORR file at `path` one this program completed, for `source`, with
 * nframes frames in ntrains trains: it opens, METADATA/calibration says
 * `completed` (the attribute agipd_writer_close() writes last), and every
 * dataset of SPEC section 5 has its shape?  Made from the raw INDEX whose
 * checksum is index_sha256 (NULL: not compared) and with the parameters
 * want[] (strings, compared with METADATA/calibration/parameters)?  Returns 0
 * when complete and made alike, 1 when complete but made from another input
 * or with other parameters, -1 when not complete; e says why (not 0).  Not
 * collective: one process, serial HDF5.
 */
int agipd_writer_check(const char *path, const char *source, uint64_t nframes, uint64_t ntrains,
		       const char *index_sha256, const struct agipd_kv *want, size_t n, agipd_err *e);

#endif
