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
 * Text mode: the plan's efficiency in its model, one line per policy, with
 * the frames given.  FRAMES: frames per file (default 3520); every EVERY-th
 * file (the last sequence of a module) has LAST_FRAMES instead.
 *
 *   bin/plan_efficiency --json --ranks P --frames F1,F2,... [--ranks-per-node N]
 *       [--serial] [--policy rounds|balanced|groups] [--weigh-frames|--files-alike]
 *       [--modules M1,M2,...] [--trains T1,T2,...]
 *
 * JSON mode: one plan as one JSON object on stdout, for programs (the
 * scaling report, jobs/scaling_report.py, takes its plan from here).  File i
 * has Fi frames, belongs to module Mi (for the constants loads) and holds Ti
 * trains of equal frames (for each rank's frame range).  The plan is made as
 * agipd-correct makes it by default (--schedule groups): policy groups,
 * weighed by the frames (the corrector estimates them from the files'
 * sizes); --policy balanced is --schedule rounds; --files-alike plans with
 * every file counted alike.  The frames always price the plan (time,
 * efficiency).
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
	{ "groups", AGIPD_PLAN_GROUPS },
};

/* Whether the plan's rounds end together. */
static int plan_lockstep(const struct agipd_plan *p)
{
	return p->lockstep;
}

#define JSON_USAGE                                                                                         \
	"usage: plan_efficiency --json --ranks P --frames F1,F2,... [--ranks-per-node N] [--serial]\n"     \
	"           [--policy rounds|balanced|groups] [--weigh-frames|--files-alike] [--modules M1,M2,...]\n" \
	"           [--trains T1,T2,...]\n"

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
 * rounds (agipd_plan_loads() of the whole plan), or -1.  A plan without
 * lockstep (fixed groups) loads where a group's module changes.
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
	if (!p->lockstep) {
		/* Fixed groups: all of a group's ranks load when its module
		 * changes (the plan counts one load per node the group spans). */
		int *last = malloc((size_t)p->nranks * sizeof *last);
		if (!last)
			goto out;
		for (int r = 0; r < p->nranks; r++)
			last[r] = -2;
		for (int i = 0; i < p->round_first[p->nrounds]; i++) {
			const struct agipd_plan_group *gi = &p->groups[i];
			if (module[gi->file] != last[gi->rank0])
				loading[i] = gi->nranks;
			last[gi->rank0] = module[gi->file];
		}
		free(last);
		ret = agipd_plan_loads(p, module);
		goto out;
	}
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

/* The options of the JSON mode; lists are NULL when not given. */
struct json_opts {
	long ranks, rpn, nfiles;
	long *frames, *modules, *trains;
	int serial, weigh, policy;
};

/* Fills o from argv[2..]; returns 0, or -1 (bad usage). */
static int json_args(struct json_opts *o, int argc, char **argv)
{
	long nm = -1, nt = -1;
	*o = (struct json_opts){ .ranks = -1, .nfiles = -1, .policy = 2 /* policies[2]: groups */, .weigh = 1 };
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(k, "--serial")) {
			o->serial = 1;
			continue;
		}
		if (!strcmp(k, "--files-alike")) {
			o->weigh = 0;
			continue;
		}
		if (!strcmp(k, "--weigh-frames")) {
			o->weigh = 1;
			continue;
		}
		if (!v)
			return -1;
		i++;
		if (!strcmp(k, "--ranks")) {
			o->ranks = arg(v, 1);
		} else if (!strcmp(k, "--ranks-per-node")) {
			o->rpn = arg(v, 0);
		} else if (!strcmp(k, "--policy")) {
			o->policy = -1;
			for (size_t q = 0; q < sizeof policies / sizeof *policies; q++)
				if (!strcmp(v, policies[q].name))
					o->policy = (int)q;
		} else if (!strcmp(k, "--frames") && !o->frames) {
			o->nfiles = list(v, 0, &o->frames);
		} else if (!strcmp(k, "--modules") && !o->modules) {
			nm = list(v, 0, &o->modules);
		} else if (!strcmp(k, "--trains") && !o->trains) {
			nt = list(v, 1, &o->trains);
		} else {
			return -1;
		}
	}
	return o->ranks < 1 || o->ranks > 1000000 || o->rpn < 0 || o->policy < 0 || o->nfiles < 0 ||
			       o->nfiles > 1000000 || (o->modules && nm != o->nfiles) || (o->trains && nt != o->nfiles) ||
			       nm < -1 || nt < -1 ? -1 : 0;
}

