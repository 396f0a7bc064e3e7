/*
 * main_preview.c - agipd-preview: a PNG picture of corrected data (one
 * module, or all 16 in a quadrant layout), its mask and its gain stages.
 * Command line only; the work is agipd_preview_folder() (agipd_preview.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_opts.h"
#include "agipd_preview.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: agipd-preview --out-folder DIR [options]\n"
		"Draw corrected data (DIR/CORR-Rnnnn-AGIPDmm-Snnnnn.h5) as a PNG: the data with a\n"
		"colour bar (masked pixels grey) and, beside it, the gain stage of each pixel.\n"
		"\n"
		"  --out-folder DIR      folder holding the corrected files (required)\n"
		"  --run N               run number (default: the lowest found)\n"
		"  --sequence S          sequence file (default: the lowest; with --train or\n"
		"                        --cell, every sequence in order)\n"
		"  --module M            one module 0..15 (default: every module found, drawn in\n"
		"                        the AGIPD1M quadrant layout; missing ones left blank)\n"
		"  --train T             the first frame of train T ...\n"
		"  --cell C              ... and/or of memory cell C\n"
		"  --frame I             frame index I (0-based) of each file\n"
		"  --mean START:STOP     mean over frames START..STOP-1 of each file (masked\n"
		"                        samples left out; 'START:' = to the end)\n"
		"                        (default: the first frame; for 16 modules, the train\n"
		"                        and cell of the lowest module's first frame)\n"
		"  --output PATH         PNG to write (default DIR/preview.png)\n"
		"  --karabo-id ID        detector id (default: whatever the files hold)\n"
		"  --max-width PX        widest picture allowed (default 1600)\n"
		"  --percentiles LO:HI   colour limits as percentiles of the unmasked pixels\n"
		"                        (default 0.5:99.5)\n"
		"  --verbose, -v         also print where the two images lie in the picture\n"
		"  --help                this text\n"
		"\n"
		"Layout of the 16-module view: Q1 = modules 0-3 top-left, Q2 = 4-7 bottom-left,\n"
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

/* 0, 1 for --help, -1 with err set. */
static int parse_args(int argc, char **argv, struct agipd_preview_opts *o, int *verbose, char *err,
		      size_t errlen)
{
	enum {
		O_FOLDER = 256, O_RUN, O_SEQ, O_MODULE, O_TRAIN, O_CELL, O_FRAME, O_MEAN, O_OUTPUT, O_KID,
		O_MAXW, O_PCT, O_VERBOSE, O_HELP
	};
	static const struct option opts[] = {
		{ "out-folder", required_argument, NULL, O_FOLDER },
		{ "run", required_argument, NULL, O_RUN },
		{ "sequence", required_argument, NULL, O_SEQ },
		{ "module", required_argument, NULL, O_MODULE },
		{ "train", required_argument, NULL, O_TRAIN },
		{ "cell", required_argument, NULL, O_CELL },
		{ "frame", required_argument, NULL, O_FRAME },
		{ "mean", required_argument, NULL, O_MEAN },
		{ "output", required_argument, NULL, O_OUTPUT },
		{ "karabo-id", required_argument, NULL, O_KID },
		{ "max-width", required_argument, NULL, O_MAXW },
		{ "percentiles", required_argument, NULL, O_PCT },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int o_frame = 0, o_match = 0, o_mean = 0, opt;
	agipd_preview_opts_defaults(o);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		const char *a = optarg;
		switch (opt) {
		case O_FOLDER:
			o->folder = a;
			break;
		case O_RUN:
			if (agipd_opts_int(a, 0, 9999, &o->run) < 0)
				goto bad;
			break;
		case O_SEQ:
			if (agipd_opts_int(a, 0, 99999, &o->sequence) < 0)
				goto bad;
			break;
		case O_MODULE:
			if (agipd_opts_int(a, 0, AGIPD_MODULES - 1, &o->module) < 0)
				goto bad;
			break;
		case O_TRAIN:
			if (agipd_opts_u64(a, 10, &o->train) < 0)
				goto bad;
			o->has_train = 1;
			o_match = 1;
			break;
		case O_CELL:
			if (agipd_opts_int(a, 0, 65535, &o->cell) < 0)
				goto bad;
			o_match = 1;
			break;
		case O_FRAME:
			if (agipd_opts_u64(a, 10, &o->frame) < 0)
				goto bad;
			o_frame = 1;
			break;
		case O_MEAN:
			if (parse_range(a, &o->mean_start, &o->mean_stop) < 0 || o->mean_start >= o->mean_stop)
				goto bad;
			o_mean = 1;
			break;
		case O_OUTPUT:
			o->output = a;
			break;
		case O_KID:
			o->karabo_id = a;
			break;
		case O_MAXW:
			if (agipd_opts_int(a, 200, 16384, &o->max_width) < 0)
				goto bad;
			break;
		case O_PCT:
			if (parse_percentiles(a, &o->pct_lo, &o->pct_hi) < 0)
				goto bad;
			break;
		case 'v':
		case O_VERBOSE:
			*verbose = 1;
			break;
		case 'h':
		case O_HELP:
			return 1;
		default:
			snprintf(err, errlen, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
			return -1;
		}
		continue;
bad:
		snprintf(err, errlen, "bad value '%s' for --%s", a, opts[opt - O_FOLDER].name);
		return -1;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -1;
	}
	if (!o->folder) {
		snprintf(err, errlen, "--out-folder is required (see --help)");
		return -1;
	}
	if (o_frame + o_match + o_mean > 1) {
		snprintf(err, errlen, "choose one of --frame, --train/--cell and --mean");
		return -1;
	}
	o->pick = o_frame ? AGIPD_PREVIEW_PICK_FRAME
		: o_match ? AGIPD_PREVIEW_PICK_MATCH
		: o_mean  ? AGIPD_PREVIEW_PICK_MEAN
			  : AGIPD_PREVIEW_PICK_FIRST;
	return 0;
}

int main(int argc, char **argv)
{
	struct agipd_preview_opts o;
	struct agipd_preview_result r;
	agipd_err e = { "" };
	char err[512] = "";
	int verbose = 0;

	int rc = parse_args(argc, argv, &o, &verbose, err, sizeof err);
	if (rc > 0) {
		usage(stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "agipd-preview: %s\n", err);
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
