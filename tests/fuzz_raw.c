/*
 * fuzz_raw.c - mutation fuzzing of the raw-file reader (agipd_raw_open,
 * agipd_raw_read): every size and index it takes from a file must be
 * checked before it sizes a buffer or addresses one.
 *
 *   fuzz_raw RAW.h5 [SOURCE]
 *
 * Each iteration copies RAW.h5 (a good, small raw file) to a temporary file,
 * rewrites one to four of its metadata datasets with the HDF5 C API -- the
 * dimensions, rank and type of image/data and of the per-frame arrays, the
 * lengths and values of INDEX trainId/first/count/timestamp/flag, cellId
 * values, METADATA numbers, missing datasets -- and then opens it with
 * agipd_raw_open() under a random frame selection and reads its kept frames
 * with agipd_raw_read().  It checks that
 *
 *   - nothing crashes (build with `make sanitize` to catch memory errors)
 *     and no call hangs (each iteration has FUZZ_TIMEOUT seconds);
 *   - every failure returns -1 with a message that names the file;
 *   - an open that succeeds describes the file consistently (kept frames
 *     inside the data, in order, per-train counts adding up);
 *   - no HDF5 object is left open after agipd_raw_close() or a failure.
 *
 * Environment: FUZZ_SECONDS (default 20) bounds the run; FUZZ_SEED (default:
 * the time) seeds it; FUZZ_ITER=N replays iteration N of FUZZ_SEED alone and
 * keeps its file (FUZZ_KEEP=1 keeps every file).  Prints one "PASS fuzz_raw"
 * or "FAIL fuzz_raw" line, with the seed and iteration to replay a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "agipd_raw_h5.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define HAVE_ASAN 1
#endif

#define P AGIPD_PIXELS
#define MAX_READ 16                 /* frames read per batch */

static uint64_t rng_state;
static char replay[512];            /* how to replay the current iteration */

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static int chance(int percent)
{
	return (int)below(100) < percent;
}

static void say_replay(void)
{
	if (write(2, replay, strlen(replay)) < 0 || write(2, "\n", 1) < 0) {
		/* nothing else to do in a dying process */
	}
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "FAIL fuzz_raw: an iteration hung\n";
	if (write(1, m, sizeof m - 1) < 0) {
		/* as above */
	}
	say_replay();
	_exit(2);
}

#ifndef HAVE_ASAN
static void on_crash(int sig)
{
	static const char m[] = "FAIL fuzz_raw: crashed\n";
	if (write(1, m, sizeof m - 1) < 0) {
		/* as above */
	}
	say_replay();
	signal(sig, SIG_DFL);
	raise(sig);
}
#endif

/* ---- the file's original shape ---- */

struct orig {
	uint64_t n;                     /* frames */
	uint64_t t;                     /* INDEX entries */
	char src[256];
};

static const char *const index_names[] = { "trainId", "timestamp", "flag", "first", "count" };

static void index_path(char *buf, size_t len, const char *src, int which)
{
	if (which < 3)
		snprintf(buf, len, "INDEX/%s", index_names[which]);
	else
		snprintf(buf, len, "INDEX/%s/image/%s", src, index_names[which]);
}

static void pf_path(char *buf, size_t len, const char *src, int which)
{
	snprintf(buf, len, "INSTRUMENT/%s/image/%s", src, agipd_pf_names[which]);
}

/* ---- rewriting datasets ---- */

/* A length near n, or one of the interesting extremes. */
static uint64_t pick_len(uint64_t n)
{
	switch (below(12)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return n ? n - 1 : 0;
	case 3: return n + 1;
	case 4: return 2 * n + below(3);
	case 5: return below(2 * n + 3);
	case 6: return ((uint64_t)1 << 28) + 1;      /* just past the reader's limit */
	case 7: return (uint64_t)1 << (32 + below(20));
	default: return n;
	}
}

