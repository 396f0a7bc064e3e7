/*
 * run_inputs.c - what the run corrects (rank 0): the raw files of the
 * selected modules and sequences, and the run's operating conditions.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agipd_caldb.h"
#include "agipd_names.h"
#include "run_internal.h"

/* ---- discovery (rank 0) ---- */

static int cmp_task(const void *a, const void *b)
{
	const struct task *x = a, *y = b;
	return x->module != y->module ? x->module - y->module : x->seq - y->seq;
}

/* Fills tasks (malloc) on rank 0; returns count, or -1 with e set. */
int run_discover(struct ctx *x, struct task **out, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char sub[4200];
	struct task *found = NULL, *tasks = NULL;
	int nfound = 0, cap = 0, ntasks = 0, tcap = 0;
	DIR *d;
	struct dirent *de;

	if (agipd_path_fits(snprintf(sub, sizeof sub, "%s/r%04ld", c->in_folder, c->run), sizeof sub) < 0 ||
	    agipd_path_fits(snprintf(x->raw_dir, sizeof x->raw_dir, "%s", run_is_dir(sub) ? sub : c->in_folder),
		      sizeof x->raw_dir) < 0)
		return agipd_err_set(e, "%s: input folder name too long", c->in_folder);
	if (!run_is_dir(x->raw_dir))
		return agipd_err_set(e, "%s: input folder does not exist", c->in_folder);
	d = opendir(x->raw_dir);
	if (!d)
		return agipd_err_set(e, "%s: cannot read input folder: %s", x->raw_dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		long run;
		int m, s, n = 0;
		char again[256];
		if (sscanf(de->d_name, "RAW-R%4ld-AGIPD%2d-S%5d.h5%n", &run, &m, &s, &n) != 3 || de->d_name[n])
			continue;
		snprintf(again, sizeof again, "RAW-R%04ld-AGIPD%02d-S%05d.h5", run, m, s);
		if (strcmp(again, de->d_name) || run != c->run || m < 0 || m >= AGIPD_MODULES || s < 0)
			continue;
		if (nfound == cap) {
			cap = cap ? 2 * cap : 64;
			struct task *t = realloc(found, (size_t)cap * sizeof *t);
			if (!t) {
				closedir(d);
				free(found);
				return agipd_err_set(e, "out of memory");
			}
			found = t;
		}
		found[nfound++] = (struct task){ m, s, T_PENDING };
	}
	closedir(d);
	if (nfound)
		qsort(found, (size_t)nfound, sizeof *found, cmp_task);

#define PUSH(mm, ss, st)                                                                    \
	do {                                                                                \
		if (ntasks == tcap) {                                                       \
			tcap = tcap ? 2 * tcap : 64;                                        \
			struct task *t_ = realloc(tasks, (size_t)tcap * sizeof *t_);        \
			if (!t_)                                                            \
				goto oom;                                                   \
			tasks = t_;                                                         \
		}                                                                           \
		tasks[ntasks++] = (struct task){ mm, ss, st };                              \
	} while (0)

	for (int m = 0; m < AGIPD_MODULES; m++) {
		int wanted = c->modules.n ? agipd_list_has(&c->modules, m) : 0;
		int any = 0;
		for (int i = 0; i < nfound; i++)
			if (found[i].module == m)
				any = 1;
		if (!wanted && !(c->modules.n == 0 && any))
			continue;
		if (c->sequences.n == 0) {
			for (int i = 0; i < nfound; i++)
				if (found[i].module == m)
					PUSH(m, found[i].seq, T_PENDING);
			if (!any)
				PUSH(m, -1, T_MISSING);
		} else {
			for (int r = 0; r < c->sequences.n; r++)
				for (long s = c->sequences.lo[r]; s <= c->sequences.hi[r] && s < 100000; s++) {
					int have = 0;
					for (int i = 0; i < nfound; i++)
						if (found[i].module == m && found[i].seq == s)
							have = 1;
					/* With every module, a module lacking a sequence is not asked for. */
					if (!have && !c->modules.n && !any)
						continue;
					PUSH(m, (int)s, have ? T_PENDING : T_MISSING);
				}
		}
	}
	free(found);
	if (ntasks == 0) {
		free(tasks);
		return agipd_err_set(e, "%s: no raw files of run %ld%s", x->raw_dir, c->run,
				     c->modules.n || c->sequences.n ? " for the modules and sequences asked" : "");
	}
	*out = tasks;
	return ntasks;
oom:
	free(found);
	free(tasks);
	return agipd_err_set(e, "out of memory");
#undef PUSH
}

/* Rank 0: the run's conditions from its control data (fallbacks from the
 * raw files of the tasks), and a first look at the calibration metadata. */
int run_resolve_conditions(struct ctx *x, const struct task *tasks, int ntasks, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	int modules[AGIPD_MODULES], nm = 0, nraw = 0, rc = -1;
	char (*paths)[4200] = calloc((size_t)ntasks + 1, sizeof *paths);
	char (*srcs)[256] = calloc((size_t)ntasks + 1, sizeof *srcs);
	const char **pp = calloc((size_t)ntasks + 1, sizeof *pp), **sp = calloc((size_t)ntasks + 1, sizeof *sp);
	if (!paths || !srcs || !pp || !sp) {
		agipd_err_set(e, "out of memory");
		goto out;
	}
	for (int i = 0; i < ntasks; i++) {
		if (tasks[i].state != T_PENDING)
			continue;
		if (!nm || modules[nm - 1] != tasks[i].module)
			modules[nm++] = tasks[i].module;   /* tasks are sorted by module */
		agipd_raw_name(paths[nraw], sizeof paths[nraw], x->raw_dir, c->run, tasks[i].module, tasks[i].seq);
		agipd_source_name(srcs[nraw], sizeof srcs[nraw], c->karabo_id, tasks[i].module);
		pp[nraw] = paths[nraw];
		sp[nraw] = srcs[nraw];
		nraw++;
	}
	struct agipd_cond_input in = {
		.raw_dir = x->raw_dir, .run = c->run,
		.karabo_id_control = c->karabo_id_control, .karabo_da_control = c->karabo_da_control,
		.modules = modules, .nmodules = nm, .raw_files = pp, .raw_sources = sp, .nraw = nraw,
		.params = &c->params, .given = c->cond_given, .given_value = c->cond_value,
	};
	rc = agipd_conditions_resolve(&in, &x->cond, e);
	if (rc == 0 && c->calibration_metadata[0])
		rc = agipd_caldb_check(c->calibration_metadata, e);
out:
	free(paths);
	free(srcs);
	free(pp);
	free(sp);
	return rc;
}
