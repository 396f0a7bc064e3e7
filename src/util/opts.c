/*
 * opts.c - option table, command line and config-file parsing.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_opts.h"

const struct agipd_option agipd_options[] = {
	/* Input and output */
	{ "in-folder", "DIR", "Input and output", NULL,
	  "folder of the raw run: DIR/r{run:04d}/ when it exists, else DIR itself" },
	{ "out-folder", "DIR", "Input and output", NULL, "folder for the CORR files (not the input folder)" },
	{ "run", "N", "Input and output", NULL, "run number" },
	{ "karabo-id", "ID", "Input and output", AGIPD_DEFAULT_KARABO_ID, "detector; sources are ID/DET/{module}CH0:xtdf" },
	{ "modules", "LIST", "Input and output", "all found", "modules to correct, e.g. 0-3,7" },
	{ "karabo-da", "DA", "Input and output", "all found",
	  "modules to correct by name, e.g. AGIPD00,AGIPD03 or AGIPD00 AGIPD03 (xfel-calibrate's form); "
	  "instead of --modules" },
	{ "sequences", "LIST", "Input and output", "all found", "sequences to correct, e.g. 0-2" },
	{ "constants-folder", "DIR", "Input and output", NULL,
	  "folder with the constants files AGIPD{mm}.h5 (or --calibration-metadata)" },
	{ "calibration-metadata", "FILE", "Input and output", NULL,
	  "constants from the calibration database: the offline pipeline's calibration_metadata.yml "
	  "(instead of --constants-folder)" },
	{ "caldb-root", "DIR", "Input and output", "the YAML file's folder",
	  "store root that the paths of --calibration-metadata are relative to" },
	{ "overwrite", NULL, "Input and output", "off",
	  "replace existing CORR files (else complete ones made with the same options are skipped, incomplete ones "
	  "corrected again, others refused)" },
	{ "config", "FILE", "Input and output", NULL,
	  "read options from FILE (key = value, long option names); the command line overrides it" },
	/* Operating conditions (SPEC 6.1) */
	{ "karabo-id-control", "ID", "Operating conditions", AGIPD_DEFAULT_KARABO_ID_CONTROL,
	  "control devices: ID/MDL/FPGA_COMP, and the bias voltage of ID minus its last character + /PSC/HV" },
	{ "karabo-da-control", "DA", "Operating conditions", AGIPD_DEFAULT_KARABO_DA_CONTROL,
	  "control files RAW-R{run}-DA-S{seq}.h5 of the run folder" },
	{ "mem-cells", "N", "Operating conditions", "auto",
	  "memory cells; auto: control bunchStructure.nPulses, else from the cellIds" },
	{ "acq-rate", "MHZ", "Operating conditions", "auto",
	  "acquisition rate, MHz; auto: control bunchStructure.repetitionRate, else from the pulseIds" },
	{ "gain-setting", "G", "Operating conditions", "auto", "gain setting 0 or 1; auto: control gain (or setupr and patternTypeIndex)" },
	{ "gain-mode", "MODE", "Operating conditions", "from the run",
	  "adaptive, fixed-high, fixed-medium or fixed-low, or 0-3 (control gainModeIndex; adaptive when unknown)" },
	{ "integration-time", "T", "Operating conditions", "auto", "integration time; auto: control integrationTime (12 without the key)" },
	{ "bias-voltage", "V", "Operating conditions", "auto",
	  "sensor bias voltage, V; auto: control PSC/HV channels.U{module}.measurementSenseVoltage" },
	{ "ignore-conditions", NULL, "Operating conditions", "off",
	  "correct with constants whose conditions differ from the run's (a recorded warning, not a refusal)" },
	/* Correction (SPEC section 4) */
	{ "cells", "START:STOP:STEP", "Correction", "all", "keep frames whose cellId is in range(START, STOP, STEP)" },
	{ "max-pulses", "START STOP STEP", "Correction", "all",
	  "xfel-calibrate's form of --cells: STOP, START STOP or START STOP STEP (separate words or commas)" },
	{ "force-mg-if-below", NULL, "Correction", "off", "low gain becomes medium where A - Offset[1] < mg-hard-threshold" },
	{ "force-hg-if-below", NULL, "Correction", "off", "medium/low gain becomes high where A - Offset[1] < hg-hard-threshold" },
	{ "mg-hard-threshold", "X", "Correction", "1000", "threshold of --force-mg-if-below, ADU" },
	{ "hg-hard-threshold", "X", "Correction", "1000", "threshold of --force-hg-if-below, ADU" },
	{ "common-mode", NULL, "Correction", "off", "subtract the per-ASIC mean of dark high-gain pixels" },
	{ "cm-dark-range", "LO,HI", "Correction", "-30,30", "ADU range of the pixels counted as dark" },
	{ "cm-dark-fraction", "F", "Correction", "0.15", "fraction of an ASIC's pixels that must be dark" },
	{ "cm-n-itr", "N", "Correction", "4", "common-mode iterations" },
	{ "rel-gain", NULL, "Correction", "off", "relative gain from SlopesPC (medium and low gain)" },
	{ "adjust-mg-baseline", NULL, "Correction", "off", "shift medium gain by bl - bh*ml/mh (needs --rel-gain)" },
	{ "ff-gain", NULL, "Correction", "off", "flat-field correction from SlopesFF" },
	{ "photon-energy", "E", "Correction", "off", "convert to photons of E keV" },
	{ "adu-per-kev", "G", "Correction", "median of SlopesFF", "ADU per keV for --photon-energy" },
	{ "round-photons", NULL, "Correction", "off", "round to whole photons (needs --photon-energy)" },
	{ "rounding-threshold", "T", "Correction", "0.5", "fraction of a photon that rounds up" },
	{ "data-dtype", "TYPE", "Correction", "float32", "float32, float16, or int16 (needs --round-photons)" },
	/* Parallel I/O */
	{ "writer", "KIND", "Parallel I/O", "collective",
	  "collective (ranks write each file together; each compresses its own gain/mask chunks), "
	  "collective-h5filter (the same with HDF5's own filters inside the collective writes), "
	  "serial (one rank per file, HDF5's filters) or null (no output)" },
	{ "schedule", "KIND", "Parallel I/O", "groups",
	  "groups (the ranks split once into fixed groups, each correcting its run of files back to back, "
	  "balanced by frames) or rounds (files in rounds that end together)" },
	{ "io-transfer", "KIND", "Parallel I/O", "independent",
	  "independent (each rank writes its own frames' data chunks) or collective (MPI-IO collective "
	  "transfers of the float data); the collective writer, gain and mask as before" },
	{ "batch-frames", "N", "Parallel I/O", "128", "frames per rank and collective write; a batch is corrected grouped by memory cell" },
	{ "deflate-level", "L", "Parallel I/O", "1", "deflate level of gain and mask (1-9)" },
	{ "mpi-info", "KEY=VAL[,KEY=VAL]", "Parallel I/O", "none (env AGIPD_MPI_INFO)",
	  "MPI-IO hints of the collective writers' files (MPI_Info), e.g. romio_cb_write=enable,cb_nodes=4 or, on "
	  "Lustre/GPFS, striping_factor=8,striping_unit=4194304; the environment's AGIPD_MPI_INFO unless given" },
	/* Run control */
	{ "dry-run", NULL, "Run control", "off", "print which rank does which file and trains, touch no data" },
	{ "fail-fast", NULL, "Run control", "off", "stop at the first failed file" },
	{ "report", "PATH", "Run control", NULL, "write a JSON run report to PATH" },
	{ "preview", NULL, "Run control", "off",
	  "after the run, write OUT/preview.png: corrected data (all modules found), mask and gain stages of the first frame" },
	{ "quiet", NULL, "Run control", "off", "errors only" },
	{ "verbose", NULL, "Run control", "off", "more detail" },
	{ "help", NULL, "Run control", NULL, "this help" },
	{ "version", NULL, "Run control", NULL, "program version" },
};
const int agipd_noptions = (int)(sizeof agipd_options / sizeof agipd_options[0]);

