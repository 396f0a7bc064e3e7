/*
 * testhook.c - AGIPD_TEST_PAUSE (include/agipd_testhook.h).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "agipd_testhook.h"

static int state = -1;          /* -1 not read yet, 0 off, 1 armed, 2 done */
static char want[64];
static long want_rank = -1;

void agipd_test_pause(const char *point)
{
	if (state == 0 || state == 2)
		return;
	if (state < 0) {
		const char *v = getenv("AGIPD_TEST_PAUSE");
		state = 0;
		if (!v || !*v || strlen(v) >= sizeof want)
			return;
		strcpy(want, v);
		char *at = strchr(want, '@');
		if (at) {
			*at = 0;
			char *end;
			want_rank = strtol(at + 1, &end, 10);
			if (end == at + 1 || *end)
				return;
		}
		state = 1;
	}
	if (strcmp(point, want))
		return;
	if (want_rank >= 0) {
		int r;
		MPI_Comm_rank(MPI_COMM_WORLD, &r);
		if (r != want_rank) {
			state = 0;   /* not this rank: never */
			return;
		}
	}
	state = 2;
	raise(SIGSTOP);
}
