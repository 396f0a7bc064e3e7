/*
 * bench_floor.c - the floor of a correction: what no corrector can beat on
 * the same ranks with the same plan.  Every rank, for its own frames:
 *
 *   read      the raw frames as agipd-correct reads them: image/data mapped
 *             (contiguous or chunked in whole frames) with every page faulted
 *             in (agipd_raw_touch, under the map guard), else copied through
 *             HDF5 (agipd_raw_read)
 *   convert   analog uint16 -> float32 (the cheapest "correction")
 *   compress  gain (uint8) and mask (uint32) of each frame through the CORR
 *             files' filter pipeline, shuffle + deflate level 1 + fletcher32
 *             (agipd_chunk_encode: ISA-L where built; --zlib: stock zlib), on
 *             the gain/mask agipd-correct made for these frames (--gain-from
 *             DIR: its CORR files; without it nothing is compressed)
 *   write     the float32 frames and the compressed chunks, the same bytes
 *             as the corrector writes, with plain POSIX write() into one file
 *             per rank (OUT_DIR/FLOOR-<raw name>.r<rank>): no HDF5, no MPI-IO,
 *             no collective, the cheapest way on any file system
 *
 *   mpirun -np N bin/bench_floor [--batch-frames B] [--zlib] [--gain-from DIR]
 *                                OUT_DIR RAW_FILE...
 *
 * The plan is the corrector's (agipd_plan_make(), include/agipd_plan.h,
 * --schedule groups): fixed groups of ranks, each with its run of files,
 * which split a file's frames by trains.  Loading the gain/mask of --gain-from
 * (inflating the CORR file's chunks) is not floor work: it is timed apart
 * ("setup") and left out of every phase; run_bench.py subtracts it from the
 * launch-to-exit time.  Rank 0 prints one summary line and a per-rank table
 * (seconds per phase, peak RSS).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include "agipd.h"
#include "agipd_compress.h"
#include "agipd_err.h"
#include "agipd_kernel.h"
#include "agipd_mapguard.h"
#include "agipd_plan.h"
#include "agipd_raw_h5.h"

enum { T_OPEN, T_READ, T_CONVERT, T_COMPRESS, T_WRITE, T_CLOSE, T_WAIT, T_SETUP, T_NT };
static const char *const t_names[T_NT] = { "open", "read", "convert", "compress", "write", "close", "wait",
					   "setup" };

struct rank_stats {
	double t[T_NT];
	double frames, bytes_in, bytes_out, peak_mb;
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

/* write() all of n bytes. */
static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Gain and mask of kept frames [a, a + m) from the CORR file's image/gain
 * and image/mask (frames in the same order: the corrector keeps them). */
static int load_gm(hid_t cf, const char *source, uint64_t a, uint64_t m, uint8_t *gain, uint32_t *mask)
{
	char name[512];
	int rc = 0;
	for (int k = 0; k < 2 && rc == 0; k++) {
		snprintf(name, sizeof name, "INSTRUMENT/%s/image/%s", source, k ? "mask" : "gain");
		hid_t d = H5Dopen2(cf, name, H5P_DEFAULT);
		hid_t fs = d >= 0 ? H5Dget_space(d) : -1;
		hsize_t start[3] = { a, 0, 0 }, count[3] = { m, AGIPD_ROWS, AGIPD_COLS };
		hid_t ms = H5Screate_simple(3, count, NULL);
		rc = d < 0 || fs < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
		     H5Dread(d, k ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT,
			     k ? (void *)mask : (void *)gain) < 0 ? -1 : 0;
		H5Sclose(ms);
		if (fs >= 0)
			H5Sclose(fs);
		if (d >= 0)
			H5Dclose(d);
	}
	return rc;
}

struct convert {
	const struct agipd_raw *r;
	const uint16_t *copy;   /* the copied frames, or NULL: mapped */
	uint64_t a, m;
	float *data;
};

static void convert_fn(void *arg)
{
	struct convert *c = arg;
	for (uint64_t i = 0; i < c->m; i++) {
		const uint16_t *an = c->copy ? c->copy + i * 2 * AGIPD_PIXELS : agipd_raw_frame(c->r, c->a + i);
		float *d = c->data + i * AGIPD_PIXELS;
		for (size_t j = 0; j < AGIPD_PIXELS; j++)
			d[j] = (float)an[j];
	}
}

