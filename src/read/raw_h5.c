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

#include "agipd_h5.h"
#include "agipd_mapguard.h"
#include "agipd_raw_h5.h"

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

/* Read a 1-d integer dataset of expect_n entries (or at least expect_n, when
 * at_least) in its own native type into a new buffer; *native_out gets that
 * type.  Only the first expect_n entries are read. */
static void *read_1d(struct agipd_raw *r, const char *name, uint64_t expect_n, int at_least, hid_t *native_out,
		     agipd_err *e)
{
	uint64_t n;
	hid_t d = open_1d(r, name, &n, e), ftype = -1, mtype = -1, fs = -1, ms = -1;
	void *buf = NULL;
	if (d < 0)
		return NULL;
	if (at_least ? n < expect_n : n != expect_n) {
		agipd_err_set(e, "%s: %s has %" PRIu64 " entries, expected %s%" PRIu64, r->path, name, n,
			      at_least ? "at least " : "", expect_n);
		goto out;
	}
	ftype = H5Dget_type(d);
	if (H5Tget_class(ftype) != H5T_INTEGER) {
		agipd_err_set(e, "%s: %s is not an integer dataset", r->path, name);
		goto out;
	}
	mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
	/* room for 8 bytes an entry: read_u64() converts in place */
	size_t sz = H5Tget_size(mtype);
	buf = malloc((expect_n ? expect_n : 1) * (sz > 8 ? sz : 8));
	if (!buf) {
		agipd_err_set(e, "%s: out of memory reading %s", r->path, name);
		goto out;
	}
	if (expect_n) {
		hsize_t start[2] = { 0, 0 }, count[2] = { expect_n, 1 }, mn = expect_n;
		fs = H5Dget_space(d);
		ms = H5Screate_simple(1, &mn, NULL);
		if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
		    H5Dread(d, mtype, ms, fs, H5P_DEFAULT, buf) < 0) {
			agipd_err_h5(e, "%s: cannot read %s", r->path, name);
			free(buf);
			buf = NULL;
		}
	}
out:
	if (buf) {
		*native_out = mtype;
		mtype = -1;
	}
	if (mtype >= 0)
		H5Tclose(mtype);
	if (ftype >= 0)
		H5Tclose(ftype);
	if (fs >= 0)
		H5Sclose(fs);
	if (ms >= 0)
		H5Sclose(ms);
	H5Dclose(d);
	return buf;
}

/*
 * Read the first expect_n entries (all of them unless at_least) of a 1-d
 * integer dataset as uint64, refusing what HDF5's conversion would silently
 * clamp: negative values of a signed type and values above max.  The stored
 * type may be any integer type.
 */