int agipd_list_parse(struct agipd_list *l, const char *s)
{
	l->n = 0;
	if (!strcmp(s, "all"))
		return 0;   /* n == 0: everything */
	while (*s) {
		char *end;
		errno = 0;
		long lo = strtol(s, &end, 10), hi;
		if (end == s || lo < 0 || errno)
			return -1;
		s = end;
		hi = lo;
		if (*s == '-') {
			s++;
			hi = strtol(s, &end, 10);
			if (end == s || hi < lo || errno)
				return -1;
			s = end;
		}
		if (l->n == AGIPD_LIST_MAX)
			return -1;
		l->lo[l->n] = lo;
		l->hi[l->n] = hi;
		l->n++;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return l->n ? 0 : -1;
}


int agipd_list_has(const struct agipd_list *l, long v)
{
	if (l->n == 0)
		return 1;
	for (int i = 0; i < l->n; i++)
		if (v >= l->lo[i] && v <= l->hi[i])
			return 1;
	return 0;
}

int agipd_opts_double(const char *s, double *v)
{
	char *end;
	errno = 0;
	*v = strtod(s, &end);
	while (*end && isspace((unsigned char)*end))
		end++;
	return end == s || *end || errno || !isfinite(*v) ? -1 : 0;
}

int agipd_opts_long(const char *s, long *v)
{
	char *end;
	errno = 0;
	*v = strtol(s, &end, 10);
	return end == s || *end || errno ? -1 : 0;
}

int agipd_opts_int(const char *s, long lo, long hi, int *out)
{
	long v;
	if (agipd_opts_long(s, &v) < 0 || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

int agipd_opts_u64(const char *s, int base, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* The option that gives each condition. */
static const char *const cond_opt[AGIPD_NCOND] = {
	"mem-cells", "acq-rate", "gain-setting", "gain-mode", "integration-time", "bias-voltage",
};

static int is_cond_opt(const char *name)
{
	for (int i = 0; i < AGIPD_NCOND; i++)
		if (!strcmp(name, cond_opt[i]))
			return 1;
	return 0;
}

/* Integers separated by spaces or commas: up to max of them; the count, or
 * -1 when something else is there. */
static int parse_words(const char *s, long *v, int max)
{
	char buf[256], *save = NULL;
	int n = 0;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *t = strtok_r(buf, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
		if (n == max || agipd_opts_long(t, &v[n]) || v[n] < 0)
			return -1;
		n++;
	}
	return n;
}

/* "AGIPD00,AGIPD03" or "AGIPD00 AGIPD03" into a module list. */
static int parse_karabo_da(struct agipd_list *l, const char *s)
{
	char buf[4096], *save = NULL;
	l->n = 0;
	if (!strcmp(s, "all"))
		return 0;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *t = strtok_r(buf, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
		int m, k = 0;
		if (sscanf(t, "AGIPD%2d%n", &m, &k) != 1 || t[k] || k != 7 || m < 0 || m >= AGIPD_MODULES ||
		    l->n == AGIPD_LIST_MAX)
			return -1;
		l->lo[l->n] = l->hi[l->n] = m;
		l->n++;
	}
	return l->n ? 0 : -1;
}

int agipd_mpi_info_next(const char **s, char *key, size_t klen, char *val, size_t vlen)
{
	const char *p = *s;
	while (*p == ',' || *p == ' ')
		p++;
	if (!*p) {
		*s = p;
		return 0;
	}
	const char *eq = strchr(p, '='), *end = strchr(p, ',');
	if (!end)
		end = p + strlen(p);
	if (!eq || eq > end || eq == p || eq + 1 == end || (size_t)(eq - p) >= klen || (size_t)(end - eq - 1) >= vlen)
		return -1;
	memcpy(key, p, (size_t)(eq - p));
	key[eq - p] = 0;
	memcpy(val, eq + 1, (size_t)(end - eq - 1));
	val[end - eq - 1] = 0;
	for (const char *q = key; *q; q++)
		if (isspace((unsigned char)*q))
			return -1;
	*s = end;
	return 1;
}

static void set_defaults(struct agipd_config *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->karabo_id, sizeof c->karabo_id, "%s", AGIPD_DEFAULT_KARABO_ID);
	c->run = -1;
	agipd_params_default(&c->params);
	c->writer = AGIPD_WRITE_COLLECTIVE;
	c->schedule = AGIPD_SCHEDULE_GROUPS;
	c->io_transfer = AGIPD_IO_INDEPENDENT;
	c->batch_frames = 128;
	c->deflate_level = 1;
	c->verbosity = 1;
	snprintf(c->karabo_id_control, sizeof c->karabo_id_control, "%s", AGIPD_DEFAULT_KARABO_ID_CONTROL);
	snprintf(c->karabo_da_control, sizeof c->karabo_da_control, "%s", AGIPD_DEFAULT_KARABO_DA_CONTROL);
}

/* The option handlers below share these: the value an option needs, a
 * refused value with the reason, a condition given on the command line. */
#define BADVAL(why) return agipd_err_set(e, "--%s %s: %s", name, val, why)
#define SET_COND(i, v) do { c->cond_given[i] = 1; c->cond_value[i] = (double)(v); } while (0)
/* A text value that does not fit is refused, never cut: a cut path names
 * another file.  Folders leave AGIPD_NAME_ROOM bytes for the names built
 * under them. */
#define SET_STR(dst, room)                                                              \
	do {                                                                            \
		if (strlen(val) + (room) >= sizeof(dst)) {                              \
			agipd_err_set(e, "--%s: value of %zu characters is too long (at most %zu)", \
				      name, strlen(val), sizeof(dst) - (room) - 1);          \
			return -1;                                                      \
		}                                                                       \
		memcpy(dst, val, strlen(val) + 1);                                      \
	} while (0)

/* A number option stored as float: any finite number. */
static int set_float(float *dst, const char *name, const char *val, agipd_err *e)
{
	double d;
	if (agipd_opts_double(val, &d))
		BADVAL("not a number");
	*dst = (float)d;
	return 0;
}

/* A switch (an option of no value): sets its int of the configuration. */
static void apply_switch(struct agipd_config *c, const char *name)
{
	struct agipd_params *p = &c->params;
	const struct {
		const char *name;
		int *field, value;
	} sw[] = {
		{ "overwrite", &c->overwrite, 1 },
		{ "ignore-conditions", &c->ignore_conditions, 1 },
		{ "force-mg-if-below", &p->force_mg_if_below, 1 },
		{ "force-hg-if-below", &p->force_hg_if_below, 1 },
		{ "common-mode", &p->common_mode, 1 },
		{ "rel-gain", &p->rel_gain, 1 },
		{ "adjust-mg-baseline", &p->adjust_mg_baseline, 1 },
		{ "ff-gain", &p->ff_gain, 1 },
		{ "round-photons", &p->round_photons, 1 },
		{ "dry-run", &c->dry_run, 1 },
		{ "fail-fast", &c->fail_fast, 1 },
		{ "preview", &c->preview, 1 },
		{ "quiet", &c->verbosity, 0 },
		{ "verbose", &c->verbosity, 2 },
	};
	for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++)
		if (!strcmp(name, sw[i].name))
			*sw[i].field = sw[i].value;
}

/* Each handler applies one option with a value of its group of the table
 * (name without "--"; the switches are apply_switch()'s). */

/* Input and output: folders, the run, which modules and sequences. */
static int apply_input_output(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	long l;
	if (!strcmp(name, "in-folder"))
		SET_STR(c->in_folder, AGIPD_NAME_ROOM);
	else if (!strcmp(name, "out-folder"))
		SET_STR(c->out_folder, AGIPD_NAME_ROOM);
	else if (!strcmp(name, "constants-folder"))
		SET_STR(c->constants_folder, AGIPD_NAME_ROOM);
	else if (!strcmp(name, "calibration-metadata"))
		SET_STR(c->calibration_metadata, 0);
	else if (!strcmp(name, "caldb-root"))
		SET_STR(c->caldb_root, AGIPD_NAME_ROOM);
	else if (!strcmp(name, "karabo-id"))
		SET_STR(c->karabo_id, 0);
	else if (!strcmp(name, "config"))
		SET_STR(c->config_file, 0);
	else if (!strcmp(name, "run")) {
		if (agipd_opts_long(val, &l) || l < 0 || l > 99999)
			BADVAL("not a run number");
		c->run = l;
	} else if (!strcmp(name, "karabo-da")) {
		if (parse_karabo_da(&c->modules, val) < 0)
			BADVAL("expected AGIPD00..AGIPD15, separated by commas or spaces");
		c->karabo_da_given = 1;
	} else if (!strcmp(name, "modules")) {
		if (agipd_list_parse(&c->modules, val))
			BADVAL("expected a list like 0-3,7");
		c->modules_given = 1;
		for (int i = 0; i < c->modules.n; i++)
			if (c->modules.hi[i] >= AGIPD_MODULES)
				BADVAL("AGIPD1M has modules 0-15 only");
	} else if (!strcmp(name, "sequences")) {
		if (agipd_list_parse(&c->sequences, val))
			BADVAL("expected a list like 0-2,5");
	}
	return 0;
}

/* --gain-mode: a name or its number 0-3. */
static int apply_gain_mode(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	if (!strcmp(val, "adaptive") || !strcmp(val, "0"))
		p->gain_mode = AGIPD_GAIN_ADAPTIVE;
	else if (!strcmp(val, "fixed-high") || !strcmp(val, "1"))
		p->gain_mode = AGIPD_GAIN_FIXED_HIGH;
	else if (!strcmp(val, "fixed-medium") || !strcmp(val, "2"))
		p->gain_mode = AGIPD_GAIN_FIXED_MEDIUM;
	else if (!strcmp(val, "fixed-low") || !strcmp(val, "3"))
		p->gain_mode = AGIPD_GAIN_FIXED_LOW;
	else
		BADVAL("expected adaptive, fixed-high, fixed-medium or fixed-low (or 0-3)");
	SET_COND(AGIPD_COND_GAIN_MODE, p->gain_mode);
	return 0;
}

/* Operating conditions: the control sources and the conditions given
 * instead of read from the run ("auto": read from the run again). */
static int apply_conditions(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	double d;
	long l;
	if (!strcmp(name, "karabo-id-control"))
		SET_STR(c->karabo_id_control, 0);
	else if (!strcmp(name, "karabo-da-control"))
		SET_STR(c->karabo_da_control, 0);
	else if (is_cond_opt(name) && strcmp(name, "gain-mode") && !strcmp(val, "auto")) {
		/* auto: from the run (undoes a value of a config file) */
		for (int i = 0; i < AGIPD_NCOND; i++)
			if (!strcmp(name, cond_opt[i]))
				c->cond_given[i] = 0;
	} else if (!strcmp(name, "mem-cells")) {
		if (agipd_opts_long(val, &l) || l < 1 || l > AGIPD_MAX_CELLS)
			BADVAL("expected 1..352");
		SET_COND(AGIPD_COND_MEM_CELLS, l);
	} else if (!strcmp(name, "acq-rate")) {
		if (agipd_opts_double(val, &d) || !(d > 0) || d > 100)
			BADVAL("expected a rate in MHz, e.g. 1.1");
		SET_COND(AGIPD_COND_ACQ_RATE, d);
	} else if (!strcmp(name, "gain-setting")) {
		if (agipd_opts_long(val, &l) || l < 0 || l > 1)
			BADVAL("expected 0 or 1");
		SET_COND(AGIPD_COND_GAIN_SETTING, l);
	} else if (!strcmp(name, "integration-time")) {
		if (agipd_opts_double(val, &d) || d < 0)
			BADVAL("expected a non-negative number");
		SET_COND(AGIPD_COND_INTEG_TIME, d);
	} else if (!strcmp(name, "bias-voltage")) {
		if (agipd_opts_double(val, &d) || d < 0 || d > 10000)
			BADVAL("expected a voltage in V");
		SET_COND(AGIPD_COND_BIAS, d);
	} else if (!strcmp(name, "gain-mode"))
		return apply_gain_mode(c, name, val, e);
	return 0;
}

/* --cells START:STOP[:STEP] (an empty START or STOP: its default). */
static int apply_cells(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	long v[3] = { 0, AGIPD_MAX_CELLS * 1000L, 1 };
	char buf[128], *s = buf, *tok;
	int i = 0;
	if (snprintf(buf, sizeof buf, "%s", val) >= (int)sizeof buf)
		BADVAL("too long");
	while ((tok = strsep(&s, ":")) != NULL) {
		if (i == 3)
			BADVAL("expected START:STOP:STEP");
		if (*tok && (agipd_opts_long(tok, &v[i]) || v[i] < 0))
			BADVAL("expected START:STOP:STEP with non-negative integers");
		i++;
	}
	if (i < 2)
		BADVAL("expected START:STOP or START:STOP:STEP");
	if (v[2] <= 0)
		BADVAL("STEP must be positive");
	if (v[1] <= v[0])
		BADVAL("STOP must be greater than START");
	p->cells_start = v[0];
	p->cells_stop = v[1];
	p->cells_step = v[2];
	c->cells_given = 1;
	return 0;
}

/* --max-pulses STOP, START STOP or START STOP STEP, or --cells' form, as
 * agipd_opts_value() writes it. */
static int apply_max_pulses(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	long v[3];
	if (strchr(val, ':')) {
		if (apply_cells(c, "cells", val, e) < 0)
			return -1;
		c->cells_given = 0;
		c->max_pulses_given = 1;
		return 0;
	}
	int n = parse_words(val, v, 3);
	if (n < 1)
		BADVAL("expected STOP, START STOP or START STOP STEP (non-negative integers)");
	long st = n == 1 ? 0 : v[0], stop = n == 1 ? v[0] : v[1], step = n == 3 ? v[2] : 1;
	if (step <= 0)
		BADVAL("STEP must be positive");
	if (stop <= st)
		BADVAL("STOP must be greater than START");
	p->cells_start = st;
	p->cells_stop = stop;
	p->cells_step = step;
	c->max_pulses_given = 1;
	return 0;
}

/* The --cm-* settings of --common-mode. */
static int apply_common_mode(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	double d;
	long l;
	if (!strcmp(name, "cm-dark-range")) {
		char buf[128], *comma;
		double lo, hi;
		if (snprintf(buf, sizeof buf, "%s", val) >= (int)sizeof buf)
			BADVAL("too long");
		comma = strchr(buf, ',');
		if (!comma)
			BADVAL("expected LO,HI");
		*comma = 0;
		if (agipd_opts_double(buf, &lo) || agipd_opts_double(comma + 1, &hi) || lo > hi)
			BADVAL("expected LO,HI with LO <= HI");
		p->cm_dark_lo = (float)lo;
		p->cm_dark_hi = (float)hi;
	} else if (!strcmp(name, "cm-dark-fraction")) {
		if (agipd_opts_double(val, &d) || d < 0 || d > 1)
			BADVAL("expected a fraction in [0, 1]");
		p->cm_dark_fraction = d;
	} else if (!strcmp(name, "cm-n-itr")) {
		if (agipd_opts_long(val, &l) || l < 0 || l > 1000)
			BADVAL("expected 0..1000");
		p->cm_n_itr = (int)l;
	}
	return 0;
}

/* Photons and the stored type: --photon-energy, --adu-per-kev,
 * --rounding-threshold, --data-dtype. */
static int apply_photons(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	double d;
	if (!strcmp(name, "photon-energy")) {
		if (agipd_opts_double(val, &d) || !(d > 0))
			BADVAL("photon energy must be a positive number of keV");
		p->photon_energy = d;
	} else if (!strcmp(name, "adu-per-kev")) {
		if (agipd_opts_double(val, &d) || !(d > 0))
			BADVAL("must be a positive number");
		p->adu_per_kev = d;
	} else if (!strcmp(name, "rounding-threshold"))
		return set_float(&p->rounding_threshold, name, val, e);
	else if (!strcmp(name, "data-dtype")) {
		if (!strcmp(val, "float32"))
			p->data_dtype = AGIPD_DTYPE_FLOAT32;
		else if (!strcmp(val, "float16"))
			p->data_dtype = AGIPD_DTYPE_FLOAT16;
		else if (!strcmp(val, "int16"))
			p->data_dtype = AGIPD_DTYPE_INT16;
		else
			BADVAL("expected float32, float16 or int16");
	}
	return 0;
}

/* Correction: the frames kept, the gain thresholds, common mode,
 * photons. */
static int apply_correction(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	struct agipd_params *p = &c->params;
	if (!strcmp(name, "cells"))
		return apply_cells(c, name, val, e);
	if (!strcmp(name, "max-pulses"))
		return apply_max_pulses(c, name, val, e);
	if (!strncmp(name, "cm-", 3))
		return apply_common_mode(c, name, val, e);
	if (!strcmp(name, "mg-hard-threshold"))
		return set_float(&p->mg_hard_threshold, name, val, e);
	if (!strcmp(name, "hg-hard-threshold"))
		return set_float(&p->hg_hard_threshold, name, val, e);
	return apply_photons(c, name, val, e);
}

/* Parallel I/O: the writer, its batches, compression and MPI-IO hints. */
static int apply_parallel_io(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	long l;
	if (!strcmp(name, "writer")) {
		if (!strcmp(val, "collective"))
			c->writer = AGIPD_WRITE_COLLECTIVE;
		else if (!strcmp(val, "serial"))
			c->writer = AGIPD_WRITE_SERIAL;
		else if (!strcmp(val, "null"))
			c->writer = AGIPD_WRITE_NULL;
		else if (!strcmp(val, "collective-h5filter"))
			c->writer = AGIPD_WRITE_H5FILTER;
		else
			BADVAL("expected collective, collective-h5filter, serial or null");
	} else if (!strcmp(name, "schedule")) {
		if (!strcmp(val, "groups"))
			c->schedule = AGIPD_SCHEDULE_GROUPS;
		else if (!strcmp(val, "rounds"))
			c->schedule = AGIPD_SCHEDULE_ROUNDS;
		else
			BADVAL("expected groups or rounds");
	} else if (!strcmp(name, "io-transfer")) {
		if (!strcmp(val, "collective"))
			c->io_transfer = AGIPD_IO_COLLECTIVE;
		else if (!strcmp(val, "independent"))
			c->io_transfer = AGIPD_IO_INDEPENDENT;
		else
			BADVAL("expected collective or independent");
	} else if (!strcmp(name, "batch-frames")) {
		if (agipd_opts_long(val, &l) || l < 1 || l > 4096)
			BADVAL("expected 1..4096");
		c->batch_frames = (int)l;
	} else if (!strcmp(name, "deflate-level")) {
		if (agipd_opts_long(val, &l) || l < 1 || l > 9)
			BADVAL("expected 1..9");
		c->deflate_level = (int)l;
	} else if (!strcmp(name, "mpi-info")) {
		char k[AGIPD_MPI_INFO_LEN], v[AGIPD_MPI_INFO_LEN];
		const char *q = val;
		int r;
		while ((r = agipd_mpi_info_next(&q, k, sizeof k, v, sizeof v)) > 0)
			;
		if (r < 0)
			BADVAL("expected KEY=VALUE pairs separated by commas (e.g. romio_cb_write=enable,cb_nodes=2)");
		SET_STR(c->mpi_info, 0);
	}
	return 0;
}

/* Run control (--help and --version are apply()'s). */
static int apply_run_control(struct agipd_config *c, const char *name, const char *val, agipd_err *e)
{
	if (!strcmp(name, "report"))
		SET_STR(c->report, 8);   /* PATH.tmp */
	return 0;
}
#undef BADVAL
#undef SET_COND
#undef SET_STR

/* The handler of each group of the option table. */
static const struct {
	const char *group;
	int (*apply)(struct agipd_config *c, const char *name, const char *val, agipd_err *e);
} group_handlers[] = {
	{ "Input and output", apply_input_output },
	{ "Operating conditions", apply_conditions },
	{ "Correction", apply_correction },
	{ "Parallel I/O", apply_parallel_io },
	{ "Run control", apply_run_control },
};

/* Apply one option (name without "--"; val NULL for a switch). */
static int apply(struct agipd_config *c, const char *name, const char *val, const char **what, agipd_err *e)
{
	if (!strcmp(name, "help") || !strcmp(name, "version")) {
		*what = !strcmp(name, "help") ? "help" : "version";
		return 0;
	}
	const struct agipd_option *o = NULL;
	for (int i = 0; i < agipd_noptions; i++)
		if (!strcmp(agipd_options[i].name, name))
			o = &agipd_options[i];
	if (!o)
		return agipd_err_set(e, "unknown option --%s (see --help)", name);
	if (!o->arg) {
		if (val)
			return agipd_err_set(e, "--%s takes no value", name);
		apply_switch(c, name);
		return 0;
	}
	if (!val)
		return agipd_err_set(e, "--%s needs a value", name);
	for (size_t i = 0; i < sizeof group_handlers / sizeof group_handlers[0]; i++)
		if (!strcmp(o->group, group_handlers[i].group))
			return group_handlers[i].apply(c, name, val, e);
	return 0;
}

/* key = value lines; '#' starts a comment; a switch takes true/false. */
static int read_config(struct agipd_config *c, const char *path, const char **what, agipd_err *e)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	int ln = 0, seen[128] = { 0 };   /* line of each key, 0 = not yet */
	if (!f)
		return agipd_err_set(e, "%s: cannot read config file: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		ln++;
		if (!strchr(line, '\n') && !feof(f)) {   /* the rest would read as another line */
			fclose(f);
			return agipd_err_set(e, "%s:%d: line longer than %zu characters", path, ln, sizeof line - 2);
		}
		char *s = line, *hash = strchr(s, '#'), *eq, *k, *v;
		if (hash)
			*hash = 0;
		while (isspace((unsigned char)*s))
			s++;
		for (char *end = s + strlen(s); end > s && isspace((unsigned char)end[-1]);)
			*--end = 0;
		if (!*s)
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			fclose(f);
			return agipd_err_set(e, "%s:%d: expected key = value", path, ln);
		}
		*eq = 0;
		k = s;
		v = eq + 1;
		for (char *end = k + strlen(k); end > k && isspace((unsigned char)end[-1]);)
			*--end = 0;
		while (isspace((unsigned char)*v))
			v++;
		if (!strncmp(k, "--", 2))
			k += 2;
		const struct agipd_option *o = NULL;
		for (int i = 0; i < agipd_noptions; i++)
			if (!strcmp(agipd_options[i].name, k))
				o = &agipd_options[i];
		if (!o || !strcmp(k, "config") || !strcmp(k, "help") || !strcmp(k, "version")) {
			fclose(f);
			return agipd_err_set(e, "%s:%d: unknown key '%s'", path, ln, k);
		}
		/* Which one would count is a guess the file should not need. */
		int oi = (int)(o - agipd_options);
		if (oi < (int)(sizeof seen / sizeof seen[0]) && seen[oi]) {
			int first = seen[oi];
			fclose(f);
			return agipd_err_set(e, "%s:%d: key '%s' given twice (first on line %d)", path, ln, k, first);
		}
		if (oi < (int)(sizeof seen / sizeof seen[0]))
			seen[oi] = ln;
		int rc;
		if (!o->arg) {
			if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1") || !*v)
				rc = apply(c, k, NULL, what, e);
			else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
				rc = 0;
			else
				rc = agipd_err_set(e, "%s:%d: %s is a switch: true or false", path, ln, k);
		} else {
			rc = apply(c, k, v, what, e);
		}
		if (rc) {
			char msg[AGIPD_ERRLEN];
			snprintf(msg, sizeof msg, "%s", e->msg);
			fclose(f);
			return agipd_err_set(e, "%s:%d: %s", path, ln, msg);
		}
	}
	fclose(f);
	return 0;
}

