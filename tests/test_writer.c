/*
 * test_writer.c - the gain/mask chunks the collective writer encodes itself
 * (agipd_chunk_encode, include/agipd_compress.h) against the chunks HDF5's
 * own filter pipeline (shuffle, deflate, fletcher32) writes, and the
 * writer's refusal to fall back to another file driver
 * (include/agipd_writer_h5.h).
 *
 * HDF5's reader accepts a Fletcher-32 stored in either byte order, so that
 * reading the file back (h5py, h5dump) cannot tell a byte-swapped checksum:
 * the stored bytes are compared here.  With zlib at the same level both
 * sides run the same compress2, so the whole chunk must be byte-identical;
 * with ISA-L the deflate streams differ, so each stream must inflate to the
 * same shuffled bytes and end with its own Fletcher-32 in the byte order
 * HDF5 used for its stream.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include "agipd.h"
#include "agipd_compress.h"
#include "agipd_err.h"
#include "agipd_writer_h5.h"
#include "unit.h"

static char dir[] = "/tmp/agipd-test-writer.XXXXXX";

/* Frame-like content: mostly small values, some structure, some noise. */
static void fill(void *buf, size_t elsize, unsigned seed)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (seed + 1);
	for (size_t i = 0; i < AGIPD_PIXELS; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t r = (uint32_t)(s >> 33);
		uint32_t v = (i % AGIPD_COLS == 17) ? 9u : (r % 61 == 0 ? r % 4096 : (uint32_t)(i / 4096 % 3));
		if (elsize == 1)
			((uint8_t *)buf)[i] = (uint8_t)(v % 3);
		else
			((uint32_t *)buf)[i] = seed & 1 ? v | (r % 997 == 0 ? 1u << 20 : 0) : v;
	}
}

/* Write one frame through HDF5's filters (serial, sec2) and read back the
 * stored chunk; returns its size (0 on failure) and the stored bytes in out. */
static size_t hdf5_chunk(const char *path, const void *frame, size_t elsize, int level, uint8_t *out,
			 size_t cap)
{
	hsize_t dims[3] = { 1, AGIPD_ROWS, AGIPD_COLS }, off[3] = { 0, 0, 0 }, nbytes = 0;
	hid_t t = elsize == 1 ? H5T_STD_U8LE : H5T_STD_U32LE;
	hid_t mt = elsize == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT32;
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(3, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
	uint32_t fmask = 0;
	size_t got = 0;
	if (f < 0 || sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 3, dims) < 0 || H5Pset_shuffle(dcpl) < 0 ||
	    H5Pset_deflate(dcpl, (unsigned)level) < 0 || H5Pset_fletcher32(dcpl) < 0)
		goto out;
	d = H5Dcreate2(f, "x", t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d < 0 || H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, frame) < 0 ||
	    H5Dget_chunk_storage_size(d, off, &nbytes) < 0 || nbytes > cap ||
	    H5Dread_chunk(d, H5P_DEFAULT, off, &fmask, out) < 0 || fmask != 0)
		goto out;
	got = (size_t)nbytes;
