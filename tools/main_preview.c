/*
 * main_preview.c - agipd-preview: a PNG picture of corrected data (one
 * module, or all 16 in a quadrant layout), its mask and its gain stages.
 * Command line only; the work is agipd_preview_folder() (agipd_preview.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_opts.h"
#include "agipd_preview.h"

static const struct agipd_option preview_options[] = {
	{ "out-folder", "DIR", "Input", NULL, "folder holding the corrected files (required)" },
	{ "run", "N", "Input", "the lowest found", "run number" },
	{ "sequence", "S", "Input", "the lowest; with --train or --cell, every sequence in order", "sequence file" },
	{ "module", "M", "Input", "every module found, drawn in the AGIPD1M quadrant layout; missing ones left blank",
	  "one module 0..15" },
	{ "karabo-id", "ID", "Input", "whatever the files hold", "detector id" },
	{ "train", "T", "Frame", NULL, "the first frame of train T ..." },
	{ "cell", "C", "Frame", NULL, "... and/or of memory cell C" },
	{ "frame", "I", "Frame", NULL, "frame index I (0-based) of each file" },
	{ "mean", "START:STOP", "Frame", NULL,
	  "mean over frames START..STOP-1 of each file (masked samples left out; 'START:' = to the end)" },
	{ "output", "PATH", "Picture", "DIR/preview.png", "PNG to write" },
	{ "max-width", "PX", "Picture", "1600", "widest picture allowed" },
	{ "percentiles", "LO:HI", "Picture", "0.5:99.5", "colour limits as percentiles of the unmasked pixels" },
	{ "verbose", NULL, "Other", NULL, "also print where the two images lie in the picture (also -v)" },
	{ "help", NULL, "Other", NULL, "this text" },
};
#define PREVIEW_NOPTIONS ((int)(sizeof preview_options / sizeof preview_options[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: agipd-preview --out-folder DIR [options]\n"
		     "Draw corrected data (DIR/CORR-Rnnnn-AGIPDmm-Snnnnn.h5) as a PNG: the data with a\n"
		     "colour bar (masked pixels grey) and, beside it, the gain stage of each pixel.\n");
	agipd_optparse_help(out, preview_options, PREVIEW_NOPTIONS);
	fprintf(out, "\nWithout a frame option: the first frame; for 16 modules, the train and cell of\n"
		     "the lowest module's first frame.\n"
		     "\nLayout of the 16-module view: Q1 = modules 0-3 top-left, Q2 = 4-7 bottom-left,\n"
		     "Q3 = 8-11 bottom-right, Q4 = 12-15 top-right, lowest module of a quadrant on\n"
		     "top; each module lies horizontally (slow-scan left to right, fast-scan down).\n");
}

/* "A:B", "A:" or ":B" into two u64 (B = UINT64_MAX when empty). */
static int parse_range(const char *s, uint64_t *a, uint64_t *b)
{
	const char *colon = strchr(s, ':');
	char left[64];
	if (!colon || (size_t)(colon - s) >= sizeof left)
		return -1;
	memcpy(left, s, (size_t)(colon - s));
	left[colon - s] = 0;
	*a = 0;
	*b = UINT64_MAX;
	if (left[0] && agipd_opts_u64(left, 10, a) < 0)
		return -1;
	if (colon[1] && agipd_opts_u64(colon + 1, 10, b) < 0)
		return -1;
	return 0;
}

static int parse_percentiles(const char *s, double *lo, double *hi)
{
	char *end;
	errno = 0;
	*lo = strtod(s, &end);
	if (errno || end == s || *end != ':')
		return -1;
	const char *p = end + 1;
	*hi = strtod(p, &end);
	if (errno || end == p || *end || !(*lo >= 0 && *lo < *hi && *hi <= 100))
		return -1;
	return 0;
}

struct preview_args {
	struct agipd_preview_opts *o;
	int *verbose;
	int frame, match, mean;   /* which way of choosing the frame was given */
};

