/*
 * test_opts.c - the option table and parser (include/agipd_opts.h): every
 * option of the table is accepted, required options and bad values are
 * refused with a message naming the option, --help/--version, lists, the
 * --config file with command-line override, agipd_opts_value, and the
 * generic parser (agipd_optparse_run) with a table of its own.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agipd_opts.h"
#include "unit.h"

#define MAXARGS 192

/* Parse a NULL-terminated list of arguments (the program name is added). */
static int parse_v(struct agipd_config *c, const char **what, agipd_err *e, const char *const *args)
{
	char *argv[MAXARGS + 2];
	int argc = 0;
	argv[argc++] = (char *)"agipd-correct";
	for (; *args && argc < MAXARGS; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	e->msg[0] = 0;
	return agipd_opts_parse(c, argc, argv, what, e);
}

#define REQ "--in-folder", "/raw", "--out-folder", "/out", "--run", "12", "--constants-folder", "/consts"
#define PARSE(c, what, e, ...) parse_v((c), (what), (e), (const char *const[]){ __VA_ARGS__, NULL })

/* agipd_optparse_run with a small table of its own: what apply saw. */
static const struct agipd_option tiny_rows[] = {
	{ "size", "N", "Shape", "4", "how many" },
	{ "name", "S", "Shape", NULL, "what it is called" },
	{ "verbose", NULL, "Other", NULL, "more" },
	{ "help", NULL, "Other", NULL, "this text" },
};
struct tiny_seen {
	char log[256];
};

static int tiny_apply(void *ctx, const char *name, const char *val, agipd_err *e)
{
	struct tiny_seen *t = ctx;
	if (!strcmp(name, "help"))
		return 1;
	if (!strcmp(name, "size") && strcmp(val, "4") && strcmp(val, "5"))
		return agipd_err_set(e, "bad value '%s' for --%s", val, name);
	size_t n = strlen(t->log);
	snprintf(t->log + n, sizeof t->log - n, "%s=%s;", name, val ? val : "(switch)");
	return 0;
}

static int tiny_parse(struct tiny_seen *t, agipd_err *e, const char *const *args)
{
	char *argv[MAXARGS + 2];
	int argc = 0;
	struct agipd_optparse p = { tiny_rows, (int)(sizeof tiny_rows / sizeof tiny_rows[0]), "hv", tiny_apply, t };
	argv[argc++] = (char *)"tiny";
	for (; *args && argc < MAXARGS; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	t->log[0] = 0;
	e->msg[0] = 0;
	return agipd_optparse_run(&p, argc, argv, e);
}
#define TINY(t, e, ...) tiny_parse((t), (e), (const char *const[]){ __VA_ARGS__, NULL })

static int contains(const char *s, const char *sub)
{
	return strstr(s, sub) != NULL;
}

#define CHECK_MSG(e, sub)                                                       \
	do {                                                                    \
		if (!contains((e)->msg, (sub))) {                               \
			printf("  %s:%d: message '%s' does not mention '%s'\n", __FILE__, __LINE__, \
			       (e)->msg, (sub));                                \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

#define CHECK_VALUE(c, name, want)                                              \
	do {                                                                    \
		char v_[4096];                                                  \
		if (agipd_opts_value((c), (name), v_, sizeof v_) != 0 || strcmp(v_, (want)) != 0) { \
			printf("  %s:%d: value of --%s is '%s', expected '%s'\n", __FILE__, __LINE__, \
			       (name), v_, (want));                             \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

/* A valid value for each option that takes one, and what else it needs. */
static const struct sample {
	const char *name, *value, *needs;
	int no_constants_folder;      /* excludes --constants-folder */
} samples[] = {
	{ "in-folder", "/somewhere", NULL, 0 },
	{ "out-folder", "/elsewhere", NULL, 0 },
	{ "run", "42", NULL, 0 },
	{ "karabo-id", "MID_DET_AGIPD1M-1", NULL, 0 },
	{ "modules", "0-3,7", NULL, 0 },
	{ "sequences", "0-2,5", NULL, 0 },
	{ "constants-folder", "/c2", NULL, 0 },
	{ "cells", "1:300:2", NULL, 0 },
	{ "gain-mode", "fixed-medium", NULL, 0 },
	{ "mg-hard-threshold", "1200.5", NULL, 0 },
	{ "hg-hard-threshold", "800", NULL, 0 },
	{ "cm-dark-range", "-20,25", NULL, 0 },
	{ "cm-dark-fraction", "0.25", NULL, 0 },
	{ "cm-n-itr", "6", NULL, 0 },
	{ "photon-energy", "9.3", NULL, 0 },
	{ "adu-per-kev", "7.5", "--photon-energy=12", 0 },
	{ "rounding-threshold", "0.25", NULL, 0 },
	{ "data-dtype", "float16", NULL, 0 },
	{ "writer", "serial", NULL, 0 },
	{ "schedule", "rounds", NULL, 0 },
	{ "io-transfer", "collective", NULL, 0 },
	{ "batch-frames", "64", NULL, 0 },
	{ "deflate-level", "6", NULL, 0 },
	{ "mpi-info", "romio_cb_write=enable,cb_nodes=2", NULL, 0 },
	{ "report", "/tmp/report.json", NULL, 0 },
	{ "karabo-da", "AGIPD00,AGIPD03", NULL, 0 },
	{ "calibration-metadata", "/store/calibration_metadata.yml", NULL, 1 },
	{ "caldb-root", "/store", "--calibration-metadata=/m.yml", 1 },
	{ "karabo-id-control", "MID_IRU_AGIPD1M1", NULL, 0 },
	{ "karabo-da-control", "AGIPD1MCTRL01", NULL, 0 },
	{ "mem-cells", "352", NULL, 0 },
	{ "acq-rate", "2.2", NULL, 0 },
	{ "gain-setting", "1", NULL, 0 },
	{ "integration-time", "15", NULL, 0 },
	{ "bias-voltage", "500", NULL, 0 },
	{ "max-pulses", "0 352 2", NULL, 0 },
	/* switches */
	{ "adjust-mg-baseline", NULL, "--rel-gain", 0 },
	{ "round-photons", NULL, "--photon-energy=9.3", 0 },
};

static const struct sample *sample_of(const char *name)
{
	for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
		if (!strcmp(samples[i].name, name))
			return &samples[i];
	return NULL;
}

static int is_special(const char *name)
{
	return !strcmp(name, "help") || !strcmp(name, "version") || !strcmp(name, "config");
}

/* Other names of options (--karabo-da for --modules, --max-pulses for
 * --cells): given together they are refused. */
static int is_alias(const char *name)
{
	return !strcmp(name, "karabo-da") || !strcmp(name, "max-pulses");
}

/* Every option's value as text, one string per table row. */
static void all_values(const struct agipd_config *c, char vals[][512])
{
	for (int i = 0; i < agipd_noptions; i++) {
		vals[i][0] = 0;
		if (!is_special(agipd_options[i].name))
			agipd_opts_value(c, agipd_options[i].name, vals[i], 512);
	}
}

static char tmp_path[64];

static void write_file(const char *text)
{
	FILE *f = fopen(tmp_path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

int main(void)
{
	static struct agipd_config c, c2;   /* large: keep them off the stack */
	agipd_err e;
	const char *what;
	int rc;

	snprintf(tmp_path, sizeof tmp_path, "/tmp/agipd-test-opts.XXXXXX");
	{
		int fd = mkstemp(tmp_path);
		if (fd < 0)
			return 1;
		close(fd);
	}

	TEST("opts: the required options suffice; defaults") {
		rc = PARSE(&c, &what, &e, REQ);
		CHECK_EQ_INT(rc, 0);
		CHECK(what == NULL);
		CHECK(!strcmp(c.in_folder, "/raw"));
		CHECK(!strcmp(c.out_folder, "/out"));
		CHECK(!strcmp(c.constants_folder, "/consts"));
		CHECK_EQ_INT(c.run, 12);
		CHECK(!strcmp(c.karabo_id, "SPB_DET_AGIPD1M-1"));
		CHECK_EQ_INT(c.modules.n, 0);
		CHECK_EQ_INT(c.params.gain_mode, AGIPD_GAIN_ADAPTIVE);
		CHECK_EQ_F32(c.params.mg_hard_threshold, 1000.0f);
		CHECK_EQ_F32(c.params.hg_hard_threshold, 1000.0f);
		CHECK_EQ_F32(c.params.cm_dark_lo, -30.0f);
		CHECK_EQ_F32(c.params.cm_dark_hi, 30.0f);
		CHECK(c.params.cm_dark_fraction == 0.15);
		CHECK_EQ_INT(c.params.cm_n_itr, 4);
		CHECK_EQ_F32(c.params.rounding_threshold, 0.5f);
		CHECK_EQ_INT(c.params.data_dtype, AGIPD_DTYPE_FLOAT32);
		CHECK(c.params.photon_energy == 0);
		CHECK(!c.params.common_mode && !c.params.rel_gain && !c.params.ff_gain && !c.params.round_photons);
		for (unsigned cell = 0; cell < AGIPD_MAX_CELLS; cell++)
			CHECK(agipd_params_keep_cell(&c.params, cell));
		CHECK_VALUE(&c, "common-mode", "false");
		CHECK_VALUE(&c, "gain-mode", "adaptive");
		CHECK_VALUE(&c, "data-dtype", "float32");
	}

	TEST("opts: every option of the table is accepted") {
		int seen = 0;
		for (int i = 0; i < agipd_noptions; i++) {
			const struct agipd_option *o = &agipd_options[i];
			if (is_special(o->name))
				continue;
			const struct sample *s = sample_of(o->name);
			if (o->arg && !s) {
				printf("  no sample value for --%s: add one to tests/test_opts.c\n", o->name);
				unit_failed_++;
				continue;
			}
			char opt[128], val[256];
			snprintf(opt, sizeof opt, "--%s", o->name);
			snprintf(val, sizeof val, "%s", o->arg ? s->value : "");
			/* As "--name value" (or "--name" for a switch) after the required ones. */
			const char *args[16] = { REQ };
			int n = s && s->no_constants_folder ? 6 : 8;   /* REQ ends with --constants-folder */
			if (s && s->needs)
				args[n++] = s->needs;
			args[n++] = opt;
			if (o->arg)
				args[n++] = val;
			args[n] = NULL;
			rc = parse_v(&c, &what, &e, args);
			if (rc != 0) {
				printf("  --%s %s refused: %s\n", o->name, o->arg ? val : "", e.msg);
				unit_failed_++;
				continue;
			}
			seen++;
			char got[4096];
			CHECK_EQ_INT(agipd_opts_value(&c, o->name, got, sizeof got), 0);
			if (o->arg) {
				/* The value is the one given (numbers may print differently). */
				if (strcmp(got, val) != 0 && !(atof(got) == atof(val) && atof(val) != 0))
					printf("  # --%s %s reads back as '%s'\n", o->name, val, got);
			} else if (strcmp(o->name, "quiet") != 0 && strcmp(o->name, "verbose") != 0) {
				if (strcmp(got, "true") != 0) {
					printf("  switch --%s reads back as '%s'\n", o->name, got);
					unit_failed_++;
				}
			}
			/* As "--name=value". */
			if (o->arg) {
				char eq[512];
				snprintf(eq, sizeof eq, "--%s=%s", o->name, val);
				args[n - 2] = eq;
				args[n - 1] = NULL;
				rc = parse_v(&c, &what, &e, args);
				if (rc != 0) {
					printf("  %s refused: %s\n", eq, e.msg);
					unit_failed_++;
				}
			}
		}
		CHECK(seen >= 30);
		/* A few effects checked by field. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--cells", "1:300:2", "--gain-mode", "fixed-low", "--modules",
				   "0-3,7", "--cm-dark-range", "-20,25", "--deflate-level", "6", "--writer", "null",
				   "--quiet"),
			     0);
		CHECK_EQ_INT(c.params.cells_start, 1);
		CHECK_EQ_INT(c.params.cells_stop, 300);
		CHECK_EQ_INT(c.params.cells_step, 2);
		CHECK_EQ_INT(c.params.gain_mode, AGIPD_GAIN_FIXED_LOW);
		CHECK_EQ_F32(c.params.cm_dark_lo, -20.0f);
		CHECK_EQ_F32(c.params.cm_dark_hi, 25.0f);
		CHECK_EQ_INT(c.deflate_level, 6);
		CHECK_EQ_INT(c.writer, AGIPD_WRITE_NULL);
		CHECK_EQ_INT(c.verbosity, 0);
		CHECK(agipd_list_has(&c.modules, 7) && !agipd_list_has(&c.modules, 4));
		CHECK(agipd_params_keep_cell(&c.params, 1) && agipd_params_keep_cell(&c.params, 299));
		CHECK(!agipd_params_keep_cell(&c.params, 2) && !agipd_params_keep_cell(&c.params, 301));
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--photon-energy", "9.3", "--round-photons", "--data-dtype",
				   "int16", "--verbose"),
			     0);
		CHECK_EQ_INT(c.params.data_dtype, AGIPD_DTYPE_INT16);
		CHECK(c.params.photon_energy == 9.3);
		CHECK_EQ_INT(c.verbosity, 2);
	}

	TEST("opts: facility option names (xfel-calibrate's forms)") {
		/* --karabo-da as several words, then another option */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--karabo-da", "AGIPD00", "AGIPD03", "--max-pulses", "2", "40",
				   "3", "--karabo-id-control", "MID_IRU_AGIPD1M1"),
			     0);
		CHECK(agipd_list_has(&c.modules, 0) && agipd_list_has(&c.modules, 3) && !agipd_list_has(&c.modules, 1));
		CHECK_EQ_INT(c.params.cells_start, 2);
		CHECK_EQ_INT(c.params.cells_stop, 40);
		CHECK_EQ_INT(c.params.cells_step, 3);
		CHECK_VALUE(&c, "karabo-da", "AGIPD00,AGIPD03");
		CHECK_VALUE(&c, "karabo-id-control", "MID_IRU_AGIPD1M1");
		CHECK_VALUE(&c, "karabo-da-control", "AGIPD1MCTRL00");
		/* comma form; --max-pulses with one and two words */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--karabo-da", "AGIPD15,AGIPD01", "--max-pulses", "64"), 0);
		CHECK(agipd_list_has(&c.modules, 15) && agipd_list_has(&c.modules, 1) && !agipd_list_has(&c.modules, 0));
		CHECK(c.params.cells_start == 0 && c.params.cells_stop == 64 && c.params.cells_step == 1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--max-pulses", "4", "20"), 0);
		CHECK(c.params.cells_start == 4 && c.params.cells_stop == 20 && c.params.cells_step == 1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--max-pulses", "0,352,2"), 0);
		CHECK(c.params.cells_start == 0 && c.params.cells_stop == 352 && c.params.cells_step == 2);
		/* refusals */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--karabo-da", "AGIPD16"), -1);
		CHECK_MSG(&e, "--karabo-da");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--karabo-da", "LPD00"), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--max-pulses", "1", "2", "3", "4"), -1);
		CHECK_MSG(&e, "--max-pulses");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--max-pulses", "10", "5"), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--modules", "0", "--karabo-da", "AGIPD01"), -1);
		CHECK_MSG(&e, "--karabo-da");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--cells", "0:10", "--max-pulses", "10"), -1);
		CHECK_MSG(&e, "--max-pulses");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--calibration-metadata", "/m.yml"), -1);
		CHECK_MSG(&e, "--calibration-metadata");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/r", "--out-folder", "/o", "--run", "1", "--caldb-root",
				   "/s"),
			     -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/r", "--out-folder", "/o", "--run", "1",
				   "--calibration-metadata", "/m.yml", "--caldb-root", "/s"),
			     0);
		CHECK_VALUE(&c, "caldb-root", "/s");
		/* conditions: given, numbers for --gain-mode, auto */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--gain-mode", "2", "--mem-cells", "352", "--acq-rate", "4.5",
				   "--bias-voltage", "500"),
			     0);
		CHECK_EQ_INT(c.params.gain_mode, AGIPD_GAIN_FIXED_MEDIUM);
		CHECK(c.cond_given[AGIPD_COND_GAIN_MODE] && c.cond_value[AGIPD_COND_GAIN_MODE] == 2);
		CHECK(c.cond_given[AGIPD_COND_MEM_CELLS] && c.cond_value[AGIPD_COND_MEM_CELLS] == 352);
		CHECK(c.cond_given[AGIPD_COND_ACQ_RATE] && c.cond_value[AGIPD_COND_ACQ_RATE] == 4.5);
		CHECK(!c.cond_given[AGIPD_COND_GAIN_SETTING] && !c.cond_given[AGIPD_COND_INTEG_TIME]);
		CHECK_VALUE(&c, "gain-setting", "auto");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--mem-cells", "352", "--mem-cells", "auto"), 0);
		CHECK(!c.cond_given[AGIPD_COND_MEM_CELLS]);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ), 0);
		CHECK(!c.cond_given[AGIPD_COND_GAIN_MODE]);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--gain-mode", "4"), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--gain-setting", "2"), -1);
		CHECK_MSG(&e, "--gain-setting");
	}

	TEST("opts: required options") {
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--out-folder", "/o", "--run", "1", "--constants-folder", "/c"), -1);
		CHECK_MSG(&e, "--in-folder");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/i", "--run", "1", "--constants-folder", "/c"), -1);
		CHECK_MSG(&e, "--out-folder");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/i", "--out-folder", "/o", "--constants-folder", "/c"),
			     -1);
		CHECK_MSG(&e, "--run");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/i", "--out-folder", "/o", "--run", "1"), -1);
		CHECK_MSG(&e, "--constants-folder");
		/* A dry run writes nothing: no output folder needed. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--in-folder", "/i", "--run", "1", "--constants-folder", "/c",
				   "--dry-run"),
			     0);
		CHECK_EQ_INT(c.dry_run, 1);
		/* An option without its value. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--photon-energy"), -1);
		CHECK_MSG(&e, "--photon-energy");
	}

	TEST("opts: bad values are refused, naming the option") {
		static const struct {
			const char *opt, *val, *name;
		} bad[] = {
			{ "--cells", "5:2", "--cells" },
			{ "--cells", "0:10:0", "--cells" },
			{ "--cells", "0:10:-1", "--cells" },
			{ "--cells", "5", "--cells" },
			{ "--cells", "a:b", "--cells" },
			{ "--cells", "1:2:3:4", "--cells" },
			{ "--modules", "16", "--modules" },
			{ "--modules", "0-16", "--modules" },
			{ "--modules", "x", "--modules" },
			{ "--modules", "3-1", "--modules" },
			{ "--modules", "-1", "--modules" },
			{ "--sequences", "y", "--sequences" },
			{ "--photon-energy", "-1", "--photon-energy" },
			{ "--photon-energy", "0", "--photon-energy" },
			{ "--photon-energy", "nan", "--photon-energy" },
			{ "--photon-energy", "9.3keV", "--photon-energy" },
			{ "--adu-per-kev", "-2", "--adu-per-kev" },
			{ "--gain-mode", "bogus", "--gain-mode" },
			{ "--data-dtype", "float64", "--data-dtype" },
			{ "--run", "abc", "--run" },
			{ "--run", "-3", "--run" },
			{ "--cm-dark-range", "30,-30", "--cm-dark-range" },
			{ "--cm-dark-range", "5", "--cm-dark-range" },
			{ "--cm-dark-fraction", "1.5", "--cm-dark-fraction" },
			{ "--cm-n-itr", "-1", "--cm-n-itr" },
			{ "--mg-hard-threshold", "x", "--mg-hard-threshold" },
			{ "--writer", "parallel", "--writer" },
			{ "--batch-frames", "0", "--batch-frames" },
			{ "--deflate-level", "10", "--deflate-level" },
			{ "--deflate-level", "0", "--deflate-level" },
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			rc = PARSE(&c, &what, &e, REQ, bad[i].opt, bad[i].val);
			if (rc != -1) {
				printf("  %s %s accepted\n", bad[i].opt, bad[i].val);
				unit_failed_++;
			}
			CHECK_MSG(&e, bad[i].name);
		}
		/* Combinations the SPEC refuses. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--data-dtype", "int16"), -1);
		CHECK_MSG(&e, "--data-dtype");
		CHECK_MSG(&e, "--round-photons");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--data-dtype", "int16", "--photon-energy", "9"), -1);
		CHECK_MSG(&e, "--round-photons");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--round-photons"), -1);
		CHECK_MSG(&e, "--photon-energy");
		/* --adu-per-kev alone is no error: it acts only with --photon-energy. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--adu-per-kev", "8"), 0);
		CHECK(c.params.adu_per_kev == 8 && c.params.photon_energy == 0);
		/* Unknown options and stray arguments. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--bogus"), -1);
		CHECK_MSG(&e, "--bogus");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--bogus=3"), -1);
		CHECK_MSG(&e, "--bogus");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "stray"), -1);
		CHECK_MSG(&e, "stray");
		/* A switch given a value. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--rel-gain=yes"), -1);
		CHECK_MSG(&e, "--rel-gain");
		/* The parser still works after all these failures. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--cells", "0:10"), 0);
		CHECK_EQ_INT(c.params.cells_stop, 10);
		CHECK_EQ_INT(c.params.cells_step, 1);
	}

	TEST("opts: --help and --version") {
		what = NULL;
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--help"), 1);
		CHECK(what && !strcmp(what, "help"));
		what = NULL;
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--version"), 1);
		CHECK(what && !strcmp(what, "version"));
		what = NULL;
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--rel-gain", "--help"), 1);
		CHECK(what && !strcmp(what, "help"));
		/* Help wins over missing required options and is not an error. */
		what = NULL;
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--run", "3", "--help"), 1);
		CHECK(what && !strcmp(what, "help"));
		/* The help text and the Markdown table name every option. */
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		CHECK(f != NULL);
		if (f) {
			agipd_opts_help(f, "agipd-correct");
			agipd_opts_markdown(f);
			fclose(f);
			for (int i = 0; i < agipd_noptions; i++) {
				char opt[128];
				snprintf(opt, sizeof opt, "--%s", agipd_options[i].name);
				int count = 0;
				for (const char *p = buf; (p = strstr(p, opt)) != NULL; p += strlen(opt))
					if (!(p[strlen(opt)] == '-' || (p[strlen(opt)] >= 'a' && p[strlen(opt)] <= 'z')))
						count++;
				if (count < 2) {
					printf("  %s appears %d times in help + markdown\n", opt, count);
					unit_failed_++;
				}
			}
			free(buf);
		}
	}

	TEST("opts: agipd_list_parse and agipd_list_has") {
		struct agipd_list l;
		CHECK_EQ_INT(agipd_list_parse(&l, "0-3,7,9-10"), 0);
		CHECK_EQ_INT(l.n, 3);
		static const long yes[] = { 0, 1, 2, 3, 7, 9, 10 }, no[] = { -1, 4, 5, 6, 8, 11, 100 };
		for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
			CHECK(agipd_list_has(&l, yes[i]));
		for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
			CHECK(!agipd_list_has(&l, no[i]));
		CHECK_EQ_INT(agipd_list_parse(&l, "5"), 0);
		CHECK(agipd_list_has(&l, 5) && !agipd_list_has(&l, 4) && !agipd_list_has(&l, 6));
		CHECK_EQ_INT(agipd_list_parse(&l, "4-4,2"), 0);
		CHECK(agipd_list_has(&l, 4) && agipd_list_has(&l, 2) && !agipd_list_has(&l, 3));
		static const char *const bad[] = { "", "x", "3-1", "-1", "1-", "1--2", ",1", "1,,2", "1;2", "2-x", "1 2" };
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
			if (agipd_list_parse(&l, bad[i]) != -1) {
				printf("  list '%s' accepted\n", bad[i]);
				unit_failed_++;
			}
		/* The empty list means everything. */
		l.n = 0;
		CHECK(agipd_list_has(&l, 0) && agipd_list_has(&l, 15) && agipd_list_has(&l, 12345));
		/* Too many ranges. */
		char big[AGIPD_LIST_MAX * 8 + 64];
		size_t pos = 0;
		for (int i = 0; i <= AGIPD_LIST_MAX; i++)
			pos += (size_t)snprintf(big + pos, sizeof big - pos, "%s%d", i ? "," : "", 2 * i);
		CHECK_EQ_INT(agipd_list_parse(&l, big), -1);
		pos = 0;
		for (int i = 0; i < AGIPD_LIST_MAX; i++)
			pos += (size_t)snprintf(big + pos, sizeof big - pos, "%s%d", i ? "," : "", 2 * i);
		CHECK_EQ_INT(agipd_list_parse(&l, big), 0);
		CHECK(agipd_list_has(&l, 2 * (AGIPD_LIST_MAX - 1)) && !agipd_list_has(&l, 1));
	}

	TEST("opts: --config file, overridden by the command line") {
		write_file("# a run configuration\n"
			   "\n"
			   "in-folder = /cfg/raw   # trailing comment\n"
			   "out-folder=/cfg/out\n"
			   "  run = 7\n"
			   "constants-folder = /cfg/consts\n"
			   "common-mode = true\n"
			   "rel-gain = false\n"
			   "ff-gain = true\n"
			   "--photon-energy = 9.3\n"
			   "modules = 0-3\n"
			   "cells = 0:100:2\n"
			   "gain-mode = fixed-high\n"
			   "cm-dark-range = -10,10\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--config", tmp_path), 0);
		CHECK(!strcmp(c.in_folder, "/cfg/raw"));
		CHECK(!strcmp(c.out_folder, "/cfg/out"));
		CHECK(!strcmp(c.constants_folder, "/cfg/consts"));
		CHECK_EQ_INT(c.run, 7);
		CHECK_EQ_INT(c.params.common_mode, 1);
		CHECK_EQ_INT(c.params.rel_gain, 0);
		CHECK_EQ_INT(c.params.ff_gain, 1);
		CHECK(c.params.photon_energy == 9.3);
		CHECK(agipd_list_has(&c.modules, 3) && !agipd_list_has(&c.modules, 4));
		CHECK_EQ_INT(c.params.cells_stop, 100);
		CHECK_EQ_INT(c.params.gain_mode, AGIPD_GAIN_FIXED_HIGH);
		CHECK_EQ_F32(c.params.cm_dark_lo, -10.0f);
		CHECK_VALUE(&c, "rel-gain", "false");
		CHECK_VALUE(&c, "ff-gain", "true");
		/* The command line wins, before or after --config. */
		char eq[128];
		snprintf(eq, sizeof eq, "--config=%s", tmp_path);
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--run", "8", "--config", tmp_path, "--out-folder", "/cli/out",
				   "--gain-mode", "adaptive", "--rel-gain", "--photon-energy", "12"),
			     0);
		CHECK_EQ_INT(c.run, 8);
		CHECK(!strcmp(c.out_folder, "/cli/out"));
		CHECK(!strcmp(c.in_folder, "/cfg/raw"));
		CHECK_EQ_INT(c.params.gain_mode, AGIPD_GAIN_ADAPTIVE);
		CHECK_EQ_INT(c.params.rel_gain, 1);
		CHECK(c.params.photon_energy == 12);
		CHECK_EQ_INT(PARSE(&c, &what, &e, eq, "--run", "9"), 0);
		CHECK_EQ_INT(c.run, 9);
		CHECK_EQ_INT(c.params.common_mode, 1);
		/* Switch spellings. */
		write_file("in-folder=/i\nout-folder=/o\nrun=1\nconstants-folder=/c\n"
			   "common-mode = false\nrel-gain = true\nff-gain=false\noverwrite = true\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, "--config", tmp_path), 0);
		CHECK_EQ_INT(c.params.common_mode, 0);
		CHECK_EQ_INT(c.params.rel_gain, 1);
		CHECK_EQ_INT(c.params.ff_gain, 0);
		CHECK_EQ_INT(c.overwrite, 1);
	}

	TEST("opts: bad config files") {
		write_file("in-folder = /i\nbogus-key = 3\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_MSG(&e, tmp_path);
		CHECK_MSG(&e, ":2");
		CHECK_MSG(&e, "bogus-key");
		write_file("run = abc\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_MSG(&e, ":1");
		CHECK_MSG(&e, "--run");
		write_file("# ok\ncommon-mode = maybe\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_MSG(&e, "common-mode");
		write_file("just some words\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_MSG(&e, tmp_path);
		write_file("config = /other\n");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", "/nonexistent/agipd.cfg"), -1);
		CHECK_MSG(&e, "/nonexistent/agipd.cfg");
	}

	TEST("opts: agipd_optparse_run with another table") {
		struct tiny_seen t;
		CHECK_EQ_INT(TINY(&t, &e, "--size", "5", "--name=x y", "--verbose", "-v"), 0);
		CHECK(!strcmp(t.log, "size=5;name=x y;verbose=(switch);verbose=(switch);"));
		CHECK_EQ_INT(TINY(&t, &e, "--size", "6"), -1);
		CHECK_MSG(&e, "bad value '6' for --size");
		CHECK_EQ_INT(TINY(&t, &e, "--verbose=1"), -1);
		CHECK_MSG(&e, "--verbose is a switch and takes no value");
		CHECK_EQ_INT(TINY(&t, &e, "--bogus"), -1);
		CHECK_MSG(&e, "unknown option --bogus");
		CHECK_EQ_INT(TINY(&t, &e, "--name"), -1);
		CHECK_MSG(&e, "--name needs a value");
		CHECK_EQ_INT(TINY(&t, &e, "--size", "4", "stray"), -1);
		CHECK_MSG(&e, "unexpected argument 'stray'");
		/* apply's 1 stops the parse: what follows is not looked at */
		CHECK_EQ_INT(TINY(&t, &e, "-h", "--bogus"), 1);
		CHECK_EQ_INT(TINY(&t, &e, "--size", "4", "--help", "stray"), 1);
		CHECK(!strcmp(t.log, "size=4;"));
		/* --help rows grouped by topic, with defaults */
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		CHECK(f != NULL);
		if (f) {
			agipd_optparse_help(f, tiny_rows, (int)(sizeof tiny_rows / sizeof tiny_rows[0]));
			fclose(f);
			CHECK(contains(buf, "\nShape:\n  --size N "));
			CHECK(contains(buf, "how many [default: 4]\n"));
			CHECK(contains(buf, "\nOther:\n  --verbose "));
			CHECK(!contains(buf, "what it is called [default"));
			free(buf);
		}
	}

	TEST("opts: agipd_opts_value round-trips") {
		static char v1[128][512], v2[128][512];
		CHECK(agipd_noptions <= 128);
		/* Every option set away from its default, then re-parsed from the values. */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--karabo-id", "MID_DET_AGIPD1M-1", "--modules", "0-3,7",
				   "--sequences", "2", "--overwrite", "--cells", "1:300:2", "--force-mg-if-below",
				   "--force-hg-if-below", "--mg-hard-threshold", "1200.5", "--hg-hard-threshold",
				   "0.1", "--common-mode", "--cm-dark-range", "-20.5,25", "--cm-dark-fraction", "0.3",
				   "--cm-n-itr", "7", "--rel-gain", "--adjust-mg-baseline", "--ff-gain",
				   "--photon-energy", "9.3", "--adu-per-kev", "7.7", "--round-photons",
				   "--rounding-threshold", "0.3", "--data-dtype", "int16", "--writer", "serial",
				   "--batch-frames", "17", "--deflate-level", "3", "--fail-fast", "--report",
				   "/r.json", "--verbose"),
			     0);
		if (agipd_noptions <= 128) {
			all_values(&c, v1);
			const char *args[3 * 128];
			char opt[128][160];
			int n = 0;
			for (int i = 0; i < agipd_noptions; i++) {
				const struct agipd_option *o = &agipd_options[i];
				if (is_special(o->name) || is_alias(o->name))
					continue;
				if (o->arg) {
					snprintf(opt[i], sizeof opt[i], "--%s", o->name);
					args[n++] = opt[i];
					args[n++] = v1[i];
				} else if (!strcmp(v1[i], "true")) {
					snprintf(opt[i], sizeof opt[i], "--%s", o->name);
					args[n++] = opt[i];
				} else {
					CHECK(!strcmp(v1[i], "false"));
				}
			}
			args[n] = NULL;
			rc = parse_v(&c2, &what, &e, args);
			if (rc)
				printf("  re-parse refused: %s\n", e.msg);
			CHECK_EQ_INT(rc, 0);
			all_values(&c2, v2);
			for (int i = 0; i < agipd_noptions; i++)
				if (strcmp(v1[i], v2[i]) != 0) {
					printf("  --%s: '%s' then '%s'\n", agipd_options[i].name, v1[i], v2[i]);
					unit_failed_++;
				}
			CHECK_VALUE(&c, "cells", "1:300:2");
			CHECK_VALUE(&c, "modules", "0-3,7");
			CHECK_VALUE(&c, "data-dtype", "int16");
			CHECK_VALUE(&c, "photon-energy", "9.3");
			CHECK_VALUE(&c, "adjust-mg-baseline", "true");
			CHECK_VALUE(&c, "overwrite", "true");
		}
		/* Names that have no value. */
		char buf[64];
		CHECK_EQ_INT(agipd_opts_value(&c, "help", buf, sizeof buf), -1);
		CHECK_EQ_INT(agipd_opts_value(&c, "version", buf, sizeof buf), -1);
		CHECK_EQ_INT(agipd_opts_value(&c, "config", buf, sizeof buf), -1);
		CHECK_EQ_INT(agipd_opts_value(&c, "no-such-option", buf, sizeof buf), -1);
		/* The default configuration's values are accepted back, too (the
		 * modules/sequences "all" and the open-ended cells aside). */
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ), 0);
		CHECK_VALUE(&c, "cells", "0::1");
		CHECK_EQ_INT(PARSE(&c2, &what, &e, REQ, "--cells", "0::1"), 0);
		CHECK(agipd_params_keep_cell(&c2.params, AGIPD_MAX_CELLS - 1));
		CHECK_VALUE(&c2, "cells", "0::1");
	}

	TEST("opts: values too long are refused, never cut") {
		/* A cut folder names another folder; a cut --cells another range. */
		static char longp[5000], edge[4096], cells[200], line[9000];
		memset(longp, 'a', sizeof longp - 1);
		longp[0] = '/';
		const char *folders[] = { "--in-folder", "--out-folder", "--constants-folder" };
		for (int i = 0; i < 3; i++) {
			CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, folders[i], longp), -1);
			CHECK_MSG(&e, folders[i]);
			CHECK_MSG(&e, "too long");
		}
		/* The longest folder accepted leaves AGIPD_NAME_ROOM bytes for names. */
		size_t maxf = sizeof c.out_folder - AGIPD_NAME_ROOM - 1;
		memset(edge, 'b', maxf);
		edge[0] = '/';
		edge[maxf] = 0;
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--out-folder", edge), 0);
		CHECK_EQ_INT(strlen(c.out_folder), maxf);
		edge[maxf] = 'b';
		edge[maxf + 1] = 0;
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--out-folder", edge), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--report", longp), -1);
		CHECK_MSG(&e, "--report");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", longp), -1);
		CHECK_MSG(&e, "--config");
		/* "0:000...016" (stop 16) of 128 characters: cut to 127 it would
		 * read as stop 1. */
		snprintf(cells, sizeof cells, "0:%0126d", 16);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--cells", cells), -1);
		CHECK_MSG(&e, "--cells");
		snprintf(cells, sizeof cells, "-1,%0125d", 16);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--common-mode", "--cm-dark-range", cells), -1);
		CHECK_MSG(&e, "--cm-dark-range");
		/* A config line longer than the line buffer is refused: its rest
		 * would read as a line of its own (here a comment whose end reads
		 * "common-mode = true"). */
		memset(line, 'x', 8191);
		memcpy(line, "# ", 2);
		snprintf(line + 8191, sizeof line - 8191, "common-mode = true\n");
		write_file(line);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--config", tmp_path), -1);
		CHECK_MSG(&e, "longer than");
	}

	TEST("opts: --mpi-info and AGIPD_MPI_INFO") {
		char k[64], v[64];
		const char *q = "romio_cb_write=enable, cb_nodes=4,striping_unit=4194304";
		CHECK_EQ_INT(agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v), 1);
		CHECK(!strcmp(k, "romio_cb_write") && !strcmp(v, "enable"));
		CHECK_EQ_INT(agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v), 1);
		CHECK(!strcmp(k, "cb_nodes") && !strcmp(v, "4"));
		CHECK_EQ_INT(agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v), 1);
		CHECK(!strcmp(k, "striping_unit") && !strcmp(v, "4194304"));
		CHECK_EQ_INT(agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v), 0);
		static const char *const bad[] = { "cb_nodes", "=4", "cb_nodes=", "cb nodes=4", "a=1,b" };
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			const char *b = bad[i];
			int r;
			while ((r = agipd_mpi_info_next(&b, k, sizeof k, v, sizeof v)) > 0)
				;
			CHECK_EQ_INT(r, -1);
		}
		q = "key_longer_than_the_buffer=1";
		CHECK_EQ_INT(agipd_mpi_info_next(&q, k, 8, v, sizeof v), -1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ), 0);
		CHECK_VALUE(&c, "mpi-info", "");
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--mpi-info", "romio_cb_write=disable,cb_nodes=2"), 0);
		CHECK(!strcmp(c.mpi_info, "romio_cb_write=disable,cb_nodes=2"));
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--mpi-info", "cb_nodes"), -1);
		CHECK_MSG(&e, "--mpi-info");
		/* the environment's hints, overridden by the option */
		setenv("AGIPD_MPI_INFO", "striping_factor=8", 1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ), 0);
		CHECK(!strcmp(c.mpi_info, "striping_factor=8"));
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ, "--mpi-info", "cb_nodes=1"), 0);
		CHECK(!strcmp(c.mpi_info, "cb_nodes=1"));
		setenv("AGIPD_MPI_INFO", "striping_factor", 1);
		CHECK_EQ_INT(PARSE(&c, &what, &e, REQ), -1);
		CHECK_MSG(&e, "AGIPD_MPI_INFO");
		unsetenv("AGIPD_MPI_INFO");
	}

	unlink(tmp_path);
	UNIT_EXIT();
}