static hid_t pick_int_type(void)
{
	switch (below(9)) {
	case 0: return H5T_NATIVE_UINT8;
	case 1: return H5T_NATIVE_UINT16;
	case 2: return H5T_NATIVE_UINT32;
	case 3: return H5T_NATIVE_INT8;
	case 4: return H5T_NATIVE_INT32;
	case 5: return H5T_NATIVE_INT64;
	case 6: return H5T_STD_U16BE;
	case 7: return H5T_STD_U64BE;
	default: return H5T_NATIVE_UINT64;
	}
}

/*
 * Replace dataset `name` by one of type ftype and shape dims (rank).  With
 * vals (n uint64 values converted to ftype) the data are written into a
 * contiguous dataset; without, the dataset is chunked and never written (its
 * reads give the fill value), so that a huge shape costs nothing.
 */
static int replace(hid_t fid, const char *name, hid_t ftype, int rank, const hsize_t *dims, const uint64_t *vals)
{
	hsize_t maxdims[8], chunk[8], total = 1;
	int rc = -1;
	if (H5Lexists(fid, name, H5P_DEFAULT) > 0 && H5Ldelete(fid, name, H5P_DEFAULT) < 0)
		return -1;
	for (int i = 0; i < rank; i++) {
		maxdims[i] = i == 0 ? H5S_UNLIMITED : dims[i];
		chunk[i] = dims[i] == 0 ? 1 : dims[i] > 64 && i == 0 ? 64 : dims[i];
		total *= dims[i];
	}
	if (rank > 1) {
		/* one frame per chunk, and no chunk over HDF5's 4 GiB limit */
		chunk[0] = 1;
		for (int i = 1; i < rank; i++)
			if (chunk[i] > 1024)
				chunk[i] = 1024;
	}
	hid_t sp = H5Screate_simple(rank, dims, vals ? NULL : maxdims);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	H5Pset_create_intermediate_group(lcpl, 1);
	if (!vals)
		H5Pset_chunk(dcpl, rank, chunk);
	hid_t d = sp < 0 ? -1 : H5Dcreate2(fid, name, ftype, sp, lcpl, dcpl, H5P_DEFAULT);
	if (d >= 0) {
		rc = 0;
		if (vals && total && H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) < 0)
			rc = -1;
		H5Dclose(d);
	}
	H5Pclose(lcpl);
	H5Pclose(dcpl);
	if (sp >= 0)
		H5Sclose(sp);
	return rc;
}

/* A 1-d (or (n, 1), or (n, 2)) integer dataset of length n with values from
 * gen(i); written when n is small, else unwritten. */
static int replace_1d(hid_t fid, const char *name, uint64_t n, hid_t ftype, uint64_t (*gen)(uint64_t, void *),
		      void *arg)
{
	hsize_t dims[2] = { n, 1 };
	int rank = 1;
	if (chance(30)) {
		rank = 2;
		dims[1] = chance(80) ? 1 : 2;
	}
	if (n > ((uint64_t)1 << 16))
		return replace(fid, name, ftype, rank, dims, NULL);
	uint64_t cnt = rank == 2 ? n * dims[1] : n;
	uint64_t *v = malloc((cnt ? cnt : 1) * sizeof *v);
	if (!v)
		return -1;
	for (uint64_t i = 0; i < cnt; i++)
		v[i] = gen(i, arg);
	int rc = replace(fid, name, ftype, rank, dims, v);
	free(v);
	return rc;
}

/* Read a 1-d (or (n, 1)) integer dataset as uint64; NULL when it is not one. */
static uint64_t *read_u64(hid_t fid, const char *name, uint64_t *n)
{
	if (H5Lexists(fid, name, H5P_DEFAULT) <= 0)
		return NULL;
	hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
	if (d < 0)
		return NULL;
	hid_t s = H5Dget_space(d), t = H5Dget_type(d);
	hsize_t dims[2] = { 0, 1 };
	int rank = H5Sget_simple_extent_ndims(s);
	uint64_t *v = NULL;
	if ((rank == 1 || (rank == 2 && (H5Sget_simple_extent_dims(s, dims, NULL), dims[1] == 1))) &&
	    H5Tget_class(t) == H5T_INTEGER) {
		H5Sget_simple_extent_dims(s, dims, NULL);
		if (dims[0] <= ((uint64_t)1 << 16) && (v = malloc((dims[0] ? dims[0] : 1) * sizeof *v)) != NULL) {
			if (dims[0] && H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
				free(v);
				v = NULL;
			}
			*n = dims[0];
		}
	}
	H5Tclose(t);
	H5Sclose(s);
	H5Dclose(d);
	return v;
}