/* Read, convert, compress and write one file's share with the ranks of g.
 * Collective on g (open and the end only). */
/* deflate level 1 of the CORR files; --zlib: with stock zlib */
static int deflate_level = 1;

static int floor_file(MPI_Comm g, const char *raw_path, const char *out_dir, const char *gain_dir, size_t batch,
		      struct rank_stats *s, agipd_err *e)
{
	struct agipd_raw r;
	struct agipd_params p;
	char source[256], out_path[8192], corr_path[8192];
	int gr, gs, st = 0, module = module_of(raw_path), fd = -1, wr = MPI_UNDEFINED;
	hid_t cf = -1;
	uint16_t *raw = NULL;
	float *data = NULL;
	uint8_t *gain = NULL, *zbuf = NULL, *scratch = NULL;
	uint32_t *mask = NULL;

	MPI_Comm_rank(g, &gr);
	MPI_Comm_size(g, &gs);
	MPI_Comm_rank(MPI_COMM_WORLD, &wr);
	agipd_params_default(&p);
	agipd_source_name(source, sizeof source, AGIPD_DEFAULT_KARABO_ID, module < 0 ? 0 : module);
	snprintf(out_path, sizeof out_path, "%s/FLOOR-%s.r%d", out_dir, base_name(raw_path), wr);