/* argv into av, the words of --karabo-da and --max-pulses up to the next
 * option joined into one value (malloc, listed in joined[0..*nj)).
 * Returns the count of av. */
static int join_words(int argc, char **argv, char **av, char **joined, int *nj)
{
	int ac = 0;
	for (int i = 0; i < argc; i++) {
		av[ac++] = argv[i];
		if (i == 0 || (strcmp(argv[i], "--karabo-da") && strcmp(argv[i], "--max-pulses")))
			continue;
		int j = i + 1;
		size_t len = 1;
		while (j < argc && strncmp(argv[j], "--", 2))
			len += strlen(argv[j++]) + 1;
		if (j - i < 3)
			continue;   /* one word (or none): as any option */
		char *v = malloc(len);
		if (!v)
			continue;
		v[0] = 0;
		for (int q = i + 1; q < j; q++)
			strcat(strcat(v, q > i + 1 ? " " : ""), argv[q]);
		joined[(*nj)++] = v;
		av[ac++] = v;
		i = j - 1;
	}
	return ac;
}

/* What a configuration needs, and options that exclude each other. */
static int check_config(const struct agipd_config *c, agipd_err *e)
{
	if (!c->in_folder[0])
		return agipd_err_set(e, "--in-folder is required");
	if (!c->out_folder[0] && !c->dry_run)
		return agipd_err_set(e, "--out-folder is required");
	if (c->run < 0)
		return agipd_err_set(e, "--run is required");
	if (c->constants_folder[0] && c->calibration_metadata[0])
		return agipd_err_set(e, "--constants-folder and --calibration-metadata exclude each other");
	if (!c->constants_folder[0] && !c->calibration_metadata[0])
		return agipd_err_set(e, "--constants-folder or --calibration-metadata is required");
	if (c->caldb_root[0] && !c->calibration_metadata[0])
		return agipd_err_set(e, "--caldb-root needs --calibration-metadata");
	if (c->modules_given && c->karabo_da_given)
		return agipd_err_set(e, "--modules and --karabo-da are alternatives: give one");
	if (c->cells_given && c->max_pulses_given)
		return agipd_err_set(e, "--cells and --max-pulses are alternatives: give one");
	char msg[AGIPD_ERRLEN];
	if (agipd_params_check(&c->params, msg, sizeof msg) < 0)
		return agipd_err_set(e, "%s", msg);
	return 0;
}

