/*
 * agipd_opts.h - the run configuration and its one option table, from which
 * --help, the documentation and the config-file keys all come.  Pure: no MPI,
 * no HDF5.  Every rank parses the same arguments to the same configuration.
 */
#ifndef AGIPD_OPTS_H
#define AGIPD_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "agipd_conditions.h"
#include "agipd_err.h"
#include "agipd_kernel.h"

/* A list of non-negative integers given as ranges: "0-3,7,9-10". */
#define AGIPD_LIST_MAX 256
struct agipd_list {
	int n;                       /* 0: everything */
	long lo[AGIPD_LIST_MAX], hi[AGIPD_LIST_MAX];
};
int agipd_list_parse(struct agipd_list *l, const char *s);
int agipd_list_has(const struct agipd_list *l, long v);

/* MPI-IO hints: at most this many bytes, "KEY=VAL[,KEY=VAL]..." */
#define AGIPD_MPI_INFO_LEN 1024

/* Next KEY=VALUE pair of the comma-separated list *s (--mpi-info,
 * AGIPD_MPI_INFO): 1 with key and val set and *s moved past it, 0 at the
 * end, -1 when malformed (no '=', empty key or value, blanks in the key,
 * too long).  Pure: the option check and the writer's MPI_Info both use it. */
int agipd_mpi_info_next(const char **s, char *key, size_t klen, char *val, size_t vlen);

enum agipd_writer_choice { AGIPD_WRITE_COLLECTIVE = 0, AGIPD_WRITE_SERIAL, AGIPD_WRITE_NULL, AGIPD_WRITE_H5FILTER };
/* --schedule: fixed groups without lockstep (AGIPD_PLAN_GROUPS) or rounds
 * that end together (AGIPD_PLAN_BALANCED). */
enum agipd_schedule_choice { AGIPD_SCHEDULE_GROUPS = 0, AGIPD_SCHEDULE_ROUNDS };
/* --io-transfer: MPI-IO transfers of the float data, independent (each rank
 * its own chunks; the default, from make bench's figures) or collective
 * (two-phase aggregation, OMPIO's or ROMIO's). */
enum agipd_io_transfer { AGIPD_IO_COLLECTIVE = 0, AGIPD_IO_INDEPENDENT };

/* Bytes a folder option leaves free in its 4096-byte field, so that every
 * file name the run builds under it ("/" and a name of at most 255 bytes)
 * fits the same size: longer folders are refused, never cut. */
#define AGIPD_NAME_ROOM 256

struct agipd_config {
	char in_folder[4096], out_folder[4096], constants_folder[4096];
	char karabo_id[128];
	char report[4096];
	char config_file[4096];
	long run;
	struct agipd_list modules, sequences;
	struct agipd_params params;
	enum agipd_writer_choice writer;
	enum agipd_schedule_choice schedule;
	enum agipd_io_transfer io_transfer;
	int batch_frames;            /* frames per H5Dwrite */
	int deflate_level;
	char mpi_info[AGIPD_MPI_INFO_LEN];   /* --mpi-info: "KEY=VAL,KEY=VAL" or "" */
	int dry_run, overwrite, fail_fast, preview;
	int verbosity;               /* 0 quiet, 1 normal, 2 verbose */
	char command_line[8192];
	/* Facility integration (SPEC 6) */
	char karabo_id_control[128], karabo_da_control[128];
	char calibration_metadata[4096], caldb_root[4096];
	int ignore_conditions;
	int cond_given[AGIPD_NCOND];         /* condition given on the command line */
	double cond_value[AGIPD_NCOND];
	int modules_given, karabo_da_given, cells_given, max_pulses_given;
	/* For the provenance: each option's final value as text. */
};

/* One row of the option table. */
struct agipd_option {
	const char *name;            /* long name without "--" */
	const char *arg;             /* argument placeholder, NULL for a switch */
	const char *group;           /* topic for --help */
	const char *def;             /* default as shown, NULL when none */
	const char *help;
};
extern const struct agipd_option agipd_options[];
extern const int agipd_noptions;

/* The programs' shared command-line parser (agipd-correct, agipd-simulate,
 * agipd-preview): a table of rows and what to do with each option given.
 * apply(ctx, name, value, e) gets the row's name and its value (NULL for a
 * switch) and returns 0 to go on, 1 to stop parsing (--help), -1 with e set.
 * shorts: one-letter aliases ("hv": -h, -v), each the first switch of the
 * table whose name starts with that letter; NULL for none. */
typedef int (*agipd_opt_apply)(void *ctx, const char *name, const char *val, agipd_err *e);
struct agipd_optparse {
	const struct agipd_option *rows;
	int n;
	const char *shorts;
	agipd_opt_apply apply;
	void *ctx;
};

/* Parse argv[1..argc) with getopt_long: --name=value or --name value,
 * switches take no value, unknown options and stray arguments refused with
 * e naming them.  0, 1 when apply stopped it, -1 with e set. */
int agipd_optparse_run(const struct agipd_optparse *p, int argc, char **argv, agipd_err *e);
/* The table as --help rows, grouped by topic, with defaults. */
void agipd_optparse_help(FILE *f, const struct agipd_option *rows, int n);

/* Parse argv (after --config FILE, whose keys are the long option names,
 * which the command line then overrides).  Returns 0 to run, 1 when --help or
 * --version was asked (text in *what: "help" or "version"), -1 on a bad option
 * with e saying which and why. */
int agipd_opts_parse(struct agipd_config *c, int argc, char **argv, const char **what, agipd_err *e);

/* The option table's number parsers, shared by the programs (agipd-correct,
 * agipd-simulate, agipd-preview): 0, or -1 when s is not one whole number
 * (in [lo, hi]).  agipd_opts_double: finite, trailing blanks allowed;
 * agipd_opts_u64: no sign, no leading blank, base as strtoull's. */
int agipd_opts_long(const char *s, long *v);
int agipd_opts_int(const char *s, long lo, long hi, int *out);
int agipd_opts_double(const char *s, double *v);
int agipd_opts_u64(const char *s, int base, uint64_t *out);

/* --help text, grouped by topic, with defaults. */
void agipd_opts_help(FILE *f, const char *prog);
/* The same table as Markdown; agipd_opts_docs() writes the whole of
 * docs/agipd-correct.md around it. */
void agipd_opts_markdown(FILE *f);
void agipd_opts_docs(FILE *f);

/* The effective value of option `name` as text ("true"/"false" for a
 * switch), for the provenance and the report.  -1 for help/version/config. */
int agipd_opts_value(const struct agipd_config *c, const char *name, char *buf, size_t len);

#endif
