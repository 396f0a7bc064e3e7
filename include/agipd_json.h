/*
 * agipd_json.h - a string written as JSON, every byte escaped as needed:
 * '"', '\\', control characters and DEL escaped; bytes that are not UTF-8
 * (a path may hold any) become \udcXX, as Python's surrogateescape reads
 * them.  Used by the run report and the conditions.
 */
#ifndef AGIPD_JSON_H
#define AGIPD_JSON_H

#include <stdio.h>

/* str (NUL-terminated) as a quoted JSON string on f. */
void agipd_json_str(FILE *f, const char *str);

#endif
