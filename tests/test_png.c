/*
 * test_png.c - the preview's pure part (include/agipd_preview.h): colour
 * maps, percentiles, ticks, the font, the mosaic layout (tile positions and
 * orientations, binning, masks, missing modules), the figure, and a PNG
 * round trip through libpng when it was built in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agipd_preview.h"
#include "unit.h"

#ifdef HAVE_PNG
#include <png.h>
#endif

static int colour_dist2(uint32_t a, uint32_t b)
{
	int dr = (int)(a >> 16 & 255) - (int)(b >> 16 & 255);
	int dg = (int)(a >> 8 & 255) - (int)(b >> 8 & 255);
	int db = (int)(a & 255) - (int)(b & 255);
	return dr * dr + dg * dg + db * db;
}

/* Count canvas pixels of exactly this colour inside a rectangle. */
static long count_colour(const struct agipd_preview_canvas *c, int x, int y, int w, int h, uint32_t rgb)
{
	long n = 0;
	for (int yy = y; yy < y + h; yy++)
		for (int xx = x; xx < x + w; xx++)
			n += agipd_preview_canvas_get(c, xx, yy) == rgb;
	return n;
}

struct module_data {
	float data[AGIPD_PIXELS];
	uint32_t mask[AGIPD_PIXELS];
	uint8_t gain[AGIPD_PIXELS];
};

/* value = r + 1000 c + 100000 * tag, nothing masked, high gain. */
static void fill_module(struct module_data *d, int tag)
{
	for (int r = 0; r < AGIPD_ROWS; r++)
		for (int c = 0; c < AGIPD_COLS; c++) {
			d->data[r * AGIPD_COLS + c] = (float)(r + 1000 * c + 100000 * tag);
			d->mask[r * AGIPD_COLS + c] = 0;
			d->gain[r * AGIPD_COLS + c] = 0;
		}
}

static float mosaic_value(const struct agipd_preview_mosaic *m, int x, int y)
{
	return m->value[(size_t)y * (size_t)m->width + (size_t)x];
}

static int mosaic_state(const struct agipd_preview_mosaic *m, int x, int y)
{
	return m->state[(size_t)y * (size_t)m->width + (size_t)x];
}

