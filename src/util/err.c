/*
 * err.c - error messages with context; the HDF5 error stack folded into one
 * line so that the file name and HDF5's own reason reach the user together.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <hdf5.h>

#include "agipd_err.h"

/* vsnprintf into buf; a cut message ends with "...".  1 when cut. */
static int vmsgf(char *buf, size_t len, const char *fmt, va_list ap)
{
	if (!len)
		return 1;
	int n = vsnprintf(buf, len, fmt, ap);
	if (n >= 0 && (size_t)n < len)
		return 0;
	if (n < 0)
		buf[0] = 0;
	if (len > 3)
		memcpy(buf + len - 4, "...", 4);
	return 1;
}

int agipd_msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int cut = vmsgf(buf, len, fmt, ap);
	va_end(ap);
	return cut;
}

int agipd_err_set(agipd_err *e, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vmsgf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

struct walk_ctx {
	char text[512];
};

/* Keep the innermost (last walked, H5E_WALK_UPWARD gives innermost first) message. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data)
{
	struct walk_ctx *w = data;
	if (n == 0 && err->desc && err->desc[0]) {
		char maj[128] = "", min[128] = "";
		H5Eget_msg(err->min_num, NULL, min, sizeof min);
		H5Eget_msg(err->maj_num, NULL, maj, sizeof maj);
		agipd_msgf(w->text, sizeof w->text, "%s (%s: %s)", err->desc, maj, min);
		/* One line: some descriptions carry ctime()'s newline (sec2's
		 * "file write failed: time = ...\n, filename = ..."). */
		for (char *c = w->text; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
	}
	return 0;
}

int agipd_err_h5(agipd_err *e, const char *fmt, ...)
{
	struct walk_ctx w = { "" };
	char head[AGIPD_ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vmsgf(head, sizeof head, fmt, ap);
	va_end(ap);
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
	if (w.text[0])
		agipd_msgf(e->msg, sizeof e->msg, "%s: %s", head, w.text);
	else
		agipd_msgf(e->msg, sizeof e->msg, "%s", head);
	H5Eclear2(H5E_DEFAULT);
	return -1;
}

void agipd_h5_quiet(void)
{
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
