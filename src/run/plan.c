/*
 * plan.c - which rank corrects which file and trains (agipd_plan.h).
 * Pure: no MPI, no HDF5, no I/O.
 */
#include <stdlib.h>
#include <string.h>

#include "agipd.h"
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

/* Ranks [group_rank(j), group_rank(j + 1)) form group j of G (serial: rank j). */
static int group_rank(int j, int G, int nranks, int serial)
{
	return serial ? j : (int)((long)j * nranks / G);
}

/*
 * Files, in their order, into G contiguous non-empty runs, run j on group j,
 * each run's weight at most T times its group's size; cut[j] is the first
 * file of run j (cut[G] = nfiles).  Greedy: a run takes files while they fit
 * and enough are left for the runs after it.  Returns 1 when they all fit.
 */
static int fits(const double *w, int nfiles, int G, int nranks, int serial, double T, int *cut)
{
	int f = 0;
	for (int j = 0; j < G; j++) {
		double cap = T * (group_rank(j + 1, G, nranks, serial) - group_rank(j, G, nranks, serial));
		double sum = w[f];
		int last = j == G - 1 ? nfiles : nfiles - (G - 1 - j);
		cut[j] = f++;
		while (f < last && (j == G - 1 || sum + w[f] <= cap))
			sum += w[f++];
		if (sum > cap)
			return 0;
	}
	cut[G] = nfiles;
	return 1;
}

/* The model time of the runs cut[] on G groups: the slowest group's weight
 * over its size. */
static double groups_time(const double *w, int G, int nranks, int serial, const int *cut)
{
	double slowest = 0;
	for (int j = 0; j < G; j++) {
		double sum = 0;
		for (int i = cut[j]; i < cut[j + 1]; i++)
			sum += w[i];
		sum /= group_rank(j + 1, G, nranks, serial) - group_rank(j, G, nranks, serial);
		if (sum > slowest)
			slowest = sum;
	}
	return slowest;
}

/* The least T that fits() G runs (bisection); cut[] holds its runs.
 * Returns their model time. */
static double best_cut(const double *w, int nfiles, int G, int nranks, int serial, double total, int *cut)
{
	double lo = 0, hi = total;   /* every group has at least one rank */
	for (int it = 0; it < 100 && hi - lo > 1e-12 * hi; it++) {
		double mid = (lo + hi) / 2;
		if (fits(w, nfiles, G, nranks, serial, mid, cut))
			hi = mid;
		else
			lo = mid;
	}
	fits(w, nfiles, G, nranks, serial, hi, cut);
	return groups_time(w, G, nranks, serial, cut);
}

/*
 * AGIPD_PLAN_GROUPS with more files than ranks (or the serial writer): G
 * fixed groups of contiguous ranks, the files cut into G contiguous runs
 * balanced by weight over group size; G the largest whose model time is
 * within 1 % of the least (one group always reaches the ideal, all frames
 * over all ranks, but a group's collective steps cost more the more ranks
 * it has, which the model does not count).  Rounds: the r-th file of every group.  0 or -1 (memory).
 */
static int plan_groups(struct agipd_plan *p, const uint64_t *frames)
{
	int F = p->nfiles, gmax = F < p->nranks ? F : p->nranks, bestG = 1, n = 0;
	double *w = malloc(((size_t)F + 1) * sizeof *w), total = 0, best = -1;
	int *cut = malloc(((size_t)gmax + 2) * sizeof *cut);
	if (!w || !cut) {
		free(w);
		free(cut);
		return -1;
	}
	for (int i = 0; i < F; i++)
		total += w[i] = weight(frames, i);
	for (int i = 0; i < F && total <= 0; i++)
		w[i] = 1;   /* only empty files: count them alike */
	total = total > 0 ? total : F;
	double *t = malloc(((size_t)gmax + 1) * sizeof *t);
	if (!t) {
		free(w);
		free(cut);
		return -1;
	}
	for (int G = p->serial ? gmax : 1; G <= gmax; G++) {
		t[G] = best_cut(w, F, G, p->nranks, p->serial, total, cut);
		best = best < 0 || t[G] < best ? t[G] : best;
	}
	for (int G = p->serial ? gmax : 1; G <= gmax; G++)
		if (t[G] <= best * 1.01)
			bestG = G;
	free(t);
	best_cut(w, F, bestG, p->nranks, p->serial, total, cut);
	for (int r = 0; n < F; r++) {
		p->round_first[r] = n;
		for (int j = 0; j < bestG; j++)
			if (cut[j] + r < cut[j + 1]) {
				struct agipd_plan_group *g = &p->groups[n++];
				g->file = cut[j] + r;
				g->rank0 = group_rank(j, bestG, p->nranks, p->serial);
				g->nranks = group_rank(j + 1, bestG, p->nranks, p->serial) - g->rank0;
			}
		p->nrounds = r + 1;
	}
	p->round_first[p->nrounds] = F;
	free(w);
	free(cut);
	return 0;
}

