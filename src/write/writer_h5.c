/*
 * writer_h5.c - writing CORR files with parallel (or serial) HDF5.
 *
 * With HDF5 1.10.8 and the MPI-IO driver, filtered datasets accept only
 * collective transfers with no type conversion, and allocate space early;
 * every rank makes the same H5Dwrite calls, selecting none when it has
 * nothing.  HDF5 then runs its filters (zlib) on the rank that writes each
 * chunk (AGIPD_WRITER_COLLECTIVE_H5FILTER).
 *
 * The default (AGIPD_WRITER_COLLECTIVE) keeps the compression on the owning
 * rank but does it itself: shuffle + deflate with ISA-L (3-5x zlib) +
 * fletcher32, the exact byte stream HDF5's pipeline would store.  H5Dwrite_chunk
 * is not usable under the MPI-IO driver in 1.10.8, so the gain and mask
 * datasets are added after the collective close by rank 0 with the serial
 * driver, from the compressed chunks the ranks send it (~1/50 of the data).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "agipd_compress.h"
#include "agipd_opts.h"
#include "agipd_testhook.h"
#include "agipd_writer_h5.h"

enum { D_DATA = 0, D_GAIN, D_MASK, D_N };

struct agipd_writer {
	struct agipd_writer_config cfg;
	char path[4096];
	char source[256];
	int rank;
	hid_t fid, dxpl, dxpl_data;     /* dxpl_data: the data's transfers */
	hid_t dset[D_N];
	struct agipd_writer_stats st;
	/* compressed gain/mask chunks of this rank (AGIPD_WRITER_COLLECTIVE) */
	uint64_t *c_frame;
	uint32_t *c_len;               /* [2*i] gain, [2*i+1] mask */
	size_t c_n, c_cap;
	uint8_t *c_buf;
	size_t c_used, c_bufcap;
	uint8_t *shuf, *enc;
};

static double wnow(void)
{
	return MPI_Wtime();
}

static hid_t data_type(enum agipd_dtype t)
{
	switch (t) {
	case AGIPD_DTYPE_FLOAT16: {
		/* IEEE binary16, as NumPy and h5py store float16. */
		hid_t h = H5Tcopy(H5T_IEEE_F32LE);
		H5Tset_fields(h, 15, 10, 5, 0, 10);
		H5Tset_size(h, 2);
		H5Tset_ebias(h, 15);
		return h;
	}
	case AGIPD_DTYPE_INT16:
		return H5Tcopy(H5T_STD_I16LE);
	default:
		return H5Tcopy(H5T_IEEE_F32LE);
	}
}

static hid_t make_dataset(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
			  const hsize_t *chunk, int filtered, int level, int early, agipd_err *e, const char *path)
{
	hsize_t maxdims[4];
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp = -1, d = -1;
	for (int i = 0; i < rank; i++)
		maxdims[i] = dims[i];
	if (chunk && dims[0] == 0)
		maxdims[0] = H5S_UNLIMITED;   /* a chunked dataset of no frames */
	/* Every property counts: a dataset without its filters or layout would
	 * be a file other than the SPEC's. */
	if (dcpl < 0 || (sp = H5Screate_simple(rank, dims, maxdims)) < 0 ||
	    (chunk && H5Pset_chunk(dcpl, rank, chunk) < 0) ||
	    (chunk && filtered &&
	     (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, (unsigned)level) < 0 || H5Pset_fletcher32(dcpl) < 0)) ||
	    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
	    (early && H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0))
		agipd_err_h5(e, "%s: cannot set the properties of dataset %s", path, name);
	else if ((d = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
		agipd_err_h5(e, "%s: cannot create dataset %s", path, name);
	if (sp >= 0)
		H5Sclose(sp);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	return d;
}

/* The MPI_Info of cfg->mpi_info (--mpi-info): MPI_INFO_NULL when none.
 * The list was checked when the option was parsed; a malformed one is an
 * error here too.  Same string on every rank: every rank fails alike. */
static int mpi_info_new(const struct agipd_writer_config *cfg, MPI_Info *info, agipd_err *e)
{
	char k[AGIPD_MPI_INFO_LEN], v[AGIPD_MPI_INFO_LEN];
	const char *q = cfg->mpi_info;
	int r, mr;
	*info = MPI_INFO_NULL;
	if (!q || !*q)
		return 0;
	if ((mr = MPI_Info_create(info)) != MPI_SUCCESS)
		goto mpi_fail;
	while ((r = agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v)) > 0)
		if ((mr = MPI_Info_set(*info, k, v)) != MPI_SUCCESS)
			goto mpi_fail;
	if (r < 0) {
		MPI_Info_free(info);
		return agipd_err_set(e, "%s: malformed MPI-IO hints '%s' (KEY=VALUE,...)", cfg->path, cfg->mpi_info);
	}
	return 0;
mpi_fail:;
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(mr, msg, &len);
	if (*info != MPI_INFO_NULL)
		MPI_Info_free(info);
	return agipd_err_set(e, "%s: MPI-IO hints '%s': %s", cfg->path, cfg->mpi_info, msg);
}

/* A writer of cfg with no file yet (path and source copied into it). */
static struct agipd_writer *writer_new(const struct agipd_writer_config *cfg)
{
	struct agipd_writer *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->cfg = *cfg;
	snprintf(w->path, sizeof w->path, "%s", cfg->path);
	snprintf(w->source, sizeof w->source, "%s", cfg->source);
	w->cfg.path = w->path;
	w->cfg.source = w->source;
	w->fid = w->dxpl = w->dxpl_data = -1;
	for (int i = 0; i < D_N; i++)
		w->dset[i] = -1;
	MPI_Comm_rank(cfg->comm, &w->rank);
	return w;
}

/* The file access properties: the 1.8 file format, 1 MiB alignment and,
 * with mpio, the MPI-IO driver on cfg->comm with cfg's hints and
 * collective metadata.  Every property is checked: were H5Pset_fapl_mpio
 * to fail unnoticed, each rank would create (truncate) the same file with
 * the POSIX driver and write over the others.  -1 with e set on failure. */