static uint64_t gen_cell(uint64_t i, void *arg)
{
	(void)i;
	uint64_t cells = *(uint64_t *)arg;
	switch (below(10)) {
	case 0: return 65535;
	case 1: return 352 + below(1000);
	case 2: return (uint64_t)1 << 40;
	default: return below(cells);
	}
}

static uint64_t gen_any(uint64_t i, void *arg)
{
	(void)arg;
	switch (below(6)) {
	case 0: return 0;
	case 1: return i;
	case 2: return UINT64_MAX;
	case 3: return (uint64_t)1 << 63;
	default: return rnd();
	}
}

static uint64_t gen_train(uint64_t i, void *arg)
{
	(void)arg;
	return chance(15) ? 0 : 10000 + i;
}

/* A value for INDEX first or count of a file of n frames. */
static uint64_t bad_index_value(uint64_t n, uint64_t old)
{
	switch (below(10)) {
	case 0: return 0;
	case 1: return n;
	case 2: return n ? n - 1 : 0;
	case 3: return n + 1;
	case 4: return old + 1;
	case 5: return old ? old - 1 : 0;
	case 6: return UINT64_MAX;
	case 7: return UINT64_MAX - old;
	case 8: return (uint64_t)1 << 63;
	default: return below(n + 2);
	}
}

/* Mutations; each returns 0 when it changed the file. */

static int mut_image(hid_t fid, const struct orig *o, uint64_t *cur_n)
{
	char name[512];
	hsize_t dims[5] = { pick_len(o->n), 2, AGIPD_ROWS, AGIPD_COLS, 2 };
	int rank = chance(75) ? 4 : (int)(1 + below(5));
	if (chance(20))
		dims[1] = below(4);
	if (chance(15))
		dims[2] = below(1025);
	if (chance(15))
		dims[3] = below(1025);
	hid_t t;
	switch (below(8)) {
	case 0: t = H5T_STD_U16BE; break;
	case 1: t = H5T_NATIVE_INT16; break;
	case 2: t = H5T_NATIVE_UINT8; break;
	case 3: t = H5T_NATIVE_UINT32; break;
	case 4: t = H5T_NATIVE_FLOAT; break;
	default: t = H5T_NATIVE_UINT16; break;
	}
	snprintf(name, sizeof name, "INSTRUMENT/%s/image/data", o->src);
	*cur_n = dims[0];
	return replace(fid, name, t, rank, dims, NULL);
}

static int mut_drop(hid_t fid, const struct orig *o)
{
	char name[512];
	int k = (int)below(11);
	if (k < 5)
		pf_path(name, sizeof name, o->src, k);
	else if (k < 10)
		index_path(name, sizeof name, o->src, k - 5);
	else
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/data", o->src);
	return H5Ldelete(fid, name, H5P_DEFAULT) < 0 ? -1 : 0;
}

static int mut_pf(hid_t fid, const struct orig *o, uint64_t n)
{
	char name[512];
	int k = (int)below(AGIPD_NPF);
	uint64_t len = chance(60) ? n : pick_len(n);
	uint64_t cells = 4;
	pf_path(name, sizeof name, o->src, k);
	if (chance(8)) {
		/* a float array where integers belong */
		hsize_t d1 = len > 1024 ? 1024 : len;
		return replace(fid, name, H5T_NATIVE_DOUBLE, 1, &d1, NULL);
	}
	return replace_1d(fid, name, len, pick_int_type(), k == AGIPD_PF_CELL ? gen_cell : gen_any,
			  k == AGIPD_PF_CELL ? (void *)&cells : NULL);
}

