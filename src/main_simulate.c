/*
 * main_simulate.c - agipd-simulate: write a synthetic AGIPD run (raw files,
 * calibration constants, ground truth) for testing and benchmarking
 * agipd-correct.  Command line and MPI only: ranks take the files
 * round-robin and write each one whole with serial HDF5; rank 0 prints the
 * summary, every rank prints its own errors.
 */
#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "agipd_sim.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: agipd-simulate --out-folder DIR [options]\n"
		"Write a synthetic AGIPD run: DIR/rNNNN/RAW-RNNNN-AGIPDmm-SNNNNN.h5, constants\n"
		"AGIPDmm.h5 and ground truth DIR/truth/TRUTH-RNNNN-AGIPDmm-SNNNNN.h5.\n"
		"\n"
		"  --out-folder DIR        output folder (required)\n"
		"  --run N                 run number (default 1)\n"
		"  --modules LIST          modules, e.g. 0-3,7,9 (default 0-3)\n"
		"  --sequences N           sequence files per module (default 1)\n"
		"  --trains N              trains per sequence file (default 4)\n"
		"  --cells N               memory cells (frames) per train, max 352 (default 32)\n"
		"  --constants-cells C     memory cells of the constants (default: --cells)\n"
		"  --constants-folder DIR  where the constants go (default DIR/constants)\n"
		"  --seed S                random seed (default 1)\n"
		"  --photon-energy E       photon energy in keV (default 9.3)\n"
		"  --karabo-id ID          detector id (default %s)\n"
		"  --first-train-id T      first train id (default %u)\n"
		"  --edge-cases LIST|all   empty-train, zero-train, cell-order, nan-constants,\n"
		"                          uneven-trains (default none)\n"
		"  --no-truth              do not write the ground truth files\n"
		"  --no-constants          do not write the constants\n"
		"  --help                  this text\n",
		AGIPD_DEFAULT_KARABO_ID, AGIPD_SIM_DEFAULT_FIRST_TRAIN);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *e;
	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 0);
	if (errno || *e)
		return -1;
	*out = v;
	return 0;
}

