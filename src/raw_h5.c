/*
 * raw_h5.c - reading EXDF raw files.  Validates everything it reads before it
 * sizes a buffer with it, and never opens the file for writing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agipd_raw.h"

/* 2^28 frames would be 64 TiB of image data: no raw file is that big. */
#define AGIPD_MAX_ENTRIES ((hsize_t)1 << 28)

const char *const agipd_pf_names[AGIPD_NPF] = { "cellId", "pulseId", "trainId", "status", "length" };

void agipd_source_name(char *buf, size_t len, const char *karabo_id, int module)
{
	snprintf(buf, len, "%s/DET/%dCH0:xtdf", karabo_id, module);
}

/* Rank and dims of a dataset; -1 on failure. */
static int get_dims(hid_t d, hsize_t *dims, int maxrank)
{
	hid_t s = H5Dget_space(d);
	if (s < 0)
		return -1;
	int rank = H5Sget_simple_extent_ndims(s);
	if (rank >= 0 && rank <= maxrank)
		H5Sget_simple_extent_dims(s, dims, NULL);
	else
		rank = rank < 0 ? -1 : maxrank + 1;
	H5Sclose(s);
	return rank;
}

/* Open a dataset that is a 1-d array of n elements, or (n, 1).  Returns the
 * dataset id and its length in *n; -1 with e set on failure. */
static hid_t open_1d(struct agipd_raw *r, const char *name, uint64_t *n, agipd_err *e)
{
	hsize_t dims[4];
	if (H5Lexists(r->fid, name, H5P_DEFAULT) <= 0 || H5Oexists_by_name(r->fid, name, H5P_DEFAULT) <= 0) {
		agipd_err_set(e, "%s: missing dataset %s", r->path, name);
		H5Eclear2(H5E_DEFAULT);
		return -1;
	}
	hid_t d = H5Dopen2(r->fid, name, H5P_DEFAULT);
	if (d < 0) {
		agipd_err_h5(e, "%s: cannot open %s", r->path, name);
		return -1;
	}
	int rank = get_dims(d, dims, 2);
	if (rank < 1 || rank > 2 || (rank == 2 && dims[1] != 1)) {
		agipd_err_set(e, "%s: %s must have shape (n,) or (n, 1)", r->path, name);
		H5Dclose(d);
		return -1;
	}
	/* Sizes from a file size buffers: refuse the implausible before malloc. */
	if (dims[0] > AGIPD_MAX_ENTRIES) {
		agipd_err_set(e, "%s: %s has %llu entries, more than a raw file can hold", r->path, name,
			      (unsigned long long)dims[0]);
		H5Dclose(d);
		return -1;
	}
	*n = dims[0];
	return d;
}

/* Read a 1-d dataset as mtype into a new buffer of n elements. */
static void *read_1d(struct agipd_raw *r, const char *name, hid_t mtype_or_native, uint64_t expect_n,
		     hid_t *native_out, agipd_err *e)
{
	uint64_t n;
	hid_t d = open_1d(r, name, &n, e), ftype = -1, mtype = mtype_or_native;
	void *buf = NULL;
	if (d < 0)
		return NULL;
	if (n != expect_n) {
		agipd_err_set(e, "%s: %s has %" PRIu64 " entries, expected %" PRIu64, r->path, name, n, expect_n);
		goto out;
	}
	ftype = H5Dget_type(d);
	if (H5Tget_class(ftype) != H5T_INTEGER) {
		agipd_err_set(e, "%s: %s is not an integer dataset", r->path, name);
		goto out;
	}
	if (native_out) {
		mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
		*native_out = mtype;
	}
	size_t sz = H5Tget_size(mtype);
	buf = malloc(n ? n * sz : 1);
	if (!buf) {
		agipd_err_set(e, "%s: out of memory reading %s", r->path, name);
		goto out;
	}
	if (n && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		agipd_err_h5(e, "%s: cannot read %s", r->path, name);
		free(buf);
		buf = NULL;
	}
out:
	if (ftype >= 0)
		H5Tclose(ftype);
	H5Dclose(d);
	return buf;
}

