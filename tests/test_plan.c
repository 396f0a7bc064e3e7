/*
 * test_plan.c - the plan (include/agipd_plan.h): every file in exactly one
 * group, groups of a round disjoint and inside the ranks, train-aligned
 * splits that give every frame to exactly one rank; uneven splits (96 ranks
 * on 160 files), more ranks than frames, empty files, one rank, the serial
 * writer, the balanced plan against the lockstep rounds, constants loads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_plan.h"
#include "unit.h"

/* Every file once; groups of a round disjoint, non-empty, inside [0, P). */
static void check_shape(const struct agipd_plan *p)
{
	int *seen = calloc((size_t)p->nfiles + 1, sizeof *seen);
	int *used = calloc((size_t)p->nranks, sizeof *used);
	CHECK_EQ_INT(p->round_first[0], 0);
	CHECK_EQ_INT(p->round_first[p->nrounds], p->nfiles);
	for (int r = 0; r < p->nrounds; r++) {
		memset(used, 0, (size_t)p->nranks * sizeof *used);
		CHECK(p->round_first[r + 1] > p->round_first[r]);
		CHECK(p->round_first[r + 1] - p->round_first[r] <= p->nranks);
		for (int i = p->round_first[r]; i < p->round_first[r + 1]; i++) {
			const struct agipd_plan_group *g = &p->groups[i];
			CHECK(g->file >= 0 && g->file < p->nfiles);
			if (g->file >= 0 && g->file < p->nfiles)
				seen[g->file]++;
			CHECK(g->nranks >= 1);
			CHECK(g->rank0 >= 0 && g->rank0 + g->nranks <= p->nranks);
			if (p->serial)
				CHECK_EQ_INT(g->nranks, 1);
			for (int k = g->rank0; k < g->rank0 + g->nranks && k < p->nranks; k++) {
				CHECK_EQ_INT(used[k], 0);
				used[k] = 1;
				CHECK(agipd_plan_group_of(p, r, k) == g);
			}
		}
		for (int k = 0; k < p->nranks; k++)
			if (!used[k])
				CHECK(agipd_plan_group_of(p, r, k) == NULL);
	}
	for (int i = 0; i < p->nfiles; i++)
		CHECK_EQ_INT(seen[i], 1);
	free(seen);
	free(used);
}

/* Plans p and q give their first n files the same groups. */
static void same_groups(const struct agipd_plan *p, const struct agipd_plan *q, int n)
{
	for (int i = 0; i < n; i++) {
		CHECK_EQ_INT(p->groups[i].file, q->groups[i].file);
		CHECK_EQ_INT(p->groups[i].rank0, q->groups[i].rank0);
		CHECK_EQ_INT(p->groups[i].nranks, q->groups[i].nranks);
	}
}

/* A GROUPS plan: without lockstep when it has more than one round (one
 * round is lockstep: nothing waits, and a node's ranks share constants);
 * each rank in at most one group, the same in every round, whose files are
 * consecutive (a module's run stays together) and in order. */
static void check_groups(const struct agipd_plan *p)
{
	CHECK_EQ_INT(p->lockstep, p->nrounds <= 1);
	for (int k = 0; k < p->nranks; k++) {
		const struct agipd_plan_group *g0 = agipd_plan_group_of(p, 0, k);
		int last = g0 ? g0->file : -1, gone = g0 == NULL;
		for (int r = 1; r < p->nrounds; r++) {
			const struct agipd_plan_group *g = agipd_plan_group_of(p, r, k);
			if (!g) {
				gone = 1;
				continue;
			}
			CHECK(!gone);   /* a group absent from a round is absent from the later ones */
			CHECK(g0 && g->rank0 == g0->rank0 && g->nranks == g0->nranks);
			CHECK_EQ_INT(g->file, last + 1);
			last = g->file;
		}
	}
	/* group sizes differ by at most one (with more files than ranks) */
	if (p->nfiles > p->nranks && p->nrounds > 0) {
		int lo = p->nranks, hi = 0;
		for (int i = p->round_first[0]; i < p->round_first[1]; i++) {
			lo = p->groups[i].nranks < lo ? p->groups[i].nranks : lo;
			hi = p->groups[i].nranks > hi ? p->groups[i].nranks : hi;
		}
		CHECK(hi - lo <= 1);
	}
}

/* The g ranks of a file take [split(i), split(i+1)): contiguous, every
 * frame once, each boundary the first frame of a train. */