int agipd_optparse_run(const struct agipd_optparse *p, int argc, char **argv, agipd_err *e)
{
	struct option *lo = calloc((size_t)p->n + 1, sizeof *lo);
	char shorts[64] = "+";
	int rc = 0;
	if (!lo)
		return agipd_err_set(e, "out of memory");
	for (int i = 0; i < p->n; i++) {
		lo[i].name = p->rows[i].name;
		lo[i].has_arg = p->rows[i].arg ? required_argument : no_argument;
		lo[i].val = 1000 + i;
	}
	if (p->shorts)
		snprintf(shorts + 1, sizeof shorts - 1, "%s", p->shorts);
	optind = 1;
	opterr = 0;
	for (;;) {
		int ch = getopt_long(argc, argv, shorts, lo, NULL);
		if (ch == -1)
			break;
		const struct agipd_option *o = ch >= 1000 && ch < 1000 + p->n ? &p->rows[ch - 1000] : NULL;
		for (int i = 0; !o && ch < 1000 && ch != '?' && ch != ':' && i < p->n; i++)
			if (p->rows[i].name[0] == ch && !p->rows[i].arg)
				o = &p->rows[i];   /* a one-letter alias */
		if (!o) {
			const char *bad = argv[optind - 1];
			o = optopt >= 1000 && optopt < 1000 + p->n ? &p->rows[optopt - 1000] : NULL;
			if (o && !o->arg)
				rc = agipd_err_set(e, "%s: --%s is a switch and takes no value (give it for on, leave it "
						   "out for off)", bad, o->name);
			else
				rc = optopt ? agipd_err_set(e, "%s needs a value", bad)
					    : agipd_err_set(e, "unknown option %s (see --help)", bad);
			break;
		}
		rc = p->apply(p->ctx, o->name, o->arg ? optarg : NULL, e);
		if (rc)
			break;
	}
	if (rc == 0 && optind < argc)
		rc = agipd_err_set(e, "unexpected argument '%s' (options start with --)", argv[optind]);
	free(lo);
	return rc < 0 ? -1 : rc;
}

