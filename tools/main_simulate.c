/*
 * main_simulate.c - agipd-simulate: write a synthetic AGIPD run (raw files,
 * calibration constants, ground truth) for testing and benchmarking
 * agipd-correct.  Command line and MPI only: ranks take the files
 * round-robin and write each one whole with serial HDF5; rank 0 prints the
 * summary, every rank prints its own errors.
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "agipd_opts.h"
#include "agipd_sim.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const struct agipd_option sim_options[] = {
	{ "out-folder", "DIR", "Output", NULL, "output folder (required)" },
	{ "run", "N", "Output", "1", "run number" },
	{ "modules", "LIST", "Output", "0-3", "modules, e.g. 0-3,7,9" },
	{ "sequences", "N", "Output", "1", "sequence files per module" },
	{ "trains", "N", "Output", "4", "trains per sequence file" },
	{ "last-trains", "N", "Output", "--trains", "trains of the last sequence file (uneven files), at most --trains" },
	{ "cells", "N", "Output", "32", "memory cells (frames) per train, max 352" },
	{ "constants-cells", "C", "Output", "--cells", "memory cells of the constants" },
	{ "constants-folder", "DIR", "Output", "DIR/constants", "where the constants go" },
	{ "seed", "S", "Output", "1", "random seed" },
	{ "photon-energy", "E", "Output", "9.3", "photon energy in keV" },
	{ "karabo-id", "ID", "Output", AGIPD_DEFAULT_KARABO_ID, "detector id" },
	{ "first-train-id", "T", "Output", STR(AGIPD_SIM_DEFAULT_FIRST_TRAIN), "first train id" },
	{ "edge-cases", "LIST|all", "Output", "none",
	  "empty-train, zero-train, cell-order, nan-constants, uneven-trains" },
	{ "no-truth", NULL, "Output", NULL, "do not write the ground truth files" },
	{ "contiguous", NULL, "Output", NULL,
	  "raw datasets contiguous (the old layout; default: as the DAQ writes them, first axis unlimited, "
	  "chunked, image/data one frame a chunk)" },
	{ "no-constants", NULL, "Output", NULL, "do not write the constants" },
	{ "caldb", NULL, "Output", NULL,
	  "also write a calibration-database store DIR/caldb with its calibration_metadata.yml (same constants)" },
	{ "caldb-dims-order", "LIST", "Output", "fast_scan,slow_scan,cell,gain",
	  "axis order of the store's arrays (tests), e.g. cell,slow_scan,fast_scan,gain" },
	{ "control", "FORM", "Operating conditions", "gain",
	  "gain, setupr (older form: setupr and patternTypeIndex) or none: the control file "
	  "DIR/rNNNN/RAW-RNNNN-{da}-SNNNNN.h5, one per sequence" },
	{ "karabo-id-control", "ID", "Operating conditions",
	  AGIPD_SIM_DEFAULT_KARABO_ID_CONTROL, "control device prefix" },
	{ "karabo-da-control", "DA", "Operating conditions",
	  AGIPD_SIM_DEFAULT_KARABO_DA_CONTROL, "control aggregator" },
	{ "mem-cells", "N", "Operating conditions", "--constants-cells",
	  "bunchStructure.nPulses" },
	{ "acq-rate", "MHZ", "Operating conditions",
	  STR(AGIPD_SIM_DEFAULT_ACQ_RATE), "bunchStructure.repetitionRate; given, pulseIds are spaced by round(4.5 / MHZ)" },
	{ "gain-setting", "G", "Operating conditions", "0", "0 or 1" },
	{ "gain-mode", "N", "Operating conditions", "0",
	  "0 adaptive, 1..3 fixed high/medium/low: every pixel in that gain stage" },
	{ "integration-time", "T", "Operating conditions",
	  STR(AGIPD_SIM_DEFAULT_INTEGRATION_TIME), "integrationTime" },
	{ "bias-voltage", "V", "Operating conditions",
	  STR(AGIPD_SIM_DEFAULT_BIAS_VOLTAGE), "MPOD measurementSenseVoltage of each module" },
	{ "pattern-type-index", "P", "Operating conditions",
	  STR(AGIPD_SIM_DEFAULT_PATTERN_TYPE), "patternTypeIndex of --control setupr" },
	{ "control-change", "KEY", "Operating conditions", NULL,
	  "KEY changes in the run's last train (tests): gainModeIndex, gain, integrationTime, repetitionRate, "
	  "nPulses, bias" },
	{ "help", NULL, "Other", NULL, "this text" },
};
#define SIM_NOPTIONS ((int)(sizeof sim_options / sizeof sim_options[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: agipd-simulate --out-folder DIR [options]\n"
		     "Write a synthetic AGIPD run: DIR/rNNNN/RAW-RNNNN-AGIPDmm-SNNNNN.h5, constants\n"
		     "AGIPDmm.h5 and ground truth DIR/truth/TRUTH-RNNNN-AGIPDmm-SNNNNN.h5.\n"
		     "The operating conditions (SPEC 6.1) go to the control file and, as the\n"
		     "conditions the constants were made for, to the constants.\n");
	agipd_optparse_help(out, sim_options, SIM_NOPTIONS);
}

struct sim_args {
	struct agipd_sim_config *cfg;
	int constants_cells;
};

/* One option into the configuration (agipd_optparse's apply). */
static int sim_apply(void *ctx, const char *name, const char *a, agipd_err *e)
{
	struct sim_args *s = ctx;
	struct agipd_sim_config *cfg = s->cfg;
	int bad = 0;
	if (!strcmp(name, "help"))
		return 1;
	else if (!strcmp(name, "out-folder"))
		cfg->out_folder = a;
	else if (!strcmp(name, "run"))
		bad = agipd_opts_int(a, 0, 9999, &cfg->run);
	else if (!strcmp(name, "modules"))
		return agipd_sim_parse_modules(a, cfg->modules, &cfg->n_modules, e->msg, sizeof e->msg);
	else if (!strcmp(name, "sequences"))
		bad = agipd_opts_int(a, 1, 99999, &cfg->sequences);
	else if (!strcmp(name, "trains"))
		bad = agipd_opts_int(a, 1, 1000000, &cfg->trains);
	else if (!strcmp(name, "last-trains"))
		bad = agipd_opts_int(a, 1, 1000000, &cfg->last_trains);
	else if (!strcmp(name, "cells"))
		bad = agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &cfg->cells);
	else if (!strcmp(name, "constants-cells"))
		bad = agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &s->constants_cells);
	else if (!strcmp(name, "constants-folder"))
		cfg->constants_folder = a;
	else if (!strcmp(name, "seed"))
		bad = agipd_opts_u64(a, 0, &cfg->seed);
	else if (!strcmp(name, "photon-energy"))
		bad = agipd_opts_double(a, &cfg->photon_energy);
	else if (!strcmp(name, "karabo-id"))
		cfg->karabo_id = a;
	else if (!strcmp(name, "first-train-id"))
		bad = agipd_opts_u64(a, 0, &cfg->first_train_id);
	else if (!strcmp(name, "edge-cases"))
		return agipd_sim_parse_edge_cases(a, &cfg->edge_cases, e->msg, sizeof e->msg);
	else if (!strcmp(name, "contiguous"))
		cfg->contiguous = 1;
	else if (!strcmp(name, "no-truth"))
		cfg->write_truth = 0;
	else if (!strcmp(name, "no-constants"))
		cfg->write_constants = 0;
	else if (!strcmp(name, "control"))
		return agipd_sim_parse_control_form(a, &cfg->control_form, e->msg, sizeof e->msg);
	else if (!strcmp(name, "karabo-id-control"))
		cfg->karabo_id_control = a;
	else if (!strcmp(name, "karabo-da-control"))
		cfg->karabo_da_control = a;
	else if (!strcmp(name, "mem-cells"))
		bad = agipd_opts_int(a, 1, AGIPD_MAX_CELLS, &cfg->mem_cells);
	else if (!strcmp(name, "acq-rate")) {
		bad = agipd_opts_double(a, &cfg->acq_rate) < 0 || !(cfg->acq_rate > 0.0 && cfg->acq_rate <= 4.5);
		long step = bad ? 1 : lround(4.5 / cfg->acq_rate);
		cfg->pulse_step = step < 1 ? 1 : (int)step;
	} else if (!strcmp(name, "gain-setting"))
		bad = agipd_opts_int(a, 0, 1, &cfg->gain_setting);
	else if (!strcmp(name, "gain-mode"))
		bad = agipd_opts_int(a, 0, 3, &cfg->gain_mode);
	else if (!strcmp(name, "integration-time"))
		bad = agipd_opts_int(a, 0, 1000000, &cfg->integration_time);
	else if (!strcmp(name, "bias-voltage"))
		bad = agipd_opts_double(a, &cfg->bias_voltage) < 0 ||
		      !(cfg->bias_voltage >= 0.0 && cfg->bias_voltage < 1000.0);
	else if (!strcmp(name, "pattern-type-index"))
		bad = agipd_opts_int(a, 0, 255, &cfg->pattern_type);
	else if (!strcmp(name, "control-change"))
		return agipd_sim_parse_control_key(a, &cfg->control_change, e->msg, sizeof e->msg);
	else if (!strcmp(name, "caldb"))
		cfg->write_caldb = 1;
	else if (!strcmp(name, "caldb-dims-order"))
		return agipd_sim_parse_dims_order(a, cfg->caldb_dims, e->msg, sizeof e->msg);
	return bad ? agipd_err_set(e, "bad value '%s' for --%s", a, name) : 0;
}

