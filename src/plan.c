/*
 * plan.c - which rank corrects which file and trains (agipd_plan.h).
 * Pure: no MPI, no HDF5, no I/O.
 */
#include <stdlib.h>
#include <string.h>

#include "agipd_plan.h"

/* Weight of file i in the plan: its frames, or 1 when they are not known. */
static double weight(const uint64_t *frames, int i)
{
	return frames ? (double)frames[i] : 1.0;
}

/*
 * Groups of one round: files [f0, f0 + k) on nranks ranks.  File j gets
 * ranks from j + floor((nranks - k) * W_j / W), W_j the weight of the files
 * before it in the round (every file at least one rank); with equal weights
 * that is [j * nranks / k, (j + 1) * nranks / k).  Returns the round's time
 * in the model (its slowest group).
 */
static double round_groups(struct agipd_plan_group *g, const uint64_t *frames, int f0, int k, int nranks,
			   int serial, int weighted)
{
	double total = 0, before = 0, slowest = 0;
	for (int j = 0; j < k; j++)
		total += weighted ? weight(frames, f0 + j) : 1.0;
	if (total <= 0) {   /* only empty files: split as if equal */
		weighted = 0;
		total = k;
	}
	for (int j = 0; j < k; j++) {
		double w = weighted ? weight(frames, f0 + j) : 1.0;
		int r0, r1;
		if (serial) {
			r0 = j;
			r1 = j + 1;
		} else if (!weighted) {
			r0 = (int)((long)j * nranks / k);
			r1 = (int)((long)(j + 1) * nranks / k);
		} else {
			r0 = j + (int)((double)(nranks - k) * before / total);
			r1 = j + 1 + (int)((double)(nranks - k) * (before + w) / total);
			if (j == k - 1)
				r1 = nranks;
		}
		before += w;
		g[j].file = f0 + j;
		g[j].rank0 = r0;
		g[j].nranks = r1 - r0;
		double t = weight(frames, f0 + j) / (r1 - r0);
		if (t > slowest)
			slowest = t;
	}
	return slowest;
}

/* Lay out every round with k files per round (the last may have fewer);
 * returns the plan's time in the model.  p->groups and p->round_first are
 * filled when store is set. */
static double lay_out(struct agipd_plan *p, const uint64_t *frames, int k, int weighted, int store,
		      struct agipd_plan_group *scratch)
{
	double t = 0;
	int nr = 0;
	for (int f0 = 0; f0 < p->nfiles; nr++) {
		int kk = p->nfiles - f0 < k ? p->nfiles - f0 : k;
		struct agipd_plan_group *g = store ? p->groups + f0 : scratch;
		t += round_groups(g, frames, f0, kk, p->nranks, p->serial, weighted);
		if (store)
			p->round_first[nr] = f0;
		f0 += kk;
	}
	if (store) {
		p->round_first[nr] = p->nfiles;
		p->nrounds = nr;
	}
	return t;
}

int agipd_plan_make(struct agipd_plan *p, const uint64_t *frames, int nfiles, int nranks, int ranks_per_node,
		    int serial, enum agipd_plan_policy policy, agipd_err *e)
{
	memset(p, 0, sizeof *p);
	if (nfiles < 0 || nranks < 1)
		return agipd_err_set(e, "plan: %d file(s) on %d rank(s)", nfiles, nranks);
	p->nfiles = nfiles;
	p->nranks = nranks;
	p->ranks_per_node = ranks_per_node > 0 ? ranks_per_node : nranks;
	p->serial = serial;
	p->groups = malloc(((size_t)nfiles + 1) * sizeof *p->groups);
	p->round_first = malloc(((size_t)nfiles + 1) * sizeof *p->round_first);
	struct agipd_plan_group *scratch = malloc(((size_t)nfiles + 1) * sizeof *scratch);
	if (!p->groups || !p->round_first || !scratch) {
		free(scratch);
		agipd_plan_free(p);
		return agipd_err_set(e, "plan: out of memory for %d file(s)", nfiles);
	}
	int kmax = nfiles < nranks ? nfiles : nranks, k = kmax;
	int weighted = policy == AGIPD_PLAN_BALANCED && !serial;
	if (weighted && nfiles > nranks) {
		/* More files than ranks: fewer files per round with larger
		 * groups when that is clearly (5 %) faster in the model, and
		 * then the largest round size within 5 % of the fastest (few
		 * rounds, small groups: the model counts no cost per round or
		 * per group, a real run does).  With as many ranks as files or
		 * more, one round: a file never waits for another. */
		double *t = malloc(((size_t)kmax + 1) * sizeof *t), best;
		if (!t) {
			free(scratch);
			agipd_plan_free(p);
			return agipd_err_set(e, "plan: out of memory for %d rank(s)", nranks);
		}
		best = t[kmax] = lay_out(p, frames, kmax, 1, 0, scratch);
		for (int kk = kmax - 1; kk >= 1; kk--) {
			t[kk] = lay_out(p, frames, kk, 1, 0, scratch);
			if (t[kk] < best)
				best = t[kk];
		}
		if (best < 0.95 * t[kmax])
			while (t[k] > 1.05 * best)
				k--;
		free(t);
	}
	lay_out(p, frames, k > 0 ? k : 1, weighted, 1, scratch);
	free(scratch);
	return 0;
}