static void check_split(const uint64_t *first, size_t nt, uint64_t nframes, int g)
{
	uint64_t prev = 0, most = 0, largest_train = 0;
	for (size_t t = 0; t < nt; t++) {
		uint64_t end = t + 1 < nt ? first[t + 1] : nframes;
		if (end - first[t] > largest_train)
			largest_train = end - first[t];
	}
	CHECK_EQ_INT(agipd_plan_split(first, nt, nframes, 0, g), 0);
	CHECK_EQ_INT(agipd_plan_split(first, nt, nframes, g, g), nframes);
	for (int i = 1; i <= g; i++) {
		uint64_t a = agipd_plan_split(first, nt, nframes, i, g);
		CHECK(a >= prev);
		int aligned = a == nframes;
		for (size_t t = 0; t < nt && !aligned; t++)
			aligned = first[t] == a;
		CHECK(aligned);
		if (a - prev > most)
			most = a - prev;
		prev = a;
	}
	CHECK_EQ_INT(prev, nframes);
	/* balanced: nobody gets more than its share and one train */
	CHECK(most <= (nframes + (uint64_t)g - 1) / (uint64_t)g + largest_train);
}

int main(void)
{
	agipd_err e = { "" };
	struct agipd_plan p;

	TEST("plan_one_rank") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 5, 1, 1, 0, AGIPD_PLAN_BALANCED, &e), 0);
		CHECK_EQ_INT(p.nrounds, 5);
		check_shape(&p);
		for (int r = 0; r < p.nrounds; r++) {
			const struct agipd_plan_group *g = agipd_plan_group_of(&p, r, 0);
			CHECK(g && g->file == r && g->rank0 == 0 && g->nranks == 1);
		}
		CHECK_EQ_F32((float)agipd_plan_efficiency(&p, NULL), 1.0f);
		agipd_plan_free(&p);
		uint64_t first[3] = { 0, 64, 128 };
		check_split(first, 3, 200, 1);
	}

	TEST("plan_96_ranks_160_files_rounds") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 160, 96, 32, 0, AGIPD_PLAN_ROUNDS, &e), 0);
		check_shape(&p);
		CHECK_EQ_INT(p.nrounds, 2);
		CHECK_EQ_INT(p.round_first[1], 96);
		int ones = 0, twos = 0;
		for (int i = 96; i < 160; i++) {
			ones += p.groups[i].nranks == 1;
			twos += p.groups[i].nranks == 2;
		}
		CHECK_EQ_INT(ones, 32);
		CHECK_EQ_INT(twos, 32);
		/* rounds of 1 and 1 file-time for 160/96: 5/6 */
		double eff = agipd_plan_efficiency(&p, NULL);
		CHECK(eff > 0.8333 && eff < 0.8334);
		agipd_plan_free(&p);
	}

	TEST("plan_96_ranks_160_files_balanced") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 160, 96, 32, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		CHECK(p.nrounds > 2 && p.nrounds <= 5);   /* 48 + 48 + 48 + 16 files */
		for (int i = 0; i < p.round_first[1]; i++)
			CHECK(p.groups[i].nranks >= 2);
		CHECK_EQ_F32((float)agipd_plan_efficiency(&p, NULL), 1.0f);
		agipd_plan_free(&p);
		/* files of unequal size (the last sequence of each module short) */
		uint64_t fr[160];
		for (int i = 0; i < 160; i++)
			fr[i] = i % 10 == 9 ? 700 : 3520;
		struct agipd_plan q;
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 160, 96, 32, 0, AGIPD_PLAN_ROUNDS, &e), 0);
		CHECK_EQ_INT(agipd_plan_make(&q, fr, 160, 96, 32, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&q);
		CHECK(agipd_plan_efficiency(&q, fr) > agipd_plan_efficiency(&p, fr) + 0.05);
		CHECK(agipd_plan_time(&q, fr) < agipd_plan_time(&p, fr));
		agipd_plan_free(&p);
		agipd_plan_free(&q);
	}

	TEST("plan_same_when_files_fit") {
		/* as many ranks as files or more, equal files: both plans alike */
		int cases[][2] = { { 3, 3 }, { 2, 3 }, { 4, 2 }, { 4, 3 }, { 6, 3 }, { 16, 96 }, { 160, 160 } };
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			struct agipd_plan q;
			CHECK_EQ_INT(agipd_plan_make(&p, NULL, cases[c][0], cases[c][1], 0, 0, AGIPD_PLAN_ROUNDS, &e), 0);
			CHECK_EQ_INT(agipd_plan_make(&q, NULL, cases[c][0], cases[c][1], 0, 0, AGIPD_PLAN_BALANCED, &e), 0);
			CHECK_EQ_INT(p.nrounds, q.nrounds);
			same_groups(&p, &q, p.nfiles);
			agipd_plan_free(&p);
			agipd_plan_free(&q);
		}
	}

	TEST("plan_weighted_by_frames") {
		uint64_t fr[2] = { 600, 200 };
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 2, 8, 8, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		CHECK_EQ_INT(p.nrounds, 1);
		CHECK(p.groups[0].nranks > p.groups[1].nranks);
		CHECK_EQ_INT(p.groups[0].nranks + p.groups[1].nranks, 8);
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 2, 8, 8, 0, AGIPD_PLAN_ROUNDS, &e), 0);
		CHECK_EQ_INT(p.groups[0].nranks, 4);
		CHECK_EQ_INT(p.groups[1].nranks, 4);
		agipd_plan_free(&p);
	}

	TEST("plan_more_ranks_than_frames") {
		uint64_t fr[2] = { 1, 3 }, one[1] = { 0 }, three[3] = { 0, 1, 2 };
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 2, 8, 4, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		CHECK_EQ_INT(p.nrounds, 1);
		agipd_plan_free(&p);
		check_split(one, 1, 1, 4);
		check_split(three, 3, 3, 5);
		/* one frame on four ranks: exactly one rank has it */
		int have = 0;
		for (int i = 0; i < 4; i++)
			have += agipd_plan_split(one, 1, 1, i + 1, 4) > agipd_plan_split(one, 1, 1, i, 4);
		CHECK_EQ_INT(have, 1);
	}

	TEST("plan_empty_files") {
		uint64_t fr[3] = { 0, 0, 10 };
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 3, 2, 2, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		double eff = agipd_plan_efficiency(&p, fr);
		CHECK(eff > 0 && eff <= 1.0);
		agipd_plan_free(&p);
		uint64_t zero[3] = { 0, 0, 0 };
		CHECK_EQ_INT(agipd_plan_make(&p, zero, 3, 5, 5, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		CHECK_EQ_F32((float)agipd_plan_efficiency(&p, zero), 1.0f);
		agipd_plan_free(&p);
		check_split(NULL, 0, 0, 3);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 0, 4, 4, 0, AGIPD_PLAN_BALANCED, &e), 0);
		CHECK_EQ_INT(p.nrounds, 0);
		CHECK(agipd_plan_group_of(&p, 0, 0) == NULL);
		agipd_plan_free(&p);
	}

	TEST("plan_serial_writer") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 7, 5, 5, 1, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		CHECK_EQ_INT(p.nrounds, 2);
		CHECK(agipd_plan_group_of(&p, 1, 1) != NULL);
		CHECK(agipd_plan_group_of(&p, 1, 2) == NULL);   /* 2 files left: ranks 2-4 idle */
		agipd_plan_free(&p);
	}

	TEST("plan_train_aligned_splits") {
		uint64_t first[40];
		uint64_t n = 0;
		for (int t = 0; t < 40; t++) {
			first[t] = n;
			n += t % 7 == 3 ? 0 + 5 : 64;   /* some short trains */
		}
		for (int g = 1; g <= 45; g++)
			check_split(first, 40, n, g);
	}

	TEST("plan_constants_loads") {
		int one_module[4] = { 0, 0, 0, 0 }, two_modules[4] = { 0, 0, 1, 1 };
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 4, 2, 2, 0, AGIPD_PLAN_BALANCED, &e), 0);
		CHECK_EQ_INT(agipd_plan_loads(&p, one_module), 1);    /* kept for the second round */
		CHECK_EQ_INT(agipd_plan_loads(&p, two_modules), 2);
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 4, 2, 1, 0, AGIPD_PLAN_BALANCED, &e), 0);
		CHECK_EQ_INT(agipd_plan_loads(&p, two_modules), 4);   /* one node per rank */
		agipd_plan_free(&p);
	}

	TEST("plan_groups_96_ranks_160_files") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 160, 96, 32, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK(agipd_plan_efficiency(&p, NULL) >= 0.99);
		agipd_plan_free(&p);
		uint64_t fr[160];
		int module[160];
		for (int i = 0; i < 160; i++) {
			fr[i] = i % 10 == 9 ? 700 : 3520;
			module[i] = i / 10;
		}
		struct agipd_plan q;
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 160, 96, 32, 0, AGIPD_PLAN_GROUPS, &e), 0);
		CHECK_EQ_INT(agipd_plan_make(&q, fr, 160, 96, 32, 0, AGIPD_PLAN_BALANCED, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK(agipd_plan_efficiency(&p, fr) >= 0.95);
		CHECK(agipd_plan_time(&p, fr) <= agipd_plan_time(&q, fr));
		/* the model: the slowest group's frames over its size */
		double slowest = 0;
		for (int k = 0; k < 96; k++) {
			double t = 0;
			for (int r = 0; r < p.nrounds; r++) {
				const struct agipd_plan_group *g = agipd_plan_group_of(&p, r, k);
				t += g ? (double)fr[g->file] / g->nranks : 0;
			}
			slowest = t > slowest ? t : slowest;
		}
		CHECK(agipd_plan_time(&p, fr) > slowest * 0.999999 && agipd_plan_time(&p, fr) < slowest * 1.000001);
		/* constants: a group loads once per node and module it meets */
		int loads = agipd_plan_loads(&p, module);
		CHECK(loads >= 16 && loads <= 16 + p.round_first[1] * 2);
		agipd_plan_free(&p);
		agipd_plan_free(&q);
	}

	TEST("plan_groups_same_when_files_fit") {
		int cases[][2] = { { 3, 3 }, { 2, 3 }, { 4, 2 }, { 4, 3 }, { 6, 3 }, { 16, 96 }, { 160, 160 }, { 2, 5 } };
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			struct agipd_plan q;
			int F = cases[c][0], R = cases[c][1];
			if (F > R)
				continue;
			CHECK_EQ_INT(agipd_plan_make(&p, NULL, F, R, 0, 0, AGIPD_PLAN_ROUNDS, &e), 0);
			CHECK_EQ_INT(agipd_plan_make(&q, NULL, F, R, 0, 0, AGIPD_PLAN_GROUPS, &e), 0);
			check_shape(&q);
			check_groups(&q);
			CHECK_EQ_INT(q.nrounds, 1);
			same_groups(&p, &q, F);
			agipd_plan_free(&p);
			agipd_plan_free(&q);
		}
	}

	TEST("plan_groups_small") {
		/* one rank: every file on it, in order */
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 5, 1, 1, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK_EQ_INT(p.nrounds, 5);
		CHECK_EQ_F32((float)agipd_plan_efficiency(&p, NULL), 1.0f);
		agipd_plan_free(&p);
		/* 3 ranks, 5 files of unequal length */
		uint64_t fr[5] = { 300, 100, 100, 300, 200 };
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 5, 3, 3, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK(agipd_plan_efficiency(&p, fr) > 0.99);
		agipd_plan_free(&p);
		/* empty files, and only empty files */
		uint64_t some[7] = { 0, 0, 10, 10, 0, 10, 10 }, zero[7] = { 0 };
		CHECK_EQ_INT(agipd_plan_make(&p, some, 7, 2, 2, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK(agipd_plan_efficiency(&p, some) >= 0.99);
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, zero, 7, 3, 3, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK_EQ_F32((float)agipd_plan_efficiency(&p, zero), 1.0f);
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 0, 4, 4, 0, AGIPD_PLAN_GROUPS, &e), 0);
		CHECK_EQ_INT(p.nrounds, 0);
		CHECK(agipd_plan_group_of(&p, 0, 0) == NULL);
		agipd_plan_free(&p);
		/* more ranks than files, unequal: one round, larger files more ranks */
		uint64_t two[2] = { 600, 200 };
		CHECK_EQ_INT(agipd_plan_make(&p, two, 2, 8, 8, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		CHECK_EQ_INT(p.nrounds, 1);
		CHECK(p.groups[0].nranks > p.groups[1].nranks);
		agipd_plan_free(&p);
	}

	TEST("plan_groups_serial_writer") {
		uint64_t fr[7] = { 10, 10, 10, 10, 10, 30, 30 };
		CHECK_EQ_INT(agipd_plan_make(&p, fr, 7, 5, 5, 1, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		check_groups(&p);
		for (int i = 0; i < p.nfiles; i++)
			CHECK_EQ_INT(p.groups[i].nranks, 1);
		CHECK_EQ_INT(p.round_first[1], 5);   /* five one-rank groups */
		/* 110 frames on 5 ranks: the slowest holds 30 */
		CHECK(agipd_plan_time(&p, fr) > 29.99 && agipd_plan_time(&p, fr) < 30.01);
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 3, 5, 5, 1, AGIPD_PLAN_GROUPS, &e), 0);
		check_shape(&p);
		CHECK_EQ_INT(p.nrounds, 1);
		CHECK(agipd_plan_group_of(&p, 0, 3) == NULL);
		agipd_plan_free(&p);
	}

	TEST("plan_groups_loads") {
		int two_modules[4] = { 0, 0, 1, 1 };
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 4, 2, 2, 0, AGIPD_PLAN_GROUPS, &e), 0);
		check_groups(&p);
		CHECK_EQ_INT(agipd_plan_loads(&p, two_modules), 2);   /* one module per group */
		agipd_plan_free(&p);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 4, 1, 1, 0, AGIPD_PLAN_GROUPS, &e), 0);
		CHECK_EQ_INT(agipd_plan_loads(&p, two_modules), 2);   /* kept from file to file */
		agipd_plan_free(&p);
	}

	TEST("plan_bad_arguments") {
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, 3, 0, 1, 0, AGIPD_PLAN_ROUNDS, &e), -1);
		CHECK(strstr(e.msg, "0 rank") != NULL);
		CHECK_EQ_INT(agipd_plan_make(&p, NULL, -1, 2, 1, 0, AGIPD_PLAN_ROUNDS, &e), -1);
	}
	UNIT_EXIT();
}