/* Parse argv into cfg; returns 0, 1 for --help, -1 with err set. */
static int parse_args(int argc, char **argv, struct agipd_sim_config *cfg, char *folder_buf,
		      size_t folder_len, agipd_err *e)
{
	struct sim_args s = { cfg, -1 };
	struct agipd_optparse p = { sim_options, SIM_NOPTIONS, "h", sim_apply, &s };
	agipd_sim_config_defaults(cfg);
	int rc = agipd_optparse_run(&p, argc, argv, e);
	if (rc)
		return rc;
	cfg->constants_cells = s.constants_cells > 0 ? s.constants_cells : cfg->cells;
	if (cfg->mem_cells == 0)
		cfg->mem_cells = cfg->constants_cells;
	if (cfg->out_folder && !cfg->constants_folder) {
		snprintf(folder_buf, folder_len, "%s/constants", cfg->out_folder);
		cfg->constants_folder = folder_buf;
	}
	return agipd_sim_config_check(cfg, e->msg, sizeof e->msg);
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
	agipd_err e = { "" };
	rc = parse_args(argc, argv, &cfg, folder, sizeof folder, &e);
	if (rc != 0) {
		if (rank == 0) {
			if (rc > 0)
				usage(stdout);
			else
				fprintf(stderr, "agipd-simulate: %s\n", e.msg);
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
