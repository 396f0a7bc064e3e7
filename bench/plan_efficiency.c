/*
 * plan_efficiency.c - the plan of agipd_plan.h without an MPI run or files:
 * a pure computation.
 *
 *   bin/plan_efficiency RANKS FILES [FRAMES [LAST_FRAMES EVERY]]
 *
 * Text mode: the plan's efficiency in its model (all frames / ranks over the
 * sum of the rounds' slowest groups), for the lockstep rounds
 * (AGIPD_PLAN_ROUNDS) and the balanced plan the corrector uses
 * (AGIPD_PLAN_BALANCED).  FRAMES: frames per file (default 3520); every
 * EVERY-th file (the last sequence of a module) has LAST_FRAMES instead.
 * Prints one line per plan.
 *
 *   bin/plan_efficiency --json --ranks P --frames F1,F2,... [--ranks-per-node N]
 *       [--serial] [--policy rounds|balanced] [--weigh-frames]
 *       [--modules M1,M2,...] [--trains T1,T2,...]
 *
 * JSON mode: one plan as one JSON object on stdout, for programs (the
 * scaling report, jobs/scaling_report.py, takes its plan from here).  File i
 * has Fi frames, belongs to module Mi (for the constants loads) and holds Ti
 * trains of equal frames (for each rank's frame range).  The plan is made as
 * agipd-correct makes it: policy balanced, files counted alike (it plans
 * before it knows the frames); --weigh-frames gives agipd_plan_make() the
 * frames.  The frames always price the plan (time, efficiency).
 *
 *   policy, nfiles, nranks, ranks_per_node, serial, weigh_frames
 *   lockstep     true: rounds end together (a round lasts as long as its
 *                slowest group); false: groups of ranks, each (rank0, nranks)
 *                across the rounds, do their files back to back
 *   time         agipd_plan_time(), in frames of one rank
 *   efficiency   agipd_plan_efficiency()
 *   loads        agipd_plan_loads(): (node, module) constants loads (with
 *                --modules)
 *   nrounds, rounds[]: {loads: this round's loads (with --modules),
 *                groups[]: {file, rank0, nranks,
 *                           loading_ranks: ranks of the group whose
 *                             (node, module) loads this round (--modules),
 *                           ranges: [[first, end), ...] frames of each rank
 *                             of the group, agipd_plan_split() (--trains)}}
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_plan.h"

static long arg(const char *s, long lo)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= lo ? v : -1;
}

/* ---- JSON mode ---- */

/* The policies by name; a new policy is one more line. */
static const struct {
	const char *name;
	enum agipd_plan_policy policy;
} policies[] = {
	{ "rounds", AGIPD_PLAN_ROUNDS },
	{ "balanced", AGIPD_PLAN_BALANCED },
};

/* Whether the plan's rounds end together (every plan of agipd_plan.h so
 * far); a plan that says so itself makes this p->lockstep. */
static int plan_lockstep(const struct agipd_plan *p)
{
	(void)p;
	return 1;
}

#define JSON_USAGE                                                                                         \
	"usage: plan_efficiency --json --ranks P --frames F1,F2,... [--ranks-per-node N] [--serial]\n"     \
	"           [--policy rounds|balanced] [--weigh-frames] [--modules M1,M2,...] [--trains T1,T2,...]\n"

/* A comma-separated list of integers >= lo ("" is none) into a new array;
 * returns its length, or -1. */
static long list(const char *s, long lo, long **out)
{
	long n = *s ? 1 : 0;
	for (const char *c = s; *c; c++)
		n += *c == ',';
	long *v = malloc(((size_t)n + 1) * sizeof *v);
	if (!v)
		return -1;
	for (long i = 0; i < n; i++) {
		char *end;
		if (*s < '0' || *s > '9') {
			free(v);
			return -1;
		}
		v[i] = strtol(s, &end, 10);
		if (v[i] < lo || (*end != ',' && *end) || (*end == ',' && i == n - 1)) {
			free(v);
			return -1;
		}
		s = end + (*end == ',');
	}
	*out = v;
	return n;
}

/* Constants loads of rounds [0, nrounds) of p: agipd_plan_loads() of the
 * plan cut after them. */
static int loads_upto(const struct agipd_plan *p, int nrounds, const int *module)
{
	struct agipd_plan q = *p;
	q.nrounds = nrounds;
	return agipd_plan_loads(&q, module);
}

