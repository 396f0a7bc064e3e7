/*
 * main_simulate.c - agipd-simulate: write a synthetic AGIPD run (raw files,
 * calibration constants, ground truth) for testing and benchmarking
 * agipd-correct.  Command line and MPI only: ranks take the files
 * round-robin and write each one whole with serial HDF5; rank 0 prints the
 * summary, every rank prints its own errors.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "agipd_opts.h"
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
		"  --contiguous            raw datasets contiguous (the old layout; default:\n"
		"                          as the DAQ writes them, first axis unlimited,\n"
		"                          chunked, image/data one frame a chunk)\n"
		"  --no-constants          do not write the constants\n"
		"\n"
		"Operating conditions (SPEC 6.1), written to the control file and, as the\n"
		"conditions the constants were made for, to the constants:\n"
		"  --control FORM          gain (default), setupr (older form: setupr and\n"
		"                          patternTypeIndex) or none: the control file\n"
		"                          DIR/rNNNN/RAW-RNNNN-{da}-SNNNNN.h5, one per sequence\n"
		"  --karabo-id-control ID  control device prefix (default %s)\n"
		"  --karabo-da-control DA  control aggregator (default %s)\n"
		"  --mem-cells N           bunchStructure.nPulses (default: --constants-cells)\n"
		"  --acq-rate MHZ          bunchStructure.repetitionRate (default %.1f); given,\n"
		"                          pulseIds are spaced by round(4.5 / MHZ)\n"
		"  --gain-setting G        0 or 1 (default 0)\n"
		"  --gain-mode N           0 adaptive (default), 1..3 fixed high/medium/low:\n"
		"                          every pixel in that gain stage\n"
		"  --integration-time T    integrationTime (default %d)\n"
		"  --bias-voltage V        MPOD measurementSenseVoltage of each module (default %.0f)\n"
		"  --pattern-type-index P  patternTypeIndex of --control setupr (default %d)\n"
		"  --control-change KEY    KEY changes in the run's last train (tests): gainModeIndex,\n"
		"                          gain, integrationTime, repetitionRate, nPulses, bias\n"
		"  --caldb                 also write a calibration-database store DIR/caldb with\n"
		"                          its calibration_metadata.yml (same constants)\n"
		"  --caldb-dims-order LIST axis order of the store's arrays (tests), e.g.\n"
		"                          cell,slow_scan,fast_scan,gain (default\n"
		"                          fast_scan,slow_scan,cell,gain)\n"
		"  --help                  this text\n",
		AGIPD_DEFAULT_KARABO_ID, AGIPD_SIM_DEFAULT_FIRST_TRAIN,
		AGIPD_SIM_DEFAULT_KARABO_ID_CONTROL, AGIPD_SIM_DEFAULT_KARABO_DA_CONTROL,
		AGIPD_SIM_DEFAULT_ACQ_RATE, AGIPD_SIM_DEFAULT_INTEGRATION_TIME,
		AGIPD_SIM_DEFAULT_BIAS_VOLTAGE, AGIPD_SIM_DEFAULT_PATTERN_TYPE);
}

/* Parse argv into cfg; returns 0, 1 for --help, -1 with err set. */
static int parse_args(int argc, char **argv, struct agipd_sim_config *cfg, char *folder_buf,
		      size_t folder_len, char *err, size_t errlen)
{
	enum {
		O_OUT = 256, O_RUN, O_MODULES, O_SEQ, O_TRAINS, O_CELLS, O_CCELLS, O_CFOLDER,
		O_SEED, O_ENERGY, O_KID, O_FIRST, O_EDGE, O_NOTRUTH, O_NOCONST, O_CONTIG, O_HELP,
		O_CONTROL, O_KIDC, O_KDAC, O_MEMCELLS, O_RATE, O_GSET, O_GMODE, O_ITIME, O_BIAS,
		O_PATTERN, O_CHANGE, O_CALDB, O_DIMS
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
		{ "contiguous", no_argument, NULL, O_CONTIG },
		{ "no-constants", no_argument, NULL, O_NOCONST },
		{ "help", no_argument, NULL, O_HELP },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "karabo-id-control", required_argument, NULL, O_KIDC },
		{ "karabo-da-control", required_argument, NULL, O_KDAC },
		{ "mem-cells", required_argument, NULL, O_MEMCELLS },
		{ "acq-rate", required_argument, NULL, O_RATE },
		{ "gain-setting", required_argument, NULL, O_GSET },
		{ "gain-mode", required_argument, NULL, O_GMODE },
		{ "integration-time", required_argument, NULL, O_ITIME },
		{ "bias-voltage", required_argument, NULL, O_BIAS },
		{ "pattern-type-index", required_argument, NULL, O_PATTERN },
		{ "control-change", required_argument, NULL, O_CHANGE },
		{ "caldb", no_argument, NULL, O_CALDB },
		{ "caldb-dims-order", required_argument, NULL, O_DIMS },
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
			if (agipd_opts_int(a, 0, 9999, &cfg->run) < 0)
				goto bad;
			break;
		case O_MODULES:
			if (agipd_sim_parse_modules(a, cfg->modules, &cfg->n_modules, err, errlen) < 0)
				return -1;
			break;
		case O_SEQ:
			if (agipd_opts_int(a, 1, 99999, &cfg->sequences) < 0)
				goto bad;
			break;
		case O_TRAINS:
			if (agipd_opts_int(a, 1, 1000000, &cfg->trains) < 0)
				goto bad;
			break;
		case O_CELLS:
			if (agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &cfg->cells) < 0)
				goto bad;
			break;
		case O_CCELLS:
			if (agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &cc) < 0)
				goto bad;
			break;
		case O_CFOLDER:
			cfg->constants_folder = a;
			break;
		case O_SEED:
			if (agipd_opts_u64(a, 0, &cfg->seed) < 0)
				goto bad;
			break;
		case O_ENERGY:
			if (agipd_opts_double(a, &cfg->photon_energy) < 0)
				goto bad;
			break;
		case O_KID:
			cfg->karabo_id = a;
			break;
		case O_FIRST:
			if (agipd_opts_u64(a, 0, &cfg->first_train_id) < 0)
				goto bad;
			break;
		case O_EDGE:
			if (agipd_sim_parse_edge_cases(a, &cfg->edge_cases, err, errlen) < 0)
				return -1;
			break;
		case O_CONTIG:
			cfg->contiguous = 1;
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
		case O_CONTROL:
			if (agipd_sim_parse_control_form(a, &cfg->control_form, err, errlen) < 0)
				return -1;
			break;
		case O_KIDC:
			cfg->karabo_id_control = a;
			break;
		case O_KDAC:
			cfg->karabo_da_control = a;
			break;
		case O_MEMCELLS:
			if (agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &cfg->mem_cells) < 0)
				goto bad;
			break;
		case O_RATE: {
			if (agipd_opts_double(a, &cfg->acq_rate) < 0 || !(cfg->acq_rate > 0.0 && cfg->acq_rate <= 4.5))
				goto bad;
			long step = lround(4.5 / cfg->acq_rate);
			cfg->pulse_step = step < 1 ? 1 : (int)step;
			break;
		}
		case O_GSET:
			if (agipd_opts_int(a, 0, 1, &cfg->gain_setting) < 0)
				goto bad;
			break;
		case O_GMODE:
			if (agipd_opts_int(a, 0, 3, &cfg->gain_mode) < 0)
				goto bad;
			break;
		case O_ITIME:
			if (agipd_opts_int(a, 0, 1000000, &cfg->integration_time) < 0)
				goto bad;
			break;
		case O_BIAS: {
			if (agipd_opts_double(a, &cfg->bias_voltage) < 0 ||
			    !(cfg->bias_voltage >= 0.0 && cfg->bias_voltage < 1000.0))
				goto bad;
			break;
		}
		case O_PATTERN:
			if (agipd_opts_int(a, 0, 255, &cfg->pattern_type) < 0)
				goto bad;
			break;
		case O_CHANGE:
			if (agipd_sim_parse_control_key(a, &cfg->control_change, err, errlen) < 0)
				return -1;
			break;
		case O_CALDB:
			cfg->write_caldb = 1;
			break;
		case O_DIMS:
			if (agipd_sim_parse_dims_order(a, cfg->caldb_dims, err, errlen) < 0)
				return -1;
			break;
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
	if (cfg->mem_cells == 0)
		cfg->mem_cells = cfg->constants_cells;
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

	/* Tasks, round-robin: raw files module-major, then the constants of each
	 * module (folder file and store), the control files, the store's YAML. */
	long n_raw = (long)cfg.n_modules * cfg.sequences;
	int do_consts = cfg.write_constants || cfg.write_caldb;
	long n_const = do_consts ? cfg.n_modules : 0;
	long n_ctrl = cfg.control_form != AGIPD_SIM_CONTROL_NONE ? cfg.sequences : 0;
	long n_tasks = n_raw + n_const + n_ctrl + (cfg.write_caldb ? 1 : 0);
	struct agipd_sim_stats st = { 0 };
	struct agipd_sim_module *model = NULL;
	mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", rank);
	double t0 = MPI_Wtime(), cpu0 = cpu_seconds();
	for (long t = rank; t < n_tasks && !status; t += size) {
		if (t >= n_raw + n_const) {
			long i = t - n_raw - n_const;
			if (i < n_ctrl)
				rc = agipd_sim_write_control(&cfg, (int)i, &st, err, sizeof err);
			else
				rc = agipd_sim_write_caldb_metadata(&cfg, err, sizeof err);
			if (rc < 0)
				status = 1;
			continue;
		}
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
		else {
			rc = cfg.write_constants
				     ? agipd_sim_write_constants(&cfg, model, &st, err, sizeof err)
				     : 0;
			if (rc == 0 && cfg.write_caldb)
				rc = agipd_sim_write_caldb(&cfg, model, &st, err, sizeof err);
		}
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
