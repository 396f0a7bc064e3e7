/*
 * consts_share_probe.c - the constants module's share part on its own
 * (include/agipd_consts_share.h), with no run around it: every rank of the
 * job is on one node and one module and calls agipd_consts_acquire() once
 * per NEEDED argument, then prints one line per call:
 *
 *   call I rank R status S ncells N cells C crc32 X size B digest D
 *     last_cells L last_loads F kept K private P warning <W> msg <M>
 *
 * digest is the CRC-32 of every word the constants occupy as this rank sees
 * them; private (rank 0 only, else -1) is 1 when loading the same cells
 * alone into private memory (agipd_consts_load, no sharing) gives the same
 * words.  Driven by tests/test_consts_share.py.
 *
 *   consts_share_probe FOLDER MODULE NEEDED... [--bias V] [--ignore-conditions]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "agipd_checksum.h"
#include "agipd_consts.h"
#include "agipd_consts_h5.h"
#include "agipd_consts_share.h"
#include "agipd_err.h"
#include "agipd_kernel.h"

/* Rank 0: the same cells loaded alone into private memory give the same
 * words.  1, 0, or -1 (not checked). */
static int same_as_private(const struct agipd_consts_share *s, const struct agipd_params *p)
{
	struct agipd_consts k;
	agipd_err e = { "" };
	agipd_consts_layout(p, &k);
	size_t words = agipd_consts_words(&k, s->ncells);
	uint32_t *mem = calloc(words ? words : 1, 4);
	if (!mem)
		return -1;
	agipd_consts_attach(&k, s->ncells, mem);
	int same = agipd_consts_load(p, 0, s->ncells, &k, &s->meta, &e) == 0 &&
		   memcmp(mem, s->k.data, words * 4) == 0;
	free(mem);
	return same;
}

static void report(int call, int rank, int st, const struct agipd_consts_share *s, int kept, int priv,
		   const agipd_err *e, const struct agipd_params *p)
{
	uint32_t digest = 0;
	if (st == 0) {
		struct agipd_consts k;
		agipd_consts_layout(p, &k);
		digest = agipd_crc32(0, s->k.data, agipd_consts_words(&k, s->ncells) * 4);
	}
	printf("call %d rank %d status %d ncells %d cells %d crc32 %08x size %llu digest %08x last_cells %.17g "
	       "last_loads %.17g kept %d private %d warning <%s> msg <%s>\n",
	       call, rank, st, st ? 0 : s->ncells, st ? 0 : s->meta.cells, st ? 0 : s->meta.crc32,
	       st ? 0ULL : (unsigned long long)s->meta.size, digest, s->last.cells, s->last.loads, kept, priv,
	       st ? "" : s->meta.warning, st ? e->msg : "");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	agipd_h5_quiet();   /* the errors are the module's messages */
	int rank;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	if (argc < 4) {
		if (rank == 0)
			fprintf(stderr, "usage: %s FOLDER MODULE NEEDED... [--bias V] [--ignore-conditions]\n", argv[0]);
		MPI_Finalize();
		return 2;
	}
	struct agipd_params p;
	agipd_params_default(&p);
	struct agipd_conditions cond;
	memset(&cond, 0, sizeof cond);
	struct agipd_consts_request rq = {
		.module = atoi(argv[2]), .constants_folder = argv[1], .calibration_metadata = "", .caldb_root = "",
		.params = &p, .cond = &cond,
	};
	int needed[64], nneeded = 0;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--ignore-conditions")) {
			rq.ignore_conditions = 1;
		} else if (!strcmp(argv[i], "--bias") && i + 1 < argc) {
			cond.known[AGIPD_COND_BIAS] = 1;
			cond.value[AGIPD_COND_BIAS] = atof(argv[++i]);
		} else if (nneeded < 64) {
			needed[nneeded++] = atoi(argv[i]);
		}
	}
	struct agipd_consts_share s;
	memset(&s, 0, sizeof s);
	s.win = MPI_WIN_NULL;
	int failed = 0;
	for (int i = 0; i < nneeded; i++) {
		agipd_err e = { "" };
		/* Rank 0 asks for the most: the share covers what any rank asks. */
		rq.needed = rank == 0 ? needed[i] : 1;
		int st = agipd_consts_acquire(&s, MPI_COMM_WORLD, &rq, &e);
		int kept = s.last.loads == 0;
		int priv = st == 0 && rank == 0 ? same_as_private(&s, &p) : -1;
		report(i, rank, st, &s, kept, priv, &e, &p);
		failed |= st != 0;
		MPI_Barrier(MPI_COMM_WORLD);
	}
	agipd_consts_share_release(&s);
	MPI_Finalize();
	return failed;
}