static int parse_int_range(const char *s, long lo, long hi, int *out)
{
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* Parse argv into cfg; returns 0, 1 for --help, -1 with err set. */
static int parse_args(int argc, char **argv, struct agipd_sim_config *cfg, char *folder_buf,
		      size_t folder_len, char *err, size_t errlen)
{
	enum {
		O_OUT = 256, O_RUN, O_MODULES, O_SEQ, O_TRAINS, O_CELLS, O_CCELLS, O_CFOLDER,
		O_SEED, O_ENERGY, O_KID, O_FIRST, O_EDGE, O_NOTRUTH, O_NOCONST, O_HELP
	};
	static const struct option opts[] = {
		{ "out-folder", required_argument, NULL, O_OUT },
		{ "run", required_argument, NULL, O_RUN },
		{ "modules", required_argument, NULL, O_MODULES },
		{ "sequences", required_argument, NULL, O_SEQ },
		{ "trains", required_argument, NULL, O_TRAINS },
		{ "cells", required_argument, NULL, O_CELLS },
		{ "constants-cells", required_argument, NULL, O_CCELLS },
		{ "constants-folder", required_argument, NULL, O_CFOLDER },
		{ "seed", required_argument, NULL, O_SEED },
		{ "photon-energy", required_argument, NULL, O_ENERGY },
		{ "karabo-id", required_argument, NULL, O_KID },
		{ "first-train-id", required_argument, NULL, O_FIRST },
		{ "edge-cases", required_argument, NULL, O_EDGE },
		{ "no-truth", no_argument, NULL, O_NOTRUTH },
		{ "no-constants", no_argument, NULL, O_NOCONST },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int cc = -1, o;
	agipd_sim_config_defaults(cfg);
	opterr = 0;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		const char *a = optarg;
		switch (o) {
		case O_OUT:
			cfg->out_folder = a;
			break;
		case O_RUN:
			if (parse_int_range(a, 0, 9999, &cfg->run) < 0)
				goto bad;
			break;
		case O_MODULES:
			if (agipd_sim_parse_modules(a, cfg->modules, &cfg->n_modules, err, errlen) < 0)
				return -1;
			break;
		case O_SEQ:
			if (parse_int_range(a, 1, 99999, &cfg->sequences) < 0)
				goto bad;
			break;
		case O_TRAINS:
			if (parse_int_range(a, 1, 1000000, &cfg->trains) < 0)
				goto bad;
			break;
		case O_CELLS:
			if (parse_int_range(a, 1, AGIPD_MAX_CELLS, &cfg->cells) < 0)
				goto bad;
			break;
		case O_CCELLS:
			if (parse_int_range(a, 1, AGIPD_MAX_CELLS, &cc) < 0)
				goto bad;
			break;
		case O_CFOLDER:
			cfg->constants_folder = a;
			break;
		case O_SEED:
			if (parse_u64(a, &cfg->seed) < 0)
				goto bad;
			break;
		case O_ENERGY: {
			char *e;
			errno = 0;
			cfg->photon_energy = strtod(a, &e);
			if (errno || e == a || *e)
				goto bad;
			break;
		}
		case O_KID:
			cfg->karabo_id = a;
			break;
		case O_FIRST:
			if (parse_u64(a, &cfg->first_train_id) < 0)
				goto bad;
			break;
		case O_EDGE:
			if (agipd_sim_parse_edge_cases(a, &cfg->edge_cases, err, errlen) < 0)
				return -1;
			break;
		case O_NOTRUTH:
			cfg->write_truth = 0;
			break;
		case O_NOCONST:
			cfg->write_constants = 0;
			break;
		case 'h':
		case O_HELP:
			return 1;
		default:
			snprintf(err, errlen, "unknown or incomplete option '%s' (see --help)",
				 argv[optind - 1]);
			return -1;
		}
		continue;
bad:
		snprintf(err, errlen, "bad value '%s' for --%s", a, opts[o - O_OUT].name);
		return -1;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -1;
	}
	cfg->constants_cells = cc > 0 ? cc : cfg->cells;
	if (cfg->out_folder && !cfg->constants_folder) {
		snprintf(folder_buf, folder_len, "%s/constants", cfg->out_folder);
		cfg->constants_folder = folder_buf;
	}
	return agipd_sim_config_check(cfg, err, errlen);
}

/* User + system time of this process, seconds. */
static double cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void mpi_check(int rc, const char *what, int rank)
{
	if (rc == MPI_SUCCESS)
		return;
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	fprintf(stderr, "agipd-simulate: rank %d: %s failed: %s\n", rank, what, msg);
	MPI_Abort(MPI_COMM_WORLD, 3);
}

int main(int argc, char **argv)
{
	struct agipd_sim_config cfg;
	char err[1024] = "", folder[4096];
	int rank = 0, size = 1, rc;

	MPI_Init(&argc, &argv);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);

	/* Every rank parses the same command line and reaches the same verdict. */
	rc = parse_args(argc, argv, &cfg, folder, sizeof folder, err, sizeof err);
	if (rc != 0) {
		if (rank == 0) {
			if (rc > 0)
				usage(stdout);
			else
				fprintf(stderr, "agipd-simulate: %s\n", err);
		}
		MPI_Finalize();
		return rc > 0 ? 0 : 2;
	}

	/* One creation time for every file (SOURCE_DATE_EPOCH for reproducible
	 * dates). */
	long long now = (long long)time(NULL);
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde)
		now = strtoll(sde, NULL, 10);
	mpi_check(MPI_Bcast(&now, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast", rank);
	cfg.creation_time = (time_t)now;

	int status = 0;
	if (rank == 0 && agipd_sim_make_folders(&cfg, err, sizeof err) < 0) {
		fprintf(stderr, "agipd-simulate: rank 0: %s\n", err);
		status = 1;
	}
	mpi_check(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast", rank);
	if (status) {
		MPI_Finalize();
		return 1;
	}

	/* Tasks: raw files module-major, then the constants; round-robin. */
	long n_raw = (long)cfg.n_modules * cfg.sequences;
	long n_tasks = n_raw + (cfg.write_constants ? cfg.n_modules : 0);
	struct agipd_sim_stats st = { 0 };
	struct agipd_sim_module *model = NULL;
	mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", rank);
	double t0 = MPI_Wtime(), cpu0 = cpu_seconds();
	for (long t = rank; t < n_tasks && !status; t += size) {
		int module = t < n_raw ? cfg.modules[t / cfg.sequences]
				       : cfg.modules[t - n_raw];
		if (!model || agipd_sim_module_number(model) != module) {
			agipd_sim_module_free(model);
			model = NULL;
			if (agipd_sim_module_new(&cfg, module, &model, err, sizeof err) < 0) {
				status = 1;
				break;
			}
		}
		if (t < n_raw)
			rc = agipd_sim_write_raw(&cfg, model, (int)(t % cfg.sequences), &st, err,
						 sizeof err);
		else
			rc = agipd_sim_write_constants(&cfg, model, &st, err, sizeof err);
		if (rc < 0)
			status = 1;
	}
	if (status)
		fprintf(stderr, "agipd-simulate: rank %d: %s\n", rank, err);
	agipd_sim_module_free(model);
	double t_local = MPI_Wtime() - t0;
	double cpu_local = cpu_seconds() - cpu0, cpu_sum = 0;

	int any = 0;
	uint64_t local[5] = { st.files, st.frames, st.raw_bytes, st.truth_bytes,
			      st.constants_bytes },
		 total[5];
	double t_max = 0;
	mpi_check(MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
		  "MPI_Allreduce", rank);
	mpi_check(MPI_Reduce(local, total, 5, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD),
		  "MPI_Reduce", rank);
	mpi_check(MPI_Reduce(&t_local, &t_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD),
		  "MPI_Reduce", rank);
	mpi_check(MPI_Reduce(&cpu_local, &cpu_sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD),
		  "MPI_Reduce", rank);
	if (rank == 0) {
		double gb = (double)(total[2] + total[3] + total[4]) / 1e9;
		double raw_gb = (double)total[2] / 1e9;
		if (t_max <= 0)
			t_max = 1e-9;
		printf("agipd-simulate: run %d, %d module(s) x %d sequence(s) x %d train(s) x %d "
		       "cell(s), seed %llu, %s\n",
		       cfg.run, cfg.n_modules, cfg.sequences, cfg.trains, cfg.cells,
		       (unsigned long long)cfg.seed, any ? "FAILED" : "ok");
		printf("agipd-simulate: %llu file(s), %llu frame(s): raw %.3f GB, truth %.3f GB, "
		       "constants %.3f GB in %.2f s on %d rank(s): %.3f GB/s raw, %.3f GB/s "
		       "total\n",
		       (unsigned long long)total[0], (unsigned long long)total[1], raw_gb,
		       (double)total[3] / 1e9, (double)total[4] / 1e9, t_max, size,
		       raw_gb / t_max, gb / t_max);
		printf("agipd-simulate: %.2f CPU s on all ranks (%.2f CPU s per GB written)\n", cpu_sum,
		       gb > 0 ? cpu_sum / gb : 0.0);
		printf("agipd-simulate: raw data in %s/r%04d\n", cfg.out_folder, cfg.run);
		fflush(stdout);
	}
	MPI_Finalize();
	return any ? 1 : 0;
}
