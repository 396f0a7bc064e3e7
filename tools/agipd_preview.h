/*
 * agipd_preview.h - pictures of corrected data (SPEC section 5 files) as PNG.
 *
 * Three layers, one prefix (agipd_preview_):
 *
 *   tools/preview.c     pure: colour maps, a small bitmap font, colour
 *                       limits, the detector mosaic (module tiles placed in
 *                       a simple AGIPD1M quadrant layout) and the two-panel
 *                       figure, rendered into an RGB8 buffer.  No HDF5, no
 *                       MPI, no I/O.
 *   tools/preview_h5.c  adapter: finds CORR files in a folder, reads the
 *                       chosen frame (or the mean of a range) of each
 *                       module, and agipd_preview_folder(), the one call
 *                       that does it all.
 *   tools/png_write.c   adapter over libpng: agipd_preview_png_write().
 *
 * Nothing here is collective and nothing touches MPI: agipd-correct's
 * main calls agipd_preview_folder() on one rank after the run.  No function
 * prints or exits; failures return -1 and describe themselves in an
 * agipd_err (which may be NULL when the caller does not want the text).
 *
 * Colours are 0xRRGGBB in a uint32_t.  Image coordinates are pixels, x to
 * the right and y downwards, origin at the top-left corner.
 *
 * THE LAYOUT (AGIPD_PREVIEW_QUADRANTS).  AGIPD-1M in a front view (looking
 * along the beam, x increasing to the left, y up), oriented as EXtra-geom's
 * idealised AGIPD_1MGeometry.from_quad_positions draws it, but with no
 * quadrant offsets, no ASIC gaps and square pixels: a quick look, not an
 * assembly for analysis.
 *
 *        +---------+   +---------+
 *        |  12 Q4  |   | Q1  0   |     Q1 = modules 0-3   top-right
 *        |  13     |   |     1   |     Q2 = modules 4-7   bottom-right
 *        |  14     |   |     2   |     Q3 = modules 8-11  bottom-left
 *        |  15     |   |     3   |     Q4 = modules 12-15 top-left
 *        +---------+ o +---------+
 *        |   8 Q3  |   | Q2  4   |     within a quadrant the lowest module
 *        |   9     |   |     5   |     number is at the top; o = the beam
 *        |  10     |   |     6   |
 *        |  11     |   |     7   |
 *        +---------+   +---------+
 *
 * Each module (512 slow-scan rows x 128 fast-scan columns in the files) is
 * a tile lying horizontally, 512 wide and 128 high, its slow-scan running
 * from the outer edge towards the beam: right half (modules 0-7), module
 * pixel [r][c] at tile x = 511 - r, y = c (fast-scan down); left half
 * (8-15) at x = r, y = 127 - c (fast-scan up).  Modules of a quadrant are
 * AGIPD_PREVIEW_MODULE_GAP pixels apart, quadrants
 * AGIPD_PREVIEW_QUADRANT_GAP.  Full size: 1048 x 1096 (w x h).
 *
 * AGIPD_PREVIEW_SINGLE is one tile, 512 x 128, the plain transpose of the
 * module: pixel [r][c] at x = r, y = c (row 0 at the left, column 0 at the
 * top).
 */
#ifndef AGIPD_PREVIEW_H
#define AGIPD_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "agipd.h"
#include "agipd_err.h"

/* ------------------------------------------------------------------------
 * Colours
 */

#define AGIPD_PREVIEW_BACKGROUND 0xffffffu   /* page, gaps, missing modules */
#define AGIPD_PREVIEW_INK 0x202020u          /* text, outlines */
#define AGIPD_PREVIEW_MASKED 0x9a9a9au       /* masked pixels on the data panel */
#define AGIPD_PREVIEW_MISSING_EDGE 0xc8c8c8u /* outline of a module with no data */

/* Viridis (matplotlib's perceptually uniform map, 256 entries): t in [0, 1],
 * clamped; NaN gives AGIPD_PREVIEW_MASKED. */
uint32_t agipd_preview_viridis(double t);

/* Gain-stage colours (Okabe-Ito, distinguishable with colour blindness):
 * 0 high = blue, 1 medium = yellow, 2 low = vermillion; anything else black. */
uint32_t agipd_preview_gain_colour(int gain);

/* ------------------------------------------------------------------------
 * RGB canvas and text
 */

/* width x height pixels, 3 bytes each (R, G, B), rows top to bottom, no
 * padding.  Owned by the struct: free with agipd_preview_canvas_free(). */