static hid_t file_access(const struct agipd_writer_config *cfg, int mpio, agipd_err *e)
{
	MPI_Info info = MPI_INFO_NULL;
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	int rc = -1;
	if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18) < 0) {
		agipd_err_h5(e, "%s: cannot set up file access", cfg->path);
		goto out;
	}
	if (mpio && mpi_info_new(cfg, &info, e) < 0)
		goto out;
	if (mpio && (H5Pset_fapl_mpio(fapl, cfg->comm, info) < 0 ||
		     H5Pset_all_coll_metadata_ops(fapl, 1) < 0 || H5Pset_coll_metadata_write(fapl, 1) < 0)) {
		agipd_err_h5(e, "%s: cannot set up the MPI-IO driver", cfg->path);
		goto out;
	}
	/* Large objects on 1 MiB boundaries: file-system friendly. */
	if (H5Pset_alignment(fapl, 1 << 20, 1 << 20) < 0) {
		agipd_err_h5(e, "%s: cannot set up file access", cfg->path);
		goto out;
	}
	rc = 0;
out:
	if (info != MPI_INFO_NULL)
		MPI_Info_free(&info);   /* HDF5 keeps its own copy */
	if (rc < 0 && fapl >= 0) {
		H5Pclose(fapl);
		fapl = -1;
	}
	return fapl;
}

/* Creates (truncates) the file and the transfer properties: collective
 * with mpio. */
static int create_file(struct agipd_writer *w, const struct agipd_writer_config *cfg, int mpio, agipd_err *e)
{
	hid_t fapl = file_access(cfg, mpio, e);
	if (fapl < 0)
		return -1;
	w->fid = H5Fcreate(cfg->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	H5Pclose(fapl);
	if (w->fid < 0)
		return agipd_err_h5(e, "%s: cannot create output file", cfg->path);
	if ((w->dxpl = H5Pcreate(H5P_DATASET_XFER)) < 0 ||
	    (mpio && H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE) < 0))
		return agipd_err_h5(e, "%s: cannot set up transfers", cfg->path);
	/* The data's chunks are unfiltered and allocated at creation: each
	 * rank may write its own independently (the filtered datasets never). */
	int indep = mpio && cfg->independent_data && cfg->kind == AGIPD_WRITER_COLLECTIVE;
	if ((w->dxpl_data = H5Pcreate(H5P_DATASET_XFER)) < 0 ||
	    (mpio && H5Pset_dxpl_mpio(w->dxpl_data, indep ? H5FD_MPIO_INDEPENDENT : H5FD_MPIO_COLLECTIVE) < 0))
		return agipd_err_h5(e, "%s: cannot set up transfers", cfg->path);
	return 0;
}

/* INSTRUMENT/{source}/image with its data and, but for
 * AGIPD_WRITER_COLLECTIVE (gain and mask come after the collective part,
 * see top), its gain and mask: chunks of a frame, space allocated early
 * for the parallel writers. */
static int create_datasets(struct agipd_writer *w, const struct agipd_writer_config *cfg, agipd_err *e)
{
	const hsize_t dims[3] = { cfg->nframes, AGIPD_ROWS, AGIPD_COLS }, chunk[3] = { 1, AGIPD_ROWS, AGIPD_COLS };
	const int early = cfg->kind != AGIPD_WRITER_SERIAL, all = cfg->kind != AGIPD_WRITER_COLLECTIVE;
	char name[512];
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), g = -1, t = -1;
	if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
		agipd_err_h5(e, "%s: cannot set up transfers", cfg->path);
		goto out;
	}
	snprintf(name, sizeof name, "INSTRUMENT/%s/image", cfg->source);
	g = H5Gcreate2(w->fid, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	if (g < 0) {
		agipd_err_h5(e, "%s: cannot create group %s", cfg->path, name);
		goto out;
	}
	t = data_type(cfg->dtype);
	w->dset[D_DATA] = make_dataset(g, "data", t, 3, dims, chunk, 0, 0, early, e, cfg->path);
	if (all && w->dset[D_DATA] >= 0)
		w->dset[D_GAIN] = make_dataset(g, "gain", H5T_STD_U8LE, 3, dims, chunk, 1, cfg->deflate_level,
					       early, e, cfg->path);
	if (all && w->dset[D_GAIN] >= 0)
		w->dset[D_MASK] = make_dataset(g, "mask", H5T_STD_U32LE, 3, dims, chunk, 1, cfg->deflate_level,
					       early, e, cfg->path);
out:
	if (g >= 0)
		H5Gclose(g);
	if (t >= 0)
		H5Tclose(t);
	if (lcpl >= 0)
		H5Pclose(lcpl);
	return w->dset[all ? D_MASK : D_DATA] < 0 ? -1 : 0;
}

int agipd_writer_create(struct agipd_writer **wp, const struct agipd_writer_config *cfg, agipd_err *e)
{
	struct agipd_writer *w = writer_new(cfg);
	const int mpio = cfg->kind == AGIPD_WRITER_COLLECTIVE || cfg->kind == AGIPD_WRITER_COLLECTIVE_H5FILTER;

	*wp = NULL;
	if (!w)
		return agipd_err_set(e, "%s: out of memory", cfg->path);
	if (cfg->kind == AGIPD_WRITER_NULL)
		goto done;
	if (create_file(w, cfg, mpio, e) < 0 || create_datasets(w, cfg, e) < 0)
		goto fail;
	if (cfg->kind == AGIPD_WRITER_COLLECTIVE) {
		/* buffers of the gain and mask chunks this rank compresses */
		w->shuf = malloc(AGIPD_PIXELS * 4);
		w->enc = malloc(agipd_deflate_bound(AGIPD_PIXELS * 4) + 4);
		if (!w->shuf || !w->enc) {
			agipd_err_set(e, "%s: out of memory", cfg->path);
			goto fail;
		}
	}
done:
	*wp = w;
	return 0;
fail:
	agipd_writer_abort(w);
	return -1;
}

/* A contiguous 1-d dataset of n elements of type ftype, written from buf
 * (memory type mtype) by the calling rank alone. */