out:
	if (d >= 0)
		H5Dclose(d);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (sp >= 0)
		H5Sclose(sp);
	if (f >= 0)
		H5Fclose(f);
	return got;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_chunks_vs_hdf5(int zlib, int level)
{
	const size_t cap = agipd_deflate_bound(AGIPD_PIXELS * 4) + 4;
	uint8_t *frame = malloc(AGIPD_PIXELS * 4), *scratch = malloc(AGIPD_PIXELS * 4);
	uint8_t *ours = malloc(cap), *theirs = malloc(cap), *a = malloc(AGIPD_PIXELS * 4 + 16),
		*b = malloc(AGIPD_PIXELS * 4 + 16);
	char path[256];
	CHECK(frame && scratch && ours && theirs && a && b);
	if (!(frame && scratch && ours && theirs && a && b))
		goto out;
	snprintf(path, sizeof path, "%s/h5filter.h5", dir);
	for (unsigned seed = 0; seed < 4; seed++) {
		size_t elsize = seed < 2 ? 1 : 4, n = AGIPD_PIXELS * elsize;
		fill(frame, elsize, seed);
		size_t lt = hdf5_chunk(path, frame, elsize, level, theirs, cap);
		size_t lo = agipd_chunk_encode(frame, AGIPD_PIXELS, elsize, ours, cap,
					       level | (zlib ? AGIPD_DEFLATE_ZLIB : 0), scratch);
		CHECK(lt > 4 && lo > 4);
		if (lt <= 4 || lo <= 4)
			continue;
		/* HDF5's trailer: the Fletcher-32 of its stream, stored as
		 * HDF5 stores it (memcpy of the native uint32: little-endian
		 * here).  Ours must be in the same byte order. */
		uint32_t f_theirs = agipd_fletcher32(theirs, lt - 4), f_ours = agipd_fletcher32(ours, lo - 4);
		CHECK_EQ_INT(le32(theirs + lt - 4), f_theirs);
		CHECK_EQ_INT(le32(ours + lo - 4), f_ours);
		uint8_t want[4];
		memcpy(want, &f_ours, 4);   /* HDF5's H5Z_filter_fletcher32: native order */
		CHECK(memcmp(ours + lo - 4, want, 4) == 0);
		/* Both streams inflate to the same shuffled bytes. */
		size_t na = agipd_inflate(theirs, lt - 4, a, n + 16), nb = agipd_inflate(ours, lo - 4, b, n + 16);
		CHECK_EQ_INT(na, n);
		CHECK_EQ_INT(nb, n);
		CHECK(na == n && nb == n && memcmp(a, b, n) == 0);
		/* The same compress2 at the same level: the same chunk, byte for
		 * byte, checksum included. */
		if (zlib) {
			CHECK_EQ_INT(lo, lt);
			if (lo == lt && memcmp(ours, theirs, lo) != 0) {
				size_t i = 0;
				while (ours[i] == theirs[i])
					i++;
				printf("  %zu-byte elements, level %d: chunks of %zu bytes differ from byte %zu "
				       "(%02x vs HDF5's %02x)\n", elsize, level, lo, i, ours[i], theirs[i]);
				unit_failed_++;
			}
		}
	}
	unlink(path);
out:
	free(frame);
	free(scratch);
	free(ours);
	free(theirs);
	free(a);
	free(b);
}

/* A collective writer whose MPI-IO driver cannot be set up must fail, not
 * create the file with HDF5's default (POSIX) driver: with several ranks,
 * each would truncate and write the same file. */
static void test_no_posix_fallback(void)
{
	char path[256];
	snprintf(path, sizeof path, "%s/fallback.h5", dir);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	for (int kind = AGIPD_WRITER_COLLECTIVE; kind <= AGIPD_WRITER_COLLECTIVE_H5FILTER; kind++) {
		struct agipd_writer *w = NULL;
		struct agipd_writer_config cfg = {
			.comm = MPI_COMM_NULL,   /* H5Pset_fapl_mpio refuses it */
			.kind = (enum agipd_writer_kind)kind,
			.path = path,
			.source = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf",
			.dtype = AGIPD_DTYPE_FLOAT32,
			.nframes = 2,
			.deflate_level = 1,
		};
		agipd_err e = { "" };
		int rc = agipd_writer_create(&w, &cfg, &e);
		CHECK_EQ_INT(rc, -1);
		CHECK(w == NULL);
		CHECK(strstr(e.msg, "MPI-IO") != NULL && strstr(e.msg, path) != NULL);
		if (access(path, F_OK) == 0) {
			printf("  writer kind %d: %s was created without the MPI-IO driver\n", kind, path);
			unit_failed_++;
		}
		if (rc == 0)
			agipd_writer_close(w, NULL, &e);
		unlink(path);
	}
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	agipd_h5_quiet();
	if (!mkdtemp(dir)) {
		printf("FAIL writer: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	TEST("writer: chunks equal HDF5's filter pipeline byte for byte (zlib, levels 1 and 6)") {
		test_chunks_vs_hdf5(1, 1);
		test_chunks_vs_hdf5(1, 6);
	}
	TEST("writer: ISA-L chunks inflate like HDF5's, checksum in HDF5's byte order") {
		test_chunks_vs_hdf5(0, 1);
	}
	TEST("writer: no silent POSIX fallback when the MPI-IO driver cannot be set") {
		test_no_posix_fallback();
	}
	rmdir(dir);
	MPI_Finalize();
	UNIT_EXIT();
}