static int mut_index_len(hid_t fid, const struct orig *o)
{
	char name[512];
	int k = (int)below(5);
	index_path(name, sizeof name, o->src, k);
	return replace_1d(fid, name, pick_len(o->t), k == 2 ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT64,
			  k == 0 ? gen_train : gen_any, NULL);
}

static int mut_index_values(hid_t fid, const struct orig *o, uint64_t n)
{
	char name[512];
	int k = (int)(below(3) == 0 ? 0 : 3 + below(2));
	uint64_t len = 0, *v;
	index_path(name, sizeof name, o->src, k);
	if (!(v = read_u64(fid, name, &len)) || !len) {
		free(v);
		return -1;
	}
	for (int j = 0, m = (int)(1 + below(3)); j < m; j++) {
		uint64_t t = below(len);
		v[t] = k == 0 ? (chance(50) ? 0 : rnd()) : bad_index_value(n, v[t]);
	}
	hsize_t d = len;
	int rc = replace(fid, name, H5T_NATIVE_UINT64, 1, &d, v);
	free(v);
	return rc;
}

/* A new, plausible INDEX: T trains over the n frames, with gaps, empty and
 * padding trains -- valid more often than not, so that the frame selection
 * and the reads are exercised. */
static int mut_index_layout(hid_t fid, const struct orig *o, uint64_t n)
{
	char name[512];
	uint64_t T = 1 + below(8);
	uint64_t *tid = calloc(T, 8), *first = calloc(T, 8), *count = calloc(T, 8), *ts = calloc(T, 8);
	uint64_t *flag = calloc(T, 8);
	int rc = -1;
	if (!tid || !first || !count || !ts || !flag)
		goto out;
	uint64_t at = 0;
	for (uint64_t t = 0; t < T; t++) {
		tid[t] = chance(10) ? 0 : 20000 + t;
		ts[t] = rnd();
		flag[t] = chance(90);
		at += chance(20) ? below(3) : 0;
		first[t] = at;
		count[t] = chance(15) ? 0 : below(n / T + 3);
		if (chance(5))
			count[t] = bad_index_value(n, count[t]);
		at += count[t];
	}
	hsize_t d = T;
	rc = 0;
	for (int k = 0; k < 5 && rc == 0; k++) {
		const uint64_t *vals[] = { tid, ts, flag, first, count };
		index_path(name, sizeof name, o->src, k);
		rc = replace(fid, name, k == 2 ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT64, 1, &d, vals[k]);
	}
out:
	free(tid);
	free(first);
	free(count);
	free(ts);
	free(flag);
	return rc;
}

static int mut_metadata(hid_t fid)
{
	static const char *const names[] = { "METADATA/runNumber", "METADATA/sequenceNumber",
					     "METADATA/proposalNumber" };
	const char *name = names[below(3)];
	hsize_t dims[2] = { below(4), below(3) };
	int rank = (int)below(3);
	if (rank == 0) {
		if (H5Lexists(fid, name, H5P_DEFAULT) > 0)
			H5Ldelete(fid, name, H5P_DEFAULT);
		hid_t sp = H5Screate(H5S_SCALAR);
		hid_t t = H5Tcopy(H5T_C_S1);
		H5Tset_size(t, 8);
		hid_t d = H5Dcreate2(fid, name, chance(50) ? t : H5T_NATIVE_UINT32, sp, H5P_DEFAULT, H5P_DEFAULT,
				     H5P_DEFAULT);
		int rc = d < 0 ? -1 : 0;
		if (d >= 0)
			H5Dclose(d);
		H5Tclose(t);
		H5Sclose(sp);
		return rc;
	}
	return replace(fid, name, pick_int_type(), rank, dims, NULL);
}

/* ---- one iteration ---- */

static int copy_file(const char *from_buf, size_t len, const char *to)
{
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, from_buf + off, len - off);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	return close(fd);
}

static int failures;

#define BAD(...)                                                                                    \
	do {                                                                                        \
		printf("  %s: ", replay);                                                 \
		printf(__VA_ARGS__);                                                                \
		printf("\n");                                                                       \
		failures++;                                                                         \
	} while (0)