struct agipd_preview_canvas {
	int width, height;
	uint8_t *rgb;
};

/* Allocate and fill with `fill`.  1 <= width, height <= 16384.  On failure
 * c is left empty (rgb NULL) and -1 returned. */
int agipd_preview_canvas_init(struct agipd_preview_canvas *c, int width, int height, uint32_t fill,
			      agipd_err *e);
/* Free the pixels; NULL-safe and idempotent. */
void agipd_preview_canvas_free(struct agipd_preview_canvas *c);
/* Colour of pixel (x, y); 0 outside the canvas. */
uint32_t agipd_preview_canvas_get(const struct agipd_preview_canvas *c, int x, int y);
/* Filled rectangle, clipped to the canvas (any coordinates are safe). */
void agipd_preview_fill_rect(struct agipd_preview_canvas *c, int x, int y, int w, int h, uint32_t rgb);
/* 1-pixel outline of the rectangle, clipped. */
void agipd_preview_draw_rect(struct agipd_preview_canvas *c, int x, int y, int w, int h, uint32_t rgb);

/* The built-in font: 5 x 7 glyphs (capitals, digits) in a 5 x 9 cell (two
 * rows for descenders) for printable ASCII 32..126 (any other byte draws as
 * '?'), 1 pixel between glyphs, each font pixel drawn as a scale x scale
 * block.  A line of text is AGIPD_PREVIEW_GLYPH_H * scale pixels high. */
#define AGIPD_PREVIEW_GLYPH_W 5
#define AGIPD_PREVIEW_GLYPH_H 9
#define AGIPD_PREVIEW_CAP_H 7
/* Width in pixels of s at this scale (0 for "" or NULL). */
int agipd_preview_text_width(const char *s, int scale);
/* Draw s with its top-left corner at (x, y), clipped; returns the width. */
int agipd_preview_text(struct agipd_preview_canvas *c, int x, int y, const char *s, int scale, uint32_t rgb);

/* ------------------------------------------------------------------------
 * Colour limits and colour-bar ticks
 */

/*
 * Percentiles plo <= phi (0..100, NumPy's default linear interpolation) of
 * the finite values of v[0..n).  Returns the number of finite values used,
 * 0 when there are none (lo = hi = 0 then), -1 when the temporary copy
 * cannot be allocated.  v is not modified.
 */
long agipd_preview_percentiles(const float *v, size_t n, double plo, double phi, float *lo, float *hi);

/* "Nice" tick values (1, 2 or 5 x 10^k apart) inside [lo, hi], at most
 * max_ticks of them, lowest first; returns how many.  The decimals a label
 * needs go to *decimals (NULL to ignore).  lo < hi required (else 0). */
int agipd_preview_ticks(double lo, double hi, int max_ticks, double *ticks, int *decimals);

/* ------------------------------------------------------------------------
 * The mosaic: modules placed in one image, optionally binned
 */

enum agipd_preview_layout {
	AGIPD_PREVIEW_SINGLE = 0,    /* one module, one tile */
	AGIPD_PREVIEW_QUADRANTS = 1, /* all 16, see THE LAYOUT above */
};

#define AGIPD_PREVIEW_MODULE_GAP 8     /* full-size pixels between modules of a quadrant */
#define AGIPD_PREVIEW_QUADRANT_GAP 24  /* ... between quadrants */

/* One module's picture as read from a file: C-order (512, 128) arrays,
 * borrowed (not copied, not freed).  data == NULL: the module is missing
 * (drawn as an empty outlined tile).  mask == NULL: nothing masked;
 * gain == NULL: gain unknown (drawn as background on the gain panel). */
struct agipd_preview_module {
	const float *data;
	const uint32_t *mask;
	const uint8_t *gain;
};

enum agipd_preview_state { AGIPD_PREVIEW_BLANK = 0, AGIPD_PREVIEW_GOOD = 1, AGIPD_PREVIEW_BAD = 2 };

struct agipd_preview_tile {
	int module;          /* module number (0 in the single layout) */
	int x, y, w, h;      /* in mosaic pixels */
	int present;         /* 1 if the module had data */
};

/*
 * width x height mosaic pixels, row-major, owned by the struct:
 *   state  BLANK (gap or missing module), GOOD, or BAD (masked: at least
 *          half of the bin's samples masked or not finite)
 *   value  where GOOD, the mean of the bin's unmasked, finite samples;
 *          NaN elsewhere
 *   gain   highest gain stage in the bin (0..2), 255 where unknown/blank
 */
