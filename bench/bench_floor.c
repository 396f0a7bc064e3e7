/*
 * bench_floor.c - the I/O floor of a correction: the same ranks only read the
 * raw frames and write them back as float32, uncompressed, into one HDF5 file
 * per raw file (parallel HDF5, collective transfers, chunks of one frame, no
 * gain, no mask, no constants).  No correction can run faster than this on
 * the same machine with the same plan; run_bench.py adds the cost of
 * compressing gain and mask with stock zlib (bench_compress) to it.
 *
 *   mpirun -np N bin/bench_floor [--batch-frames B] OUT_DIR RAW_FILE...
 *
 * The plan is the corrector's (agipd_plan_make(), include/agipd_plan.h):
 * files in rounds, one contiguous group of ranks per file of a round, which
 * split its frames by trains and write it collectively.  Rank 0 prints one
 * summary line and a per-rank table (seconds per phase, peak RSS).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <hdf5.h>
#include <mpi.h>

#include "agipd.h"
#include "agipd_err.h"
#include "agipd_kernel.h"
#include "agipd_plan.h"
#include "agipd_raw_h5.h"

enum { T_OPEN, T_READ, T_CONVERT, T_WRITE, T_CLOSE, T_WAIT, T_NT };
static const char *const t_names[T_NT] = { "open", "read", "convert", "write", "close", "wait" };

struct rank_stats {
	double t[T_NT];
	double frames, bytes_in, peak_mb;
};

/* Module number from "...-AGIPDmm-..." in the file name; -1 if absent. */
static int module_of(const char *path)
{
	const char *b = strrchr(path, '/');
	const char *m = strstr(b ? b : path, "AGIPD");
	if (!m || m[5] < '0' || m[5] > '9' || m[6] < '0' || m[6] > '9')
		return -1;
	return (m[5] - '0') * 10 + (m[6] - '0');
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* Read, convert and write one file with the ranks of g.  Collective on g. */
static int floor_file(MPI_Comm g, const char *raw_path, const char *out_dir, size_t batch, struct rank_stats *s,
		      agipd_err *e)
{
	struct agipd_raw r;
	struct agipd_params p;
	char source[256], out_path[8192];
	int gr, gs, st = 0, module = module_of(raw_path);
	hid_t fapl = -1, fid = -1, sp = -1, dcpl = -1, dset = -1, dxpl = -1;
	uint16_t *raw = NULL;
	float *data = NULL;

	MPI_Comm_rank(g, &gr);
	MPI_Comm_size(g, &gs);
	agipd_params_default(&p);
	agipd_source_name(source, sizeof source, AGIPD_DEFAULT_KARABO_ID, module < 0 ? 0 : module);
	snprintf(out_path, sizeof out_path, "%s/FLOOR-%s", out_dir, base_name(raw_path));

	double t0 = MPI_Wtime();
	memset(&r, 0, sizeof r);
	int opened = agipd_raw_open(&r, raw_path, source, &p, e) == 0;
	st = !opened;
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
	if (st) {
		if (opened)
			agipd_raw_close(&r);
		return -1;
	}
	uint64_t n = r.nkept, k0 = agipd_plan_split(r.out_first, r.nout, n, gr, gs),
		 k1 = agipd_plan_split(r.out_first, r.nout, n, gr + 1, gs);

	/* The output, as the corrector lays out its data: chunks of one frame,
	 * allocated at creation, never filled, 1 MiB alignment. */
	fapl = H5Pcreate(H5P_FILE_ACCESS);
	H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18);
	H5Pset_fapl_mpio(fapl, g, MPI_INFO_NULL);
	H5Pset_all_coll_metadata_ops(fapl, 1);
	H5Pset_coll_metadata_write(fapl, 1);
	H5Pset_alignment(fapl, 1 << 20, 1 << 20);
	fid = H5Fcreate(out_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	hsize_t dims[3] = { n, AGIPD_ROWS, AGIPD_COLS }, chunk[3] = { 1, AGIPD_ROWS, AGIPD_COLS };
	hsize_t maxdims[3] = { n ? n : H5S_UNLIMITED, AGIPD_ROWS, AGIPD_COLS };
	sp = H5Screate_simple(3, dims, maxdims);
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, 3, chunk);
	H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
	H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
	if (fid >= 0)
		dset = H5Dcreate2(fid, "data", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	dxpl = H5Pcreate(H5P_DATASET_XFER);
	H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
	raw = malloc(batch * 2 * AGIPD_PIXELS * sizeof *raw);
	data = malloc(batch * AGIPD_PIXELS * sizeof *data);
	st = fid < 0 || dset < 0 || !raw || !data;
	if (st)
		agipd_err_h5(e, "%s: cannot create output", out_path);
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
	s->t[T_OPEN] += MPI_Wtime() - t0;
	if (st)
		goto out;

	/* Every rank makes the same number of collective writes. */
	uint64_t mine = k1 - k0, nb = (mine + batch - 1) / batch;
	MPI_Allreduce(MPI_IN_PLACE, &nb, 1, MPI_UINT64_T, MPI_MAX, g);
	for (uint64_t b = 0; b < nb; b++) {
		uint64_t a = k0 + b * batch, m = 0;
		if (a < k1)
			m = k1 - a < batch ? k1 - a : batch;
		double t1 = MPI_Wtime();
		if (m && agipd_raw_read(&r, a, m, raw, e) < 0)
			st = 1;
		double t2 = MPI_Wtime();
		for (uint64_t i = 0; i < m; i++) {
			const uint16_t *an = raw + i * 2 * AGIPD_PIXELS;
			float *d = data + i * AGIPD_PIXELS;
			for (size_t j = 0; j < AGIPD_PIXELS; j++)
				d[j] = (float)an[j];
		}
		double t3 = MPI_Wtime();
		MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
		double t4 = MPI_Wtime();
		if (st)
			goto out;
		hid_t fs = H5Dget_space(dset);
		hsize_t mcount[3] = { m ? m : 1, AGIPD_ROWS, AGIPD_COLS };
		hid_t ms = H5Screate_simple(3, mcount, NULL);
		if (m) {
			hsize_t start[3] = { a, 0, 0 }, count[3] = { m, AGIPD_ROWS, AGIPD_COLS };
			H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
		} else {
			H5Sselect_none(fs);
			H5Sselect_none(ms);
		}
		if (H5Dwrite(dset, H5T_NATIVE_FLOAT, ms, fs, dxpl, data) < 0)
		{
			agipd_err_h5(e, "%s: write of frames %" PRIu64 "+%" PRIu64, out_path, a, m);
			st = 1;
		}
		H5Sclose(ms);
		H5Sclose(fs);
		double t5 = MPI_Wtime();
		s->t[T_READ] += t2 - t1;
		s->t[T_CONVERT] += t3 - t2;
		s->t[T_WAIT] += t4 - t3;
		s->t[T_WRITE] += t5 - t4;
		s->frames += (double)m;
		s->bytes_in += (double)m * 2 * 2 * AGIPD_PIXELS;
		MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
		if (st)
			goto out;
	}

out:;
	double t6 = MPI_Wtime();
	if (dset >= 0 && H5Dclose(dset) < 0 && !st) {
		agipd_err_h5(e, "%s: closing dataset", out_path);
		st = 1;
	}
	if (fid >= 0 && H5Fclose(fid) < 0 && !st) {
		agipd_err_h5(e, "%s: closing file", out_path);
		st = 1;
	}
	s->t[T_CLOSE] += MPI_Wtime() - t6;
	if (sp >= 0)
		H5Sclose(sp);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (dxpl >= 0)
		H5Pclose(dxpl);
	if (fapl >= 0)
		H5Pclose(fapl);
	free(raw);
	free(data);
	agipd_raw_close(&r);
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
	return st ? -1 : 0;
}

int main(int argc, char **argv)
{
	int rank, size, ai = 1, failed = 0;
	size_t batch = 32;
	agipd_err e = { "" };

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (ai + 1 < argc && strcmp(argv[ai], "--batch-frames") == 0) {
		batch = (size_t)strtoul(argv[ai + 1], NULL, 10);
		ai += 2;
	}
	if (argc - ai < 2 || batch == 0) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -np N bench_floor [--batch-frames B] OUT_DIR RAW_FILE...\n");
		MPI_Finalize();
		return 2;
	}
	agipd_h5_quiet();
	const char *out_dir = argv[ai++];
	int nfiles = argc - ai;
	struct rank_stats s;
	memset(&s, 0, sizeof s);

	MPI_Barrier(MPI_COMM_WORLD);
	double t_start = MPI_Wtime();
	struct agipd_plan plan;
	if (agipd_plan_make(&plan, NULL, nfiles, size, 0, 0, AGIPD_PLAN_BALANCED, &e) < 0) {
		if (rank == 0)
			fprintf(stderr, "bench_floor: error: %s\n", e.msg);
		MPI_Finalize();
		return 2;
	}
	for (int round = 0; round < plan.nrounds; round++) {
		const struct agipd_plan_group *pg = agipd_plan_group_of(&plan, round, rank);
		int mine = pg ? pg->file : -1;
		MPI_Comm g = MPI_COMM_NULL;
		MPI_Comm_split(MPI_COMM_WORLD, mine >= 0 ? mine : MPI_UNDEFINED, rank, &g);
		if (mine >= 0) {
			e.msg[0] = 0;
			if (floor_file(g, argv[ai + mine], out_dir, batch, &s, &e) < 0) {
				failed = 1;
				if (e.msg[0])
					fprintf(stderr, "bench_floor: error [rank %d]: %s\n", rank, e.msg);
			}
			MPI_Comm_free(&g);
		}
	}
	agipd_plan_free(&plan);
	double t_io = MPI_Wtime();
	MPI_Barrier(MPI_COMM_WORLD);
	double wall = MPI_Wtime() - t_start;
	s.t[T_WAIT] += MPI_Wtime() - t_io;

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s.peak_mb = (double)ru.ru_maxrss / 1024.0;
	const int nv = T_NT + 3;
	double mine_v[T_NT + 3], *all = rank == 0 ? malloc((size_t)size * nv * sizeof *all) : NULL;
	memcpy(mine_v, s.t, sizeof s.t);
	mine_v[T_NT] = s.frames;
	mine_v[T_NT + 1] = s.bytes_in;
	mine_v[T_NT + 2] = s.peak_mb;
	MPI_Gather(mine_v, nv, MPI_DOUBLE, all, nv, MPI_DOUBLE, 0, MPI_COMM_WORLD);
	MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0) {
		double frames = 0, bytes = 0;
		for (int r = 0; r < size; r++) {
			frames += all[r * nv + T_NT];
			bytes += all[r * nv + T_NT + 1];
		}
		printf("bench_floor: %d file(s), %.0f frames in %.3f s (%.0f frames/s, %.3f GB/s of raw data) on %d "
		       "rank(s)%s\n",
		       nfiles, frames, wall, wall > 0 ? frames / wall : 0, wall > 0 ? bytes / wall / 1e9 : 0, size,
		       failed ? ", FAILED" : "");
		printf("%-5s %8s", "rank", "frames");
		for (int t = 0; t < T_NT; t++)
			printf(" %8s", t_names[t]);
		printf(" %8s\n", "peak-MB");
		for (int r = 0; r < size; r++) {
			const double *v = all + r * nv;
			printf("%-5d %8.0f", r, v[T_NT]);
			for (int t = 0; t < T_NT; t++)
				printf(" %8.3f", v[t]);
			printf(" %8.0f\n", v[T_NT + 2]);
		}
		fflush(stdout);
	}
	free(all);
	MPI_Finalize();
	return failed ? 1 : 0;
}