struct parse_ctx {
	struct agipd_config *c;
	const char **what;
};

/* apply() for the command line: stop at --help and --version. */
static int apply_arg(void *ctx, const char *name, const char *val, agipd_err *e)
{
	struct parse_ctx *p = ctx;
	if (apply(p->c, name, val, p->what, e) < 0)
		return -1;
	return *p->what ? 1 : 0;
}

int agipd_opts_parse(struct agipd_config *c, int argc, char **argv, const char **what, agipd_err *e)
{
	*what = NULL;
	set_defaults(c);
	/* The command line, for the provenance. */
	size_t pos = 0;
	for (int i = 0; i < argc && pos < sizeof c->command_line - 1; i++)
		pos += (size_t)snprintf(c->command_line + pos, sizeof c->command_line - pos, "%s%s", i ? " " : "",
					argv[i]);
	/* MPI-IO hints from the environment; --mpi-info (file or command line)
	 * overrides them. */
	const char *env_info = getenv("AGIPD_MPI_INFO");
	if (env_info && *env_info && apply(c, "mpi-info", env_info, what, e) < 0) {
		char msg[AGIPD_ERRLEN];
		snprintf(msg, sizeof msg, "%s", e->msg);
		return agipd_err_set(e, "AGIPD_MPI_INFO: %s", msg);
	}
	/* First pass: only --config, which the other options then override. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		if (!strcmp(a, "--config") && i + 1 < argc)
			v = argv[i + 1];
		else if (!strncmp(a, "--config=", 9))
			v = a + 9;
		if (v && snprintf(c->config_file, sizeof c->config_file, "%s", v) >= (int)sizeof c->config_file)
			return agipd_err_set(e, "--config: value of %zu characters is too long (at most %zu)", strlen(v),
					     sizeof c->config_file - 1);
	}
	if (c->config_file[0] && read_config(c, c->config_file, what, e) < 0)
		return -1;
	/* xfel-calibrate takes --karabo-da and --max-pulses as several words
	 * ("--karabo-da AGIPD00 AGIPD03", "--max-pulses 0 352 2"): join the
	 * words up to the next option into one value. */
	char **av = calloc((size_t)argc + 1, sizeof *av), **joined = calloc((size_t)argc + 1, sizeof *joined);
	int nj = 0;
	if (!av || !joined) {
		free(av);
		free(joined);
		return agipd_err_set(e, "out of memory");
	}
	int ac = join_words(argc, argv, av, joined, &nj);
	struct parse_ctx ctx = { c, what };
	struct agipd_optparse p = { agipd_options, agipd_noptions, NULL, apply_arg, &ctx };
	int rc = agipd_optparse_run(&p, ac, av, e);
	for (int i = 0; i < nj; i++)
		free(joined[i]);
	free(joined);
	free(av);
	if (rc)
		return rc;
	return check_config(c, e);
}