/* Open and read path; returns 1 if it opened, 0 if refused. */
static int check_file(const char *path, const char *src, uint16_t *buf)
{
	struct agipd_params p;
	struct agipd_raw r;
	agipd_err e = { "" };
	agipd_params_default(&p);
	if (chance(30)) {
		p.cells_start = (long)below(4);
		p.cells_stop = p.cells_start + 1 + (long)below(8);
		p.cells_step = 1 + (long)below(3);
	}
	int rc = agipd_raw_open(&r, path, src, &p, &e);
	if (rc != 0) {
		if (rc != -1)
			BAD("agipd_raw_open returned %d", rc);
		if (!strstr(e.msg, path))
			BAD("the error message does not name the file: \"%s\"", e.msg);
		return 0;
	}
	/* A file that opens is described consistently. */
	if (r.nkept > r.nframes)
		BAD("%" PRIu64 " kept frames of %" PRIu64, r.nkept, r.nframes);
	uint64_t sum = 0;
	unsigned maxc = 0;
	for (uint64_t i = 0; i < r.nkept && i <= r.nframes; i++) {
		if (r.kept[i] >= r.nframes || (i && r.kept[i] <= r.kept[i - 1])) {
			BAD("kept frame %" PRIu64 " is raw frame %" PRIu64 " of %" PRIu64, i, r.kept[i], r.nframes);
			break;
		}
		if (r.cell[r.kept[i]] > maxc)
			maxc = r.cell[r.kept[i]];
	}
	if (r.nkept && maxc != r.max_kept_cell)
		BAD("max_kept_cell %u, the kept frames reach %u", r.max_kept_cell, maxc);
	for (size_t t = 0; t < r.nout; t++) {
		if (r.out_train[t] >= r.ntrains || r.train_id[r.out_train[t]] == 0 || r.out_first[t] != sum)
			BAD("output train %zu inconsistent", t);
		sum += r.out_count[t];
	}
	if (sum != r.nkept)
		BAD("per-train counts add up to %" PRIu64 ", not %" PRIu64, sum, r.nkept);
	/* Read the first and the last batches of kept frames. */
	for (int part = 0; part < 2; part++) {
		uint64_t n = r.nkept < MAX_READ ? r.nkept : MAX_READ;
		uint64_t k0 = part == 0 ? 0 : r.nkept - n;
		if (part == 1 && k0 == 0)
			break;
		agipd_err e2 = { "" };
		rc = agipd_raw_read(&r, k0, n, buf, &e2);
		if (rc != 0 && (rc != -1 || !strstr(e2.msg, path)))
			BAD("agipd_raw_read returned %d: \"%s\"", rc, e2.msg);
		for (int w = 0; w < AGIPD_NPF && r.nkept; w++) {
			size_t sz = H5Tget_size(r.pf_type[w]);
			if (sz == 0 || sz > 8)
				BAD("per-frame array %s has elements of %zu bytes", agipd_pf_names[w], sz);
			else
				agipd_raw_gather_pf(&r, w, k0, n, buf);
		}
	}
	agipd_raw_close(&r);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: fuzz_raw RAW.h5 [SOURCE]\n");
		return 2;
	}
	const char *good = argv[1];
	struct orig o;
	memset(&o, 0, sizeof o);
	snprintf(o.src, sizeof o.src, "%s", argc > 2 ? argv[2] : "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf");
	double seconds = getenv("FUZZ_SECONDS") ? atof(getenv("FUZZ_SECONDS")) : 20;
	unsigned timeout = getenv("FUZZ_TIMEOUT") ? (unsigned)atoi(getenv("FUZZ_TIMEOUT")) : 10;
	uint64_t seed = getenv("FUZZ_SEED") ? strtoull(getenv("FUZZ_SEED"), NULL, 0) : (uint64_t)time(NULL);
	long only = getenv("FUZZ_ITER") ? atol(getenv("FUZZ_ITER")) : -1;
	int keep = getenv("FUZZ_KEEP") != NULL || only >= 0;

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	signal(SIGALRM, on_alarm);
#ifdef HAVE_ASAN
	__asan_set_death_callback(say_replay);