struct agipd_preview_mosaic {
	int width, height, bin;
	enum agipd_preview_layout layout;
	float *value;
	uint8_t *state;
	uint8_t *gain;
	int ntiles;
	struct agipd_preview_tile tiles[AGIPD_MODULES];
};

/*
 * Build the mosaic from nmods modules: nmods == 1 with the SINGLE layout
 * (mods[0]), nmods == AGIPD_MODULES with QUADRANTS (mods[m] is module m).
 * bin (1..8) averages bin x bin blocks of tile pixels (512 and 128 must be
 * multiples: bin in {1, 2, 4, 8}); gaps shrink with it.  On failure m is
 * left empty and -1 returned.
 */
int agipd_preview_mosaic_build(struct agipd_preview_mosaic *m, const struct agipd_preview_module *mods,
			       int nmods, enum agipd_preview_layout layout, int bin, agipd_err *e);
/* Mosaic size for a layout and bin, without building it. */
void agipd_preview_mosaic_size(enum agipd_preview_layout layout, int bin, int *width, int *height);
/* Free the arrays; NULL-safe and idempotent. */
void agipd_preview_mosaic_free(struct agipd_preview_mosaic *m);

/* ------------------------------------------------------------------------
 * The figure: title lines, a data panel with its colour bar, and a
 * gain-stage panel with its legend, beside (or below) it
 */

struct agipd_preview_figure {
	const char *title;       /* first line; NULL for none */
	const char *subtitle;    /* second line; NULL for none */
	const char *data_label;  /* heading of the data panel; NULL: "corrected data" */
	const char *gain_label;  /* heading of the gain panel; NULL: "gain stage" */
	const char *limits_note; /* after the legend of the data panel, e.g.
				  * "limits: percentiles 0.5-99.5"; NULL: none */
	float lo, hi;            /* colour limits, finite, lo < hi (else widened) */
	int scale;               /* each mosaic pixel drawn as scale x scale, 1..8 */
	int side_by_side;        /* 1: gain panel right of the data panel; 0: below */
	int text_scale;          /* font scale, 1..4; 0: 2 */
};

/* Where things go, in canvas pixels, without drawing them. */
struct agipd_preview_geometry {
	int width, height;       /* the canvas */
	int data_x, data_y;      /* top-left corner of the data image */
	int gain_x, gain_y;      /* ... of the gain image */
	int image_w, image_h;    /* size of each image: mosaic size x scale */
};
void agipd_preview_figure_geometry(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
				   struct agipd_preview_geometry *g);

/* Draw the figure into a new canvas *out (freed by the caller with
 * agipd_preview_canvas_free).  On failure *out is empty and -1 returned. */
int agipd_preview_render(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
			 struct agipd_preview_canvas *out, agipd_err *e);

/* ------------------------------------------------------------------------
 * PNG output (tools/png_write.c, over libpng)
 */

/*
 * Write the canvas as an 8-bit RGB PNG at path.  The file is written under a
 * temporary name in the same folder and renamed when complete: a failure
 * leaves no file at path (and an earlier file there untouched).  Without
 * libpng at build time (HAVE_PNG undefined) always fails with a message
 * saying so.
 */
int agipd_preview_png_write(const char *path, const struct agipd_preview_canvas *c, agipd_err *e);
/* 1 if PNG support was compiled in. */
int agipd_preview_png_available(void);

/* ------------------------------------------------------------------------
 * Reading CORR files and the whole job (tools/preview_h5.c)
 */

enum agipd_preview_pick {
	AGIPD_PREVIEW_PICK_FIRST = 0, /* the first frame of the file (default); in
				       * the 16-module view, the train and cell of
				       * the lowest module's first frame, in every
				       * module */
	AGIPD_PREVIEW_PICK_FRAME,     /* frame index `frame` (0-based, of each file) */
	AGIPD_PREVIEW_PICK_MATCH,     /* first frame with trainId == train (when
				       * has_train) and cellId == cell (when
				       * cell >= 0) */
	AGIPD_PREVIEW_PICK_MEAN,      /* mean over frames [mean_start, mean_stop) of
				       * each file, stop clipped to the file */
};