	double t0 = MPI_Wtime();
	memset(&r, 0, sizeof r);
	int opened = agipd_raw_open(&r, raw_path, source, &p, e) == 0;
	st = !opened;
	if (opened && (fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		st = agipd_err_set(e, "%s: cannot create: %s", out_path, strerror(errno)) != 0;
	const size_t zcap = agipd_deflate_bound(4 * AGIPD_PIXELS) + 4;
	raw = malloc(batch * 2 * AGIPD_PIXELS * sizeof *raw);
	data = malloc(batch * AGIPD_PIXELS * sizeof *data);
	gain = malloc(batch * AGIPD_PIXELS);
	mask = malloc(batch * AGIPD_PIXELS * sizeof *mask);
	zbuf = malloc(batch * 2 * zcap);
	scratch = malloc(4 * AGIPD_PIXELS);
	if (!raw || !data || !gain || !mask || !zbuf || !scratch)
		st = agipd_err_set(e, "out of memory") != 0;
	s->t[T_OPEN] += MPI_Wtime() - t0;
	if (!st && gain_dir) {
		double ts = MPI_Wtime();
		const char *b = base_name(raw_path);
		snprintf(corr_path, sizeof corr_path, "%s/CORR-%s", gain_dir, strncmp(b, "RAW-", 4) ? b : b + 4);
		if ((cf = H5Fopen(corr_path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
			st = agipd_err_h5(e, "%s: cannot open (--gain-from)", corr_path) != 0;
		s->t[T_SETUP] += MPI_Wtime() - ts;
	}
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
	if (st)
		goto out;
	uint64_t n = r.nkept, k0 = agipd_plan_split(r.out_first, r.nout, n, gr, gs),
		 k1 = agipd_plan_split(r.out_first, r.nout, n, gr + 1, gs);

	for (uint64_t a = k0; a < k1 && !st; a += batch) {
		uint64_t m = k1 - a < batch ? k1 - a : batch;
		double t1 = MPI_Wtime();
		if (r.frames) {
			if (a + m < k1)
				agipd_raw_prefetch(&r, a + m, k1 - a - m < batch ? k1 - a - m : batch);
			if (agipd_raw_touch(&r, a, m) < 0)
				st = agipd_err_set(e, "%s: bus error reading the mapped file", raw_path) != 0;
		} else if (agipd_raw_read(&r, a, m, raw, e) < 0) {
			st = 1;
		}
		double t2 = MPI_Wtime();
		struct convert cv = { &r, r.frames ? NULL : raw, a, m, data };
		if (!st && agipd_mapguard_run(r.frames ? r.map : NULL, r.map_len, convert_fn, &cv) < 0)
			st = agipd_err_set(e, "%s: bus error reading the mapped file", raw_path) != 0;
		double t3 = MPI_Wtime();
		s->t[T_CONVERT] += t3 - t2;
		size_t zn = 0;
		if (!st && cf >= 0) {
			if (load_gm(cf, source, a, m, gain, mask) < 0)
				st = agipd_err_h5(e, "%s: cannot read gain/mask of frames %" PRIu64 "+%" PRIu64, corr_path,
						  a, m) != 0;
			double t3b = MPI_Wtime();
			s->t[T_SETUP] += t3b - t3;
			t3 = t3b;
			for (uint64_t i = 0; i < m && !st; i++) {
				size_t zg = agipd_chunk_encode(gain + i * AGIPD_PIXELS, AGIPD_PIXELS, 1, zbuf + zn,
							       batch * 2 * zcap - zn, deflate_level, scratch);
				size_t zm = zg ? agipd_chunk_encode(mask + i * AGIPD_PIXELS, AGIPD_PIXELS, 4,
								   zbuf + zn + zg, batch * 2 * zcap - zn - zg,
								   deflate_level, scratch) : 0;
				if (!zg || !zm)
					st = agipd_err_set(e, "%s: deflate failed", raw_path) != 0;
				zn += zg + zm;
			}
		}
		double t4 = MPI_Wtime();
		if (!st && (write_all(fd, data, m * AGIPD_PIXELS * sizeof *data) < 0 ||
			    (zn && write_all(fd, zbuf, zn) < 0)))
			st = agipd_err_set(e, "%s: write: %s", out_path, strerror(errno)) != 0;
		double t5 = MPI_Wtime();
		s->t[T_READ] += t2 - t1;
		s->t[T_COMPRESS] += t4 - t3;
		s->t[T_WRITE] += t5 - t4;
		s->frames += (double)m;
		s->bytes_in += (double)m * 2 * 2 * AGIPD_PIXELS;
		s->bytes_out += (double)(m * AGIPD_PIXELS * sizeof *data + zn);
	}

out:;
	double t6 = MPI_Wtime();
	if (fd >= 0 && close(fd) < 0 && !st)
		st = agipd_err_set(e, "%s: close: %s", out_path, strerror(errno)) != 0;
	s->t[T_CLOSE] += MPI_Wtime() - t6;
	double t7 = MPI_Wtime();
	MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, g);
	s->t[T_WAIT] += MPI_Wtime() - t7;
	if (cf >= 0)
		H5Fclose(cf);
	free(raw);
	free(data);
	free(gain);
	free(mask);
	free(zbuf);
	free(scratch);
	if (opened)
		agipd_raw_close(&r);
	return st ? -1 : 0;
}

int main(int argc, char **argv)
{
	int rank, size, ai = 1, failed = 0;
	size_t batch = 128;   /* agipd-correct's default --batch-frames */
	agipd_err e = { "" };

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	const char *gain_dir = NULL;
	for (;;) {
		if (ai + 1 < argc && strcmp(argv[ai], "--batch-frames") == 0) {
			batch = (size_t)strtoul(argv[ai + 1], NULL, 10);
			ai += 2;
		} else if (ai + 1 < argc && strcmp(argv[ai], "--gain-from") == 0) {
			gain_dir = argv[ai + 1];
			ai += 2;
		} else if (ai < argc && strcmp(argv[ai], "--zlib") == 0) {
			deflate_level = 1 | AGIPD_DEFLATE_ZLIB;
			ai++;
		} else {
			break;
		}
	}
	if (argc - ai < 2 || batch == 0) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -np N bench_floor [--batch-frames B] [--zlib] [--gain-from DIR] "
				"OUT_DIR RAW_FILE...\n");
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
	/* The corrector's default plan (--schedule groups): files weighed by
	 * the frames their sizes hold, 2 x 2 bytes a pixel. */
	uint64_t *fr = calloc((size_t)nfiles + 1, sizeof *fr);
	for (int i = 0; fr && i < nfiles; i++) {
		struct stat st;
		fr[i] = stat(argv[ai + i], &st) == 0 ? agipd_plan_frames_of_size((uint64_t)st.st_size) : 0;
	}
	struct agipd_plan plan;
	int prc = agipd_plan_make(&plan, fr, nfiles, size, 0, 0, AGIPD_PLAN_GROUPS, &e);
	free(fr);
	if (prc < 0) {
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
			if (floor_file(g, argv[ai + mine], out_dir, gain_dir, batch, &s, &e) < 0) {
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
		printf("bench_floor: deflate %s%s\n", agipd_deflate_impl(), gain_dir ? "" : " (no --gain-from: "
		       "gain/mask not compressed)");
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
