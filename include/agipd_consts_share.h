/*
 * agipd_consts_share.h - the share part of the constants module
 * (agipd_consts.h tells the whole way from files to the kernel): a module's
 * constants found (constants folder or calibration database), loaded and
 * converted cell range by cell range by the ranks of a node into one MPI-3
 * shared-memory window (private memory for a rank alone on its module),
 * checksummed in parts and agreed on; kept across calls while the module and
 * the ranks stay the same.  The module's only MPI code; it knows nothing of
 * the run that calls it: what it needs comes in a request, what it did
 * comes back in the share.  Never prints.
 */
#ifndef AGIPD_CONSTS_SHARE_H
#define AGIPD_CONSTS_SHARE_H

#include <mpi.h>

#include "agipd_conditions.h"
#include "agipd_consts.h"
#include "agipd_consts_h5.h"
#include "agipd_err.h"
#include "agipd_kernel.h"

/* What a caller needs: module `module`'s constants for cells 0 .. needed-1
 * (the most any rank asks; fewer when the constants have fewer cells). */
struct agipd_consts_request {
	int module;
	int needed;
	const char *constants_folder;        /* {folder}/AGIPD{mm}.h5 (NULL: "") */
	const char *calibration_metadata;    /* non-empty: the calibration database instead */
	const char *caldb_root;              /* its files' root ("" or NULL: the YAML's folder) */
	const struct agipd_params *params;   /* the correction: which constants, their layout */
	const struct agipd_conditions *cond; /* the run's, checked against the constants' (NULL: not) */
	int ignore_conditions;               /* differences become meta.warning */
};

/* What one call cost this rank (zero when the share was kept): seconds,
 * cells it loaded, and its part of the node's loads (1/ranks). */
struct agipd_consts_stats {
	double seconds, cells, loads;
};

/* A module's constants held for the ranks of one node, owned by the share
 * (agipd_consts_share_release frees them); the request's strings and
 * structs are not kept.  All zero (with win MPI_WIN_NULL) before the first
 * call. */
struct agipd_consts_share {
	int valid, module, ncells, status;
	MPI_Comm comm;                 /* a copy of the ranks' communicator */
	MPI_Win win;                   /* the shared window, or MPI_WIN_NULL */
	void *priv;                    /* private copy when alone on the module */
	struct agipd_consts k;         /* the constants, laid out for the kernel */
	struct agipd_consts_meta meta; /* files, checksums, conditions warning */
	char msg[AGIPD_ERRLEN];        /* why status is -1 */
	struct agipd_consts_stats last;  /* the latest call's */
};

/*
 * Make sure s holds rq's module's constants for at least rq->needed cells
 * (the maximum over nm), for the ranks of nm (one node, one module):
 * reloads when the module, the ranks or the cells change, else keeps them
 * (and a failure: the same error again).  Collective on nm.  Returns 0, or
 * -1 on every rank of nm with e (and s->msg) naming the file and the cause.
 */
int agipd_consts_acquire(struct agipd_consts_share *s, MPI_Comm nm, const struct agipd_consts_request *rq,
			 agipd_err *e);

/* Free what s holds (collective on the ranks that acquired it: the shared
 * window); s is then as before its first call. */
void agipd_consts_share_release(struct agipd_consts_share *s);

#endif