void agipd_plan_free(struct agipd_plan *p)
{
	free(p->groups);
	free(p->round_first);
	memset(p, 0, sizeof *p);
}

const struct agipd_plan_group *agipd_plan_group_of(const struct agipd_plan *p, int round, int rank)
{
	if (round < 0 || round >= p->nrounds)
		return NULL;
	for (int i = p->round_first[round]; i < p->round_first[round + 1]; i++)
		if (rank >= p->groups[i].rank0 && rank < p->groups[i].rank0 + p->groups[i].nranks)
			return &p->groups[i];
	return NULL;
}

uint64_t agipd_plan_split(const uint64_t *train_first, size_t ntrains, uint64_t nframes, int i, int g)
{
	if (i <= 0)
		return 0;
	if (i >= g)
		return nframes;
	uint64_t target = nframes * (uint64_t)i / (uint64_t)g;
	for (size_t t = 0; t < ntrains; t++)
		if (train_first[t] >= target)
			return train_first[t];
	return nframes;
}

double agipd_plan_time(const struct agipd_plan *p, const uint64_t *frames)
{
	double t = 0;
	for (int r = 0; r < p->nrounds; r++) {
		double slowest = 0;
		for (int i = p->round_first[r]; i < p->round_first[r + 1]; i++) {
			double s = weight(frames, p->groups[i].file) / p->groups[i].nranks;
			if (s > slowest)
				slowest = s;
		}
		t += slowest;
	}
	return t;
}

double agipd_plan_efficiency(const struct agipd_plan *p, const uint64_t *frames)
{
	double all = 0, t = agipd_plan_time(p, frames);
	for (int i = 0; i < p->nfiles; i++)
		all += weight(frames, i);
	return t > 0 ? all / p->nranks / t : 1.0;
}

/* Whether the ranks of `node` on module m this round (cur) are exactly those
 * that held it the round before (prev). */
static int kept(const int *cur, const int *prev, int lo, int hi, int m)
{
	int ncur = 0, nprev = 0;
	for (int r = lo; r < hi; r++) {
		if (cur[r] == m && prev[r] != m)
			return 0;
		ncur += cur[r] == m;
		nprev += prev[r] == m;
	}
	return ncur == nprev;
}

int agipd_plan_loads(const struct agipd_plan *p, const int *module)
{
	int *cur = malloc((size_t)p->nranks * sizeof *cur), *prev = malloc((size_t)p->nranks * sizeof *prev);
	int loads = 0;
	if (!cur || !prev) {
		free(cur);
		free(prev);
		return -1;
	}
	for (int r = 0; r < p->nranks; r++)
		prev[r] = -1;
	for (int rd = 0; rd < p->nrounds; rd++) {
		for (int r = 0; r < p->nranks; r++)
			cur[r] = -1;
		for (int i = p->round_first[rd]; i < p->round_first[rd + 1]; i++)
			for (int r = p->groups[i].rank0; r < p->groups[i].rank0 + p->groups[i].nranks; r++)
				cur[r] = module[p->groups[i].file];
		for (int lo = 0; lo < p->nranks; lo += p->ranks_per_node) {
			int hi = lo + p->ranks_per_node < p->nranks ? lo + p->ranks_per_node : p->nranks;
			for (int r = lo; r < hi; r++) {
				int first = cur[r] >= 0;
				for (int q = lo; q < r && first; q++)
					first = cur[q] != cur[r];
				if (first && !kept(cur, prev, lo, hi, cur[r]))
					loads++;
			}
		}
		int *t = prev;
		prev = cur;
		cur = t;
	}
	free(cur);
	free(prev);
	return loads;
}