static int write_1d(struct agipd_writer *w, const char *name, hid_t ftype, hid_t mtype, uint64_t n,
		    const void *buf, int writer, agipd_err *e)
{
	hsize_t dims = n;
	hid_t sp = H5Screate_simple(1, &dims, NULL);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	hid_t d = -1;
	if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
		d = H5Dcreate2(w->fid, name, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	int rc = 0;
	if (d < 0)
		rc = agipd_err_h5(e, "%s: cannot create %s", w->path, name);
	else if (n) {
		/* Collective (all ranks call, the others selecting nothing): with
		 * collective metadata, an independent call could wait for them. */
		hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &dims, NULL);
		if (!writer) {
			H5Sselect_none(fs);
			H5Sselect_none(ms);
		}
		if (H5Dwrite(d, mtype, ms, fs, w->dxpl, buf) < 0)
			rc = agipd_err_h5(e, "%s: cannot write %s", w->path, name);
		H5Sclose(ms);
		H5Sclose(fs);
	}
	if (d >= 0 && H5Dclose(d) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing %s", w->path, name);
	if (lcpl >= 0)
		H5Pclose(lcpl);
	H5Sclose(sp);
	return rc;
}

static int write_strings(struct agipd_writer *w, const char *name, const char *const *s, size_t n, int writer,
			 agipd_err *e)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		if (strlen(s[i]) + 1 > len)
			len = strlen(s[i]) + 1;
	char *buf = calloc(n ? n : 1, len);
	if (!buf)
		return agipd_err_set(e, "%s: out of memory", w->path);
	for (size_t i = 0; i < n; i++)
		memcpy(buf + i * len, s[i], strlen(s[i]));
	hid_t t = H5Tcopy(H5T_C_S1);
	H5Tset_size(t, len);
	H5Tset_strpad(t, H5T_STR_NULLPAD);
	int rc = write_1d(w, name, t, t, n, buf, writer, e);
	H5Tclose(t);
	free(buf);
	return rc;
}

static void iso_now(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm);
}

int agipd_writer_write_index(struct agipd_writer *w, const struct agipd_raw *r, agipd_err *e)
{
	char name[512];
	int me = w->rank == 0, rc = 0;
	const size_t T = r->nout;
	uint64_t *u64 = NULL;
	char *buf = NULL;

	if (w->cfg.kind == AGIPD_WRITER_NULL)
		return 0;
	u64 = malloc((T ? T : 1) * sizeof *u64);
	size_t maxsz = 8;
	buf = malloc((r->nkept > T ? r->nkept : (T ? T : 1)) * maxsz);
	/* Agree on the buffers first: below, every rank makes every collective
	 * call, and keeps going after a local error (reporting the first one),
	 * so that a failed write on one rank cannot leave the others waiting. */
	int nomem = !u64 || !buf;
	if (w->cfg.kind != AGIPD_WRITER_SERIAL)
		MPI_Allreduce(MPI_IN_PLACE, &nomem, 1, MPI_INT, MPI_MAX, w->cfg.comm);
	if (nomem) {
		rc = agipd_err_set(e, "%s: out of memory", w->path);
		goto out;
	}
	agipd_err e2;
#define STEP(call)                                  \
	do {                                        \
		if ((call) < 0 && rc == 0) {        \
			rc = -1;                    \
			*e = e2;                    \
		}                                   \
	} while (0)
	/* INDEX: every train with a non-zero id, in raw order; the reader gives
	 * the flag with format 1.0's meaning (1 = valid), which the output's
	 * dataFormatVersion says. */
	for (size_t i = 0; i < T; i++)
		u64[i] = r->train_id[r->out_train[i]];
	STEP(write_1d(w, "INDEX/trainId", H5T_STD_U64LE, H5T_NATIVE_UINT64, T, u64, me, &e2));
	size_t tsz = H5Tget_size(r->ts_type), fsz = H5Tget_size(r->flag_type);
	for (size_t i = 0; i < T; i++)
		memcpy(buf + i * tsz, (char *)r->timestamp + r->out_train[i] * tsz, tsz);
	STEP(write_1d(w, "INDEX/timestamp", r->ts_type, r->ts_type, T, buf, me, &e2));
	for (size_t i = 0; i < T; i++)
		memcpy(buf + i * fsz, (char *)r->flag + r->out_train[i] * fsz, fsz);
	STEP(write_1d(w, "INDEX/flag", r->flag_type, r->flag_type, T, buf, me, &e2));
	snprintf(name, sizeof name, "INDEX/%s/image/first", w->source);
	STEP(write_1d(w, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, T, r->out_first, me, &e2));
	snprintf(name, sizeof name, "INDEX/%s/image/count", w->source);
	STEP(write_1d(w, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, T, r->out_count, me, &e2));

	/* Per-frame arrays of the kept frames in the SPEC's types: cellId
	 * uint16, pulseId and trainId uint64 (the reader checked and converted
	 * them), status and length as in the raw file. */
	for (int i = 0; i < AGIPD_NPF; i++) {
		hid_t ft = i == AGIPD_PF_CELL ? H5T_STD_U16LE
			   : i == AGIPD_PF_PULSE || i == AGIPD_PF_TRAIN ? H5T_STD_U64LE : r->pf_type[i];
		agipd_raw_gather_pf(r, i, 0, r->nkept, buf);
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", w->source, agipd_pf_names[i]);
		STEP(write_1d(w, name, ft, r->pf_type[i], r->nkept, buf, me, &e2));
	}

	/* METADATA (EXDF 1.0). */
	char date[32], src_id[400], dev_id[300];
	iso_now(date, sizeof date);
	/* Ranks must agree on the date: take rank 0's. */
	if (w->cfg.kind != AGIPD_WRITER_SERIAL)
		MPI_Bcast(date, sizeof date, MPI_CHAR, 0, w->cfg.comm);
	const char *v1[] = { "1.0" }, *vd[] = { date }, *vlib[] = { "agipd-correct " AGIPD_VERSION };
	const char *vk[] = { "agipd-correct" };
	snprintf(src_id, sizeof src_id, "INSTRUMENT/%s/image", w->source);
	snprintf(dev_id, sizeof dev_id, "%s", w->source);
	const char *vs[] = { src_id }, *vr[] = { "INSTRUMENT" }, *vdev[] = { dev_id };
	uint32_t prop = (uint32_t)r->proposal, run = (uint32_t)r->run, seq = (uint32_t)r->sequence;
	STEP(write_strings(w, "METADATA/dataFormatVersion", v1, 1, me, &e2));
	STEP(write_strings(w, "METADATA/creationDate", vd, 1, me, &e2));
	STEP(write_strings(w, "METADATA/updateDate", vd, 1, me, &e2));
	STEP(write_strings(w, "METADATA/daqLibrary", vlib, 1, me, &e2));
	STEP(write_strings(w, "METADATA/karaboFramework", vk, 1, me, &e2));
	STEP(write_1d(w, "METADATA/proposalNumber", H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, &prop, me, &e2));
	STEP(write_1d(w, "METADATA/runNumber", H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, &run, me, &e2));
	STEP(write_1d(w, "METADATA/sequenceNumber", H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, &seq, me, &e2));
	STEP(write_strings(w, "METADATA/dataSources/dataSourceId", vs, 1, me, &e2));
	STEP(write_strings(w, "METADATA/dataSources/root", vr, 1, me, &e2));
	STEP(write_strings(w, "METADATA/dataSources/deviceId", vdev, 1, me, &e2));
#undef STEP
out:
	free(u64);
	free(buf);
	return rc;
}