uint64_t agipd_plan_frames_of_size(uint64_t bytes)
{
	return (bytes + 2 * AGIPD_PIXELS) / (4 * AGIPD_PIXELS);
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
	p->lockstep = policy != AGIPD_PLAN_GROUPS;
	p->groups = malloc(((size_t)nfiles + 1) * sizeof *p->groups);
	p->round_first = malloc(((size_t)nfiles + 1) * sizeof *p->round_first);
	struct agipd_plan_group *scratch = malloc(((size_t)nfiles + 1) * sizeof *scratch);
	if (!p->groups || !p->round_first || !scratch) {
		free(scratch);
		agipd_plan_free(p);
		return agipd_err_set(e, "plan: out of memory for %d file(s)", nfiles);
	}
	/* GROUPS with as many ranks as files or more: one round, in which
	 * lockstep costs nothing and lets the ranks of a node share a module's
	 * constants across the files' groups. */
	if (policy == AGIPD_PLAN_GROUPS)
		p->lockstep = 1;
	int kmax = nfiles < nranks ? nfiles : nranks, k = kmax;
	int weighted = policy != AGIPD_PLAN_ROUNDS && !serial;
	if (policy == AGIPD_PLAN_GROUPS && nfiles > 0 && (serial || nfiles > nranks)) {
		free(scratch);
		if (plan_groups(p, frames) == 0) {
			p->lockstep = p->nrounds <= 1;
			return 0;
		}
		agipd_plan_free(p);
		return agipd_err_set(e, "plan: out of memory for %d file(s)", nfiles);
	}
	if (weighted && nfiles > nranks && policy == AGIPD_PLAN_BALANCED) {
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

/* A plan without lockstep: every group's files back to back, the slowest
 * group's sum (a group: its first rank; groups are fixed). */
static double groups_plan_time(const struct agipd_plan *p, const uint64_t *frames)
{
	double *sum = calloc((size_t)p->nranks, sizeof *sum), slowest = 0;
	if (!sum)
		return -1;
	for (int i = 0; i < p->round_first[p->nrounds]; i++) {
		const struct agipd_plan_group *g = &p->groups[i];
		sum[g->rank0] += weight(frames, g->file) / g->nranks;
		if (sum[g->rank0] > slowest)
			slowest = sum[g->rank0];
	}
	free(sum);
	return slowest;
}

double agipd_plan_time(const struct agipd_plan *p, const uint64_t *frames)
{
	double t = 0;
	if (!p->lockstep)
		return groups_plan_time(p, frames);
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

/* Loads of a plan without lockstep: the ranks of a group on a node share
 * constants, so a group loads once per node it spans whenever its module
 * changes from one file to the next. */
static int groups_plan_loads(const struct agipd_plan *p, const int *module)
{
	int *prev = malloc((size_t)p->nranks * sizeof *prev), loads = 0;
	if (!prev)
		return -1;
	for (int r = 0; r < p->nranks; r++)
		prev[r] = -1;
	for (int i = 0; i < p->round_first[p->nrounds]; i++) {
		const struct agipd_plan_group *g = &p->groups[i];
		int m = module[g->file], last = g->rank0 + g->nranks - 1;
		if (m != prev[g->rank0])
			loads += last / p->ranks_per_node - g->rank0 / p->ranks_per_node + 1;
		prev[g->rank0] = m;
	}
	free(prev);
	return loads;
}

int agipd_plan_loads(const struct agipd_plan *p, const int *module)
{
	if (!p->lockstep)
		return groups_plan_loads(p, module);
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