/* Group i of plan p as JSON: its ranks, with loading[] (NULL: no modules)
 * the ranks that load constants, with trains (NULL: none) each rank's
 * frames.  Returns 0, or -1 when out of memory. */
static int print_group(const struct agipd_plan *p, int i, const uint64_t *fr, const int *loading,
		       const long *trains)
{
	const struct agipd_plan_group *g = &p->groups[i];
	printf("{\"file\": %d, \"rank0\": %d, \"nranks\": %d", g->file, g->rank0, g->nranks);
	if (loading)
		printf(", \"loading_ranks\": %d", loading[i]);
	if (trains) {
		/* Ti trains of equal frames: train t starts at t * Fi / Ti. */
		size_t ntr = (size_t)trains[g->file];
		uint64_t nfr = fr[g->file], *first = malloc((ntr + 1) * sizeof *first);
		if (!first)
			return -1;
		for (size_t t = 0; t < ntr; t++)
			first[t] = nfr * t / ntr;
		printf(", \"ranges\": [");
		for (int k = 0; k < g->nranks; k++)
			printf("%s[%llu, %llu]", k ? ", " : "",
			       (unsigned long long)agipd_plan_split(first, ntr, nfr, k, g->nranks),
			       (unsigned long long)agipd_plan_split(first, ntr, nfr, k + 1, g->nranks));
		printf("]");
		free(first);
	}
	printf("}");
	return 0;
}

static int json_mode(int argc, char **argv)
{
	struct json_opts o;
	int ret = 1, planned = 0, loads = 0;
	uint64_t *fr = NULL;
	int *module = NULL, *loading = NULL;
	struct agipd_plan p;
	agipd_err e;
	if (json_args(&o, argc, argv) < 0) {
		fprintf(stderr, JSON_USAGE);
		ret = 2;
		goto done;
	}
	fr = malloc(((size_t)o.nfiles + 1) * sizeof *fr);
	module = malloc(((size_t)o.nfiles + 1) * sizeof *module);
	loading = malloc(((size_t)o.nfiles + 1) * sizeof *loading);
	if (!fr || !module || !loading)
		goto nomem;
	for (long i = 0; i < o.nfiles; i++) {
		fr[i] = (uint64_t)o.frames[i];
		module[i] = o.modules ? (int)o.modules[i] : -1;
	}
	if (agipd_plan_make(&p, o.weigh ? fr : NULL, (int)o.nfiles, (int)o.ranks, (int)o.rpn, o.serial,
			    policies[o.policy].policy, &e) < 0) {
		fprintf(stderr, "plan_efficiency: %s\n", e.msg);
		goto done;
	}
	planned = 1;
	if (o.modules && ((loads = agipd_plan_loads(&p, module)) < 0 || group_loads(&p, module, loading) != loads)) {
		fprintf(stderr, "plan_efficiency: the constants loads of the plan do not add up\n");
		goto done;
	}
	printf("{\"policy\": \"%s\", \"nfiles\": %ld, \"nranks\": %ld, \"ranks_per_node\": %d, \"serial\": %s, "
	       "\"weigh_frames\": %s, \"lockstep\": %s, \"time\": %.17g, \"efficiency\": %.17g",
	       policies[o.policy].name, o.nfiles, o.ranks, p.ranks_per_node, o.serial ? "true" : "false",
	       o.weigh ? "true" : "false", plan_lockstep(&p) ? "true" : "false", agipd_plan_time(&p, fr),
	       agipd_plan_efficiency(&p, fr));
	if (o.modules)
		printf(", \"loads\": %d", loads);
	printf(", \"nrounds\": %d, \"rounds\": [", p.nrounds);
	for (int r = 0, before = 0; r < p.nrounds; r++) {
		printf("%s\n {", r ? "," : "");
		if (o.modules) {
			int upto = loads_upto(&p, r + 1, module);
			printf("\"loads\": %d, ", upto - before);
			before = upto;
		}
		printf("\"groups\": [");
		for (int i = p.round_first[r]; i < p.round_first[r + 1]; i++) {
			printf("%s", i > p.round_first[r] ? ", " : "");
			if (print_group(&p, i, fr, o.modules ? loading : NULL, o.trains) < 0)
				goto nomem;
		}
		printf("]}");
	}
	printf("]}\n");
	ret = 0;
	goto done;
nomem:
	fprintf(stderr, "plan_efficiency: out of memory for %ld file(s)\n", o.nfiles);
done:
	if (planned)
		agipd_plan_free(&p);
	free(o.frames);
	free(o.modules);
	free(o.trains);
	free(fr);
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