/* Compress this rank's gain and mask frames and keep the chunks. */
static int keep_chunks(struct agipd_writer *w, uint64_t first, uint64_t n, const uint8_t *gain,
		       const uint32_t *mask, agipd_err *e)
{
	const size_t enc_cap = agipd_deflate_bound(AGIPD_PIXELS * 4) + 4;
	for (uint64_t i = 0; i < n; i++) {
		if (w->c_n == w->c_cap) {
			size_t cap = w->c_cap ? 2 * w->c_cap : 256;
			uint64_t *f = realloc(w->c_frame, cap * sizeof *f);
			if (f)
				w->c_frame = f;
			uint32_t *l = realloc(w->c_len, 2 * cap * sizeof *l);
			if (l)
				w->c_len = l;
			if (!f || !l)
				return agipd_err_set(e, "%s: out of memory keeping compressed chunks", w->path);
			w->c_cap = cap;
		}
		for (int k = 0; k < 2; k++) {
			size_t len = k == 0
				? agipd_chunk_encode(gain + i * AGIPD_PIXELS, AGIPD_PIXELS, 1, w->enc, enc_cap,
						     w->cfg.deflate_level, w->shuf)
				: agipd_chunk_encode(mask + i * AGIPD_PIXELS, AGIPD_PIXELS, 4, w->enc, enc_cap,
						     w->cfg.deflate_level, w->shuf);
			if (!len)
				return agipd_err_set(e, "%s: compressing the %s of frame %" PRIu64 " failed", w->path,
						     k ? "mask" : "gain", first + i);
			if (w->c_used + len > w->c_bufcap) {
				size_t cap = w->c_bufcap ? 2 * w->c_bufcap : 1 << 20;
				while (cap < w->c_used + len)
					cap *= 2;
				uint8_t *b = realloc(w->c_buf, cap);
				if (!b)
					return agipd_err_set(e, "%s: out of memory keeping compressed chunks", w->path);
				w->c_buf = b;
				w->c_bufcap = cap;
			}
			memcpy(w->c_buf + w->c_used, w->enc, len);
			w->c_used += len;
			w->c_len[2 * w->c_n + k] = (uint32_t)len;
			w->st.bytes_out += len;
		}
		w->c_frame[w->c_n++] = first + i;
		w->st.bytes_in += AGIPD_PIXELS * 5;
		w->st.chunks += 2;
	}
	return 0;
}

int agipd_writer_write_frames(struct agipd_writer *w, uint64_t first, uint64_t n, const void *data,
			      const uint8_t *gain, const uint32_t *mask, agipd_err *e)
{
	if (w->cfg.kind == AGIPD_WRITER_NULL)
		return 0;
	hsize_t mdims[3] = { n ? n : 1, AGIPD_ROWS, AGIPD_COLS };
	hsize_t start[3] = { first, 0, 0 }, count[3] = { n, AGIPD_ROWS, AGIPD_COLS };
	hid_t ms = H5Screate_simple(3, mdims, NULL);
	hid_t fs = H5Dget_space(w->dset[D_DATA]);
	hid_t mt = data_type(w->cfg.dtype);
	const void *bufs[D_N] = { data, gain, mask };
	hid_t mtypes[D_N] = { mt, H5T_STD_U8LE, H5T_STD_U32LE };
	static const char *const names[D_N] = { "data", "gain", "mask" };
	int rc = 0;

	if (n) {
		H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
	} else {
		H5Sselect_none(fs);
		H5Sselect_none(ms);
	}
	if (w->cfg.kind == AGIPD_WRITER_COLLECTIVE) {
		double t0 = wnow();
		rc = keep_chunks(w, first, n, gain, mask, e);
		w->st.t_filter += wnow() - t0;
	}
	/* Every rank issues the same writes, in the same order, even after a
	 * local failure (the caller agrees on the status afterwards). */
	for (int i = 0; i < D_N; i++) {
		if (w->dset[i] < 0)
			continue;
		double t0 = wnow();
		if (H5Dwrite(w->dset[i], mtypes[i], ms, fs, i == D_DATA ? w->dxpl_data : w->dxpl, bufs[i]) < 0 &&
		    rc == 0)
			rc = agipd_err_h5(e, "%s: cannot write %s frames %" PRIu64 "..%" PRIu64, w->path, names[i],
					  first, first + n);
		if (i == D_DATA) {
			w->st.t_data += wnow() - t0;
		} else {
			w->st.t_filter += wnow() - t0;
			if (i == D_GAIN)
				w->st.chunks += 2 * n;
		}
	}
	H5Tclose(mt);
	H5Sclose(fs);
	H5Sclose(ms);
	if (n && rc == 0)
		agipd_test_pause("frames-written");
	return rc;
}

