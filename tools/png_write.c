/*
 * png_write.c - the PNG adapter: an RGB8 canvas to a file, over libpng.
 *
 * libpng reports errors by calling an error function that must not return;
 * ours records the message and longjmps back to encode(), which owns the
 * libpng structs.  The rows are written by a separate function so that no
 * local of the setjmp frame changes between setjmp and a longjmp.  Warnings
 * are dropped: library code never prints.
 *
 * The file is written as "<path>.tmp.<pid>" and renamed when complete, so a
 * reader never sees half a PNG and a failure leaves nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agipd_preview.h"

#ifdef HAVE_PNG
#include <png.h>

int agipd_preview_png_available(void)
{
	return 1;
}

struct png_ctx {
	jmp_buf jb;
	char msg[256];
};

static void on_error(png_structp png, png_const_charp msg)
{
	struct png_ctx *ctx = png_get_error_ptr(png);
	snprintf(ctx->msg, sizeof ctx->msg, "libpng: %s", msg ? msg : "unknown error");
	longjmp(ctx->jb, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

/* Every call here may longjmp to encode()'s setjmp. */
static void write_image(png_structp png, png_infop info, FILE *fp, const struct agipd_preview_canvas *c)
{
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)c->width, (png_uint_32)c->height, 8, PNG_COLOR_TYPE_RGB,
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_compression_level(png, 6);
	png_text text[1];
	memset(text, 0, sizeof text);
	text[0].compression = PNG_TEXT_COMPRESSION_NONE;
	text[0].key = (png_charp) "Software";
	text[0].text = (png_charp) "agipd-correct " AGIPD_VERSION;
	png_set_text(png, info, text, 1);
	png_write_info(png, info);
	for (int y = 0; y < c->height; y++)
		png_write_row(png, c->rgb + (size_t)y * (size_t)c->width * 3);
	png_write_end(png, info);
}

/* 0, or -1 with ctx->msg set. */
static int encode(FILE *fp, const struct agipd_preview_canvas *c, struct png_ctx *ctx)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
	if (!png) {
		snprintf(ctx->msg, sizeof ctx->msg, "libpng: png_create_write_struct failed (version "
			 "mismatch or out of memory)");
		return -1;
	}
	png_infop info = png_create_info_struct(png);
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		snprintf(ctx->msg, sizeof ctx->msg, "libpng: png_create_info_struct failed (out of memory)");
		return -1;
	}
	if (setjmp(ctx->jb)) {
		png_destroy_write_struct(&png, &info);
		return -1;
	}
	write_image(png, info, fp, c);
	png_destroy_write_struct(&png, &info);
	return 0;
}

int agipd_preview_png_write(const char *path, const struct agipd_preview_canvas *c, agipd_err *e)
{
	char tmp[4200];
	if (!path || !*path)
		return agipd_err_set(e, "PNG: no output path");
	if (!c || !c->rgb || c->width < 1 || c->height < 1)
		return agipd_err_set(e, "%s: nothing to write (empty picture)", path);
	int len = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	if (len < 0 || (size_t)len >= sizeof tmp)
		return agipd_err_set(e, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
	if (fd < 0)
		return agipd_err_set(e, "%s: cannot create %s: %s", path, tmp, strerror(errno));
	FILE *fp = fdopen(fd, "wb");
	if (!fp) {
		agipd_err_set(e, "%s: fdopen: %s", tmp, strerror(errno));
		close(fd);
		goto out_unlink;
	}
	struct png_ctx ctx;
	ctx.msg[0] = 0;
	if (encode(fp, c, &ctx) < 0) {
		agipd_err_set(e, "%s: %s", path, ctx.msg);
		fclose(fp);
		goto out_unlink;
	}
	/* A full disk shows up at fflush/fclose, not in libpng's fwrite calls. */
	if (fflush(fp) != 0 || ferror(fp)) {
		agipd_err_set(e, "%s: write failed: %s", tmp, strerror(errno));
		fclose(fp);
		goto out_unlink;
	}
	if (fclose(fp) != 0) {
		agipd_err_set(e, "%s: close failed: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (rename(tmp, path) != 0) {
		agipd_err_set(e, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
		goto out_unlink;
	}
	return 0;
out_unlink:
	unlink(tmp);
	return -1;
}

#else /* !HAVE_PNG */

int agipd_preview_png_available(void)
{
	return 0;
}

int agipd_preview_png_write(const char *path, const struct agipd_preview_canvas *c, agipd_err *e)
{
	(void)c;
	return agipd_err_set(e, "%s: cannot write PNG: built without libpng (install libpng-dev, "
			     "then rebuild: make clean all)", path ? path : "(no path)");
}

#endif /* HAVE_PNG */