struct agipd_preview_opts {
	const char *folder;      /* folder holding CORR-R*-AGIPD*-S*.h5; required */
	const char *output;      /* PNG path; NULL: "<folder>/preview.png" */
	const char *karabo_id;   /* NULL: whatever INSTRUMENT/ holds */
	int run;                 /* -1: the lowest run found */
	int sequence;            /* -1: the lowest found for the run (any, in
				  * order, when picking by train/cell) */
	int module;              /* -1: every module found, 16-module view;
				  * 0..15: that module alone */
	enum agipd_preview_pick pick;
	uint64_t frame;          /* PICK_FRAME */
	int has_train;           /* PICK_MATCH */
	uint64_t train;
	int cell;                /* PICK_MATCH: -1 for any cell */
	uint64_t mean_start, mean_stop;  /* PICK_MEAN; stop UINT64_MAX: to the end */
	int max_width;           /* picture width limit in pixels; 0: 1600 */
	double pct_lo, pct_hi;   /* colour limits: these percentiles of the
				  * unmasked pixels shown; default 0.5, 99.5 */
};

/* Defaults as documented above (folder NULL: set it). */
void agipd_preview_opts_defaults(struct agipd_preview_opts *o);

/* What agipd_preview_folder drew (for a summary line). */
struct agipd_preview_result {
	char output[4096];         /* PNG written */
	int width, height;         /* its size in pixels */
	int run, sequence;         /* sequence -1 when modules came from several */
	int modules_drawn;         /* modules with a picture */
	uint32_t modules_present;  /* bit m: module m drawn */
	uint64_t train;            /* of the first module drawn (first frame of a mean) */
	int cell;                  /* likewise; -1 for a mean */
	uint64_t frames;           /* frames averaged per module (max), 1 otherwise */
	float lo, hi;              /* colour limits used */
	int bin, scale;            /* module pixels per mosaic pixel (bin x bin),
				    * picture pixels per mosaic pixel (scale x scale) */
	struct agipd_preview_geometry geom;  /* where the two images are */
	double masked_fraction;    /* of the module pixels drawn */
	char note[1024];           /* modules left blank and why; "" if none */
};

/* Which frames agipd_preview_read_module used. */
struct agipd_preview_frame_info {
	uint64_t index;    /* index in the file of the (first) frame used */
	uint64_t train;    /* its trainId */
	int cell;          /* its cellId; -1 for a mean */
	uint64_t nframes;  /* frames averaged; 1 for a single frame */
};

/*
 * Read one frame (or the mean, per o->pick; PICK_FIRST is frame 0) of one
 * module's CORR file into caller-owned arrays of AGIPD_PIXELS elements in
 * the file's (512, 128) C order.  Mean: data = mean of the unmasked samples
 * of each pixel; mask = 0 where any sample was unmasked, else the OR of its
 * masks; gain = the highest stage seen.  data is float whatever the file's
 * type (float32, float16 or int16).  karabo_id NULL: the one INSTRUMENT/
 * holds.  Returns 0 with *fi filled; 1 when the file has no frame that
 * matches (why in e; not an error); -1 on error (e names the file and
 * HDF5's reason).  HDF5's own error printing is off during the call.
 */
int agipd_preview_read_module(const char *path, int module, const char *karabo_id,
			      const struct agipd_preview_opts *o, float *data, uint32_t *mask, uint8_t *gain,
			      struct agipd_preview_frame_info *fi, agipd_err *e);

/*
 * Find the corrected files of o->run in o->folder, read the chosen frame of
 * o->module (or of every module), draw the figure and write the PNG.
 * res may be NULL.  Errors (bad options, missing folder, no CORR files, no
 * frame matching in any module, unreadable file, PNG failure) return -1
 * with a message in e; modules without a matching frame are left blank and
 * listed in res->note.  Not collective; reads files with serial HDF5 (safe
 * after MPI_Init, on one rank, once the CORR files are closed).  Takes
 * about a second for 16 modules, one frame each.
 *
 * agipd-correct --preview, on rank 0 after the run:
 *
 *	struct agipd_preview_opts po;
 *	agipd_preview_opts_defaults(&po);
 *	po.folder = out_folder;          (writes out_folder/preview.png)
 *	po.run = run;
 *	po.karabo_id = karabo_id;        (or NULL)
 *	if (agipd_preview_folder(&po, NULL, &err) < 0)
 *		report err.msg as a warning: the corrected files are fine
 */
int agipd_preview_folder(const struct agipd_preview_opts *o, struct agipd_preview_result *res, agipd_err *e);

#endif /* AGIPD_PREVIEW_H */