int agipd_writer_attrs(struct agipd_writer *w, const char *group, const struct agipd_kv *kv, size_t n,
		       agipd_err *e)
{
	int rc = 0;
	if (w->cfg.kind == AGIPD_WRITER_NULL)
		return 0;
	hid_t g;
	if (H5Lexists(w->fid, group, H5P_DEFAULT) > 0) {
		g = H5Gopen2(w->fid, group, H5P_DEFAULT);
	} else {
		hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
		g = -1;
		if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
			g = H5Gcreate2(w->fid, group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
		if (lcpl >= 0)
			H5Pclose(lcpl);
	}
	H5Eclear2(H5E_DEFAULT);
	if (g < 0)
		return agipd_err_h5(e, "%s: cannot create group %s", w->path, group);
	hid_t scalar = H5Screate(H5S_SCALAR);
	for (size_t i = 0; i < n; i++) {   /* every attribute, even after an error */
		hid_t t, a;
		if (kv[i].str) {
			t = H5Tcopy(H5T_C_S1);
			H5Tset_size(t, strlen(kv[i].str) + 1);
		} else {
			t = H5Tcopy(kv[i].integer ? H5T_NATIVE_LLONG : H5T_NATIVE_DOUBLE);
		}
		long long iv = (long long)kv[i].num;
		const void *val = kv[i].str ? (const void *)kv[i].str : kv[i].integer ? (const void *)&iv
										       : (const void *)&kv[i].num;
		a = H5Acreate2(g, kv[i].key, t, scalar, H5P_DEFAULT, H5P_DEFAULT);
		if ((a < 0 || H5Awrite(a, t, val) < 0) &&
		    rc == 0)
			rc = agipd_err_h5(e, "%s: cannot write attribute %s/%s", w->path, group, kv[i].key);
		if (a >= 0)
			H5Aclose(a);
		H5Tclose(t);
	}
	H5Sclose(scalar);
	if (H5Gclose(g) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing group %s", w->path, group);
	return rc;
}

int agipd_writer_attr_floats(struct agipd_writer *w, const char *group, const char *key, const float *v, size_t n,
			     agipd_err *e)
{
	int rc = 0;
	if (w->cfg.kind == AGIPD_WRITER_NULL)
		return 0;
	hsize_t nv = n;
	hid_t g = H5Gopen2(w->fid, group, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(1, &nv, NULL);
	hid_t a = g >= 0 && sp >= 0 ? H5Acreate2(g, key, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
	if (a < 0 || H5Awrite(a, H5T_NATIVE_FLOAT, v) < 0)
		rc = agipd_err_h5(e, "%s: cannot write attribute %s/%s", w->path, group, key);
	if (a >= 0 && H5Aclose(a) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: cannot write attribute %s/%s", w->path, group, key);
	if (sp >= 0)
		H5Sclose(sp);
	if (g >= 0)
		H5Gclose(g);
	return rc;
}

/* Rank 0: add gain and mask, chunk by chunk, from its own chunks and those
 * the other ranks send; the others send.  Collective on comm. */
#define PIECE ((size_t)1 << 28)
static int send_chunks(struct agipd_writer *w)
{
	uint64_t hdr[2] = { w->c_n, w->c_used };
	MPI_Send(hdr, 2, MPI_UINT64_T, 0, 1, w->cfg.comm);
	if (!w->c_n)
		return 0;
	MPI_Send(w->c_frame, (int)w->c_n, MPI_UINT64_T, 0, 2, w->cfg.comm);
	MPI_Send(w->c_len, (int)(2 * w->c_n), MPI_UINT32_T, 0, 3, w->cfg.comm);
	for (size_t off = 0; off < w->c_used; off += PIECE)
		MPI_Send(w->c_buf + off, (int)(w->c_used - off < PIECE ? w->c_used - off : PIECE), MPI_BYTE, 0, 4,
			 w->cfg.comm);
	return 0;
}

static int put_chunks(hid_t d[2], const uint64_t *frame, const uint32_t *len, size_t n, const uint8_t *buf,
		      const char *path, agipd_err *e)
{
	size_t off = 0;
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 2; k++) {
			hsize_t o[3] = { frame[i], 0, 0 };
			if (H5Dwrite_chunk(d[k], H5P_DEFAULT, 0, o, len[2 * i + k], buf + off) < 0)
				return agipd_err_h5(e, "%s: cannot write %s chunk of frame %" PRIu64, path,
						    k ? "mask" : "gain", frame[i]);
			off += len[2 * i + k];
		}
	return 0;
}

/*
 * A file that failed and will be removed gives its blocks back to the file
 * system before it is closed, so that the metadata flush in H5Fclose cannot
 * fail for want of space (a disk that filled up).  HDF5 1.10 keeps a
 * half-destroyed id after a failed H5Fclose, and its clean-up in
 * MPI_Finalize then crashes on it (SIGSEGV in H5F__close_cb).  One rank
 * calls this, before the (collective) close.
 */
static void give_up_space(const char *path)
{
	if (truncate(path, 0) < 0) {
		/* nothing more to do: the close reports what fails */
	}
}

/* The provenance attribute written last, once every dataset is complete:
 * METADATA/calibration `completed` (agipd_writer_check() looks for it). */
static int mark_completed(hid_t fid, const char *path, agipd_err *e)
{
	static const char grp[] = "METADATA/calibration", val[] = "true";
	int rc = 0;
	hid_t g = -1, t = -1, sp = -1, a = -1;
	if (H5Lexists(fid, "METADATA", H5P_DEFAULT) > 0 && H5Lexists(fid, grp, H5P_DEFAULT) > 0) {
		g = H5Gopen2(fid, grp, H5P_DEFAULT);
	} else {
		hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
		if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
			g = H5Gcreate2(fid, grp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
		if (lcpl >= 0)
			H5Pclose(lcpl);
	}
	if (g < 0 || (t = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(t, sizeof val) < 0 ||
	    (sp = H5Screate(H5S_SCALAR)) < 0 || (a = H5Acreate2(g, "completed", t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
	    H5Awrite(a, t, val) < 0)
		rc = agipd_err_h5(e, "%s: cannot write attribute %s/completed", path, grp);
	if (a >= 0 && H5Aclose(a) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: cannot write attribute %s/completed", path, grp);
	if (sp >= 0)
		H5Sclose(sp);
	if (t >= 0)
		H5Tclose(t);
	if (g >= 0 && H5Gclose(g) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing group %s", path, grp);
	return rc;
}

/* What rank 0 receives from one other rank: sizes first, then its chunk
 * table and bytes, the receives posted before rank 0 writes anything. */
struct incoming {
	uint64_t hdr[2];              /* chunks (frames), bytes */
	uint64_t *frame;
	uint32_t *len;
	uint8_t *buf;
	MPI_Request *req;             /* 2 + pieces; NULL: not posted (out of memory) */
	int nreq;
};

/* Receive, into a scratch buffer, what rank r sends when rank 0 had no room
 * to post its receives (the sender must never block on a failed root). */
static void drain(struct agipd_writer *w, int r, const uint64_t hdr[2])
{
	static uint64_t sink[1 << 13];
	const int sn = (int)(sizeof sink / sizeof sink[0]);
	for (int tag = 2; tag <= 3; tag++) {
		uint64_t n = tag == 2 ? hdr[0] : 2 * hdr[0];   /* uint64 frames, uint32 lengths */
		MPI_Datatype t = tag == 2 ? MPI_UINT64_T : MPI_UINT32_T;
		MPI_Status st;
		/* one message each: probe its size, receive it in sink-sized parts is
		 * not possible for one message, so take it whole when it fits */
		MPI_Probe(r, tag, w->cfg.comm, &st);
		int cnt = 0;
		MPI_Get_count(&st, t, &cnt);
		void *tmp = malloc(n ? (size_t)n * 8 : 1);
		MPI_Recv(tmp ? tmp : (void *)sink, tmp ? cnt : (cnt <= sn ? cnt : 0), t, r, tag, w->cfg.comm,
			 MPI_STATUS_IGNORE);
		free(tmp);
	}
	for (size_t off = 0; off < hdr[1]; off += PIECE) {
		int cnt = (int)(hdr[1] - off < PIECE ? hdr[1] - off : PIECE);
		for (int got = 0; got < cnt; got += (int)sizeof sink)
			MPI_Recv(sink, cnt - got < (int)sizeof sink ? cnt - got : (int)sizeof sink, MPI_BYTE, r, 4,
				 w->cfg.comm, MPI_STATUS_IGNORE);
	}
}

/*
 * Rank 0 adds gain and mask to the closed file.  The other ranks' sizes come
 * first; then every receive (chunk tables and bytes of all ranks) is posted
 * at once, before rank 0 reopens the file and writes its own chunks, so the
 * senders hand their chunks over and go on, and the transfers overlap rank
 * 0's writing.  Each rank's chunks are written as soon as they are in.
 * H5Dwrite_chunk stays on one rank with the serial driver: independent
 * H5Dwrite_chunk under MPI-IO silently corrupts chunks in HDF5 1.10.8.
 */
static int gather_chunks(struct agipd_writer *w, agipd_err *e)
{
	int size, rc = 0;
	MPI_Comm_size(w->cfg.comm, &size);
	if (w->rank != 0)
		return send_chunks(w);

	struct incoming *in = calloc((size_t)(size > 1 ? size : 1), sizeof *in);
	MPI_Request *hreq = malloc((size_t)(size > 1 ? size : 1) * sizeof *hreq);
	if (!in || !hreq) {
		/* no room even for the bookkeeping: receive and drop, then fail */
		for (int r = 1; r < size; r++) {
			uint64_t hdr[2];
			MPI_Recv(hdr, 2, MPI_UINT64_T, r, 1, w->cfg.comm, MPI_STATUS_IGNORE);
			if (hdr[0])
				drain(w, r, hdr);
		}
		free(in);
		free(hreq);
		return agipd_err_set(e, "%s: out of memory gathering gain and mask", w->path);
	}
	for (int r = 1; r < size; r++)
		MPI_Irecv(in[r].hdr, 2, MPI_UINT64_T, r, 1, w->cfg.comm, &hreq[r - 1]);
	if (size > 1)
		MPI_Waitall(size - 1, hreq, MPI_STATUSES_IGNORE);
	for (int r = 1; r < size; r++) {
		struct incoming *c = &in[r];
		if (!c->hdr[0])
			continue;
		int pieces = (int)((c->hdr[1] + PIECE - 1) / PIECE);
		c->frame = malloc(c->hdr[0] * sizeof *c->frame);
		c->len = malloc(2 * c->hdr[0] * sizeof *c->len);
		c->buf = malloc(c->hdr[1] ? c->hdr[1] : 1);
		c->req = malloc((size_t)(2 + pieces) * sizeof *c->req);
		if (!c->frame || !c->len || !c->buf || !c->req) {
			free(c->frame);
			free(c->len);
			free(c->buf);
			free(c->req);
			c->frame = NULL;
			c->len = NULL;
			c->buf = NULL;
			c->req = NULL;
			continue;   /* drained at its turn */
		}
		MPI_Irecv(c->frame, (int)c->hdr[0], MPI_UINT64_T, r, 2, w->cfg.comm, &c->req[c->nreq++]);
		MPI_Irecv(c->len, (int)(2 * c->hdr[0]), MPI_UINT32_T, r, 3, w->cfg.comm, &c->req[c->nreq++]);
		for (size_t off = 0; off < c->hdr[1]; off += PIECE)
			MPI_Irecv(c->buf + off, (int)(c->hdr[1] - off < PIECE ? c->hdr[1] - off : PIECE), MPI_BYTE, r, 4,
				  w->cfg.comm, &c->req[c->nreq++]);
	}

	char name[512];
	hid_t fid = H5Fopen(w->path, H5F_ACC_RDWR, H5P_DEFAULT), g = -1, d[2] = { -1, -1 };
	if (fid < 0)
		rc = agipd_err_h5(e, "%s: cannot reopen to add gain and mask", w->path);
	snprintf(name, sizeof name, "INSTRUMENT/%s/image", w->source);
	if (rc == 0 && (g = H5Gopen2(fid, name, H5P_DEFAULT)) < 0)
		rc = agipd_err_h5(e, "%s: cannot open %s", w->path, name);
	hsize_t dims[3] = { w->cfg.nframes, AGIPD_ROWS, AGIPD_COLS };
	hsize_t chunk[3] = { 1, AGIPD_ROWS, AGIPD_COLS };
	if (rc == 0) {
		d[0] = make_dataset(g, "gain", H5T_STD_U8LE, 3, dims, chunk, 1, w->cfg.deflate_level, 0, e, w->path);
		if (d[0] >= 0)
			d[1] = make_dataset(g, "mask", H5T_STD_U32LE, 3, dims, chunk, 1, w->cfg.deflate_level, 0, e,
					    w->path);
		if (d[1] < 0)
			rc = -1;
	}
	if (rc == 0)
		rc = put_chunks(d, w->c_frame, w->c_len, w->c_n, w->c_buf, w->path, e);
	/* Every posted receive completes even after a failure: the others send. */
	for (int r = 1; r < size; r++) {
		struct incoming *c = &in[r];
		if (!c->hdr[0])
			continue;
		if (!c->req) {
			drain(w, r, c->hdr);
			if (rc == 0)
				rc = agipd_err_set(e, "%s: out of memory receiving chunks of rank %d", w->path, r);
			continue;
		}
		MPI_Waitall(c->nreq, c->req, MPI_STATUSES_IGNORE);
		if (rc == 0)
			rc = put_chunks(d, c->frame, c->len, c->hdr[0], c->buf, w->path, e);
		free(c->frame);
		free(c->len);
		free(c->buf);
		free(c->req);
	}
	free(in);
	free(hreq);
	for (int k = 0; k < 2; k++)
		if (d[k] >= 0 && H5Dclose(d[k]) < 0 && rc == 0)
			rc = agipd_err_h5(e, "%s: closing %s", w->path, k ? "mask" : "gain");
	if (g >= 0)
		H5Gclose(g);
	if (rc == 0)
		rc = mark_completed(fid, w->path, e);
	if (fid >= 0 && rc == 0 && H5Fflush(fid, H5F_SCOPE_LOCAL) < 0)
		rc = agipd_err_h5(e, "%s: flushing after adding gain and mask", w->path);
	if (fid >= 0 && rc != 0)
		give_up_space(w->path);
	if (fid >= 0 && H5Fclose(fid) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing after adding gain and mask", w->path);
	return rc;
}

static void free_writer(struct agipd_writer *w)
{
	free(w->c_frame);
	free(w->c_len);
	free(w->c_buf);
	free(w->shuf);
	free(w->enc);
	free(w);
}

int agipd_writer_close(struct agipd_writer *w, struct agipd_writer_stats *stats, agipd_err *e)
{
	int rc = 0;
	for (int i = 0; i < D_N; i++)
		if (w->dset[i] >= 0 && H5Dclose(w->dset[i]) < 0 && rc == 0)
			rc = agipd_err_h5(e, "%s: closing a dataset", w->path);
	if (w->dxpl >= 0)
		H5Pclose(w->dxpl);
	if (w->dxpl_data >= 0)
		H5Pclose(w->dxpl_data);
	/* Every rank makes this (collective) call, even after an error. */
	if (w->fid >= 0 && w->cfg.kind != AGIPD_WRITER_COLLECTIVE) {
		agipd_err e2;
		if (mark_completed(w->fid, w->path, &e2) < 0 && rc == 0) {
			rc = -1;
			*e = e2;
		}
	}
	if (w->fid >= 0 && H5Fclose(w->fid) < 0 && rc == 0)
		rc = agipd_err_h5(e, "%s: closing the output file", w->path);
	if (w->cfg.kind == AGIPD_WRITER_COLLECTIVE && w->fid >= 0) {
		/* Everyone closed?  Then add gain and mask. */
		int bad = rc != 0;
		MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, w->cfg.comm);
		if (!bad) {
			double t0 = wnow();
			rc = gather_chunks(w, e);
			w->st.t_gather += wnow() - t0;
		} else if (rc == 0) {
			rc = agipd_err_set(e, "%s: another rank failed to close the file", w->path);
		}
	}
	if (stats)
		*stats = w->st;
	free_writer(w);
	return rc;
}

void agipd_writer_abort(struct agipd_writer *w)
{
	if (w) {
		if (w->fid >= 0 && w->rank == 0)
			give_up_space(w->path);
		for (int i = 0; i < D_N; i++)
			if (w->dset[i] >= 0)
				H5Dclose(w->dset[i]);
		if (w->dxpl >= 0)
			H5Pclose(w->dxpl);
		if (w->dxpl_data >= 0)
			H5Pclose(w->dxpl_data);
		if (w->fid >= 0)
			H5Fclose(w->fid);
		free_writer(w);
	}
	H5Eclear2(H5E_DEFAULT);
}

/* ---- checking a CORR file that exists ---- */

/* The shape of dataset `name`: its rank, or -1 when it does not open. */
static int shape_of(hid_t fid, const char *name, hsize_t dims[3])
{
	int n = -1;
	H5E_BEGIN_TRY
	{
		hid_t d = H5Dopen2(fid, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
		n = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
		if (n < 0 || n > 3 || (n > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0))
			n = -1;
		if (sp >= 0)
			H5Sclose(sp);
		if (d >= 0)
			H5Dclose(d);
	}
	H5E_END_TRY;
	return n;
}

/* A string attribute `key` of object `obj` into buf: 0, or -1 when missing
 * or not a string. */
static int read_str_attr(hid_t fid, const char *obj, const char *key, char *buf, size_t len)
{
	int rc = -1;
	buf[0] = 0;
	H5E_BEGIN_TRY
	{
		hid_t a = H5Aopen_by_name(fid, obj, key, H5P_DEFAULT, H5P_DEFAULT);
		hid_t t = a >= 0 ? H5Aget_type(a) : -1;
		if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
			size_t n = H5Tget_size(t);
			char *tmp = calloc(1, n + 1);
			hid_t m = H5Tcopy(H5T_C_S1);
			if (tmp && m >= 0 && H5Tset_size(m, n) >= 0 && H5Aread(a, m, tmp) >= 0) {
				snprintf(buf, len, "%s", tmp);
				rc = 0;
			}
			if (m >= 0)
				H5Tclose(m);
			free(tmp);
		}
		if (t >= 0)
			H5Tclose(t);
		if (a >= 0)
			H5Aclose(a);
	}
	H5E_END_TRY;
	return rc;
}

int agipd_writer_check(const char *path, const char *source, uint64_t nframes, uint64_t ntrains,
		       const char *index_sha256, const struct agipd_kv *want, size_t n, agipd_err *e)
{
	char name[512], val[4096];
	hsize_t dims[3];
	int rc = 0;
	hid_t fid;
	H5E_BEGIN_TRY
	{
		fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	}
	H5E_END_TRY;
	if (fid < 0)
		return agipd_err_set(e, "it does not open as an HDF5 file");
	if (read_str_attr(fid, "METADATA/calibration", "completed", val, sizeof val) < 0 || strcmp(val, "true")) {
		rc = agipd_err_set(e, "its provenance does not say it was completed (METADATA/calibration "
				   "attribute 'completed')");
		goto out;
	}
	/* Made from this raw file's INDEX, with these parameters? */
	if (index_sha256 && (read_str_attr(fid, "METADATA/calibration", "raw_index_sha256", val, sizeof val) < 0 ||
			     strcmp(val, index_sha256))) {
		agipd_err_set(e, "it was made from another raw file (the INDEX checksum differs)");
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (read_str_attr(fid, "METADATA/calibration/parameters", want[i].key, val, sizeof val) < 0)
			snprintf(val, sizeof val, "(not recorded)");
		if (strcmp(val, want[i].str)) {
			agipd_err_set(e, "it was made with other options (--%s: '%s' then, '%s' now)", want[i].key, val,
				      want[i].str);
			rc = 1;
			goto out;
		}
	}
	/* Every dataset of SPEC section 5 with its shape. */
	static const char *const images[] = { "data", "gain", "mask" };
	for (int i = 0; i < 3 && rc == 0; i++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", source, images[i]);
		int r = shape_of(fid, name, dims);
		if (r != 3 || dims[0] != nframes || dims[1] != AGIPD_ROWS || dims[2] != AGIPD_COLS)
			rc = agipd_err_set(e, "%s %s (expected %" PRIu64 " x %d x %d)", name,
					   r < 0 ? "does not open" : "has the wrong shape", nframes, AGIPD_ROWS, AGIPD_COLS);
	}
	for (int i = 0; i < AGIPD_NPF && rc == 0; i++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", source, agipd_pf_names[i]);
		int r = shape_of(fid, name, dims);
		if (r != 1 || dims[0] != nframes)
			rc = agipd_err_set(e, "%s %s (expected %" PRIu64 " values)", name,
					   r < 0 ? "does not open" : "has the wrong shape", nframes);
	}
	static const char *const index[] = { "INDEX/trainId", "INDEX/timestamp", "INDEX/flag", "first", "count" };
	for (int i = 0; i < 5 && rc == 0; i++) {
		if (i < 3)
			snprintf(name, sizeof name, "%s", index[i]);
		else
			snprintf(name, sizeof name, "INDEX/%s/image/%s", source, index[i]);
		int r = shape_of(fid, name, dims);
		if (r != 1 || dims[0] != ntrains)
			rc = agipd_err_set(e, "%s %s (expected %" PRIu64 " values)", name,
					   r < 0 ? "does not open" : "has the wrong shape", ntrains);
	}
out:
	H5E_BEGIN_TRY
	{
		if (H5Fclose(fid) < 0 && rc == 0)
			rc = agipd_err_set(e, "it does not close cleanly");
	}
	H5E_END_TRY;
	return rc;
}

int agipd_writer_calibration_sources(struct agipd_writer *w, const struct agipd_consts_meta *m, int ncells_loaded,
				     const struct agipd_conditions *cond, int ignore_conditions, agipd_err *e)
{
	struct agipd_kv kv[32];
	char crc[AGIPD_CONST_KINDS + 1][16], group[600];
	int n = 0, rc = 0;
	agipd_err e2;
#define ATTRS(g, list, count)                                                                    \
	do {                                                                                     \
		if (agipd_writer_attrs(w, g, list, (size_t)(count), &e2) < 0 && rc == 0) {      \
			rc = -1;                                                                 \
			*e = e2;                                                                 \
		}                                                                                \
	} while (0)
	if (!m->caldb) {
		/* The constants file: path, checksum, root attributes. */
		kv[n++] = (struct agipd_kv){ "path", m->path, 0, 0 };
		snprintf(crc[0], sizeof crc[0], "%08x", (unsigned)m->crc32);
		kv[n++] = (struct agipd_kv){ "crc32", crc[0], 0, 0 };
		kv[n++] = (struct agipd_kv){ "size_bytes", NULL, (double)m->size, 1 };
		kv[n++] = (struct agipd_kv){ "memory_cells_in_file", NULL, m->cells, 1 };
		kv[n++] = (struct agipd_kv){ "memory_cells_loaded", NULL, ncells_loaded, 1 };
		for (int i = 0; i < AGIPD_CONST_NATTRS; i++) {
			const struct agipd_const_attr *a = &m->attrs[i];
			if (!a->present)
				continue;
			kv[n].key = agipd_const_attr_names[i];
			kv[n].str = a->is_str ? a->str : NULL;
			kv[n].num = a->num;
			kv[n].integer = a->is_int;
			n++;
		}
		ATTRS("METADATA/calibration/constants", kv, n);
	} else {
		kv[n++] = (struct agipd_kv){ "source", "calibration database", 0, 0 };
		kv[n++] = (struct agipd_kv){ "path", m->path, 0, 0 };
		kv[n++] = (struct agipd_kv){ "physical_name", m->pdu, 0, 0 };
		kv[n++] = (struct agipd_kv){ "memory_cells_in_file", NULL, m->cells, 1 };
		kv[n++] = (struct agipd_kv){ "memory_cells_loaded", NULL, ncells_loaded, 1 };
		ATTRS("METADATA/calibration/constants", kv, n);
		for (int c = 0; c < AGIPD_CONST_KINDS; c++) {
			const struct agipd_const_src *s = &m->src[c];
			if (!s->used)
				continue;
			const struct agipd_consts_file *f = &m->files[s->file];
			snprintf(crc[c + 1], sizeof crc[c + 1], "%08x", (unsigned)f->crc32);
			struct agipd_kv ck[] = {
				{ "pdu", s->pdu, 0, 0 },
				{ "file", f->path, 0, 0 },
				{ "dataset", s->group, 0, 0 },
				{ "ccv_id", s->ccv_id, 0, 0 },
				{ "creation_time", s->creation_time, 0, 0 },
				{ "crc32", crc[c + 1], 0, 0 },
				{ "size_bytes", NULL, (double)f->size, 1 },
			};
			snprintf(group, sizeof group, "METADATA/calibration/constants/%s", agipd_const_names[c]);
			ATTRS(group, ck, sizeof ck / sizeof ck[0]);
		}
	}
	/* The conditions used and where each came from. */
	struct agipd_kv cv[AGIPD_NCOND], cs[AGIPD_NCOND];
	n = 0;
	for (int i = 0; i < AGIPD_NCOND; i++) {
		if (!cond->known[i])
			continue;
		int integer = i != AGIPD_COND_ACQ_RATE && i != AGIPD_COND_INTEG_TIME;
		cv[n] = (struct agipd_kv){ agipd_cond_names[i], NULL, cond->value[i], integer };
		cs[n] = (struct agipd_kv){ agipd_cond_names[i], cond->source[i], 0, 0 };
		n++;
	}
	ATTRS("METADATA/calibration/conditions", cv, n);
	ATTRS("METADATA/calibration/conditions_source", cs, n);
	struct agipd_kv ck[] = {
		{ "ignore_conditions", ignore_conditions ? "true" : "false", 0, 0 },
		{ "warnings", m->warning, 0, 0 },
	};
	ATTRS("METADATA/calibration/conditions_check", ck, 2);
#undef ATTRS
	return rc;
}