void agipd_optparse_help(FILE *f, const struct agipd_option *rows, int n)
{
	const char *group = NULL;
	for (int i = 0; i < n; i++) {
		const struct agipd_option *o = &rows[i];
		char lhs[64];
		if (!group || strcmp(group, o->group)) {
			group = o->group;
			fprintf(f, "\n%s:\n", group);
		}
		snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-30s %s", lhs, o->help);
		if (o->def)
			fprintf(f, " [default: %s]", o->def);
		fputc('\n', f);
	}
}

void agipd_opts_help(FILE *f, const char *prog)
{
	fprintf(f, "Usage: mpirun -np N %s --in-folder DIR --out-folder DIR --run N\n"
		   "           (--constants-folder DIR | --calibration-metadata FILE) [options]\n"
		   "\nCorrects raw AGIPD data (EXDF) into CORR files with collective parallel HDF5.\n", prog);
	agipd_optparse_help(f, agipd_options, agipd_noptions);
	fprintf(f, "\nExit status: 0 all files corrected (or skipped as complete), 1 some file failed,\n"
		   "2 bad options or setup, 3 interrupted (SIGTERM/SIGINT).\n");
}

void agipd_opts_markdown(FILE *f)
{
	const char *group = NULL;
	for (int i = 0; i < agipd_noptions; i++) {
		const struct agipd_option *o = &agipd_options[i];
		if (!group || strcmp(group, o->group)) {
			group = o->group;
			fprintf(f, "\n### %s\n\n| option | default | meaning |\n|---|---|---|\n", group);
		}
		fprintf(f, "| `--%s%s%s` | %s | %s |\n", o->name, o->arg ? " " : "", o->arg ? o->arg : "",
			o->def ? o->def : "", o->help);
	}
}