int main(void)
{
	agipd_err e;

	TEST("preview: viridis ends, middle, clamping, NaN") {
		CHECK_EQ_INT(agipd_preview_viridis(0), 0x440154);
		CHECK_EQ_INT(agipd_preview_viridis(1), 0xfde725);
		CHECK_EQ_INT(agipd_preview_viridis(0.5), 0x21918c);
		CHECK_EQ_INT(agipd_preview_viridis(-3), 0x440154);
		CHECK_EQ_INT(agipd_preview_viridis(7), 0xfde725);
		CHECK_EQ_INT(agipd_preview_viridis(NAN), AGIPD_PREVIEW_MASKED);
		/* Perceptual: lightness (green channel here) rises monotonically. */
		int prev = -1, mono = 1;
		for (int i = 0; i <= 255; i++) {
			int g = (int)(agipd_preview_viridis(i / 255.0) >> 8 & 255);
			mono &= g >= prev;
			prev = g;
		}
		CHECK(mono);
	}

	TEST("preview: mask, background and gain colours are distinct") {
		int min_d = 1 << 30;
		for (int i = 0; i <= 255; i++) {
			int d = colour_dist2(agipd_preview_viridis(i / 255.0), AGIPD_PREVIEW_MASKED);
			min_d = d < min_d ? d : min_d;
			CHECK(agipd_preview_viridis(i / 255.0) != AGIPD_PREVIEW_BACKGROUND);
		}
		CHECK(min_d > 60 * 60);   /* grey is far from every viridis colour */
		uint32_t g0 = agipd_preview_gain_colour(0), g1 = agipd_preview_gain_colour(1),
			 g2 = agipd_preview_gain_colour(2);
		CHECK(colour_dist2(g0, g1) > 100 * 100);
		CHECK(colour_dist2(g1, g2) > 100 * 100);
		CHECK(colour_dist2(g0, g2) > 100 * 100);
		CHECK(g0 != AGIPD_PREVIEW_BACKGROUND && g1 != AGIPD_PREVIEW_BACKGROUND &&
		      g2 != AGIPD_PREVIEW_BACKGROUND);
		CHECK_EQ_INT(agipd_preview_gain_colour(3), 0);
		CHECK_EQ_INT(agipd_preview_gain_colour(-1), 0);
	}

	TEST("preview: percentiles as NumPy's linear, non-finite values ignored") {
		float v[13] = { 10, 1, 9, 2, 8, 3, NAN, 7, 4, 6, 5, INFINITY, -INFINITY };
		float lo, hi;
		CHECK_EQ_INT(agipd_preview_percentiles(v, 13, 0, 100, &lo, &hi), 10);
		CHECK_EQ_F32(lo, 1.0f);
		CHECK_EQ_F32(hi, 10.0f);
		CHECK_EQ_INT(agipd_preview_percentiles(v, 13, 25, 50, &lo, &hi), 10);
		CHECK_EQ_F32(lo, 3.25f);   /* np.percentile(range(1, 11), 25) */
		CHECK_EQ_F32(hi, 5.5f);
		float none[2] = { NAN, INFINITY };
		CHECK_EQ_INT(agipd_preview_percentiles(none, 2, 1, 99, &lo, &hi), 0);
		CHECK_EQ_F32(lo, 0.0f);
		CHECK_EQ_INT(agipd_preview_percentiles(NULL, 0, 1, 99, &lo, &hi), 0);
	}

	TEST("preview: ticks are 1-2-5 steps inside the range") {
		double t[12];
		int dec = -1;
		int n = agipd_preview_ticks(0, 100, 6, t, &dec);
		CHECK_EQ_INT(n, 6);
		CHECK_EQ_INT(dec, 0);
		for (int i = 0; i < n; i++)
			CHECK(t[i] == 20.0 * i);
		n = agipd_preview_ticks(-12.74, 345.4, 5, t, &dec);
		CHECK_EQ_INT(n, 4);
		CHECK(n == 4 && t[0] == 0 && t[3] == 300);
		n = agipd_preview_ticks(-0.3, 0.3, 7, t, &dec);
		CHECK_EQ_INT(dec, 1);
		CHECK(n >= 3 && n <= 7);
		for (int i = 0; i < n; i++) {
			CHECK(t[i] >= -0.3 - 1e-12 && t[i] <= 0.3 + 1e-12);
			CHECK(!(t[i] == 0 && signbit(t[i])));   /* never "-0" */
		}
		n = agipd_preview_ticks(0.001, 0.0012, 5, t, &dec);
		CHECK(n >= 2 && dec >= 4);
		CHECK_EQ_INT(agipd_preview_ticks(1, 1, 5, t, NULL), 0);
		CHECK_EQ_INT(agipd_preview_ticks(2, 1, 5, t, NULL), 0);
		CHECK_EQ_INT(agipd_preview_ticks(0, NAN, 5, t, NULL), 0);
	}

	TEST("preview: canvas, rectangles clipped, text") {
		struct agipd_preview_canvas c;
		CHECK_EQ_INT(agipd_preview_canvas_init(&c, 0, 5, 0, &e), -1);
		CHECK(c.rgb == NULL);
		CHECK_EQ_INT(agipd_preview_canvas_init(&c, 40, 20, 0x123456, &e), 0);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 39, 19), 0x123456);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 40, 0), 0);
		agipd_preview_fill_rect(&c, -1000000, -5, 2000000000, 6, 0xff0000);
		agipd_preview_fill_rect(&c, 2000000000, 2000000000, 2000000000, 2000000000, 0x00ff00);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 0, 0), 0xff0000);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 39, 0), 0xff0000);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 0, 2), 0x123456);
		agipd_preview_fill_rect(&c, 0, 0, 40, 20, 0xffffff);
		CHECK_EQ_INT(agipd_preview_text_width("", 2), 0);
		CHECK_EQ_INT(agipd_preview_text_width(NULL, 2), 0);
		CHECK_EQ_INT(agipd_preview_text_width("A", 2), 10);
		CHECK_EQ_INT(agipd_preview_text_width("AB", 1), 11);
		CHECK_EQ_INT(agipd_preview_text(&c, 1, 1, "1", 1, 0x000000), 5);
		/* '1': the stem is column 2, rows 0-6; row 6 is the full base. */
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 1 + 2, 1 + 3), 0x000000);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, 1 + 0, 1 + 3), 0xffffff);
		CHECK_EQ_INT(count_colour(&c, 0, 0, 40, 20, 0x000000), 10);
		/* Off the canvas, control characters: no crash, '?' drawn. */
		agipd_preview_text(&c, -7, -3, "x\001\xff", 3, 0x0000ff);
		agipd_preview_text(&c, 35, 15, "WWW", 2, 0x0000ff);
		agipd_preview_canvas_free(&c);
		agipd_preview_canvas_free(&c);
		CHECK(c.rgb == NULL);
		agipd_preview_canvas_free(NULL);
	}

	struct module_data *md = malloc(AGIPD_MODULES * sizeof *md);
	if (!md) {
		printf("FAIL out of memory\n");
		return 1;
	}

	TEST("preview: single-module mosaic is the plain transpose") {
		struct agipd_preview_mosaic m;
		fill_module(&md[0], 0);
		md[0].mask[100 * AGIPD_COLS + 20] = AGIPD_BP_NOISY_ADC;
		md[0].data[101 * AGIPD_COLS + 20] = NAN;
		md[0].gain[300 * AGIPD_COLS + 70] = 2;
		struct agipd_preview_module mod = { md[0].data, md[0].mask, md[0].gain };
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_SINGLE, 1, &e), 0);
		CHECK_EQ_INT(m.width, 512);
		CHECK_EQ_INT(m.height, 128);
		CHECK_EQ_INT(m.ntiles, 1);
		CHECK_EQ_F32(mosaic_value(&m, 0, 0), 0.0f);
		CHECK_EQ_F32(mosaic_value(&m, 511, 0), 511.0f);
		CHECK_EQ_F32(mosaic_value(&m, 5, 127), 127005.0f);
		CHECK_EQ_INT(mosaic_state(&m, 100, 20), AGIPD_PREVIEW_BAD);
		CHECK(isnan(mosaic_value(&m, 100, 20)));
		CHECK_EQ_INT(mosaic_state(&m, 101, 20), AGIPD_PREVIEW_BAD);
		CHECK_EQ_INT(mosaic_state(&m, 102, 20), AGIPD_PREVIEW_GOOD);
		CHECK_EQ_INT(m.gain[70 * m.width + 300], 2);
		CHECK_EQ_INT(m.gain[70 * m.width + 301], 0);
		agipd_preview_mosaic_free(&m);
		agipd_preview_mosaic_free(&m);
		/* Wrong module counts and bins are refused. */
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 2, AGIPD_PREVIEW_SINGLE, 1, &e), -1);
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_SINGLE, 3, &e), -1);
		CHECK(strstr(e.msg, "bin 3") != NULL);
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_QUADRANTS, 1, &e), -1);
	}

	TEST("preview: binning averages good pixels, masks a bin when half is bad") {
		struct agipd_preview_mosaic m;
		fill_module(&md[0], 0);
		/* bin (0,0) covers rows 0-1, columns 0-1: values 0, 1000, 1, 1001 */
		md[0].mask[0 * AGIPD_COLS + 0] = 1;    /* 1 of 4 bad: still good */
		/* bin (1,0): rows 2-3, columns 0-1, 2 of 4 bad: masked */
		md[0].mask[2 * AGIPD_COLS + 0] = 1;
		md[0].mask[3 * AGIPD_COLS + 1] = 1;
		md[0].gain[5 * AGIPD_COLS + 1] = 1;     /* bin (2,0) */
		struct agipd_preview_module mod = { md[0].data, md[0].mask, md[0].gain };
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_SINGLE, 2, &e), 0);
		CHECK_EQ_INT(m.width, 256);
		CHECK_EQ_INT(m.height, 64);
		CHECK_EQ_INT(mosaic_state(&m, 0, 0), AGIPD_PREVIEW_GOOD);
		CHECK_EQ_F32(mosaic_value(&m, 0, 0), (1000.0f + 1 + 1001) / 3);
		CHECK_EQ_INT(mosaic_state(&m, 1, 0), AGIPD_PREVIEW_BAD);
		CHECK_EQ_INT(m.gain[2], 1);
		CHECK_EQ_INT(m.gain[3], 0);
		agipd_preview_mosaic_free(&m);
		/* No gain array: unknown (255). */
		mod.gain = NULL;
		mod.mask = NULL;
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_SINGLE, 8, &e), 0);
		CHECK_EQ_INT(m.width, 64);
		CHECK_EQ_INT(m.height, 16);
		CHECK_EQ_INT(m.gain[0], 255);
		CHECK_EQ_INT(mosaic_state(&m, 0, 0), AGIPD_PREVIEW_GOOD);
		agipd_preview_mosaic_free(&m);
	}

	TEST("preview: quadrant layout, orientations, gaps, missing modules") {
		struct agipd_preview_mosaic m;
		struct agipd_preview_module mods[AGIPD_MODULES];
		for (int k = 0; k < AGIPD_MODULES; k++) {
			fill_module(&md[k], k);
			mods[k] = (struct agipd_preview_module){ md[k].data, md[k].mask, md[k].gain };
		}
		mods[6].data = NULL;   /* missing */
		int w, h;
		agipd_preview_mosaic_size(AGIPD_PREVIEW_QUADRANTS, 1, &w, &h);
		CHECK_EQ_INT(w, 1048);
		CHECK_EQ_INT(h, 1096);
		agipd_preview_mosaic_size(AGIPD_PREVIEW_QUADRANTS, 2, &w, &h);
		CHECK_EQ_INT(w, 524);
		CHECK_EQ_INT(h, 548);
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, mods, AGIPD_MODULES, AGIPD_PREVIEW_QUADRANTS, 1, &e), 0);
		CHECK_EQ_INT(m.width, 1048);
		CHECK_EQ_INT(m.height, 1096);
		/* Q1 top-right, module 0 on top: pixel [0][0] at the tile's top-right. */
		CHECK_EQ_INT(m.tiles[0].x, 536);
		CHECK_EQ_INT(m.tiles[0].y, 0);
		CHECK_EQ_F32(mosaic_value(&m, 536 + 511, 0), 0.0f);
		CHECK_EQ_F32(mosaic_value(&m, 536 + 0, 0), 511.0f);        /* row 511 near the beam */
		CHECK_EQ_F32(mosaic_value(&m, 536 + 511, 127), 127000.0f); /* fast-scan down */
		/* module 1 below it, after an 8-pixel gap */
		CHECK_EQ_INT(m.tiles[1].y, 136);
		CHECK_EQ_INT(mosaic_state(&m, 600, 130), AGIPD_PREVIEW_BLANK);
		CHECK_EQ_F32(mosaic_value(&m, 536 + 511, 136), 100000.0f);
		/* Q2 bottom-right: module 4 at the top of it */
		CHECK_EQ_INT(m.tiles[4].x, 536);
		CHECK_EQ_INT(m.tiles[4].y, 560);
		/* Q3 bottom-left, module 8: x = r, fast-scan up */
		CHECK_EQ_INT(m.tiles[8].x, 0);
		CHECK_EQ_INT(m.tiles[8].y, 560);
		CHECK_EQ_F32(mosaic_value(&m, 0, 560 + 127), 800000.0f);
		CHECK_EQ_F32(mosaic_value(&m, 511, 560 + 127), 800511.0f);
		CHECK_EQ_F32(mosaic_value(&m, 0, 560), 927000.0f);
		/* Q4 top-left: modules 12-15 */
		CHECK_EQ_INT(m.tiles[12].x, 0);
		CHECK_EQ_INT(m.tiles[12].y, 0);
		CHECK_EQ_INT(m.tiles[15].y, 408);
		/* The gap between the halves and the missing module are blank. */
		CHECK_EQ_INT(mosaic_state(&m, 520, 50), AGIPD_PREVIEW_BLANK);
		CHECK_EQ_INT(m.tiles[6].present, 0);
		CHECK_EQ_INT(m.tiles[5].present, 1);
		CHECK_EQ_INT(mosaic_state(&m, m.tiles[6].x + 10, m.tiles[6].y + 10), AGIPD_PREVIEW_BLANK);
		agipd_preview_mosaic_free(&m);
	}

	TEST("preview: figure draws data, mask colour, gain colours and text") {
		struct agipd_preview_mosaic m;
		struct agipd_preview_canvas c;
		struct agipd_preview_geometry g;
		fill_module(&md[0], 0);
		for (int r = 200; r < 210; r++)
			for (int col = 30; col < 40; col++) {
				md[0].mask[r * AGIPD_COLS + col] = AGIPD_BP_OFFSET_OUT_OF_THRESHOLD;
				md[0].gain[r * AGIPD_COLS + col] = 1;
			}
		md[0].gain[400 * AGIPD_COLS + 100] = 2;
		struct agipd_preview_module mod = { md[0].data, md[0].mask, md[0].gain };
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, &mod, 1, AGIPD_PREVIEW_SINGLE, 1, &e), 0);
		struct agipd_preview_figure f = { .title = "TITLE", .subtitle = "sub", .lo = 0, .hi = 127511,
						  .scale = 2, .side_by_side = 0, .text_scale = 2 };
		agipd_preview_figure_geometry(&m, &f, &g);
		CHECK_EQ_INT(g.image_w, 1024);
		CHECK_EQ_INT(g.image_h, 256);
		CHECK(g.gain_y >= g.data_y + g.image_h);
		CHECK_EQ_INT(agipd_preview_render(&m, &f, &c, &e), 0);
		CHECK_EQ_INT(c.width, g.width);
		CHECK_EQ_INT(c.height, g.height);
		/* corners of the data image: value 0 (dark) and 127511 (yellow) */
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, g.data_x, g.data_y), 0x440154);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, g.data_x + 2 * 511 + 1, g.data_y + 2 * 127 + 1), 0xfde725);
		/* the masked block, 10 x 10 module pixels = 20 x 20 picture pixels */
		CHECK_EQ_INT(count_colour(&c, g.data_x + 400, g.data_y + 60, 20, 20, AGIPD_PREVIEW_MASKED), 400);
		CHECK_EQ_INT(count_colour(&c, g.data_x, g.data_y, g.image_w, g.image_h, AGIPD_PREVIEW_MASKED), 400);
		/* gain panel: the block in medium, one pixel in low, the rest high */
		CHECK_EQ_INT(count_colour(&c, g.gain_x + 400, g.gain_y + 60, 20, 20, agipd_preview_gain_colour(1)), 400);
		CHECK_EQ_INT(count_colour(&c, g.gain_x + 800, g.gain_y + 200, 2, 2, agipd_preview_gain_colour(2)), 4);
		CHECK(count_colour(&c, g.gain_x, g.gain_y, g.image_w, g.image_h, agipd_preview_gain_colour(0)) >
		      1024 * 256 - 500);
		/* text in the title line */
		CHECK(count_colour(&c, 0, 0, c.width, g.data_y - 30, AGIPD_PREVIEW_INK) > 50);
		agipd_preview_canvas_free(&c);

		/* Degenerate limits are widened, not refused. */
		f.lo = f.hi = 5;
		CHECK_EQ_INT(agipd_preview_render(&m, &f, &c, &e), 0);
		agipd_preview_canvas_free(&c);
		f.lo = NAN;
		CHECK_EQ_INT(agipd_preview_render(&m, &f, &c, &e), 0);
		agipd_preview_canvas_free(&c);
		agipd_preview_mosaic_free(&m);
		struct agipd_preview_mosaic empty = { 0 };
		CHECK_EQ_INT(agipd_preview_render(&empty, &f, &c, &e), -1);
		CHECK(c.rgb == NULL);
	}

	TEST("preview: 16-module figure with a missing module fits 1600 px at bin 2") {
		struct agipd_preview_mosaic m;
		struct agipd_preview_canvas c;
		struct agipd_preview_geometry g;
		struct agipd_preview_module mods[AGIPD_MODULES];
		for (int k = 0; k < AGIPD_MODULES; k++) {
			fill_module(&md[k], k);
			mods[k] = (struct agipd_preview_module){ md[k].data, md[k].mask, md[k].gain };
		}
		mods[9].data = NULL;
		CHECK_EQ_INT(agipd_preview_mosaic_build(&m, mods, AGIPD_MODULES, AGIPD_PREVIEW_QUADRANTS, 2, &e), 0);
		struct agipd_preview_figure f = { .title = "x", .lo = 0, .hi = 1.6e6f, .scale = 1, .side_by_side = 1 };
		agipd_preview_figure_geometry(&m, &f, &g);
		CHECK(g.width <= 1600);
		CHECK_EQ_INT(g.gain_y, g.data_y);
		CHECK(g.gain_x > g.data_x + g.image_w);
		CHECK_EQ_INT(agipd_preview_render(&m, &f, &c, &e), 0);
		/* missing module 9: background inside, outlined */
		const struct agipd_preview_tile *t = &m.tiles[9];
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, g.data_x + t->x + 3, g.data_y + t->y + 3),
			     AGIPD_PREVIEW_BACKGROUND);
		CHECK_EQ_INT(agipd_preview_canvas_get(&c, g.data_x + t->x, g.data_y + t->y + 5),
			     AGIPD_PREVIEW_MISSING_EDGE);
		agipd_preview_canvas_free(&c);
		agipd_preview_mosaic_free(&m);
	}
	free(md);

	TEST("preview: PNG written, read back identical; failure leaves no file") {
		struct agipd_preview_canvas c;
		char dir[] = "/tmp/agipd-test-png-XXXXXX", path[256], bad[300];
		CHECK(mkdtemp(dir) != NULL);
		snprintf(path, sizeof path, "%s/p.png", dir);
		snprintf(bad, sizeof bad, "%s/no/such/dir/p.png", dir);
		CHECK_EQ_INT(agipd_preview_canvas_init(&c, 37, 11, 0, &e), 0);
		for (int y = 0; y < 11; y++)
			for (int x = 0; x < 37; x++)
				agipd_preview_fill_rect(&c, x, y, 1, 1, agipd_preview_viridis((x + y) / 47.0));
		if (!agipd_preview_png_available()) {
			CHECK_EQ_INT(agipd_preview_png_write(path, &c, &e), -1);
			CHECK(strstr(e.msg, "libpng") != NULL);
			CHECK(access(path, F_OK) != 0);
		} else {
#ifdef HAVE_PNG
			CHECK_EQ_INT(agipd_preview_png_write(path, &c, &e), 0);
			png_image img;
			memset(&img, 0, sizeof img);
			img.version = PNG_IMAGE_VERSION;
			CHECK(png_image_begin_read_from_file(&img, path) != 0);
			CHECK_EQ_INT(img.width, 37);
			CHECK_EQ_INT(img.height, 11);
			img.format = PNG_FORMAT_RGB;
			uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
			CHECK(buf && png_image_finish_read(&img, NULL, buf, 0, NULL) != 0);
			CHECK(buf && memcmp(buf, c.rgb, 37 * 11 * 3) == 0);
			free(buf);
			png_image_free(&img);
#endif
			/* Not a folder we can write: error naming the path, nothing left. */
			CHECK_EQ_INT(agipd_preview_png_write(bad, &c, &e), -1);
			CHECK(strstr(e.msg, bad) != NULL);
			/* An existing PNG is only replaced by a complete one. */
			struct agipd_preview_canvas empty = { 0, 0, NULL };
			CHECK_EQ_INT(agipd_preview_png_write(path, &empty, &e), -1);
			struct stat st;
			CHECK(stat(path, &st) == 0 && st.st_size > 50);
			unlink(path);
		}
		agipd_preview_canvas_free(&c);
		CHECK(rmdir(dir) == 0);   /* empty: no temporary file left behind */
	}

	UNIT_EXIT();
}