/*
 * loading[i]: the ranks of group i whose (node, module) loads constants in
 * its round, from agipd_plan_loads() alone: of the plan cut down to one node
 * (the groups clipped to its ranks) and one module (every other file as
 * none, -1), the loads up to a round and up to the one before differ by
 * the loads of that round.  Returns their total over the nodes, modules and
 * rounds (agipd_plan_loads() of the whole plan), or -1.
 */
static int group_loads(const struct agipd_plan *p, const int *module, int *loading)
{
	int n = p->nfiles, rpn = p->ranks_per_node, total = 0, ret = -1;
	struct agipd_plan_group *g = malloc(((size_t)n + 1) * sizeof *g);
	int *mask = malloc(((size_t)n + 1) * sizeof *mask), *before = malloc(((size_t)p->nrounds + 1) * sizeof *before);
	if (!g || !mask || !before)
		goto out;
	for (int i = 0; i < n; i++)
		loading[i] = 0;
	for (int lo = 0; lo < p->nranks; lo += rpn) {
		int hi = lo + rpn < p->nranks ? lo + rpn : p->nranks;
		struct agipd_plan node = *p;
		node.nranks = hi - lo;
		node.ranks_per_node = hi - lo;
		node.groups = g;
		for (int i = 0; i < n; i++) {
			int a = p->groups[i].rank0, b = a + p->groups[i].nranks;
			a = a > lo ? a : lo;
			b = b < hi ? b : hi;
			g[i].file = p->groups[i].file;
			g[i].rank0 = b > a ? a - lo : 0;
			g[i].nranks = b > a ? b - a : 0;
		}
		for (int m = 0; m < n; m++) {
			int seen = 0;
			for (int i = 0; i < m && !seen; i++)
				seen = module[i] == module[m];
			if (seen || module[m] < 0)
				continue;
			for (int i = 0; i < n; i++)
				mask[i] = module[i] == module[m] ? module[i] : -1;
			before[0] = 0;
			for (int r = 0; r < p->nrounds; r++) {
				if ((before[r + 1] = loads_upto(&node, r + 1, mask)) < 0)
					goto out;
				if (before[r + 1] == before[r])
					continue;
				total += before[r + 1] - before[r];
				for (int i = p->round_first[r]; i < p->round_first[r + 1]; i++)
					if (mask[g[i].file] >= 0)
						loading[i] += g[i].nranks;
			}
		}
	}
	ret = total;
out:
	free(g);
	free(mask);
	free(before);
	return ret;
}

