/*
 * agree.c - waiting on MPI without spinning, and a group's agreement on a
 * status (agipd_agree.h).
 */
#include <limits.h>
#include <time.h>

#include "agipd_agree.h"
#include "agipd_err.h"

void agipd_wait_yielding(MPI_Request *req)
{
	long ns = 0;
	for (int i = 0;; i++) {
		int done = 0;
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (done)
			return;
		if (i < 64)
			continue;
		ns = ns ? (ns < 500000 ? 2 * ns : 1000000) : 2000;
		struct timespec ts = { 0, ns };
		nanosleep(&ts, NULL);
	}
}

void agipd_allreduce_yielding(void *buf, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm)
{
	MPI_Request req;
	MPI_Iallreduce(MPI_IN_PLACE, buf, n, t, op, comm, &req);
	agipd_wait_yielding(&req);
}

int agipd_agree(MPI_Comm g, int failed, char *msg)
{
	int me, who;
	MPI_Request req;
	MPI_Comm_rank(g, &me);
	who = failed ? me : INT_MAX;
	agipd_allreduce_yielding(&who, 1, MPI_INT, MPI_MIN, g);
	if (who == INT_MAX)
		return 0;
	MPI_Ibcast(msg, AGIPD_ERRLEN, MPI_CHAR, who, g, &req);
	agipd_wait_yielding(&req);
	return -1;
}
