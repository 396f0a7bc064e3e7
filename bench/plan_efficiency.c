/*
 * plan_efficiency.c - the plan's efficiency in the model of agipd_plan.h
 * (all frames / ranks over the sum of the rounds' slowest groups), for the
 * lockstep rounds (AGIPD_PLAN_ROUNDS), the balanced plan of --schedule
 * rounds (AGIPD_PLAN_BALANCED) and the fixed groups of --schedule groups
 * (AGIPD_PLAN_GROUPS, no lockstep: its slowest group).  No MPI run, no
 * files: a pure computation.
 *
 *   bin/plan_efficiency RANKS FILES [FRAMES [LAST_FRAMES EVERY]]
 *
 * FRAMES: frames per file (default 3520); every EVERY-th file (the last
 * sequence of a module) has LAST_FRAMES instead.  Prints one line per plan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "agipd_plan.h"

static long arg(const char *s, long lo)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= lo ? v : -1;
}

int main(int argc, char **argv)
{
	long ranks = argc > 2 ? arg(argv[1], 1) : -1, files = argc > 2 ? arg(argv[2], 0) : -1;
	long frames = argc > 3 ? arg(argv[3], 0) : 3520, last = argc > 5 ? arg(argv[4], 0) : frames;
	long every = argc > 5 ? arg(argv[5], 1) : 1;
	if (ranks < 0 || files < 0 || frames < 0 || last < 0 || every < 0 || argc == 5 || argc > 6 ||
	    ranks > 1000000 || files > 1000000) {
		fprintf(stderr, "usage: plan_efficiency RANKS FILES [FRAMES [LAST_FRAMES EVERY]]\n");
		return 2;
	}
	uint64_t *fr = malloc(((size_t)files + 1) * sizeof *fr);
	if (!fr)
		return 1;
	for (long i = 0; i < files; i++)
		fr[i] = (uint64_t)((i + 1) % every == 0 && every > 1 ? last : frames);
	static const char *const names[] = { "rounds", "balanced", "groups" };
	for (int pol = AGIPD_PLAN_ROUNDS; pol <= AGIPD_PLAN_GROUPS; pol++) {
		struct agipd_plan p;
		agipd_err e;
		if (agipd_plan_make(&p, fr, (int)files, (int)ranks, 0, 0, (enum agipd_plan_policy)pol, &e) < 0) {
			fprintf(stderr, "plan_efficiency: %s\n", e.msg);
			free(fr);
			return 1;
		}
		printf("%-8s %ld ranks, %ld files: %d round(s), efficiency %.1f %%\n", names[pol], ranks, files,
		       p.nrounds, 100 * agipd_plan_efficiency(&p, fr));
		agipd_plan_free(&p);
	}
	free(fr);
	return 0;
}