static int json_mode(int argc, char **argv)
{
	long ranks = -1, rpn = 0, nf = -1, nm = -1, nt = -1, *frames = NULL, *mods = NULL, *trains = NULL;
	int serial = 0, weigh = 0, pol = -1, ret = 2, planned = 0;
	uint64_t *fr = NULL, *first = NULL;
	int *module = NULL, *loading = NULL;
	struct agipd_plan p;
	agipd_err e;
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--serial")) {
			serial = 1;
		} else if (!strcmp(o, "--weigh-frames")) {
			weigh = 1;
		} else if (!v) {
			goto usage;
		} else if (!strcmp(o, "--ranks")) {
			ranks = arg(v, 1);
		} else if (!strcmp(o, "--ranks-per-node")) {
			rpn = arg(v, 0);
		} else if (!strcmp(o, "--policy")) {
			for (size_t k = 0; k < sizeof policies / sizeof *policies; k++)
				if (!strcmp(v, policies[k].name))
					pol = (int)k;
			if (pol < 0)
				goto usage;
		} else if (!strcmp(o, "--frames") && nf < 0) {
			nf = list(v, 0, &frames);
		} else if (!strcmp(o, "--modules") && nm < 0) {
			nm = list(v, 0, &mods);
		} else if (!strcmp(o, "--trains") && nt < 0) {
			nt = list(v, 1, &trains);
		} else {
			goto usage;
		}
		if (strcmp(o, "--serial") && strcmp(o, "--weigh-frames"))
			i++;
	}
	if (pol < 0)
		pol = 1;   /* balanced, as agipd-correct */
	if (ranks < 1 || ranks > 1000000 || rpn < 0 || nf < 0 || nf > 1000000 || (nm >= 0 && nm != nf) ||
	    (nt >= 0 && nt != nf))
		goto usage;
	ret = 1;
	fr = malloc(((size_t)nf + 1) * sizeof *fr);
	module = malloc(((size_t)nf + 1) * sizeof *module);
	loading = malloc(((size_t)nf + 1) * sizeof *loading);
	if (!fr || !module || !loading)
		goto nomem;
	for (long i = 0; i < nf; i++) {
		fr[i] = (uint64_t)frames[i];
		module[i] = nm >= 0 ? (int)mods[i] : -1;
	}
	if (agipd_plan_make(&p, weigh ? fr : NULL, (int)nf, (int)ranks, (int)rpn, serial,
			    policies[pol].policy, &e) < 0) {
		fprintf(stderr, "plan_efficiency: %s\n", e.msg);
		goto done;
	}
	planned = 1;
	int loads = nm >= 0 ? agipd_plan_loads(&p, module) : 0;
	if (loads < 0 || (nm >= 0 && group_loads(&p, module, loading) != loads)) {
		fprintf(stderr, "plan_efficiency: the constants loads of the plan do not add up\n");
		goto done;
	}
	printf("{\"policy\": \"%s\", \"nfiles\": %ld, \"nranks\": %ld, \"ranks_per_node\": %d, \"serial\": %s, "
	       "\"weigh_frames\": %s, \"lockstep\": %s, \"time\": %.17g, \"efficiency\": %.17g",
	       policies[pol].name, nf, ranks, p.ranks_per_node, serial ? "true" : "false", weigh ? "true" : "false",
	       plan_lockstep(&p) ? "true" : "false", agipd_plan_time(&p, fr), agipd_plan_efficiency(&p, fr));
	if (nm >= 0)
		printf(", \"loads\": %d", loads);
	printf(", \"nrounds\": %d, \"rounds\": [", p.nrounds);
	for (int r = 0, before = 0; r < p.nrounds; r++) {
		printf("%s\n {", r ? "," : "");
		if (nm >= 0) {
			int upto = loads_upto(&p, r + 1, module);
			printf("\"loads\": %d, ", upto - before);
			before = upto;
		}
		printf("\"groups\": [");
		for (int i = p.round_first[r]; i < p.round_first[r + 1]; i++) {
			const struct agipd_plan_group *g = &p.groups[i];
			printf("%s{\"file\": %d, \"rank0\": %d, \"nranks\": %d", i > p.round_first[r] ? ", " : "",
			       g->file, g->rank0, g->nranks);
			if (nm >= 0)
				printf(", \"loading_ranks\": %d", loading[i]);
			if (nt >= 0) {
				/* Ti trains of equal frames: train t starts at t * Fi / Ti. */
				size_t ntr = (size_t)trains[g->file];
				uint64_t nfr = fr[g->file];
				free(first);
				if (!(first = malloc((ntr + 1) * sizeof *first)))
					goto nomem;
				for (size_t t = 0; t < ntr; t++)
					first[t] = nfr * t / ntr;
				printf(", \"ranges\": [");
				for (int k = 0; k < g->nranks; k++)
					printf("%s[%llu, %llu]", k ? ", " : "",
					       (unsigned long long)agipd_plan_split(first, ntr, nfr, k, g->nranks),
					       (unsigned long long)agipd_plan_split(first, ntr, nfr, k + 1, g->nranks));
				printf("]");
			}
			printf("}");
		}
		printf("]}");
	}
	printf("]}\n");
	ret = 0;
	goto done;
nomem:
	fprintf(stderr, "plan_efficiency: out of memory for %ld file(s)\n", nf);
	goto done;
usage:
	fprintf(stderr, JSON_USAGE);
done:
	if (planned)
		agipd_plan_free(&p);
	free(frames);
	free(mods);
	free(trains);
	free(fr);
	free(first);
	free(module);
	free(loading);
	return ret;
}

/* ---- text mode ---- */

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--json"))
		return json_mode(argc, argv);
	long ranks = argc > 2 ? arg(argv[1], 1) : -1, files = argc > 2 ? arg(argv[2], 0) : -1;
	long frames = argc > 3 ? arg(argv[3], 0) : 3520, last = argc > 5 ? arg(argv[4], 0) : frames;
	long every = argc > 5 ? arg(argv[5], 1) : 1;
	if (ranks < 0 || files < 0 || frames < 0 || last < 0 || every < 0 || argc == 5 || argc > 6 ||
	    ranks > 1000000 || files > 1000000) {
		fprintf(stderr, "usage: plan_efficiency RANKS FILES [FRAMES [LAST_FRAMES EVERY]]\n" JSON_USAGE);
		return 2;
	}
	uint64_t *fr = malloc(((size_t)files + 1) * sizeof *fr);
	if (!fr)
		return 1;
	for (long i = 0; i < files; i++)
		fr[i] = (uint64_t)((i + 1) % every == 0 && every > 1 ? last : frames);
	static const char *const names[] = { "rounds", "balanced" };
	for (int pol = AGIPD_PLAN_ROUNDS; pol <= AGIPD_PLAN_BALANCED; pol++) {
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
