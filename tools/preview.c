/*
 * preview.c - pictures of corrected data, pure part: colour maps, a 5x7
 * bitmap font, percentiles and ticks, the module mosaic and the two-panel
 * figure, all into an RGB8 buffer.  No HDF5, no MPI, no I/O: the reading is
 * preview_h5.c's and the PNG encoding png_write.c's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_preview.h"

/* matplotlib's viridis, 256 entries (CC0, van der Walt & Smith). */
static const uint32_t viridis[256] = {
	0x440154, 0x440256, 0x450457, 0x450559, 0x46075a, 0x46085c, 0x460a5d, 0x460b5e,
	0x470d60, 0x470e61, 0x471063, 0x471164, 0x471365, 0x481467, 0x481668, 0x481769,
	0x48186a, 0x481a6c, 0x481b6d, 0x481c6e, 0x481d6f, 0x481f70, 0x482071, 0x482173,
	0x482374, 0x482475, 0x482576, 0x482677, 0x482878, 0x482979, 0x472a7a, 0x472c7a,
	0x472d7b, 0x472e7c, 0x472f7d, 0x46307e, 0x46327e, 0x46337f, 0x463480, 0x453581,
	0x453781, 0x453882, 0x443983, 0x443a83, 0x443b84, 0x433d84, 0x433e85, 0x423f85,
	0x424086, 0x424186, 0x414287, 0x414487, 0x404588, 0x404688, 0x3f4788, 0x3f4889,
	0x3e4989, 0x3e4a89, 0x3e4c8a, 0x3d4d8a, 0x3d4e8a, 0x3c4f8a, 0x3c508b, 0x3b518b,
	0x3b528b, 0x3a538b, 0x3a548c, 0x39558c, 0x39568c, 0x38588c, 0x38598c, 0x375a8c,
	0x375b8d, 0x365c8d, 0x365d8d, 0x355e8d, 0x355f8d, 0x34608d, 0x34618d, 0x33628d,
	0x33638d, 0x32648e, 0x32658e, 0x31668e, 0x31678e, 0x31688e, 0x30698e, 0x306a8e,
	0x2f6b8e, 0x2f6c8e, 0x2e6d8e, 0x2e6e8e, 0x2e6f8e, 0x2d708e, 0x2d718e, 0x2c718e,
	0x2c728e, 0x2c738e, 0x2b748e, 0x2b758e, 0x2a768e, 0x2a778e, 0x2a788e, 0x29798e,
	0x297a8e, 0x297b8e, 0x287c8e, 0x287d8e, 0x277e8e, 0x277f8e, 0x27808e, 0x26818e,
	0x26828e, 0x26828e, 0x25838e, 0x25848e, 0x25858e, 0x24868e, 0x24878e, 0x23888e,
	0x23898e, 0x238a8d, 0x228b8d, 0x228c8d, 0x228d8d, 0x218e8d, 0x218f8d, 0x21908d,
	0x21918c, 0x20928c, 0x20928c, 0x20938c, 0x1f948c, 0x1f958b, 0x1f968b, 0x1f978b,
	0x1f988b, 0x1f998a, 0x1f9a8a, 0x1e9b8a, 0x1e9c89, 0x1e9d89, 0x1f9e89, 0x1f9f88,
	0x1fa088, 0x1fa188, 0x1fa187, 0x1fa287, 0x20a386, 0x20a486, 0x21a585, 0x21a685,
	0x22a785, 0x22a884, 0x23a983, 0x24aa83, 0x25ab82, 0x25ac82, 0x26ad81, 0x27ad81,
	0x28ae80, 0x29af7f, 0x2ab07f, 0x2cb17e, 0x2db27d, 0x2eb37c, 0x2fb47c, 0x31b57b,
	0x32b67a, 0x34b679, 0x35b779, 0x37b878, 0x38b977, 0x3aba76, 0x3bbb75, 0x3dbc74,
	0x3fbc73, 0x40bd72, 0x42be71, 0x44bf70, 0x46c06f, 0x48c16e, 0x4ac16d, 0x4cc26c,
	0x4ec36b, 0x50c46a, 0x52c569, 0x54c568, 0x56c667, 0x58c765, 0x5ac864, 0x5cc863,
	0x5ec962, 0x60ca60, 0x63cb5f, 0x65cb5e, 0x67cc5c, 0x69cd5b, 0x6ccd5a, 0x6ece58,
	0x70cf57, 0x73d056, 0x75d054, 0x77d153, 0x7ad151, 0x7cd250, 0x7fd34e, 0x81d34d,
	0x84d44b, 0x86d549, 0x89d548, 0x8bd646, 0x8ed645, 0x90d743, 0x93d741, 0x95d840,
	0x98d83e, 0x9bd93c, 0x9dd93b, 0xa0da39, 0xa2da37, 0xa5db36, 0xa8db34, 0xaadc32,
	0xaddc30, 0xb0dd2f, 0xb2dd2d, 0xb5de2b, 0xb8de29, 0xbade28, 0xbddf26, 0xc0df25,
	0xc2df23, 0xc5e021, 0xc8e020, 0xcae11f, 0xcde11d, 0xd0e11c, 0xd2e21b, 0xd5e21a,
	0xd8e219, 0xdae319, 0xdde318, 0xdfe318, 0xe2e418, 0xe5e419, 0xe7e419, 0xeae51a,
	0xece51b, 0xefe51c, 0xf1e51d, 0xf4e61e, 0xf6e620, 0xf8e621, 0xfbe723, 0xfde725,
};

