/*
 * agipd_raw_h5.h - the EXDF raw-file reader (SPEC section 2): an adapter over
 * HDF5, opened read-only.  Independent (not collective): every rank that works
 * on a file opens it itself and reads only its own frames.
 */
#ifndef AGIPD_RAW_H5_H
#define AGIPD_RAW_H5_H

#include <stdint.h>

#include <hdf5.h>

#include "agipd_err.h"
#include "agipd_kernel.h"

/* The five per-frame arrays of image/ (types: see struct agipd_raw). */
enum { AGIPD_PF_CELL = 0, AGIPD_PF_PULSE, AGIPD_PF_TRAIN, AGIPD_PF_STATUS, AGIPD_PF_LENGTH, AGIPD_NPF };
extern const char *const agipd_pf_names[AGIPD_NPF];

struct agipd_raw {
	char path[4096];
	char source[256];              /* e.g. SPB_DET_AGIPD1M-1/DET/3CH0:xtdf */
	hid_t fid, data;               /* file and image/data */
	uint64_t nframes;              /* N, frames stored */

	/* EXDF format version: "0.5" (no METADATA/dataFormatVersion), "1.0", ...;
	 * format_v is 10 * major + minor (5, 10, 11, 12, 13, ...) */
	char format[16];
	int format_v;

	/* INDEX: the T entries of first/count (train_id, timestamp and flag may
	 * be longer, zero-padded to nindex: only their first T entries are
	 * kept).  Every integer was checked against its range, never clamped. */
	size_t ntrains, nindex;
	uint64_t *train_id, *first, *count;
	void *timestamp, *flag;        /* timestamp as stored (uint64 0 for 0.5);
					* flag with format 1.0's meaning, 1 = valid:
					* as stored for 1.0 and 1.2+, int32 for 0.5
					* (derived as EXtra-data does) and 1.1 */
	hid_t ts_type, flag_type;      /* their native memory types */

	/* per-frame arrays, all N frames: cellId as uint16 (little-endian),
	 * pulseId and trainId as uint64 (native), whatever integer types they
	 * were stored in (negative or too large values are refused); status and
	 * length in their stored (native) types */
	void *pf[AGIPD_NPF];
	hid_t pf_type[AGIPD_NPF];
	uint16_t *cell;                /* cellId as uint16 */

	/* Frame selection (SPEC "Frame selection") */
	uint64_t nkept;
	uint64_t *kept;                /* raw frame index of each kept frame */
	unsigned max_kept_cell;        /* largest cellId kept (0 when none) */
	size_t nout;                   /* trains with non-zero trainId */
	size_t *out_train;             /* their INDEX positions */
	uint64_t *out_first, *out_count;  /* over the kept frames */

	/* image/data mapped read-only, when it is stored unfiltered,
	 * little-endian uint16 in this file itself, contiguous or chunked in
	 * whole frames with every chunk written (then frames are read without a
	 * copy; see agipd_raw_frame() for a file that shrinks meanwhile) */
	void *map;
	size_t map_len;
	const uint16_t *frames;        /* non-NULL when mapped; contiguous: frame i
					* at frames + i * 2 * 512 * 128 */
	const uint16_t **frame_at;     /* chunked: stored frame i at frame_at[i] */

	/* METADATA numbers when present, else from the file name (or 0) */
	uint64_t run, sequence, proposal;
};

/*
 * Open path read-only, check the layout, read INDEX and the per-frame arrays,
 * and select frames with p.  On error returns -1 with e naming the file and
 * the cause; the struct is then closed.
 */
int agipd_raw_open(struct agipd_raw *r, const char *path, const char *source,
		   const struct agipd_params *p, agipd_err *e);

/*
 * Read kept frames [k0, k0 + n) into buf: n frames of 2 x 512 x 128 uint16
 * ([i][0] analog, [i][1] digital).
 */
int agipd_raw_read(struct agipd_raw *r, uint64_t k0, uint64_t n, uint16_t *buf, agipd_err *e);

/*
 * Pointer to kept frame k (2 x 512 x 128 uint16: analog, then digital) in
 * the read-only mapping, or NULL when the dataset is not mapped (filtered,
 * chunks not of whole frames or not all written, external): then use
 * agipd_raw_read().  agipd_raw_prefetch() tells the kernel which kept frames
 * come next (asynchronous).  agipd_raw_touch() reads every page of kept
 * frames [k0, k0 + n) now, so that the page faults of the mapped read are
 * taken (and timed) there and not in the code that uses the frames; it
 * returns -1 when the file shrank meanwhile (a SIGBUS on the mapping, caught
 * by agipd_mapguard_run()), else 0.  A file truncated after it was opened
 * raises SIGBUS on access: call agipd_raw_frame()'s readers inside
 * agipd_mapguard_run() over [map, map + map_len) (agipd_mapguard.h).
 */
const uint16_t *agipd_raw_frame(const struct agipd_raw *r, uint64_t k);
void agipd_raw_prefetch(const struct agipd_raw *r, uint64_t k0, uint64_t n);
int agipd_raw_touch(const struct agipd_raw *r, uint64_t k0, uint64_t n);

/* Gather the per-frame array `which` of the kept frames [k0, k0+n) into out
 * (element size H5Tget_size(pf_type[which])). */
void agipd_raw_gather_pf(const struct agipd_raw *r, int which, uint64_t k0, uint64_t n, void *out);

void agipd_raw_close(struct agipd_raw *r);

/* Source name of a module: "{karabo_id}/DET/{module}CH0:xtdf". */
void agipd_source_name(char *buf, size_t len, const char *karabo_id, int module);

#endif
