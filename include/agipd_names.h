/*
 * agipd_names.h - the names of the files of a run, in one place: raw input
 * files (RAW-R0001-AGIPD00-S00000.h5), corrected files (CORR-...) and the
 * temporaries a corrected file is written under until it is complete
 * (.CORR-....h5.TAG.part).  Used by the run, the tools and the tests.
 *
 * Each builds DIR/NAME into buf (len bytes) and returns 0, or -1 with errno
 * ENAMETOOLONG when it does not fit: never a cut name, which would name
 * another file.
 */
#ifndef AGIPD_NAMES_H
#define AGIPD_NAMES_H

#include <stddef.h>

int agipd_raw_name(char *buf, size_t len, const char *dir, long run, int module, int seq);
int agipd_corr_name(char *buf, size_t len, const char *dir, long run, int module, int seq);
/* tag: unique to the writing run (host and pid of its rank 0). */
int agipd_tmp_name(char *buf, size_t len, const char *dir, long run, int module, int seq, const char *tag);

/* n, snprintf's return for a buffer of len bytes: 0 when it fitted, else -1
 * with errno ENAMETOOLONG. */
int agipd_path_fits(int n, size_t len);

#endif