/* Numbers from METADATA when present (shape (1,) or scalar integer). */
static int meta_u64(hid_t fid, const char *name, uint64_t *v)
{
	int ok = 0;
	if (H5Lexists(fid, "METADATA", H5P_DEFAULT) <= 0 || H5Lexists(fid, name, H5P_DEFAULT) <= 0)
		return 0;
	hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
	if (d < 0)
		return 0;
	hid_t s = H5Dget_space(d), t = H5Dget_type(d);
	if (H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_npoints(s) >= 1) {
		hsize_t one = 1, start = 0;
		hid_t ms = H5Screate_simple(1, &one, NULL);
		if (H5Sget_simple_extent_ndims(s) == 1)
			H5Sselect_hyperslab(s, H5S_SELECT_SET, &start, NULL, &one, NULL);
		ok = H5Dread(d, H5T_NATIVE_UINT64, ms, H5Sget_simple_extent_ndims(s) == 1 ? s : H5S_ALL,
			     H5P_DEFAULT, v) >= 0;
		H5Sclose(ms);
	}
	H5Tclose(t);
	H5Sclose(s);
	H5Dclose(d);
	H5Eclear2(H5E_DEFAULT);
	return ok;
}

static int select_frames(struct agipd_raw *r, const struct agipd_params *p, agipd_err *e)
{
	const uint64_t N = r->nframes;
	uint64_t prev_end = 0;
	size_t nvalid = 0;

	/* Validate the INDEX ranges of real trains: inside the data, in order,
	 * not overlapping.  trainId 0 entries are padding or invalid: dropped. */
	for (size_t t = 0; t < r->ntrains; t++) {
		if (r->train_id[t] == 0)
			continue;
		nvalid++;
		if (r->count[t] == 0)
			continue;
		if (r->first[t] > N || r->count[t] > N - r->first[t])
			return agipd_err_set(e, "%s: INDEX/%s/image first/count of train %" PRIu64
					     " (%" PRIu64 " + %" PRIu64 ") points past the %" PRIu64 " frames of image/data",
					     r->path, r->source, r->train_id[t], r->first[t], r->count[t], N);
		if (r->first[t] < prev_end)
			return agipd_err_set(e, "%s: INDEX/%s/image first/count of train %" PRIu64
					     " overlaps the frames of an earlier train (first %" PRIu64 " < %" PRIu64 ")",
					     r->path, r->source, r->train_id[t], r->first[t], prev_end);
		prev_end = r->first[t] + r->count[t];
	}
	r->nout = nvalid;
	r->out_train = malloc((nvalid ? nvalid : 1) * sizeof *r->out_train);
	r->out_first = malloc((nvalid ? nvalid : 1) * sizeof *r->out_first);
	r->out_count = malloc((nvalid ? nvalid : 1) * sizeof *r->out_count);
	r->kept = malloc((N ? N : 1) * sizeof *r->kept);
	if (!r->out_train || !r->out_first || !r->out_count || !r->kept)
		return agipd_err_set(e, "%s: out of memory", r->path);
	uint64_t nk = 0;
	size_t o = 0;
	r->max_kept_cell = 0;
	for (size_t t = 0; t < r->ntrains; t++) {
		if (r->train_id[t] == 0)
			continue;
		r->out_train[o] = t;
		r->out_first[o] = nk;
		for (uint64_t f = r->first[t]; f < r->first[t] + r->count[t]; f++) {
			if (!agipd_params_keep_cell(p, r->cell[f]))
				continue;
			r->kept[nk++] = f;
			if (r->cell[f] > r->max_kept_cell)
				r->max_kept_cell = r->cell[f];
		}
		r->out_count[o] = nk - r->out_first[o];
		o++;
	}
	r->nkept = nk;
	return 0;
}

/* Map image/data when its bytes lie in the file as frames: contiguous, no
 * filters, little-endian uint16.  A dataset that claims more bytes than the
 * file has is a truncated file. */
static int map_data(struct agipd_raw *r, agipd_err *e)
{
	hid_t dcpl = H5Dget_create_plist(r->data), t = H5Dget_type(r->data);
	int ok = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
		 H5Tequal(t, H5T_STD_U16LE) > 0;
	if (dcpl >= 0)
		H5Pclose(dcpl);
	H5Tclose(t);
	haddr_t off = ok ? H5Dget_offset(r->data) : HADDR_UNDEF;
	H5Eclear2(H5E_DEFAULT);
	const uint64_t bytes = r->nframes * 4 * (uint64_t)AGIPD_PIXELS;
	struct stat st;
	if (off == HADDR_UNDEF || stat(r->path, &st) < 0)
		return 0;   /* not mappable (or nothing written yet): read through HDF5 */
	if ((uint64_t)st.st_size < off || (uint64_t)st.st_size - off < bytes)
		return agipd_err_set(e, "%s: truncated file: image/data needs %llu bytes at offset %llu, the file has %llu",
				     r->path, (unsigned long long)bytes, (unsigned long long)off,
				     (unsigned long long)st.st_size);
	if (bytes == 0)
		return 0;
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return agipd_err_set(e, "%s: cannot open raw file: %s", r->path, strerror(errno));
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return 0;   /* fall back to HDF5 reads */
	r->map = m;
	r->map_len = (size_t)st.st_size;
	r->frames = (const uint16_t *)((const char *)m + off);
	return 0;
}

