/*
 * bench_compress.c - gain/mask compression speed on one core.
 *
 *   bin/bench_compress CORR_FILE [SOURCE] [--min-seconds S] [--max-frames N]
 *
 * Reads image/gain (uint8) and image/mask (uint32) of a CORR file the
 * corrector wrote (SOURCE defaults to the first INSTRUMENT/.../image group),
 * then compresses every frame's chunk as the HDF5 filter pipeline of the CORR
 * files does - shuffle, deflate level 1, fletcher32 over the deflated bytes -
 * with two encoders, one thread:
 *
 *   agipd   agipd_shuffle + agipd_deflate (ISA-L igzip where built, else zlib)
 *           + agipd_fletcher32: what the corrector runs
 *   zlib    agipd_shuffle + stock zlib compress2(level 1) + Fletcher-32:
 *           what HDF5's stock filters run (HDF5's checksum is the same
 *           algorithm; tests/test_parallel.py checks ours against files
 *           that stock HDF5 verifies)
 *
 * Each stage is timed on its own (shuffle, deflate, fletcher32), passes are
 * repeated until --min-seconds have passed (default 1), and one chunk of each
 * encoder is inflated back with stock zlib and compared.  Prints one JSON
 * object on stdout; speeds are GB/s of uncompressed gain+mask bytes, per
 * wall-clock second (GBps_*) and per CPU second of the thread (GBps_*_cpu:
 * the per-core figure, which holds on a shared machine where other
 * processes take turns on the core).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hdf5.h>
#include <zlib.h>

#include "agipd.h"
#include "agipd_compress.h"
#include "agipd_err.h"


static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of this thread: what the work costs a core, unaffected by other
 * processes taking turns on it (a shared machine). */