static void list_text(const struct agipd_list *l, char *buf, size_t len)
{
	size_t pos = 0;
	if (l->n == 0) {
		snprintf(buf, len, "all");
		return;
	}
	buf[0] = 0;
	for (int i = 0; i < l->n && pos < len; i++) {
		if (l->lo[i] == l->hi[i])
			pos += (size_t)snprintf(buf + pos, len - pos, "%s%ld", i ? "," : "", l->lo[i]);
		else
			pos += (size_t)snprintf(buf + pos, len - pos, "%s%ld-%ld", i ? "," : "", l->lo[i], l->hi[i]);
	}
}

int agipd_opts_value(const struct agipd_config *c, const char *name, char *buf, size_t len)
{
	const struct agipd_params *p = &c->params;
	static const char *const gm[] = { "adaptive", "fixed-high", "fixed-medium", "fixed-low" };
	static const char *const dt[] = { "float32", "float16", "int16" };
	static const char *const wr[] = { "collective", "serial", "null", "collective-h5filter" };
#define B(x) snprintf(buf, len, "%s", (x) ? "true" : "false")
#define S(x) snprintf(buf, len, "%s", x)
#define G(x) snprintf(buf, len, "%.9g", (double)(x))
/* A condition: its value when given, else where it comes from. */
#define COND(i) (c->cond_given[i] ? G(c->cond_value[i]) : S("auto"))
	if (!strcmp(name, "in-folder")) S(c->in_folder);
	else if (!strcmp(name, "out-folder")) S(c->out_folder);
	else if (!strcmp(name, "run")) snprintf(buf, len, "%ld", c->run);
	else if (!strcmp(name, "karabo-id")) S(c->karabo_id);
	else if (!strcmp(name, "modules")) list_text(&c->modules, buf, len);
	else if (!strcmp(name, "sequences")) list_text(&c->sequences, buf, len);
	else if (!strcmp(name, "constants-folder")) S(c->constants_folder);
	else if (!strcmp(name, "karabo-da")) {
		size_t pos = 0;
		buf[0] = 0;
		for (int m = 0; m < AGIPD_MODULES && c->modules.n; m++)
			if (agipd_list_has(&c->modules, m) && pos + 9 < len)
				pos += (size_t)snprintf(buf + pos, len - pos, "%sAGIPD%02d", pos ? "," : "", m);
		if (!c->modules.n)
			S("all");
	} else if (!strcmp(name, "calibration-metadata")) S(c->calibration_metadata);
	else if (!strcmp(name, "caldb-root")) S(c->caldb_root);
	else if (!strcmp(name, "karabo-id-control")) S(c->karabo_id_control);
	else if (!strcmp(name, "karabo-da-control")) S(c->karabo_da_control);
	else if (!strcmp(name, "ignore-conditions")) B(c->ignore_conditions);
	else if (!strcmp(name, "max-pulses")) {
		if (p->cells_stop >= AGIPD_MAX_CELLS * 1000L)
			snprintf(buf, len, "%ld::%ld", p->cells_start, p->cells_step);
		else
			snprintf(buf, len, "%ld %ld %ld", p->cells_start, p->cells_stop, p->cells_step);
	} else if (!strcmp(name, "mem-cells")) COND(AGIPD_COND_MEM_CELLS);
	else if (!strcmp(name, "acq-rate")) COND(AGIPD_COND_ACQ_RATE);
	else if (!strcmp(name, "gain-setting")) COND(AGIPD_COND_GAIN_SETTING);
	else if (!strcmp(name, "integration-time")) COND(AGIPD_COND_INTEG_TIME);
	else if (!strcmp(name, "bias-voltage")) COND(AGIPD_COND_BIAS);
	else if (!strcmp(name, "overwrite")) B(c->overwrite);
	else if (!strcmp(name, "cells")) {
		if (p->cells_stop >= AGIPD_MAX_CELLS * 1000L)
			snprintf(buf, len, "%ld::%ld", p->cells_start, p->cells_step);
		else
			snprintf(buf, len, "%ld:%ld:%ld", p->cells_start, p->cells_stop, p->cells_step);
	} else if (!strcmp(name, "gain-mode")) S(gm[p->gain_mode]);
	else if (!strcmp(name, "force-mg-if-below")) B(p->force_mg_if_below);
	else if (!strcmp(name, "force-hg-if-below")) B(p->force_hg_if_below);
	else if (!strcmp(name, "mg-hard-threshold")) G(p->mg_hard_threshold);
	else if (!strcmp(name, "hg-hard-threshold")) G(p->hg_hard_threshold);
	else if (!strcmp(name, "common-mode")) B(p->common_mode);
	else if (!strcmp(name, "cm-dark-range")) snprintf(buf, len, "%.9g,%.9g", (double)p->cm_dark_lo, (double)p->cm_dark_hi);
	else if (!strcmp(name, "cm-dark-fraction")) G(p->cm_dark_fraction);
	else if (!strcmp(name, "cm-n-itr")) snprintf(buf, len, "%d", p->cm_n_itr);
	else if (!strcmp(name, "rel-gain")) B(p->rel_gain);
	else if (!strcmp(name, "adjust-mg-baseline")) B(p->adjust_mg_baseline);
	else if (!strcmp(name, "ff-gain")) B(p->ff_gain);
	else if (!strcmp(name, "photon-energy")) G(p->photon_energy);
	else if (!strcmp(name, "adu-per-kev")) G(p->adu_per_kev);
	else if (!strcmp(name, "round-photons")) B(p->round_photons);
	else if (!strcmp(name, "rounding-threshold")) G(p->rounding_threshold);
	else if (!strcmp(name, "data-dtype")) S(dt[p->data_dtype]);
	else if (!strcmp(name, "writer")) S(wr[c->writer]);
	else if (!strcmp(name, "schedule")) S(c->schedule == AGIPD_SCHEDULE_ROUNDS ? "rounds" : "groups");
	else if (!strcmp(name, "io-transfer")) S(c->io_transfer == AGIPD_IO_INDEPENDENT ? "independent" : "collective");
	else if (!strcmp(name, "batch-frames")) snprintf(buf, len, "%d", c->batch_frames);
	else if (!strcmp(name, "deflate-level")) snprintf(buf, len, "%d", c->deflate_level);
	else if (!strcmp(name, "mpi-info")) S(c->mpi_info);
	else if (!strcmp(name, "dry-run")) B(c->dry_run);
	else if (!strcmp(name, "fail-fast")) B(c->fail_fast);
	else if (!strcmp(name, "preview")) B(c->preview);
	else if (!strcmp(name, "report")) S(c->report);
	else if (!strcmp(name, "quiet")) B(c->verbosity == 0);
	else if (!strcmp(name, "verbose")) B(c->verbosity == 2);
	else
		return -1;
	return 0;
#undef B
#undef S
#undef G
#undef COND
}