#else
	signal(SIGSEGV, on_crash);
	signal(SIGBUS, on_crash);
	signal(SIGABRT, on_crash);
	signal(SIGFPE, on_crash);
#endif

	/* The good file: in memory, and its frame and train counts. */
	struct stat st;
	FILE *f = fopen(good, "rb");
	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "fuzz_raw: %s: %s\n", good, strerror(errno));
		return 2;
	}
	char *img = malloc((size_t)st.st_size);
	if (!img || fread(img, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "fuzz_raw: cannot read %s\n", good);
		return 2;
	}
	fclose(f);
	{
		struct agipd_params p;
		struct agipd_raw r;
		agipd_err e;
		agipd_params_default(&p);
		if (agipd_raw_open(&r, good, o.src, &p, &e) < 0) {
			printf("FAIL fuzz_raw: the good file does not open: %s\n", e.msg);
			return 1;
		}
		o.n = r.nframes;
		o.t = r.ntrains;
		agipd_raw_close(&r);
	}

	char path[4096];
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint16_t *buf = malloc((size_t)MAX_READ * 2 * P * sizeof *buf);
	if (!buf)
		return 2;
	long it = only >= 0 ? only : 0, opened = 0, refused = 0, done = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;; it++) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (only < 0 && (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) >= seconds)
			break;
		if (only >= 0 && it > only)
			break;
		rng_state = seed * 0x100000001b3ULL + (uint64_t)it;
		if (snprintf(path, sizeof path, "%s/fuzz_raw.%ld.%ld.h5", tmp, (long)getpid(), it) >= (int)sizeof path) {
			printf("FAIL fuzz_raw: TMPDIR %s is too long\n", tmp);
			return 1;
		}
		agipd_msgf(replay, sizeof replay, "FUZZ_SEED=%" PRIu64 " FUZZ_ITER=%ld (file %s)", seed, it, path);
		alarm(timeout);
		if (copy_file(img, (size_t)st.st_size, path) < 0) {
			printf("FAIL fuzz_raw: cannot write %s: %s\n", path, strerror(errno));
			return 1;
		}
		hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
		if (fid < 0) {
			printf("FAIL fuzz_raw: cannot reopen the copy %s\n", path);
			return 1;
		}
		uint64_t n = o.n;
		int nmut = (int)(1 + below(4)), changed = 0;
		for (int m = 0; m < nmut; m++) {
			int rc;
			switch (below(16)) {
			case 0: case 1: rc = mut_image(fid, &o, &n); break;
			case 2: rc = mut_drop(fid, &o); break;
			case 3: case 4: case 5: rc = mut_pf(fid, &o, n); break;
			case 6: case 7: rc = mut_index_len(fid, &o); break;
			case 8: case 9: case 10: rc = mut_index_values(fid, &o, n); break;
			case 11: case 12: case 13: rc = mut_index_layout(fid, &o, n); break;
			default: rc = mut_metadata(fid); break;
			}
			changed += rc == 0;
		}
		H5Eclear2(H5E_DEFAULT);
		if (H5Fclose(fid) < 0) {
			printf("FAIL fuzz_raw: cannot close the mutated copy %s\n", path);
			return 1;
		}
		(void)changed;
		if (check_file(path, o.src, buf))
			opened++;
		else
			refused++;
		ssize_t left = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
		if (left != 0) {
			BAD("%zd HDF5 object(s) left open after agipd_raw_open/close", left);
			H5close();
			H5open();
			H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
		}
		alarm(0);
		done++;
		if (!keep)
			unlink(path);
		if (failures >= 20)
			break;
	}
	free(buf);
	free(img);
	if (failures) {
		printf("FAIL fuzz_raw: %d failure(s) in %ld iterations (seed %" PRIu64 ")\n", failures, done, seed);
		return 1;
	}
	printf("PASS fuzz_raw: %ld iterations in %.0f s (seed %" PRIu64 "): %ld opened, %ld refused\n", done,
	       seconds, seed, opened, refused);
	if (only >= 0)
		printf("kept %s\n", path);
	return 0;
}
