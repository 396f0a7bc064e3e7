/*
 * bench_kernel.c - the correction kernel alone on one core: frames/s of
 * agipd_correct_frame() one frame after another (frames in cell order, as
 * the run hands them) against agipd_correct_cell() on each cell's frames of
 * a batch, for batches of several sizes.  Constants and raw frames are
 * synthetic, in memory; no reads, no writes.  Rates are frames per CPU
 * second of this process.  The run's batch is the frames
 * one H5Dwrite takes (--batch-frames): a batch of B frames of a C-cell run
 * holds B / C frames of each cell, which is the reuse the tiles can get.
 *
 *   bin/bench_kernel [CELLS [SECONDS]]     (default 64 cells, 1 s a case)
 *
 * Options of the job are the defaults (adaptive gain, offset, bad pixels,
 * float32 output), the "default job" of the benchmark.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agipd_kernel.h"

#define P AGIPD_PIXELS

/* CPU time of this process: a kernel on one core is timed per CPU second,
 * so that other processes on a shared machine do not count (they still
 * share the caches and the memory bandwidth). */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xalloc(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, n ? n : 64) != 0) {
		fprintf(stderr, "bench_kernel: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	memset(p, 0, n);
	return p;
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Plausible constants: thresholds around the digital levels of the gain
 * stages, offsets per stage, a few bad pixels. */
static void fill_consts(struct agipd_consts *k, int ncells, uint32_t *s)
{
	for (int c = 0; c < ncells; c++)
		for (size_t i = 0; i < P; i++) {
			agipd_consts_f(k, c, AGIPD_F_THR0)[i] = 5500.0f + (float)(rnd(s) % 200);
			agipd_consts_f(k, c, AGIPD_F_THR1)[i] = 7500.0f + (float)(rnd(s) % 200);
			agipd_consts_f(k, c, AGIPD_F_OFF0)[i] = 4000.0f + (float)(rnd(s) % 500);
			agipd_consts_f(k, c, AGIPD_F_OFF1)[i] = 5000.0f + (float)(rnd(s) % 500);
			agipd_consts_f(k, c, AGIPD_F_OFF2)[i] = 5500.0f + (float)(rnd(s) % 500);
			agipd_consts_u(k, c, AGIPD_F_MASK0)[i] = rnd(s) % 100 == 0;
			agipd_consts_u(k, c, AGIPD_F_MASK1)[i] = rnd(s) % 100 == 0;
			agipd_consts_u(k, c, AGIPD_F_MASK2)[i] = rnd(s) % 100 == 0;
		}
}

int main(int argc, char **argv)
{
	int ncells = argc > 1 ? atoi(argv[1]) : 64;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	if (ncells < 1 || ncells > AGIPD_MAX_CELLS || !(secs > 0)) {
		fprintf(stderr, "usage: bench_kernel [CELLS [SECONDS]]\n");
		return 2;
	}
	static const int batches[] = { 64, 128, 256, 512 };
	const int maxb = 512;
	struct agipd_params p;
	agipd_params_default(&p);
	struct agipd_consts k;
	agipd_consts_layout(&p, &k);
	uint32_t *mem = xalloc(agipd_consts_words(&k, ncells) * 4);
	agipd_consts_attach(&k, ncells, mem);
	uint32_t seed = 12345;
	fill_consts(&k, ncells, &seed);

	/* A batch's raw frames (analog, digital) and outputs; frame f of cell
	 * f % ncells, so that a batch of B holds B / ncells frames a cell. */
	uint16_t *raw = xalloc((size_t)maxb * 2 * P * 2);
	for (size_t i = 0; i < (size_t)maxb * 2 * P; i++)
		raw[i] = (uint16_t)(4000 + rnd(&seed) % 5000);
	float *data = xalloc((size_t)maxb * P * 4), *scratch = xalloc(P * 4);
	uint8_t *gain = xalloc((size_t)maxb * P);
	uint32_t *mask = xalloc((size_t)maxb * P * 4);
	const uint16_t **an = xalloc(maxb * sizeof *an), **dg = xalloc(maxb * sizeof *dg);
	void **dt = xalloc(maxb * sizeof *dt);
	uint8_t **gn = xalloc(maxb * sizeof *gn);
	uint32_t **mk = xalloc(maxb * sizeof *mk);

	printf("kernel on one core, default job, %d cells, %zu KiB of constants a cell, tile %d pixels\n", ncells,
	       k.cell_words * 4 / 1024, AGIPD_KERNEL_TILE);
	printf("%8s %12s %14s %14s %8s\n", "batch", "frames/cell", "frame fr/s", "cell fr/s", "ratio");
	for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
		const int B = batches[bi];
		double rate[2];
		for (int mode = 0; mode < 2; mode++) {
			long frames = 0;
			double t0 = now(), t = t0;
			while (t - t0 < secs) {
				/* Cell by cell, as the run orders a batch. */
				for (int c = 0; c < ncells && c < B; c++) {
					size_t m = 0;
					for (int f = c; f < B; f += ncells, m++) {
						an[m] = raw + (size_t)f * 2 * P;
						dg[m] = an[m] + P;
						dt[m] = data + (size_t)f * P;
						gn[m] = gain + (size_t)f * P;
						mk[m] = mask + (size_t)f * P;
					}
					if (mode == 0)
						for (size_t j = 0; j < m; j++)
							agipd_correct_frame(&p, &k, c, an[j], dg[j], dt[j], gn[j], mk[j],
									    scratch);
					else
						agipd_correct_cell(&p, &k, c, m, an, dg, dt, gn, mk, scratch);
				}
				frames += B;
				t = now();
			}
			rate[mode] = (double)frames / (t - t0);
		}
		printf("%8d %12.1f %14.0f %14.0f %8.2f\n", B, (double)B / ncells > 1 ? (double)B / ncells : 1.0,
		       rate[0], rate[1], rate[1] / rate[0]);
	}
	return 0;
}
