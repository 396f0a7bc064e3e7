/*
 * agipd_agree.h - waiting on MPI without spinning, and a group's agreement
 * on a status: what every MPI part of the library (the run, the constants'
 * share part) uses before a collective step.
 */
#ifndef AGIPD_AGREE_H
#define AGIPD_AGREE_H

#include <mpi.h>

/*
 * Wait for a request without spinning: poll briefly, then sleep between
 * tests, up to 1 ms.  A rank waiting for a slow (or stopped) one then uses
 * next to no CPU, where MPI's blocking calls busy-poll.
 */
void agipd_wait_yielding(MPI_Request *req);

/* MPI_Allreduce in place, waiting as agipd_wait_yielding().  Collective on
 * comm. */
void agipd_allreduce_yielding(void *buf, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm);

/*
 * The ranks of g agree on a status: returns 0 when every rank succeeded,
 * else -1 with msg (AGIPD_ERRLEN bytes) set on every rank to the message of
 * the lowest failing rank.  Collective on g.
 */
int agipd_agree(MPI_Comm g, int failed, char *msg);

#endif /* AGIPD_AGREE_H */
