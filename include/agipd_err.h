/*
 * agipd_err.h - error messages that carry their context.
 *
 * Lower layers never print and never exit: they return -1 and describe the
 * failure in an agipd_err (file name, object, cause, and for HDF5 the deepest
 * message of its error stack).  Only the program's main prints.
 */
#ifndef AGIPD_ERR_H
#define AGIPD_ERR_H

#include <stddef.h>

#define AGIPD_ERRLEN 1536

typedef struct agipd_err {
	char msg[AGIPD_ERRLEN];
} agipd_err;

/* Set the message (printf format).  Always returns -1, so that
 * `return agipd_err_set(e, ...)` reads naturally. */
int agipd_err_set(agipd_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, with ": <HDF5 error stack summary>" appended. */
int agipd_err_h5(agipd_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* snprintf for messages: a message that does not fit in len bytes is cut
 * and ends with "..." (never silently).  Returns 0, or 1 when it was cut. */
int agipd_msgf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Stop HDF5 from printing its error stack itself; call once at start-up. */
void agipd_h5_quiet(void);

#endif