const uint16_t *agipd_raw_frame(const struct agipd_raw *r, uint64_t k)
{
	return r->frames ? r->frames + r->kept[k] * 2 * AGIPD_PIXELS : NULL;
}

void agipd_raw_prefetch(const struct agipd_raw *r, uint64_t k0, uint64_t n)
{
	if (!r->frames || n == 0)
		return;
	const char *a = (const char *)agipd_raw_frame(r, k0);
	const char *b = (const char *)(agipd_raw_frame(r, k0 + n - 1) + 2 * AGIPD_PIXELS);
	uintptr_t pa = (uintptr_t)a & ~(uintptr_t)4095;
	madvise((void *)pa, (size_t)(b - (const char *)pa), MADV_WILLNEED);
}

int agipd_raw_open(struct agipd_raw *r, const char *path, const char *source,
		   const struct agipd_params *p, agipd_err *e)
{
	char name[512];
	hsize_t dims[8];
	hid_t t = -1;
	uint64_t n;

	memset(r, 0, sizeof *r);
	r->fid = r->data = -1;
	r->ts_type = r->flag_type = -1;
	for (int i = 0; i < AGIPD_NPF; i++)
		r->pf_type[i] = -1;
	snprintf(r->path, sizeof r->path, "%s", path);
	snprintf(r->source, sizeof r->source, "%s", source);

	htri_t is = H5Fis_hdf5(path);
	if (is <= 0) {
		H5Eclear2(H5E_DEFAULT);
		FILE *f = fopen(path, "rb");
		if (!f)
			return agipd_err_set(e, "%s: cannot open raw file: %s", path, strerror(errno));
		fclose(f);
		return agipd_err_set(e, "%s: not an HDF5 file (or truncated)", path);
	}
	r->fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (r->fid < 0) {
		agipd_err_h5(e, "%s: cannot open raw file", path);
		goto fail;
	}
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/data", source);
	if (H5Lexists(r->fid, "INSTRUMENT", H5P_DEFAULT) <= 0 ||
	    H5Lexists(r->fid, name, H5P_DEFAULT) <= 0 || H5Oexists_by_name(r->fid, name, H5P_DEFAULT) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		agipd_err_set(e, "%s: no dataset %s (wrong --karabo-id or module?)", path, name);
		goto fail;
	}
	r->data = H5Dopen2(r->fid, name, H5P_DEFAULT);
	if (r->data < 0) {
		agipd_err_h5(e, "%s: cannot open %s", path, name);
		goto fail;
	}
	int rank = get_dims(r->data, dims, 4);
	if (rank != 4 || dims[1] != 2 || dims[2] != AGIPD_ROWS || dims[3] != AGIPD_COLS) {
		agipd_err_set(e, "%s: %s must have shape (N, 2, 512, 128), found rank %d%s", path, name, rank,
			      rank == 4 ? " with other dimensions" : "");
		goto fail;
	}
	t = H5Dget_type(r->data);
	if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 2 || H5Tget_sign(t) != H5T_SGN_NONE) {
		agipd_err_set(e, "%s: %s must be uint16", path, name);
		goto fail;
	}
	H5Tclose(t);
	t = -1;
	if (dims[0] > AGIPD_MAX_ENTRIES) {
		agipd_err_set(e, "%s: %s claims %llu frames, more than a raw file can hold", path, name,
			      (unsigned long long)dims[0]);
		goto fail;
	}
	r->nframes = dims[0];
	if (map_data(r, e) < 0)
		goto fail;

	/* INDEX */
	uint64_t T;
	hid_t d = open_1d(r, "INDEX/trainId", &T, e);
	if (d < 0)
		goto fail;
	H5Dclose(d);
	r->ntrains = T;
	if (!(r->train_id = read_1d(r, "INDEX/trainId", H5T_NATIVE_UINT64, T, NULL, e)))
		goto fail;
	snprintf(name, sizeof name, "INDEX/%s/image/first", source);
	if (!(r->first = read_1d(r, name, H5T_NATIVE_UINT64, T, NULL, e)))
		goto fail;
	snprintf(name, sizeof name, "INDEX/%s/image/count", source);
	if (!(r->count = read_1d(r, name, H5T_NATIVE_UINT64, T, NULL, e)))
		goto fail;
	if (!(r->timestamp = read_1d(r, "INDEX/timestamp", 0, T, &r->ts_type, e)))
		goto fail;
	if (!(r->flag = read_1d(r, "INDEX/flag", 0, T, &r->flag_type, e)))
		goto fail;

	/* per-frame arrays */
	for (int i = 0; i < AGIPD_NPF; i++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", source, agipd_pf_names[i]);
		d = open_1d(r, name, &n, e);
		if (d < 0)
			goto fail;
		H5Dclose(d);
		if (!(r->pf[i] = read_1d(r, name, 0, r->nframes, &r->pf_type[i], e)))
			goto fail;
	}
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/cellId", source);
	if (!(r->cell = read_1d(r, name, H5T_NATIVE_UINT16, r->nframes, NULL, e)))
		goto fail;

	if (!meta_u64(r->fid, "METADATA/runNumber", &r->run))
		r->run = 0;
	if (!meta_u64(r->fid, "METADATA/sequenceNumber", &r->sequence))
		r->sequence = 0;
	if (!meta_u64(r->fid, "METADATA/proposalNumber", &r->proposal))
		r->proposal = 0;

	if (select_frames(r, p, e) < 0)
		goto fail;
	return 0;
