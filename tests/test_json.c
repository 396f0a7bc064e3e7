/*
 * test_json.c - JSON strings (include/agipd_json.h): quotes, backslashes,
 * control characters and DEL escaped, valid UTF-8 kept, other bytes as
 * \udcXX (Python's surrogateescape).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_json.h"
#include "unit.h"

static char *json(const char *s)
{
	static char buf[1024];
	FILE *f = fmemopen(buf, sizeof buf, "w");
	if (!f)
		return NULL;
	agipd_json_str(f, s);
	fclose(f);
	return buf;
}

int main(void)
{
	TEST("json_plain") {
		CHECK(!strcmp(json("AGIPD00 S00001"), "\"AGIPD00 S00001\""));
		CHECK(!strcmp(json(""), "\"\""));
	}
	TEST("json_escapes") {
		CHECK(!strcmp(json("a\"b\\c"), "\"a\\\"b\\\\c\""));
		CHECK(!strcmp(json("tab\there\nnl"), "\"tab\\u0009here\\u000anl\""));
		CHECK(!strcmp(json("del\x7f"), "\"del\\u007f\""));
	}
	TEST("json_utf8") {
		CHECK(!strcmp(json("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
		/* a lone continuation byte, an overlong form, a cut sequence */
		CHECK(!strcmp(json("a\x80z"), "\"a\\udc80z\""));
		CHECK(!strcmp(json("\xc0\xaf"), "\"\\udcc0\\udcaf\""));
		CHECK(!strcmp(json("\xe2\x82"), "\"\\udce2\\udc82\""));
	}
	UNIT_EXIT();
}