/* One option into the preview's options (agipd_optparse's apply). */
static int preview_apply(void *ctx, const char *name, const char *a, agipd_err *e)
{
	struct preview_args *s = ctx;
	struct agipd_preview_opts *o = s->o;
	int bad = 0;
	if (!strcmp(name, "help"))
		return 1;
	else if (!strcmp(name, "out-folder"))
		o->folder = a;
	else if (!strcmp(name, "run"))
		bad = agipd_opts_int(a, 0, 9999, &o->run);
	else if (!strcmp(name, "sequence"))
		bad = agipd_opts_int(a, 0, 99999, &o->sequence);
	else if (!strcmp(name, "module"))
		bad = agipd_opts_int(a, 0, AGIPD_MODULES - 1, &o->module);
	else if (!strcmp(name, "train")) {
		bad = agipd_opts_u64(a, 10, &o->train);
		o->has_train = 1;
		s->match = 1;
	} else if (!strcmp(name, "cell")) {
		bad = agipd_opts_int(a, 0, 65535, &o->cell);
		s->match = 1;
	} else if (!strcmp(name, "frame")) {
		bad = agipd_opts_u64(a, 10, &o->frame);
		s->frame = 1;
	} else if (!strcmp(name, "mean")) {
		bad = parse_range(a, &o->mean_start, &o->mean_stop) < 0 || o->mean_start >= o->mean_stop;
		s->mean = 1;
	} else if (!strcmp(name, "output"))
		o->output = a;
	else if (!strcmp(name, "karabo-id"))
		o->karabo_id = a;
	else if (!strcmp(name, "max-width"))
		bad = agipd_opts_int(a, 200, 16384, &o->max_width);
	else if (!strcmp(name, "percentiles"))
		bad = parse_percentiles(a, &o->pct_lo, &o->pct_hi);
	else if (!strcmp(name, "verbose"))
		*s->verbose = 1;
	return bad ? agipd_err_set(e, "bad value '%s' for --%s", a, name) : 0;
}

/* 0, 1 for --help, -1 with e set. */
static int parse_args(int argc, char **argv, struct agipd_preview_opts *o, int *verbose, agipd_err *e)
{
	struct preview_args s = { o, verbose, 0, 0, 0 };
	struct agipd_optparse p = { preview_options, PREVIEW_NOPTIONS, "hv", preview_apply, &s };
	agipd_preview_opts_defaults(o);
	int rc = agipd_optparse_run(&p, argc, argv, e);
	if (rc)
		return rc;
	if (!o->folder)
		return agipd_err_set(e, "--out-folder is required (see --help)");
	if (s.frame + s.match + s.mean > 1)
		return agipd_err_set(e, "choose one of --frame, --train/--cell and --mean");
	o->pick = s.frame ? AGIPD_PREVIEW_PICK_FRAME
		: s.match ? AGIPD_PREVIEW_PICK_MATCH
		: s.mean  ? AGIPD_PREVIEW_PICK_MEAN
			  : AGIPD_PREVIEW_PICK_FIRST;
	return 0;
}

int main(int argc, char **argv)
{
	struct agipd_preview_opts o;
	struct agipd_preview_result r;
	agipd_err e = { "" };
	int verbose = 0;

	int rc = parse_args(argc, argv, &o, &verbose, &e);
	if (rc > 0) {
		usage(stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "agipd-preview: %s\n", e.msg);
		return 2;
	}
	if (agipd_preview_folder(&o, &r, &e) < 0) {
		fprintf(stderr, "agipd-preview: error: %s\n", e.msg);
		return 1;
	}
	if (r.note[0])
		fprintf(stderr, "agipd-preview: left blank: %s\n", r.note);
	printf("agipd-preview: wrote %s (%d x %d): run %d, ", r.output, r.width, r.height, r.run);
	if (r.sequence >= 0)
		printf("sequence %d, ", r.sequence);
	printf("%d module(s), ", r.modules_drawn);
	if (o.pick == AGIPD_PREVIEW_PICK_MEAN)
		printf("mean of up to %" PRIu64 " frame(s)", r.frames);
	else
		printf("train %" PRIu64 " cell %d", r.train, r.cell);
	printf(", %.2f%% masked, colour limits %.4g .. %.4g\n", 100.0 * r.masked_fraction, (double)r.lo,
	       (double)r.hi);
	if (verbose)
		printf("agipd-preview: geometry: data image at %d,%d, gain image at %d,%d, each %d x %d; "
		       "bin %d, scale %d\n",
		       r.geom.data_x, r.geom.data_y, r.geom.gain_x, r.geom.gain_y, r.geom.image_w, r.geom.image_h,
		       r.bin, r.scale);
	return 0;
}