void agipd_opts_docs(FILE *f)
{
	fprintf(f, "# agipd-correct(1)\n\n"
		   "<!-- Generated by `make docs` (bin/agipd-correct --help-markdown) from the option table in\n"
		   "     src/util/opts.c, the same table --help prints. Do not edit by hand. -->\n\n"
		   "## Synopsis\n\n"
		   "    mpirun -np N agipd-correct --in-folder DIR --out-folder DIR --run N --constants-folder DIR [options]\n"
		   "    mpirun -np N agipd-correct --in-folder DIR --run N --karabo-id ID --out-folder DIR \\\n"
		   "        --karabo-id-control ID --karabo-da-control DA --sequences LIST --calibration-metadata FILE\n"
		   "    srun --mpi=pmix agipd-correct ...\n\n"
		   "## Description\n\n"
		   "Corrects raw AGIPD data (EXDF files `RAW-R{run}-AGIPD{mm}-S{seq}.h5`) with the calibration constants\n"
		   "`AGIPD{mm}.h5` and writes `CORR-R{run}-AGIPD{mm}-S{seq}.h5` with collective parallel HDF5. Ranks split\n"
		   "files and trains; every rank corrects and compresses (shuffle + deflate + fletcher32) its own frames.\n"
		   "A file appears under its final name only when complete. The operating conditions come from the run's\n"
		   "control data (SPEC 6.1) unless given; the constants from `--constants-folder` or from the calibration\n"
		   "database's files named by `--calibration-metadata` (SPEC 6.2), checked against the conditions.\n"
		   "Options can also come from `--config FILE`\n"
		   "(`key = value` lines with the long option names, `#` comments, switches as true/false); the command\n"
		   "line overrides the file; a key given twice in the file is refused.\n\n"
		   "## Options\n");
	agipd_opts_markdown(f);
	fprintf(f, "\n## Exit status\n\n"
		   "| code | meaning |\n|---|---|\n"
		   "| 0 | every file corrected, or already complete and skipped |\n"
		   "| 1 | some files failed (each named on stderr with its cause); the others are complete |\n"
		   "| 2 | bad options or set-up (missing folders, no raw files, output folder = input folder); nothing written |\n"
		   "| 3 | interrupted by SIGTERM or SIGINT; temporary files removed (each rank's status; Open MPI 4.1's "
		   "`mpirun` exits 1 when it is the one signalled) |\n");
}