/* 5 x 9 glyph cells for ASCII 32..126: capitals and digits in rows 0-6, rows
 * 7-8 for descenders (g j p q y , ;).  One byte per row, bit 4 = leftmost. */
static const uint8_t font5x9[95][AGIPD_PREVIEW_GLYPH_H] = {
	{ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, /*   */
	{ 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00 }, /* ! */
	{ 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* " */
	{ 0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00, 0x00 }, /* # */
	{ 0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00, 0x00 }, /* $ */
	{ 0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00 }, /* % */
	{ 0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00, 0x00 }, /* & */
	{ 0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* quote */
	{ 0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00 }, /* ( */
	{ 0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00 }, /* ) */
	{ 0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00, 0x00 }, /* * */
	{ 0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00, 0x00 }, /* + */
	{ 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x04, 0x08 }, /* , */
	{ 0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* - */
	{ 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00, 0x00 }, /* . */
	{ 0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00 }, /* / */
	{ 0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00, 0x00 }, /* 0 */
	{ 0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00 }, /* 1 */
	{ 0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00 }, /* 2 */
	{ 0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00, 0x00 }, /* 3 */
	{ 0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00, 0x00 }, /* 4 */
	{ 0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00, 0x00 }, /* 5 */
	{ 0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00, 0x00 }, /* 6 */
	{ 0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00 }, /* 7 */
	{ 0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00, 0x00 }, /* 8 */
	{ 0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00, 0x00 }, /* 9 */
	{ 0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00 }, /* : */
	{ 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x0c, 0x0c, 0x04, 0x08 }, /* ; */
	{ 0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00 }, /* < */
	{ 0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00 }, /* = */
	{ 0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00 }, /* > */
	{ 0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00 }, /* ? */
	{ 0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e, 0x00, 0x00 }, /* @ */
	{ 0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00 }, /* A */
	{ 0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00, 0x00 }, /* B */
	{ 0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00 }, /* C */
	{ 0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00, 0x00 }, /* D */
	{ 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00, 0x00 }, /* E */
	{ 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00 }, /* F */
	{ 0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00, 0x00 }, /* G */
	{ 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00 }, /* H */
	{ 0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00 }, /* I */
	{ 0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00, 0x00 }, /* J */
	{ 0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00 }, /* K */
	{ 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00, 0x00 }, /* L */
	{ 0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00 }, /* M */
	{ 0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00 }, /* N */
	{ 0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00 }, /* O */
	{ 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00 }, /* P */
	{ 0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00, 0x00 }, /* Q */
	{ 0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00, 0x00 }, /* R */
	{ 0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00, 0x00 }, /* S */
	{ 0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00 }, /* T */
	{ 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00 }, /* U */
	{ 0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00 }, /* V */
	{ 0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00, 0x00 }, /* W */
	{ 0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00, 0x00 }, /* X */
	{ 0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x00, 0x00 }, /* Y */
	{ 0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00, 0x00 }, /* Z */
	{ 0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00, 0x00 }, /* [ */
	{ 0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00 }, /* backslash */
	{ 0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00, 0x00 }, /* ] */
	{ 0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* ^ */
	{ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00, 0x00 }, /* _ */
	{ 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* ` */
	{ 0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00, 0x00 }, /* a */
	{ 0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00, 0x00 }, /* b */
	{ 0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00 }, /* c */
	{ 0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00, 0x00 }, /* d */
	{ 0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00, 0x00 }, /* e */
	{ 0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00, 0x00 }, /* f */
	{ 0x00, 0x00, 0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e }, /* g */
	{ 0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00 }, /* h */
	{ 0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00 }, /* i */
	{ 0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c }, /* j */
	{ 0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00 }, /* k */
	{ 0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00 }, /* l */
	{ 0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11, 0x00, 0x00 }, /* m */
	{ 0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00 }, /* n */
	{ 0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00 }, /* o */
	{ 0x00, 0x00, 0x1e, 0x11, 0x11, 0x11, 0x1e, 0x10, 0x10 }, /* p */
	{ 0x00, 0x00, 0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x01 }, /* q */
	{ 0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00 }, /* r */
	{ 0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e, 0x00, 0x00 }, /* s */
	{ 0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00 }, /* t */
	{ 0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00, 0x00 }, /* u */
	{ 0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00 }, /* v */
	{ 0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00, 0x00 }, /* w */
	{ 0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00, 0x00 }, /* x */
	{ 0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e }, /* y */
	{ 0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00 }, /* z */
	{ 0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00 }, /* { */
	{ 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00 }, /* | */
	{ 0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00 }, /* } */
	{ 0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00 }, /* ~ */
};

/* ------------------------------------------------------------------------
 * Colours
 */

uint32_t agipd_preview_viridis(double t)
{
	if (isnan(t))
		return AGIPD_PREVIEW_MASKED;
	if (t <= 0)
		return viridis[0];
	if (t >= 1)
		return viridis[255];
	return viridis[(int)(t * 255.0 + 0.5)];
}

uint32_t agipd_preview_gain_colour(int gain)
{
	switch (gain) {
	case AGIPD_GAIN_HIGH:
		return 0x0072b2u;
	case AGIPD_GAIN_MEDIUM:
		return 0xf0e442u;
	case AGIPD_GAIN_LOW:
		return 0xd55e00u;
	default:
		return 0x000000u;
	}
}

/* ------------------------------------------------------------------------
 * Canvas and text
 */

int agipd_preview_canvas_init(struct agipd_preview_canvas *c, int width, int height, uint32_t fill,
			      agipd_err *e)
{
	c->width = c->height = 0;
	c->rgb = NULL;
	if (width < 1 || height < 1 || width > 16384 || height > 16384)
		return agipd_err_set(e, "preview: picture size %d x %d is out of range (1..16384)", width,
				     height);
	c->rgb = malloc((size_t)width * (size_t)height * 3);
	if (!c->rgb)
		return agipd_err_set(e, "preview: out of memory for a %d x %d picture", width, height);
	c->width = width;
	c->height = height;
	agipd_preview_fill_rect(c, 0, 0, width, height, fill);
	return 0;
}

void agipd_preview_canvas_free(struct agipd_preview_canvas *c)
{
	if (!c)
		return;
	free(c->rgb);
	c->rgb = NULL;
	c->width = c->height = 0;
}

uint32_t agipd_preview_canvas_get(const struct agipd_preview_canvas *c, int x, int y)
{
	if (!c || !c->rgb || x < 0 || y < 0 || x >= c->width || y >= c->height)
		return 0;
	const uint8_t *p = c->rgb + ((size_t)y * (size_t)c->width + (size_t)x) * 3;
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

void agipd_preview_fill_rect(struct agipd_preview_canvas *c, int x, int y, int w, int h, uint32_t rgb)
{
	if (!c || !c->rgb)
		return;
	int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
	/* long: x + w must not overflow for any int arguments */
	long x1 = (long)x + w, y1 = (long)y + h;
	if (x1 > c->width)
		x1 = c->width;
	if (y1 > c->height)
		y1 = c->height;
	uint8_t r = (uint8_t)(rgb >> 16), g = (uint8_t)(rgb >> 8), b = (uint8_t)rgb;
	for (long yy = y0; yy < y1; yy++) {
		uint8_t *p = c->rgb + ((size_t)yy * (size_t)c->width + (size_t)x0) * 3;
		for (long xx = x0; xx < x1; xx++) {
			*p++ = r;
			*p++ = g;
			*p++ = b;
		}
	}
}

void agipd_preview_draw_rect(struct agipd_preview_canvas *c, int x, int y, int w, int h, uint32_t rgb)
{
	if (w <= 0 || h <= 0)
		return;
	agipd_preview_fill_rect(c, x, y, w, 1, rgb);
	agipd_preview_fill_rect(c, x, y + h - 1, w, 1, rgb);
	agipd_preview_fill_rect(c, x, y, 1, h, rgb);
	agipd_preview_fill_rect(c, x + w - 1, y, 1, h, rgb);
}

int agipd_preview_text_width(const char *s, int scale)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || scale < 1)
		return 0;
	return (int)((n * (AGIPD_PREVIEW_GLYPH_W + 1) - 1) * (size_t)scale);
}

int agipd_preview_text(struct agipd_preview_canvas *c, int x, int y, const char *s, int scale, uint32_t rgb)
{
	if (!s || scale < 1)
		return 0;
	int cx = x;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned ch = *p >= 32 && *p < 127 ? *p : '?';
		const uint8_t *gl = font5x9[ch - 32];
		for (int row = 0; row < AGIPD_PREVIEW_GLYPH_H; row++)
			for (int col = 0; col < AGIPD_PREVIEW_GLYPH_W; col++)
				if (gl[row] & (0x10 >> col))
					agipd_preview_fill_rect(c, cx + col * scale, y + row * scale, scale,
								scale, rgb);
		cx += (AGIPD_PREVIEW_GLYPH_W + 1) * scale;
	}
	return agipd_preview_text_width(s, scale);
}

/* ------------------------------------------------------------------------
 * Percentiles and ticks
 */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* NumPy's default ("linear"): position p/100 * (n - 1) between sorted values. */
static float percentile_sorted(const float *s, size_t n, double p)
{
	double pos = p / 100.0 * (double)(n - 1);
	if (pos <= 0)
		return s[0];
	if (pos >= (double)(n - 1))
		return s[n - 1];
	size_t i = (size_t)pos;
	double f = pos - (double)i;
	return (float)((double)s[i] + f * ((double)s[i + 1] - (double)s[i]));
}

long agipd_preview_percentiles(const float *v, size_t n, double plo, double phi, float *lo, float *hi)
{
	*lo = *hi = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += isfinite(v[i]) != 0;
	if (k == 0)
		return 0;
	float *s = malloc(k * sizeof *s);
	if (!s)
		return -1;
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (isfinite(v[i]))
			s[k++] = v[i];
	qsort(s, k, sizeof *s, cmp_float);
	*lo = percentile_sorted(s, k, plo);
	*hi = percentile_sorted(s, k, phi);
	free(s);
	return (long)k;
}

int agipd_preview_ticks(double lo, double hi, int max_ticks, double *ticks, int *decimals)
{
	if (!(lo < hi) || !isfinite(lo) || !isfinite(hi) || max_ticks < 1)
		return 0;
	static const double mult[3] = { 1, 2, 5 };
	double range = hi - lo, step = 0;
	int e = (int)floor(log10(range / max_ticks)) - 1;
	/* The smallest 1-2-5 step that gives no more than max_ticks ticks. */
	for (int k = 0; k < 30 && step == 0; k++) {
		double s = mult[k % 3] * pow(10.0, e + k / 3);
		double first = ceil(lo / s), last = floor(hi / s);
		if (last - first + 1 <= max_ticks)
			step = s;
	}
	if (step == 0)
		return 0;
	int n = 0;
	for (double i = ceil(lo / step); n < max_ticks && i * step <= hi * (1 + 1e-12) + 1e-300; i += 1) {
		double t = i * step;
		if (fabs(t) < step * 1e-9)
			t = 0;   /* never "-0" */
		ticks[n++] = t;
	}
	if (decimals)
		*decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	return n;
}

/* ------------------------------------------------------------------------
 * Mosaic
 */

struct geometry {
	int tile_w, tile_h, module_gap, quad_gap, quad_w, quad_h;
};

static struct geometry geometry_of(int bin)
{
	struct geometry g;
	g.tile_w = AGIPD_ROWS / bin;
	g.tile_h = AGIPD_COLS / bin;
	g.module_gap = AGIPD_PREVIEW_MODULE_GAP / bin;
	g.quad_gap = AGIPD_PREVIEW_QUADRANT_GAP / bin;
	g.quad_w = g.tile_w;
	g.quad_h = 4 * g.tile_h + 3 * g.module_gap;
	return g;
}

void agipd_preview_mosaic_size(enum agipd_preview_layout layout, int bin, int *width, int *height)
{
	if (bin < 1)
		bin = 1;
	struct geometry g = geometry_of(bin);
	if (layout == AGIPD_PREVIEW_SINGLE) {
		*width = g.tile_w;
		*height = g.tile_h;
	} else {
		*width = 2 * g.quad_w + g.quad_gap;
		*height = 2 * g.quad_h + g.quad_gap;
	}
}

/* Front view, as EXtra-geom draws AGIPD-1M: Q1 (0-3) top-right, Q2 (4-7)
 * bottom-right, Q3 (8-11) bottom-left, Q4 (12-15) top-left; the lowest
 * module of a quadrant on top. */
static void tile_origin(const struct geometry *g, int module, int *x, int *y)
{
	int q = module / 4, k = module % 4;
	*x = q < 2 ? g->quad_w + g->quad_gap : 0;
	*y = ((q == 0 || q == 3) ? 0 : g->quad_h + g->quad_gap) + k * (g->tile_h + g->module_gap);
}

void agipd_preview_mosaic_free(struct agipd_preview_mosaic *m)
{
	if (!m)
		return;
	free(m->value);
	free(m->state);
	free(m->gain);
	m->value = NULL;
	m->state = m->gain = NULL;
	m->width = m->height = m->ntiles = 0;
}

/* Bin one module into its tile.  Slow-scan runs from the outer edge towards
 * the beam: in the right half (modules 0-7) row r goes to tile x = w-1-r
 * and fast-scan runs down; in the left half (8-15) x = r and fast-scan runs
 * up; the single layout is the plain transpose (x = r, y = c). */
static void fill_tile(struct agipd_preview_mosaic *m, const struct agipd_preview_tile *t,
		      const struct agipd_preview_module *mod, int bin)
{
	int half = (bin * bin + 1) / 2;
	int flip_x = m->layout == AGIPD_PREVIEW_QUADRANTS && t->module < 8;
	int flip_y = m->layout == AGIPD_PREVIEW_QUADRANTS && t->module >= 8;
	for (int by = 0; by < t->h; by++) {
		int ty = flip_y ? t->h - 1 - by : by;
		for (int bx = 0; bx < t->w; bx++) {
			int tx = flip_x ? t->w - 1 - bx : bx;
			size_t o = (size_t)(t->y + ty) * (size_t)m->width + (size_t)(t->x + tx);
			double sum = 0;
			int good = 0, bad = 0, gmax = -1;
			for (int r = bx * bin; r < bx * bin + bin; r++)
				for (int c = by * bin; c < by * bin + bin; c++) {
					size_t i = (size_t)r * AGIPD_COLS + (size_t)c;
					float v = mod->data[i];
					if (!isfinite(v) || (mod->mask && mod->mask[i]))
						bad++;
					else {
						sum += v;
						good++;
					}
					if (mod->gain && mod->gain[i] > gmax)
						gmax = mod->gain[i];
				}
			int is_bad = bad >= half;
			m->state[o] = is_bad ? AGIPD_PREVIEW_BAD : AGIPD_PREVIEW_GOOD;
			m->value[o] = is_bad ? NAN : (float)(sum / good);
			m->gain[o] = gmax < 0 ? 255 : (uint8_t)gmax;
		}
	}
}

int agipd_preview_mosaic_build(struct agipd_preview_mosaic *m, const struct agipd_preview_module *mods,
			       int nmods, enum agipd_preview_layout layout, int bin, agipd_err *e)
{
	memset(m, 0, sizeof *m);
	if (bin != 1 && bin != 2 && bin != 4 && bin != 8)
		return agipd_err_set(e, "preview: bin %d is not 1, 2, 4 or 8", bin);
	if (!mods || (layout == AGIPD_PREVIEW_SINGLE && nmods != 1) ||
	    (layout == AGIPD_PREVIEW_QUADRANTS && nmods != AGIPD_MODULES) ||
	    (layout != AGIPD_PREVIEW_SINGLE && layout != AGIPD_PREVIEW_QUADRANTS))
		return agipd_err_set(e, "preview: layout %d takes %d module(s), got %d", (int)layout,
				     layout == AGIPD_PREVIEW_SINGLE ? 1 : AGIPD_MODULES, nmods);
	struct geometry g = geometry_of(bin);
	int w, h;
	agipd_preview_mosaic_size(layout, bin, &w, &h);
	size_t n = (size_t)w * (size_t)h;
	m->value = malloc(n * sizeof *m->value);
	m->state = calloc(n, 1);
	m->gain = malloc(n);
	if (!m->value || !m->state || !m->gain) {
		agipd_preview_mosaic_free(m);
		return agipd_err_set(e, "preview: out of memory for a %d x %d mosaic", w, h);
	}
	for (size_t i = 0; i < n; i++)
		m->value[i] = NAN;
	memset(m->gain, 255, n);
	m->width = w;
	m->height = h;
	m->bin = bin;
	m->layout = layout;
	m->ntiles = nmods;
	for (int k = 0; k < nmods; k++) {
		struct agipd_preview_tile *t = &m->tiles[k];
		t->module = layout == AGIPD_PREVIEW_SINGLE ? 0 : k;
		if (layout == AGIPD_PREVIEW_SINGLE)
			t->x = t->y = 0;
		else
			tile_origin(&g, k, &t->x, &t->y);
		t->w = g.tile_w;
		t->h = g.tile_h;
		t->present = mods[k].data != NULL;
		if (t->present)
			fill_tile(m, t, &mods[k], bin);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Figure
 */

#define MAX_TICKS 12
#define MAX_TITLE_LINES 6

/* Everything the drawing needs to know about sizes, computed once by
 * layout() for both agipd_preview_figure_size and agipd_preview_render. */
struct fig_layout {
	int ts, line_h, margin, label_w, mw, mh, bar_gap, bar_w, tick_len, right_w;
	int panel_w, panel_h, panel_gap, legend_h, title_h, width, height;
	float lo, hi;
	int nticks, decimals;
	double ticks[MAX_TICKS];
	char tick_text[MAX_TICKS][32];
	char gain_items[4][32];  /* legend under the gain panel: share of each stage */
	int ngain_items;
	const char *data_label, *gain_label;
	int ntitle;                      /* title and subtitle, wrapped */
	char title[MAX_TITLE_LINES][256];
};

static const char *const gain_names[3] = { "high (0)", "medium (1)", "low (2)" };

static void format_tick(char *buf, size_t len, double v, int decimals, double maxabs)
{
	if (maxabs >= 1e6)
		snprintf(buf, len, "%.2e", v);
	else
		snprintf(buf, len, "%.*f", decimals, v);
}

/* A legend entry: an optional colour swatch (fill, outline) and a text. */
struct legend_item {
	uint32_t fill, edge;
	const char *text;
	int swatch;
};

/* Legend items laid out left to right, wrapping at maxw; draws when c is not
 * NULL (NULL: only measures).  Returns the height used. */
static int legend(struct agipd_preview_canvas *c, const struct fig_layout *L, int x, int y, int maxw,
		  const struct legend_item *items, int n)
{
	int ts = L->ts, sw = AGIPD_PREVIEW_CAP_H * ts;
	int cx = x, cy = y, lines = n > 0;
	for (int i = 0; i < n; i++) {
		int tw = agipd_preview_text_width(items[i].text, ts);
		int w = (items[i].swatch ? sw + 3 * ts : 0) + tw;
		if (cx > x && cx + w > x + maxw) {
			cx = x;
			cy += L->line_h;
			lines++;
		}
		if (c) {
			if (items[i].swatch) {
				agipd_preview_fill_rect(c, cx, cy, sw, sw, items[i].fill);
				agipd_preview_draw_rect(c, cx, cy, sw, sw, items[i].edge);
			}
			agipd_preview_text(c, cx + (items[i].swatch ? sw + 3 * ts : 0), cy, items[i].text, ts,
					   AGIPD_PREVIEW_INK);
		}
		cx += w + 3 * (AGIPD_PREVIEW_GLYPH_W + 1) * ts;
	}
	return lines * L->line_h;
}

static int count_missing(const struct agipd_preview_mosaic *m)
{
	int k = 0;
	for (int i = 0; i < m->ntiles; i++)
		k += !m->tiles[i].present;
	return k;
}

/* Legend items of the two panels; returns their count. */
static int data_legend(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
		       struct legend_item *it)
{
	int n = 0;
	it[n++] = (struct legend_item){ AGIPD_PREVIEW_MASKED, AGIPD_PREVIEW_INK, "masked", 1 };
	if (count_missing(m))
		it[n++] = (struct legend_item){ AGIPD_PREVIEW_BACKGROUND, AGIPD_PREVIEW_MISSING_EDGE, "no data", 1 };
	if (f->limits_note && *f->limits_note)
		it[n++] = (struct legend_item){ 0, 0, f->limits_note, 0 };
	return n;
}

static int gain_legend(const struct fig_layout *L, struct legend_item *it)
{
	for (int i = 0; i < L->ngain_items; i++)
		it[i] = (struct legend_item){ 0, 0, L->gain_items[i], 0 };
	return L->ngain_items;
}

/* Append s to L->title as lines no wider than maxw, broken at spaces,
 * preferably after a comma (a single longer word gets a line of its own). */
static void wrap(struct fig_layout *L, const char *s, int maxw)
{
	size_t cap = sizeof L->title[0] - 1;
	while (s && *s && L->ntitle < MAX_TITLE_LINES) {
		size_t n = strlen(s), take = n < cap ? n : cap, brk = 0;
		char *line = L->title[L->ntitle];
		size_t comma = 0;
		for (size_t k = 1; k <= take; k++) {
			memcpy(line, s, k);
			line[k] = 0;
			if (agipd_preview_text_width(line, L->ts) > maxw)
				break;
			if (k == n || s[k] == ' ')
				brk = k;
			if (k < n && s[k] == ' ' && s[k - 1] == ',')
				comma = k;
		}
		if (brk < n && comma * 2 >= brk)
			brk = comma;
		if (brk == 0) {   /* one long word: as much of it as the line holds */
			brk = take;
			while (brk < n && s[brk] != ' ' && brk < cap)
				brk++;
		}
		memcpy(line, s, brk);
		line[brk] = 0;
		L->ntitle++;
		s += brk;
		while (*s == ' ')
			s++;
	}
}

static void layout(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
		   struct fig_layout *L)
{
	memset(L, 0, sizeof *L);
	int ts = f->text_scale >= 1 && f->text_scale <= 4 ? f->text_scale : 2;
	int scale = f->scale >= 1 && f->scale <= 8 ? f->scale : 1;
	L->ts = ts;
	L->line_h = (AGIPD_PREVIEW_GLYPH_H + 2) * ts;
	L->margin = 8 * ts;
	L->label_w = m->layout == AGIPD_PREVIEW_QUADRANTS ? agipd_preview_text_width("15", ts) + 4 * ts : 0;
	L->mw = m->width * scale;
	L->mh = m->height * scale;
	L->bar_gap = 6 * ts;
	L->bar_w = 10 * ts;
	L->tick_len = 2 * ts;
	L->panel_gap = 12 * ts;
	L->data_label = f->data_label ? f->data_label : "corrected data";
	L->gain_label = f->gain_label ? f->gain_label : "gain stage";

	/* Colour limits: finite and increasing. */
	float lo = f->lo, hi = f->hi;
	if (!isfinite(lo) || !isfinite(hi)) {
		lo = 0;
		hi = 1;
	}
	if (!(lo < hi)) {
		float d = fabsf(lo) > 1 ? fabsf(lo) * 1e-3f : 0.5f;
		lo -= d;
		hi += d;
	}
	L->lo = lo;
	L->hi = hi;
	int want = L->mh / (2 * L->line_h);
	want = want < 2 ? 2 : want > 8 ? 8 : want;
	L->nticks = agipd_preview_ticks(lo, hi, want, L->ticks, &L->decimals);
	double maxabs = fmax(fabs(lo), fabs(hi));
	int text_w = 0;
	for (int i = 0; i < L->nticks; i++) {
		format_tick(L->tick_text[i], sizeof L->tick_text[i], L->ticks[i], L->decimals, maxabs);
		int tw = agipd_preview_text_width(L->tick_text[i], ts);
		text_w = tw > text_w ? tw : text_w;
	}
	for (int g = 0; g < 3; g++) {
		int tw = agipd_preview_text_width(gain_names[g], ts);
		text_w = tw > text_w ? tw : text_w;
	}
	L->right_w = L->bar_gap + L->bar_w + 1 + L->tick_len + 2 * ts + text_w;
	L->panel_w = 2 * L->label_w + L->mw + L->right_w;

	/* Gain shares over the pixels shown. */
	size_t cnt[4] = { 0 }, tot = 0;
	for (size_t i = 0; i < (size_t)m->width * (size_t)m->height; i++) {
		if (m->state[i] == AGIPD_PREVIEW_BLANK || m->gain[i] == 255)
			continue;
		cnt[m->gain[i] <= 2 ? m->gain[i] : 3]++;
		tot++;
	}
	static const char *const share_names[4] = { "high", "medium", "low", "other" };
	L->ngain_items = 0;
	for (int g = 0; g < 4 && tot; g++)
		if (g < 3 || cnt[g])
			snprintf(L->gain_items[L->ngain_items++], sizeof L->gain_items[0], "%s %.2f%%",
				 share_names[g], 100.0 * (double)cnt[g] / (double)tot);
	if (!tot)
		snprintf(L->gain_items[L->ngain_items++], sizeof L->gain_items[0], "no gain data");

	struct legend_item items[4];
	int ni = data_legend(m, f, items);
	int lh_data = legend(NULL, L, 0, 0, L->mw + L->label_w + L->right_w, items, ni);
	ni = gain_legend(L, items);
	int lh_gain = legend(NULL, L, 0, 0, L->mw + L->label_w + L->right_w, items, ni);
	L->legend_h = 2 * ts + (lh_data > lh_gain ? lh_data : lh_gain);
	L->panel_h = L->line_h + L->mh + L->legend_h;

	int content_w = f->side_by_side ? 2 * L->panel_w + L->panel_gap : L->panel_w;
	wrap(L, f->title, content_w);
	wrap(L, f->subtitle, content_w);
	L->title_h = L->ntitle * L->line_h;
	if (L->title_h)
		L->title_h += 3 * ts;
	L->width = 2 * L->margin + content_w;
	if (f->side_by_side)
		L->height = 2 * L->margin + L->title_h + L->panel_h;
	else
		L->height = 2 * L->margin + L->title_h + 2 * L->panel_h + L->panel_gap;
	/* A word wider than the panels widens the picture. */
	for (int i = 0; i < L->ntitle; i++) {
		int tw = agipd_preview_text_width(L->title[i], ts);
		if (tw + 2 * L->margin > L->width)
			L->width = tw + 2 * L->margin;
	}
}

void agipd_preview_figure_geometry(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
				   struct agipd_preview_geometry *g)
{
	struct fig_layout L;
	layout(m, f, &L);
	g->width = L.width;
	g->height = L.height;
	g->image_w = L.mw;
	g->image_h = L.mh;
	g->data_x = L.margin + L.label_w;
	g->data_y = L.margin + L.title_h + L.line_h;
	if (f->side_by_side) {
		g->gain_x = g->data_x + L.panel_w + L.panel_gap;
		g->gain_y = g->data_y;
	} else {
		g->gain_x = g->data_x;
		g->gain_y = g->data_y + L.panel_h + L.panel_gap;
	}
}

/* The mosaic's pixels, coloured by `gain_panel ? gain : value`, at (x, y). */
static void draw_mosaic(struct agipd_preview_canvas *c, const struct agipd_preview_mosaic *m,
			const struct fig_layout *L, int x, int y, int gain_panel)
{
	int s = L->mw / m->width;
	float lo = L->lo, span = L->hi - L->lo;
	for (int my = 0; my < m->height; my++)
		for (int mx = 0; mx < m->width; mx++) {
			size_t i = (size_t)my * (size_t)m->width + (size_t)mx;
			uint32_t col;
			if (m->state[i] == AGIPD_PREVIEW_BLANK)
				continue;
			if (gain_panel)
				col = m->gain[i] == 255 ? AGIPD_PREVIEW_BACKGROUND : agipd_preview_gain_colour(m->gain[i]);
			else if (m->state[i] == AGIPD_PREVIEW_BAD)
				col = AGIPD_PREVIEW_MASKED;
			else
				col = agipd_preview_viridis(((double)m->value[i] - lo) / span);
			agipd_preview_fill_rect(c, x + mx * s, y + my * s, s, s, col);
		}
	/* Missing modules: outline and "no data"; module numbers beside tiles. */
	for (int k = 0; k < m->ntiles; k++) {
		const struct agipd_preview_tile *t = &m->tiles[k];
		int tx = x + t->x * s, ty = y + t->y * s, tw = t->w * s, th = t->h * s;
		if (!t->present) {
			agipd_preview_draw_rect(c, tx, ty, tw, th, AGIPD_PREVIEW_MISSING_EDGE);
			const char *msg = "no data";
			int w = agipd_preview_text_width(msg, L->ts);
			if (w < tw && AGIPD_PREVIEW_GLYPH_H * L->ts < th)
				agipd_preview_text(c, tx + (tw - w) / 2, ty + (th - AGIPD_PREVIEW_CAP_H * L->ts) / 2,
						   msg, L->ts, AGIPD_PREVIEW_MISSING_EDGE);
		}
		if (m->layout == AGIPD_PREVIEW_QUADRANTS) {
			char num[8];
			snprintf(num, sizeof num, "%d", t->module);
			int w = agipd_preview_text_width(num, L->ts);
			int ly = ty + (th - AGIPD_PREVIEW_CAP_H * L->ts) / 2;
			int lx = 2 * t->x < m->width ? tx - 2 * L->ts - w : tx + tw + 2 * L->ts;
			agipd_preview_text(c, lx, ly, num, L->ts, AGIPD_PREVIEW_INK);
		}
	}
}

/* The colour bar with ticks, right of the data image at (x, y). */
static void draw_colour_bar(struct agipd_preview_canvas *c, const struct fig_layout *L, int x, int y)
{
	int h = L->mh, ch = AGIPD_PREVIEW_CAP_H * L->ts;
	for (int j = 0; j < h; j++)
		agipd_preview_fill_rect(c, x, y + j, L->bar_w, 1,
					agipd_preview_viridis(h > 1 ? (double)(h - 1 - j) / (h - 1) : 0.5));
	agipd_preview_draw_rect(c, x - 1, y - 1, L->bar_w + 2, h + 2, AGIPD_PREVIEW_INK);
	for (int i = 0; i < L->nticks; i++) {
		double t = (L->ticks[i] - L->lo) / ((double)L->hi - L->lo);
		int ty = y + (int)lround((1 - t) * (h - 1));
		agipd_preview_fill_rect(c, x + L->bar_w + 1, ty - L->ts / 2, L->tick_len, L->ts, AGIPD_PREVIEW_INK);
		int ly = ty - ch / 2;
		ly = ly < y - ch / 2 ? y - ch / 2 : ly > y + h - ch / 2 ? y + h - ch / 2 : ly;
		agipd_preview_text(c, x + L->bar_w + 1 + L->tick_len + 2 * L->ts, ly, L->tick_text[i], L->ts,
				   AGIPD_PREVIEW_INK);
	}
}

/* The gain legend: three boxes, high to low, with their names. */
static void draw_gain_key(struct agipd_preview_canvas *c, const struct fig_layout *L, int x, int y)
{
	int box = L->mh / 3, ch = AGIPD_PREVIEW_CAP_H * L->ts;
	if (box > 3 * L->line_h)
		box = 3 * L->line_h;
	for (int g = 0; g < 3; g++) {
		int by = y + g * box;
		agipd_preview_fill_rect(c, x, by, L->bar_w, box, agipd_preview_gain_colour(g));
		agipd_preview_draw_rect(c, x, by, L->bar_w, box, AGIPD_PREVIEW_INK);
		agipd_preview_text(c, x + L->bar_w + L->tick_len + 2 * L->ts, by + (box - ch) / 2, gain_names[g],
				   L->ts, AGIPD_PREVIEW_INK);
	}
}

static void draw_panel(struct agipd_preview_canvas *c, const struct agipd_preview_mosaic *m,
		       const struct agipd_preview_figure *f, const struct fig_layout *L, int x, int y,
		       int gain_panel)
{
	int ix = x + L->label_w, iy = y + L->line_h;
	agipd_preview_text(c, ix, y, gain_panel ? L->gain_label : L->data_label, L->ts, AGIPD_PREVIEW_INK);
	draw_mosaic(c, m, L, ix, iy, gain_panel);
	int bx = ix + L->mw + L->label_w + L->bar_gap;
	if (gain_panel)
		draw_gain_key(c, L, bx, iy);
	else
		draw_colour_bar(c, L, bx, iy);
	struct legend_item items[4];
	int n = gain_panel ? gain_legend(L, items) : data_legend(m, f, items);
	legend(c, L, ix, iy + L->mh + 2 * L->ts, L->mw + L->label_w + L->right_w, items, n);
}

int agipd_preview_render(const struct agipd_preview_mosaic *m, const struct agipd_preview_figure *f,
			 struct agipd_preview_canvas *out, agipd_err *e)
{
	out->width = out->height = 0;
	out->rgb = NULL;
	if (!m || !f || !m->value || m->width < 1 || m->height < 1)
		return agipd_err_set(e, "preview: nothing to render (empty mosaic)");
	struct fig_layout *L = malloc(sizeof *L);
	if (!L)
		return agipd_err_set(e, "preview: out of memory");
	layout(m, f, L);
	if (agipd_preview_canvas_init(out, L->width, L->height, AGIPD_PREVIEW_BACKGROUND, e) < 0) {
		free(L);
		return -1;
	}
	for (int i = 0; i < L->ntitle; i++)
		agipd_preview_text(out, L->margin, L->margin + i * L->line_h, L->title[i], L->ts, AGIPD_PREVIEW_INK);
	int y = L->margin + L->title_h;
	draw_panel(out, m, f, L, L->margin, y, 0);
	if (f->side_by_side)
		draw_panel(out, m, f, L, L->margin + L->panel_w + L->panel_gap, y, 1);
	else
		draw_panel(out, m, f, L, L->margin, y + L->panel_h + L->panel_gap, 1);
	free(L);
	return 0;
}