static uint64_t *read_u64(struct agipd_raw *r, const char *name, uint64_t expect_n, int at_least, uint64_t max,
			  agipd_err *e)
{
	hid_t nt = -1;
	void *raw = read_1d(r, name, expect_n, at_least, &nt, e);
	if (!raw)
		return NULL;
	const int sgn = H5Tget_sign(nt) == H5T_SGN_2;
	uint64_t *v = malloc((expect_n ? expect_n : 1) * sizeof *v);
	if (!v) {
		agipd_err_set(e, "%s: out of memory reading %s", r->path, name);
		goto out;
	}
	/* int64/uint64 hold every stored integer of up to 8 bytes exactly. */
	if (expect_n &&
	    H5Tconvert(nt, sgn ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, expect_n, raw, NULL, H5P_DEFAULT) < 0) {
		free(v);
		v = NULL;
		agipd_err_h5(e, "%s: cannot convert %s", r->path, name);
		goto out;
	}
	for (uint64_t i = 0; i < expect_n; i++) {
		int64_t sv;
		uint64_t uv;
		if (sgn) {
			memcpy(&sv, (char *)raw + i * 8, 8);
			if (sv < 0) {
				agipd_err_set(e, "%s: %s[%" PRIu64 "] is %" PRId64 ": negative values are not valid here",
					      r->path, name, i, sv);
				free(v);
				v = NULL;
				goto out;
			}
			uv = (uint64_t)sv;
		} else {
			memcpy(&uv, (char *)raw + i * 8, 8);
		}
		if (uv > max) {
			agipd_err_set(e, "%s: %s[%" PRIu64 "] is %" PRIu64 ", out of range (at most %" PRIu64 ")", r->path,
				      name, i, uv, max);
			free(v);
			v = NULL;
			goto out;
		}
		v[i] = uv;
	}
out:
	free(raw);
	H5Tclose(nt);
	return v;
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

/* METADATA/dataFormatVersion as a string (fixed or variable length, shape
 * (1,) or scalar): 1 when read, 0 when absent, -1 when unreadable. */
static int read_version_string(hid_t fid, char *out, size_t len)
{
	const char *name = "METADATA/dataFormatVersion";
	int rc = -1;
	if (H5Lexists(fid, "METADATA", H5P_DEFAULT) <= 0 || H5Lexists(fid, name, H5P_DEFAULT) <= 0 ||
	    H5Oexists_by_name(fid, name, H5P_DEFAULT) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return 0;
	}
	hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
	if (d < 0) {
		H5Eclear2(H5E_DEFAULT);
		return -1;
	}
	hid_t t = H5Dget_type(d), s = H5Dget_space(d), mt = -1, fs = -1, ms = -1;
	hssize_t np = H5Sget_simple_extent_npoints(s);
	int rank = H5Sget_simple_extent_ndims(s);
	if (H5Tget_class(t) != H5T_STRING || np < 1 || rank > 1)
		goto out;
	hsize_t one = 1, start = 0;
	ms = H5Screate_simple(1, &one, NULL);
	fs = H5Scopy(s);
	if (rank == 1)
		H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL);
	mt = H5Tcopy(H5T_C_S1);
	if (H5Tis_variable_str(t) > 0) {
		char *v = NULL;
		H5Tset_size(mt, H5T_VARIABLE);
		if (H5Dread(d, mt, ms, rank == 1 ? fs : H5S_ALL, H5P_DEFAULT, &v) >= 0 && v) {
			snprintf(out, len, "%s", v);
			rc = 1;
		}
		if (v)
			H5free_memory(v);
	} else {
		size_t n = H5Tget_size(t);
		char *v = n < 4096 ? calloc(1, n + 1) : NULL;
		H5Tset_size(mt, n + 1);
		if (v && H5Dread(d, mt, ms, rank == 1 ? fs : H5S_ALL, H5P_DEFAULT, v) >= 0) {
			snprintf(out, len, "%s", v);
			rc = 1;
		}
		free(v);
	}
out:
	if (mt >= 0)
		H5Tclose(mt);
	if (fs >= 0)
		H5Sclose(fs);
	if (ms >= 0)
		H5Sclose(ms);
	H5Sclose(s);
	H5Tclose(t);
	H5Dclose(d);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

/* The EXDF format version: 0.5 without METADATA/dataFormatVersion, else
 * what it says ("1.0", "1.1", ...); r->format_v is 10 * major + minor. */
static int read_format(struct agipd_raw *r, agipd_err *e)
{
	char v[64];
	int got = read_version_string(r->fid, v, sizeof v);
	unsigned major, minor;
	int end = 0;
	if (got == 0) {
		snprintf(r->format, sizeof r->format, "0.5");
		r->format_v = 5;
		return 0;
	}
	if (got < 0)
		return agipd_err_set(e, "%s: METADATA/dataFormatVersion is not a readable string", r->path);
	if (sscanf(v, "%3u.%1u%n", &major, &minor, &end) != 2 || v[end] != '\0' || (major == 0 && minor != 5))
		return agipd_err_set(e, "%s: METADATA/dataFormatVersion '%.40s' is not an EXDF format version "
				     "(0.5, 1.0, 1.1, ...)", r->path, v);
	snprintf(r->format, sizeof r->format, "%u.%u", major, minor);
	r->format_v = (int)(10 * major + minor);
	return 0;
}

/*
 * Format 0.5 has no INDEX/flag: derive it as EXtra-data does, over the
 * non-zero train ids in file order.  At every place where the ids do not
 * increase, the trains on the side of the jump that needs fewer of them
 * dropped to make the sequence increase are marked invalid.  Output: flag
 * (int32, 1 = valid) and timestamp (uint64, 0) for every INDEX entry.
 */
static int derive_validity(struct agipd_raw *r, agipd_err *e)
{
	const size_t T = r->ntrains;
	size_t n = 0;
	uint64_t *id = malloc((T ? T : 1) * sizeof *id);
	int32_t *ok = malloc((T ? T : 1) * sizeof *ok);
	int32_t *flag = calloc(T ? T : 1, sizeof *flag);
	uint64_t *ts = calloc(T ? T : 1, sizeof *ts);
	if (!id || !ok || !flag || !ts) {
		free(id);
		free(ok);
		free(flag);
		free(ts);
		return agipd_err_set(e, "%s: out of memory", r->path);
	}
	for (size_t t = 0; t < T; t++)
		if (r->train_id[t] != 0)
			id[n++] = r->train_id[t];
	for (size_t i = 0; i < n; i++)
		ok[i] = 1;
	for (size_t ix = 0; ix + 1 < n; ix++) {
		if (id[ix + 1] > id[ix])
			continue;
		size_t before = 0, after = 0;
		for (size_t j = 0; j <= ix; j++)
			before += id[j] >= id[ix + 1];
		for (size_t j = ix + 1; j < n; j++)
			after += id[j] <= id[ix];
		if (before < after) {
			for (size_t j = 0; j <= ix; j++)
				if (id[j] >= id[ix + 1])
					ok[j] = 0;
		} else {
			for (size_t j = ix + 1; j < n; j++)
				if (id[j] <= id[ix])
					ok[j] = 0;
		}
	}
	for (size_t t = 0, i = 0; t < T; t++)
		if (r->train_id[t] != 0)
			flag[t] = ok[i++];
	free(id);
	free(ok);
	r->flag = flag;
	r->timestamp = ts;
	r->flag_type = H5Tcopy(H5T_NATIVE_INT32);
	r->ts_type = H5Tcopy(H5T_NATIVE_UINT64);
	return 0;
}

/* Format 1.1: INDEX/flag is an index, 0 for a valid train.  Convert it to
 * 1.0's meaning (1 = valid), as int32, the type the SPEC gives it. */
static int flag_from_1_1(struct agipd_raw *r, agipd_err *e)
{
	const size_t T = r->ntrains, sz = H5Tget_size(r->flag_type);
	int32_t *flag = malloc((T ? T : 1) * sizeof *flag);
	if (!flag)
		return agipd_err_set(e, "%s: out of memory", r->path);
	for (size_t t = 0; t < T; t++) {
		const unsigned char *b = (const unsigned char *)r->flag + t * sz;
		int zero = 1;
		for (size_t k = 0; k < sz; k++)
			zero &= b[k] == 0;
		flag[t] = zero;
	}
	free(r->flag);
	H5Tclose(r->flag_type);
	r->flag = flag;
	r->flag_type = H5Tcopy(H5T_NATIVE_INT32);
	return 0;
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

/*
 * Chunk addresses of image/data.  HDF5 1.10.8's H5Dget_chunk_info_by_coord
 * walks the chunk index from its start on every call (measured: 1.4 us a
 * call with 64 chunks, 52-170 us with 4,096), so a table of n chunks from it
 * costs O(n^2), and HDF5 1.10 has no chunk iterator (H5Dchunk_iter came with
 * 1.12.3/1.14).  So the table comes from one walk of the dataset's chunk
 * index itself, read from the file: the version-1 B-tree (layout message
 * version 3) that files of the default format use for chunked datasets, as
 * the DAQ's are.  Everything read is checked (signatures, bounds, every
 * chunk's logical offset and size, each chunk seen once), and the first and
 * last chunks are cross-checked with H5Dget_chunk_info_by_coord; any other
 * index (newer formats) or any doubt: the frames are copied through HDF5.
 */

/* little-endian fields */
static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int read_at(int fd, uint64_t off, void *buf, size_t n, uint64_t fsize)
{
	if (off > fsize || fsize - off < n)
		return -1;
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* Scan the messages in [p, p + n) of an object header (version 1: 8-byte
 * message headers, 8-aligned; version 2: 4 or 6-byte ones) for the layout
 * message (type 8) and continuations (type 0x10: pushed on cont[]).  Returns
 * the B-tree address of a version-3 chunked layout message, 0 when none
 * here, HADDR_UNDEF when the layout is of another kind. */
static haddr_t scan_msgs(const unsigned char *p, size_t n, int v2, int crt_order, uint64_t cont[][2], int *ncont)
{
	size_t i = 0;
	const size_t hl = v2 ? (crt_order ? 6 : 4) : 8;
	while (i + hl <= n) {
		unsigned type = v2 ? p[i] : (unsigned)le(p + i, 2);
		size_t sz = v2 ? (size_t)le(p + i + 1, 2) : (size_t)le(p + i + 2, 2);
		const unsigned char *d = p + i + hl;
		if (i + hl + sz > n)
			break;
		if (type == 8) {
			if (sz >= 11 && d[0] == 3 && d[1] == 2)
				return (haddr_t)le(d + 3, 8);
			return HADDR_UNDEF;
		}
		if (type == 0x10 && sz >= 16 && *ncont < 16) {
			cont[*ncont][0] = le(d, 8);
			cont[*ncont][1] = le(d + 8, 8);
			(*ncont)++;
		}
		i += hl + sz;
		if (!v2)
			i = (i + 7) & ~(size_t)7;
	}
	return 0;
}

/* The address of the v1 B-tree of a chunked dataset, HADDR_UNDEF when not
 * found (or another index). */
static haddr_t btree_root(hid_t d, int fd, uint64_t fsize)
{
	H5O_info_t oi;
	unsigned char *buf = NULL;
	uint64_t cont[16][2];
	int ncont = 0, v2 = 0, crt = 0;
	haddr_t root = 0;
	if (H5Oget_info2(d, &oi, H5O_INFO_BASIC) < 0)
		return HADDR_UNDEF;
	unsigned char h[32];
	if (read_at(fd, oi.addr, h, 16, fsize) < 0)
		return HADDR_UNDEF;
	uint64_t start, len;
	if (h[0] == 1) {                       /* version 1 */
		start = oi.addr + 16;
		len = le(h + 8, 4);
	} else if (!memcmp(h, "OHDR", 4) && h[4] == 2) {
		unsigned fl = h[5];
		size_t o = 6 + ((fl & 0x20) ? 16 : 0) + ((fl & 0x10) ? 4 : 0), w = (size_t)1 << (fl & 3);
		if (read_at(fd, oi.addr, h, o + w, fsize) < 0)
			return HADDR_UNDEF;
		v2 = 1;
		crt = (fl & 0x04) != 0;
		start = oi.addr + o + w;
		len = le(h + o, (int)w);
	} else {
		return HADDR_UNDEF;
	}
	for (int block = 0; block < 17 && root == 0; block++) {
		if (block > 0) {
			if (block > ncont)
				break;
			start = cont[block - 1][0];
			len = cont[block - 1][1];
			if (v2) {                  /* "OCHK" ... checksum */
				if (len < 8)
					break;
				start += 4;
				len -= 8;
			}
		}
		if (len == 0 || len > (1u << 20) || !(buf = malloc(len)) || read_at(fd, start, buf, len, fsize) < 0) {
			free(buf);
			return HADDR_UNDEF;
		}
		root = scan_msgs(buf, len, v2, crt, cont, &ncont);
		free(buf);
		buf = NULL;
	}
	return root == 0 ? HADDR_UNDEF : root;
}

/* Walk the v1 B-tree node at a (depth levels left): every leaf entry is a
 * chunk: offset (f0, 0, 0, 0, 0), size, filter mask, address. */
static int walk(int fd, uint64_t fsize, haddr_t a, int depth, uint64_t per, uint64_t csize, uint64_t nchunks,
		uint64_t *caddr, uint64_t *seen, uint64_t *budget)
{
	unsigned char h[24];
	/* a damaged index may loop: every node visited costs budget */
	if (*budget == 0)
		return -1;
	(*budget)--;
	if (depth < 0 || read_at(fd, a, h, 24, fsize) < 0 || memcmp(h, "TREE", 4) || h[4] != 1)
		return -1;
	const unsigned level = h[5], n = (unsigned)le(h + 6, 2);
	const size_t ks = 4 + 4 + 5 * 8, es = ks + 8, sz = (size_t)n * es + ks;
	unsigned char *b = malloc(sz ? sz : 1);
	int rc = 0;
	if (!b || read_at(fd, a + 24, b, sz, fsize) < 0) {
		free(b);
		return -1;
	}
	for (unsigned i = 0; i < n && rc == 0; i++) {
		const unsigned char *k = b + (size_t)i * es;
		uint64_t child = le(k + ks, 8);
		if (level > 0) {
			rc = walk(fd, fsize, child, depth - 1, per, csize, nchunks, caddr, seen, budget);
			continue;
		}
		uint64_t size = le(k, 4), mask = le(k + 4, 4), f0 = le(k + 8, 8);
		int zero = 1;
		for (int j = 1; j < 5; j++)
			zero &= le(k + 8 + 8 * j, 8) == 0;
		if (size != csize || mask != 0 || !zero || f0 % per || f0 / per >= nchunks || caddr[f0 / per] != 0 ||
		    child == 0 || child > fsize || fsize - child < csize)
			rc = -1;
		else {
			caddr[f0 / per] = child;
			(*seen)++;
		}
	}
	free(b);
	return rc;
}

/* Where each stored frame of a chunked, unfiltered image/data lies in the
 * file: chunks of whole frames, (c, 2, 512, 128).  Returns 1 with at[f] the
 * file offset of frame f, 0 when the layout is not one the mapping can
 * serve (another chunk index, a chunk not written or filtered, an odd
 * address, any inconsistency: read through HDF5), -1 with e set when a chunk
 * lies past the end of the file. */
static int chunk_offsets(struct agipd_raw *r, hid_t dcpl, uint64_t fsize, uint64_t *at, agipd_err *e)
{
	const uint64_t fb = 4 * (uint64_t)AGIPD_PIXELS;
	hsize_t cd[4];
	if (H5Pget_chunk(dcpl, 4, cd) != 4 || cd[0] < 1 || cd[1] != 2 || cd[2] != AGIPD_ROWS || cd[3] != AGIPD_COLS)
		return 0;
	const uint64_t per = cd[0], csize = per * fb, nchunks = (r->nframes + per - 1) / per;
	/* The first and the last chunk through HDF5: written, unfiltered, in
	 * the file (a chunk past its end is a truncated file). */
	uint64_t check[2][2];
	for (int i = 0; i < 2; i++) {
		hsize_t off[4] = { (i ? nchunks - 1 : 0) * per, 0, 0, 0 }, size = 0;
		unsigned mask = 0;
		haddr_t addr = HADDR_UNDEF;
		if (H5Dget_chunk_info_by_coord(r->data, off, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF ||
		    mask != 0 || size != csize)
			return 0;
		if (fsize < addr || fsize - addr < csize)
			return agipd_err_set(e, "%s: truncated file: image/data frames %llu.. need %llu bytes at "
					     "offset %llu, the file has %llu", r->path, (unsigned long long)off[0],
					     (unsigned long long)csize, (unsigned long long)addr,
					     (unsigned long long)fsize);
		check[i][0] = off[0] / per;
		check[i][1] = addr;
	}
	int fd = open(r->path, O_RDONLY | O_CLOEXEC), ok = 0;
	uint64_t *caddr = calloc(nchunks, sizeof *caddr), seen = 0, budget = 2 * nchunks + 64;
	haddr_t root = fd >= 0 ? btree_root(r->data, fd, fsize) : HADDR_UNDEF;
	if (caddr && root != HADDR_UNDEF && walk(fd, fsize, root, 64, per, csize, nchunks, caddr, &seen, &budget) == 0 &&
	    seen == nchunks && caddr[check[0][0]] == check[0][1] && caddr[check[1][0]] == check[1][1]) {
		ok = 1;
		for (uint64_t c = 0; c < nchunks && ok; c++)
			ok = caddr[c] % 2 == 0;
		for (uint64_t f = 0; ok && f < r->nframes; f++)
			at[f] = caddr[f / per] + (f % per) * fb;
	}
	if (fd >= 0)
		close(fd);
	free(caddr);
	return ok;
}

/* Map image/data when its bytes lie in the file as frames: contiguous, or
 * chunked in whole frames with every chunk written; no filters,
 * little-endian uint16, stored in this very file (not behind an external
 * link, not in external raw-data files, not virtual: those are read through
 * HDF5).  A dataset that claims more bytes than the file has is a truncated
 * file. */
static int map_data(struct agipd_raw *r, agipd_err *e)
{
	hid_t dcpl = H5Dget_create_plist(r->data), t = H5Dget_type(r->data);
	H5D_layout_t lay = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
	int ok = dcpl >= 0 && (lay == H5D_CONTIGUOUS || lay == H5D_CHUNKED) && H5Pget_nfilters(dcpl) == 0 &&
		 H5Pget_external_count(dcpl) == 0 && H5Tequal(t, H5T_STD_U16LE) > 0 &&
		 agipd_h5_in_file(r->data, r->fid);
	H5Tclose(t);
	const uint64_t bytes = r->nframes * 4 * (uint64_t)AGIPD_PIXELS;
	uint64_t *at = NULL;
	int rc = 0;
	struct stat st;
	if (!ok || bytes == 0 || stat(r->path, &st) < 0)
		goto out;   /* not mappable (or nothing to map): read through HDF5 */
	if (lay == H5D_CONTIGUOUS) {
		haddr_t off = H5Dget_offset(r->data);
		if (off == HADDR_UNDEF)
			goto out;   /* nothing written yet */
		if ((uint64_t)st.st_size < off || (uint64_t)st.st_size - off < bytes) {
			rc = agipd_err_set(e, "%s: truncated file: image/data needs %llu bytes at offset %llu, the file "
					   "has %llu", r->path, (unsigned long long)bytes, (unsigned long long)off,
					   (unsigned long long)st.st_size);
			goto out;
		}
	} else {
		if (!(at = malloc(r->nframes * sizeof *at))) {
			rc = agipd_err_set(e, "%s: out of memory", r->path);
			goto out;
		}
		int c = chunk_offsets(r, dcpl, (uint64_t)st.st_size, at, e);
		if (c <= 0) {
			rc = c;
			goto out;
		}
	}
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = agipd_err_set(e, "%s: cannot open raw file: %s", r->path, strerror(errno));
		goto out;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		goto out;   /* fall back to HDF5 reads */
	r->map = m;
	r->map_len = (size_t)st.st_size;
	if (lay == H5D_CONTIGUOUS) {
		r->frames = (const uint16_t *)((const char *)m + H5Dget_offset(r->data));
	} else {
		/* at[] becomes the frame pointer table in place */
		r->frame_at = (const uint16_t **)(void *)at;
		for (uint64_t f = 0; f < r->nframes; f++)
			r->frame_at[f] = (const uint16_t *)((const char *)m + at[f]);
		at = NULL;
		r->frames = r->frame_at[0];
	}
	agipd_mapguard_test_pause(r->path);
out:
	free(at);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

const uint16_t *agipd_raw_frame(const struct agipd_raw *r, uint64_t k)
{
	if (!r->frames)
		return NULL;
	return r->frame_at ? r->frame_at[r->kept[k]] : r->frames + r->kept[k] * 2 * AGIPD_PIXELS;
}

/* Calls fn over the runs of kept frames [k0, k0 + n) that lie back to back
 * in the mapping: [a, b) each. */
static void frame_runs(const struct agipd_raw *r, uint64_t k0, uint64_t n,
		       void (*fn)(const char *a, const char *b, void *arg), void *arg)
{
	const size_t fb = 4 * (size_t)AGIPD_PIXELS;
	uint64_t i = 0;
	while (i < n) {
		const char *a = (const char *)agipd_raw_frame(r, k0 + i), *b = a + fb;
		for (i++; i < n && (const char *)agipd_raw_frame(r, k0 + i) == b; i++)
			b += fb;
		fn(a, b, arg);
	}
}

static void advise_run(const char *a, const char *b, void *arg)
{
	uintptr_t pa = (uintptr_t)a & ~(uintptr_t)4095;
	(void)arg;
	madvise((void *)pa, (size_t)(b - (const char *)pa), MADV_WILLNEED);
}

void agipd_raw_prefetch(const struct agipd_raw *r, uint64_t k0, uint64_t n)
{
	if (r->frames && n > 0)
		frame_runs(r, k0, n, advise_run, NULL);
}

static void touch_run(const char *a, const char *b, void *arg)
{
	unsigned *sum = arg;
	for (const volatile char *p = a; p < b; p += 4096)
		*sum += (unsigned char)*p;
	*sum += (unsigned char)((const volatile char *)b)[-1];
}

struct touch {
	const struct agipd_raw *r;
	uint64_t k0, n;
	volatile unsigned sum;
};

static void touch_frames(void *arg)
{
	struct touch *t = arg;
	unsigned sum = 0;
	frame_runs(t->r, t->k0, t->n, touch_run, &sum);
	t->sum = sum;
}

int agipd_raw_touch(const struct agipd_raw *r, uint64_t k0, uint64_t n)
{
	struct touch t = { r, k0, n, 0 };
	if (!r->frames || n == 0)
		return 0;
	return agipd_mapguard_run(r->map, r->map_len, touch_frames, &t) < 0 ? -1 : 0;
}

/* The length of the 1-d dataset name (open_1d()'s checks). */
static int length_1d(struct agipd_raw *r, const char *name, uint64_t *n, agipd_err *e)
{
	hid_t d = open_1d(r, name, n, e);
	if (d < 0)
		return -1;
	H5Dclose(d);
	return 0;
}

/* Opens the file: an HDF5 file, else an error that tells a missing file
 * from another one. */
static int open_file(struct agipd_raw *r, const char *path, agipd_err *e)
{
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
	if (r->fid < 0)
		return agipd_err_h5(e, "%s: cannot open raw file", path);
	return 0;
}

/* INSTRUMENT/{source}/image/data: opened, checked to be (N, 2, 512, 128)
 * uint16, and mapped when its frames lie in the file as they are. */
static int open_image_data(struct agipd_raw *r, const char *path, const char *source, agipd_err *e)
{
	char name[512];
	hsize_t dims[8];
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/data", source);
	if (H5Lexists(r->fid, "INSTRUMENT", H5P_DEFAULT) <= 0 ||
	    H5Lexists(r->fid, name, H5P_DEFAULT) <= 0 || H5Oexists_by_name(r->fid, name, H5P_DEFAULT) <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return agipd_err_set(e, "%s: no dataset %s (wrong --karabo-id or module?)", path, name);
	}
	r->data = H5Dopen2(r->fid, name, H5P_DEFAULT);
	if (r->data < 0)
		return agipd_err_h5(e, "%s: cannot open %s", path, name);
	int rank = get_dims(r->data, dims, 4);
	if (rank != 4 || dims[1] != 2 || dims[2] != AGIPD_ROWS || dims[3] != AGIPD_COLS)
		return agipd_err_set(e, "%s: %s must have shape (N, 2, 512, 128), found rank %d%s", path, name, rank,
				     rank == 4 ? " with other dimensions" : "");
	hid_t t = H5Dget_type(r->data);
	int u16 = H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 2 && H5Tget_sign(t) == H5T_SGN_NONE;
	if (t >= 0)
		H5Tclose(t);
	if (!u16)
		return agipd_err_set(e, "%s: %s must be uint16", path, name);
	if (dims[0] > AGIPD_MAX_ENTRIES)
		return agipd_err_set(e, "%s: %s claims %llu frames, more than a raw file can hold", path, name,
				     (unsigned long long)dims[0]);
	r->nframes = dims[0];
	return map_data(r, e);
}

/* INDEX/trainId and the length of INDEX/{source}/image/first (name).
 * first and count may be shorter than a zero-padded trainId: the entries
 * past them must be padding (trainId 0) and are ignored. */
static int read_train_ids(struct agipd_raw *r, const char *path, const char *name, agipd_err *e)
{
	uint64_t T, TI;
	if (length_1d(r, name, &T, e) < 0 || length_1d(r, "INDEX/trainId", &TI, e) < 0)
		return -1;
	if (TI < T)
		return agipd_err_set(e, "%s: INDEX/trainId has %" PRIu64 " entries, expected at least the %" PRIu64
				     " of %s", path, TI, T, name);
	r->nindex = TI;
	r->ntrains = T;
	if (!(r->train_id = read_u64(r, "INDEX/trainId", TI, 0, UINT64_MAX, e)))
		return -1;
	for (uint64_t i = T; i < TI; i++)
		if (r->train_id[i] != 0)
			return agipd_err_set(e, "%s: INDEX/trainId[%" PRIu64 "] is %" PRIu64 ", past the %" PRIu64
					     " entries of %s (only padding, trainId 0, may be there)", path, i,
					     r->train_id[i], T, name);
	return 0;
}

/* INDEX, as the file's EXDF format version (SPEC section 2) holds it:
 * train ids, first and count, and the validity of each train. */
static int read_index(struct agipd_raw *r, const char *path, const char *source, agipd_err *e)
{
	char name[512];
	if (read_format(r, e) < 0)
		return -1;
	snprintf(name, sizeof name, "INDEX/%s/image/first", source);
	if (read_train_ids(r, path, name, e) < 0)
		return -1;
	if (!(r->first = read_u64(r, name, r->ntrains, 0, UINT64_MAX, e)))
		return -1;
	snprintf(name, sizeof name, "INDEX/%s/image/count", source);
	if (!(r->count = read_u64(r, name, r->ntrains, 0, UINT64_MAX, e)))
		return -1;
	if (r->format_v == 5)
		/* 0.5: no timestamp, no flag; validity as EXtra-data derives it. */
		return derive_validity(r, e);
	if (!(r->timestamp = read_1d(r, "INDEX/timestamp", r->ntrains, 1, &r->ts_type, e)))
		return -1;
	if (!(r->flag = read_1d(r, "INDEX/flag", r->ntrains, 1, &r->flag_type, e)))
		return -1;
	if (r->format_v == 11 && flag_from_1_1(r, e) < 0)
		return -1;
	return 0;
}

/* cellId (per-frame array i, dataset name): checked to fit uint16, kept as
 * r->cell and as the little-endian uint16 the output stores. */
static int read_cell_ids(struct agipd_raw *r, int i, const char *name, const char *path, agipd_err *e)
{
	uint64_t *v = read_u64(r, name, r->nframes, 0, UINT16_MAX, e);
	if (!v)
		return -1;
	r->cell = malloc((r->nframes ? r->nframes : 1) * sizeof *r->cell);
	if (!r->cell) {
		free(v);
		return agipd_err_set(e, "%s: out of memory", path);
	}
	for (uint64_t f = 0; f < r->nframes; f++)
		r->cell[f] = (uint16_t)v[f];
	free(v);
	r->pf_type[i] = H5Tcopy(H5T_STD_U16LE);
	if (!(r->pf[i] = malloc((r->nframes ? r->nframes : 1) * 2)))
		return agipd_err_set(e, "%s: out of memory", path);
	for (uint64_t f = 0; f < r->nframes; f++) {
		uint8_t le[2] = { (uint8_t)(r->cell[f] & 0xff), (uint8_t)(r->cell[f] >> 8) };
		memcpy((char *)r->pf[i] + f * 2, le, 2);
	}
	return 0;
}

/* The per-frame arrays: cellId, pulseId and trainId in the SPEC's types
 * (checked, never clamped), status and length as stored. */
static int read_per_frame(struct agipd_raw *r, const char *path, const char *source, agipd_err *e)
{
	char name[512];
	uint64_t n;
	for (int i = 0; i < AGIPD_NPF; i++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", source, agipd_pf_names[i]);
		if (length_1d(r, name, &n, e) < 0)
			return -1;
		if (i == AGIPD_PF_CELL) {
			if (read_cell_ids(r, i, name, path, e) < 0)
				return -1;
		} else if (i == AGIPD_PF_PULSE || i == AGIPD_PF_TRAIN) {
			uint64_t *v = read_u64(r, name, r->nframes, 0, UINT64_MAX, e);
			if (!v)
				return -1;
			r->pf[i] = v;
			r->pf_type[i] = H5Tcopy(H5T_NATIVE_UINT64);
		} else if (!(r->pf[i] = read_1d(r, name, r->nframes, 0, &r->pf_type[i], e))) {
			return -1;
		}
	}
	return 0;
}

/* Run, sequence and proposal numbers from METADATA; format 0.5 has no run
 * or sequence number: the file name's. */
static void read_numbers(struct agipd_raw *r, const char *path)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	unsigned fr = 0, fm = 0, fsq = 0;
	if (sscanf(base, "RAW-R%4u-AGIPD%2u-S%5u", &fr, &fm, &fsq) != 3)
		fr = fsq = 0;
	if (!meta_u64(r->fid, "METADATA/runNumber", &r->run))
		r->run = fr;
	if (!meta_u64(r->fid, "METADATA/sequenceNumber", &r->sequence))
		r->sequence = fsq;
	if (!meta_u64(r->fid, "METADATA/proposalNumber", &r->proposal))
		r->proposal = 0;
}

int agipd_raw_open(struct agipd_raw *r, const char *path, const char *source,
		   const struct agipd_params *p, agipd_err *e)
{
	memset(r, 0, sizeof *r);
	r->fid = r->data = -1;
	r->ts_type = r->flag_type = -1;
	for (int i = 0; i < AGIPD_NPF; i++)
		r->pf_type[i] = -1;
	snprintf(r->path, sizeof r->path, "%s", path);
	snprintf(r->source, sizeof r->source, "%s", source);

	if (open_file(r, path, e) < 0 || open_image_data(r, path, source, e) < 0 ||
	    read_index(r, path, source, e) < 0 || read_per_frame(r, path, source, e) < 0)
		goto fail;
	read_numbers(r, path);
	if (select_frames(r, p, e) < 0)
		goto fail;
	return 0;
fail:
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
	free(r->frame_at);
	r->frame_at = NULL;
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