static double cpu_now(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

struct result {
	double t_shuffle, t_deflate, t_fletcher;      /* wall */
	double c_shuffle, c_deflate, c_fletcher;      /* thread CPU */
	double bytes_in, bytes_out;
	long chunks;
	int roundtrip_ok;
};

/* First INSTRUMENT/<a>/<b>/<c>/image group: H5Ovisit callback. */
static herr_t find_image(hid_t o, const char *name, const H5O_info_t *info, void *op)
{
	(void)o;
	size_t n = strlen(name);
	if (info->type == H5O_TYPE_GROUP && strncmp(name, "INSTRUMENT/", 11) == 0 && n > 6 &&
	    strcmp(name + n - 6, "/image") == 0) {
		snprintf(op, 1024, "%s", name + 11);
		((char *)op)[n - 6 - 11] = 0;
		return 1;
	}
	return 0;
}

static int read_all(hid_t f, const char *path, hid_t type, void *buf)
{
	hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
	if (d < 0)
		return -1;
	herr_t rc = H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
	H5Dclose(d);
	return rc < 0 ? -1 : 0;
}

/* One pass over every frame; adds to r. */
static void pass(int use_zlib, const uint8_t *gain, const uint32_t *mask, long nframes, uint8_t *shuf,
		 uint8_t *enc, size_t cap, struct result *r)
{
	for (long i = 0; i < nframes; i++) {
		for (int which = 0; which < 2; which++) {
			const void *src = which ? (const void *)(mask + (size_t)i * AGIPD_PIXELS)
						: (const void *)(gain + (size_t)i * AGIPD_PIXELS);
			size_t esz = which ? 4 : 1, n = esz * AGIPD_PIXELS, len;
			double c0 = cpu_now(), t0 = now();
			agipd_shuffle(src, shuf, AGIPD_PIXELS, esz);
			double t1 = now(), c1 = cpu_now();
			if (use_zlib) {
				uLongf l = (uLongf)cap;
				len = compress2(enc, &l, shuf, (uLong)n, 1) == Z_OK ? (size_t)l : 0;
			} else {
				len = agipd_deflate(shuf, n, enc, cap, 1);
			}
			double c2 = cpu_now(), t2 = now();
			volatile uint32_t sum = agipd_fletcher32(enc, len);
			(void)sum;
			double t3 = now(), c3 = cpu_now();
			r->c_shuffle += c1 - c0;
			r->c_deflate += c2 - c1;
			r->c_fletcher += c3 - c2;
			r->t_shuffle += t1 - t0;
			r->t_deflate += t2 - t1;
			r->t_fletcher += t3 - t2;
			r->bytes_in += (double)n;
			r->bytes_out += (double)len + 4;   /* + the checksum */
			r->chunks++;
		}
	}
}

/* Compress mask frame 0, inflate it back with stock zlib, and check that the
 * library's Fletcher-32 equals HDF5's. */
static int roundtrip(int use_zlib, const uint32_t *mask, uint8_t *shuf, uint8_t *enc, size_t cap)
{
	size_t n = 4 * AGIPD_PIXELS, len;
	uint8_t *back = malloc(n);
	agipd_shuffle(mask, shuf, AGIPD_PIXELS, 4);
	if (use_zlib) {
		uLongf l = (uLongf)cap;
		len = compress2(enc, &l, shuf, (uLong)n, 1) == Z_OK ? (size_t)l : 0;
	} else {
		len = agipd_deflate(shuf, n, enc, cap, 1);
	}
	int ok = back && len && agipd_inflate(enc, len, back, n) == n && memcmp(back, shuf, n) == 0;
	free(back);
	return ok;
}

static void print_result(const char *name, const char *impl, const struct result *r, int last)
{
	double t = r->t_shuffle + r->t_deflate + r->t_fletcher;
	double c = r->c_shuffle + r->c_deflate + r->c_fletcher;
	printf("  \"%s\": {\"encoder\": \"%s\", \"chunks\": %ld, \"bytes_in\": %.0f, \"bytes_out\": %.0f, "
	       "\"ratio\": %.4f,\n    \"shuffle_s\": %.6f, \"deflate_s\": %.6f, \"fletcher32_s\": %.6f, "
	       "\"total_s\": %.6f,\n    \"shuffle_cpu_s\": %.6f, \"deflate_cpu_s\": %.6f, "
	       "\"fletcher32_cpu_s\": %.6f, \"total_cpu_s\": %.6f,\n    \"GBps_total\": %.4f, "
	       "\"GBps_deflate\": %.4f, \"GBps_shuffle\": %.4f, \"GBps_fletcher32_of_input\": %.4f,\n"
	       "    \"GBps_total_cpu\": %.4f, \"GBps_deflate_cpu\": %.4f, \"GBps_shuffle_cpu\": %.4f, "
	       "\"GBps_fletcher32_of_input_cpu\": %.4f, \"roundtrip_ok\": %s}%s\n",
	       name, impl, r->chunks, r->bytes_in, r->bytes_out, r->bytes_in / r->bytes_out, r->t_shuffle,
	       r->t_deflate, r->t_fletcher, t, r->c_shuffle, r->c_deflate, r->c_fletcher, c, r->bytes_in / t / 1e9,
	       r->bytes_in / r->t_deflate / 1e9, r->bytes_in / r->t_shuffle / 1e9, r->bytes_in / r->t_fletcher / 1e9,
	       r->bytes_in / c / 1e9, r->bytes_in / r->c_deflate / 1e9, r->bytes_in / r->c_shuffle / 1e9,
	       r->bytes_in / r->c_fletcher / 1e9, r->roundtrip_ok ? "true" : "false", last ? "" : ",");
}

int main(int argc, char **argv)
{
	const char *file = NULL, *source = NULL;
	double min_s = 1.0;
	long max_frames = 0;
	char found[1024] = "", path[2048];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc)
			min_s = atof(argv[++i]);
		else if (strcmp(argv[i], "--max-frames") == 0 && i + 1 < argc)
			max_frames = atol(argv[++i]);
		else if (!file)
			file = argv[i];
		else if (!source)
			source = argv[i];
		else
			file = NULL;
	}
	if (!file) {
		fprintf(stderr, "usage: bench_compress CORR_FILE [SOURCE] [--min-seconds S] [--max-frames N]\n");
		return 2;
	}
	agipd_h5_quiet();
	hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f < 0) {
		fprintf(stderr, "bench_compress: %s: cannot open\n", file);
		return 1;
	}
	if (!source) {
		if (H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, find_image, found) <= 0) {
			fprintf(stderr, "bench_compress: %s: no INSTRUMENT/.../image group\n", file);
			return 1;
		}
		source = found;
	}
	snprintf(path, sizeof path, "INSTRUMENT/%s/image/gain", source);
	hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
	if (d < 0) {
		fprintf(stderr, "bench_compress: %s: no %s\n", file, path);
		return 1;
	}
	hid_t sp = H5Dget_space(d);
	hsize_t dims[3] = { 0, 0, 0 };
	H5Sget_simple_extent_dims(sp, dims, NULL);
	H5Sclose(sp);
	H5Dclose(d);
	long nframes = (long)dims[0];
	uint8_t *gain = malloc((size_t)nframes * AGIPD_PIXELS + 1);
	uint32_t *mask = malloc((size_t)nframes * AGIPD_PIXELS * 4 + 4);
	if (!gain || !mask || read_all(f, path, H5T_NATIVE_UINT8, gain) < 0) {
		fprintf(stderr, "bench_compress: %s: cannot read %s\n", file, path);
		return 1;
	}
	snprintf(path, sizeof path, "INSTRUMENT/%s/image/mask", source);
	if (read_all(f, path, H5T_NATIVE_UINT32, mask) < 0) {
		fprintf(stderr, "bench_compress: %s: cannot read %s\n", file, path);
		return 1;
	}
	H5Fclose(f);
	if (max_frames > 0 && max_frames < nframes)
		nframes = max_frames;
	if (nframes == 0) {
		fprintf(stderr, "bench_compress: %s: no frames\n", file);
		return 1;
	}

	size_t cap = agipd_deflate_bound(4 * AGIPD_PIXELS);
	uint8_t *shuf = malloc(4 * AGIPD_PIXELS), *enc = malloc(cap);
	struct result res[2];
	const char *impl[2];
	memset(res, 0, sizeof res);
	for (int z = 0; z < 2; z++) {
		impl[z] = z ? "zlib compress2" : agipd_deflate_impl();
		pass(z, gain, mask, nframes < 8 ? nframes : 8, shuf, enc, cap, &(struct result){ 0 });  /* warm */
		double t0 = now();
		do {
			pass(z, gain, mask, nframes, shuf, enc, cap, &res[z]);
		} while (now() - t0 < min_s);
		res[z].roundtrip_ok = roundtrip(z, mask, shuf, enc, cap);
	}
	printf("{\n  \"file\": \"%s\",\n  \"source\": \"%s\",\n  \"frames\": %ld,\n  \"zlib_version\": \"%s\",\n",
	       file, source, nframes, zlibVersion());
	print_result("agipd", impl[0], &res[0], 0);
	print_result("zlib", impl[1], &res[1], 1);
	printf("}\n");
	free(gain);
	free(mask);
	free(shuf);
	free(enc);
	return res[0].roundtrip_ok && res[1].roundtrip_ok ? 0 : 1;
}
