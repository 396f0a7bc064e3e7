/*
 * json.c - JSON strings (agipd_json.h).
 */
#include <stdio.h>

#include "agipd_json.h"

/* Bytes of the valid UTF-8 sequence (RFC 3629) at s, 0 when there is none. */
static int utf8_len(const unsigned char *s)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	int n;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* A JSON string.  Bytes that are not UTF-8 (a path may hold any) become
 * \udcXX, as Python's surrogateescape reads them: os.fsencode() of the
 * decoded string gives the bytes back. */
void agipd_json_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	fputc('"', f);
	while (*s) {
		int n = utf8_len(s);
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (*s < 0x20 || *s == 0x7f)
			fprintf(f, "\\u%04x", *s);
		else if (n > 0)
			fwrite(s, 1, (size_t)n, f);
		else
			fprintf(f, "\\udc%02x", *s);
		s += n > 0 ? n : 1;
	}
	fputc('"', f);
}