fail:
	if (t >= 0)
		H5Tclose(t);
	agipd_raw_close(r);
	return -1;
}

int agipd_raw_read(struct agipd_raw *r, uint64_t k0, uint64_t n, uint16_t *buf, agipd_err *e)
{
	hsize_t mdims[4] = { n, 2, AGIPD_ROWS, AGIPD_COLS };
	hid_t fs = -1, ms = -1;
	int rc = -1;
	if (n == 0)
		return 0;
	fs = H5Dget_space(r->data);
	ms = H5Screate_simple(4, mdims, NULL);
	if (fs < 0 || ms < 0) {
		agipd_err_h5(e, "%s: dataspace", r->path);
		goto out;
	}
	H5Sselect_none(fs);
	/* One hyperslab per run of consecutive raw frames. */
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;
		while (j < n && r->kept[k0 + j] == r->kept[k0 + j - 1] + 1)
			j++;
		hsize_t start[4] = { r->kept[k0 + i], 0, 0, 0 };
		hsize_t count[4] = { j - i, 2, AGIPD_ROWS, AGIPD_COLS };
		if (H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL) < 0) {
			agipd_err_h5(e, "%s: selecting frames", r->path);
			goto out;
		}
		i = j;
	}
	if (H5Dread(r->data, H5T_NATIVE_UINT16, ms, fs, H5P_DEFAULT, buf) < 0) {
		agipd_err_h5(e, "%s: cannot read image/data frames %" PRIu64 "..%" PRIu64, r->path,
			     r->kept[k0], r->kept[k0 + n - 1]);
		goto out;
	}
	rc = 0;
out:
	if (fs >= 0)
		H5Sclose(fs);
	if (ms >= 0)
		H5Sclose(ms);
	return rc;
}

void agipd_raw_gather_pf(const struct agipd_raw *r, int which, uint64_t k0, uint64_t n, void *out)
{
	size_t sz = H5Tget_size(r->pf_type[which]);
	const char *src = r->pf[which];
	char *dst = out;
	for (uint64_t i = 0; i < n; i++)
		memcpy(dst + i * sz, src + r->kept[k0 + i] * sz, sz);
}

void agipd_raw_close(struct agipd_raw *r)
{
	if (r->map)
		munmap(r->map, r->map_len);
	r->map = NULL;
	r->frames = NULL;
	if (r->data >= 0)
		H5Dclose(r->data);
	if (r->fid >= 0)
		H5Fclose(r->fid);
	r->data = r->fid = -1;
	for (int i = 0; i < AGIPD_NPF; i++) {
		free(r->pf[i]);
		r->pf[i] = NULL;
		if (r->pf_type[i] >= 0)
			H5Tclose(r->pf_type[i]);
		r->pf_type[i] = -1;
	}
	if (r->ts_type >= 0)
		H5Tclose(r->ts_type);
	if (r->flag_type >= 0)
		H5Tclose(r->flag_type);
	r->ts_type = r->flag_type = -1;
	free(r->train_id);
	free(r->first);
	free(r->count);
	free(r->timestamp);
	free(r->flag);
	free(r->cell);
	free(r->kept);
	free(r->out_train);
	free(r->out_first);
	free(r->out_count);
	r->train_id = r->first = r->count = r->kept = r->out_first = r->out_count = NULL;
	r->timestamp = r->flag = NULL;
	r->cell = NULL;
	r->out_train = NULL;
}
