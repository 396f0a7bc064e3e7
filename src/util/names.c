/*
 * names.c - the names of raw, corrected and temporary files (agipd_names.h).
 */
#include <errno.h>
#include <stdio.h>

#include "agipd_names.h"

/* File names are built with snprintf and checked: a name that does not fit
 * its buffer is an error (ENAMETOOLONG), never a cut name, which would name
 * another file.  The folders are short enough (AGIPD_NAME_ROOM) that this
 * does not happen with the buffers below; the checks keep it so. */
int agipd_path_fits(int n, size_t len)
{
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int agipd_raw_name(char *buf, size_t len, const char *dir, long run, int module, int seq)
{
	return agipd_path_fits(snprintf(buf, len, "%s/RAW-R%04ld-AGIPD%02d-S%05d.h5", dir, run, module, seq), len);
}

int agipd_corr_name(char *buf, size_t len, const char *dir, long run, int module, int seq)
{
	return agipd_path_fits(snprintf(buf, len, "%s/CORR-R%04ld-AGIPD%02d-S%05d.h5", dir, run, module, seq), len);
}

/* The temporary name a file is written under until it is complete, unique
 * to the run (tag: host and pid of its rank 0). */
int agipd_tmp_name(char *buf, size_t len, const char *dir, long run, int module, int seq, const char *tag)
{
	return agipd_path_fits(snprintf(buf, len, "%s/.CORR-R%04ld-AGIPD%02d-S%05d.h5.%s.part", dir, run, module, seq, tag),
			 len);
}
