/*
 * run_report.c - what a run tells: the --dry-run plan, the summary, and the
 * JSON report (every string escaped).
 */
#include <sys/stat.h>

#include "agipd_compress.h"
#include "agipd_json.h"
#include "agipd_names.h"
#include "run_internal.h"

#define P AGIPD_PIXELS

/* ---- dry run ---- */

/* The plan as one OUTPUT event.  Returns how many files cannot be planned
 * (each an ERROR event too). */
int run_print_plan(struct ctx *x, const struct agipd_plan *plan, const struct task *tasks, const int *todo)
{
	const struct agipd_config *c = x->c;
	char *buf;
	size_t len;
	FILE *o = run_output_begin(&buf, &len);
	int P_ = x->size, bad = 0;
	if (!o)
		return 0;
	fprintf(o, "plan: %d file(s) to correct with %d rank(s), %s writer\n", plan->nfiles, P_,
		c->writer == AGIPD_WRITE_SERIAL ? "serial" : c->writer == AGIPD_WRITE_NULL ? "null"
		: c->writer == AGIPD_WRITE_H5FILTER ? "collective-h5filter" : "collective");
	for (int round = 0; round < plan->nrounds; round++) {
		int k = plan->round_first[round + 1] - plan->round_first[round];
		fprintf(o, "round %d:\n", round);
		for (int j = plan->round_first[round]; j < plan->round_first[round + 1]; j++) {
			const struct agipd_plan_group *pg = &plan->groups[j];
			const struct task *t = &tasks[todo[pg->file]];
			int r0 = pg->rank0, r1 = pg->rank0 + pg->nranks;
			char src[256], path[4200];
			struct agipd_raw r;
			agipd_err e;
			agipd_source_name(src, sizeof src, c->karabo_id, t->module);
			if (agipd_raw_name(path, sizeof path, x->raw_dir, c->run, t->module, t->seq) < 0 ?
				    agipd_err_set(&e, "%s: raw file name too long", x->raw_dir) :
				    agipd_raw_open(&r, path, src, &c->params, &e) < 0) {
				fprintf(o, "  AGIPD%02d S%05d: ranks %d-%d: cannot plan: %s\n", t->module, t->seq, r0,
					r1 - 1, e.msg);
				run_event(x, AGIPD_EVENT_ERROR, -1, "AGIPD%02d S%05d: %s", t->module, t->seq, e.msg);
				bad++;
				continue;
			}
			fprintf(o, "  AGIPD%02d S%05d: %" PRIu64 " frames in %zu trains, ranks %d-%d\n", t->module,
				t->seq, r.nkept, r.nout, r0, r1 - 1);
			for (int rr = r0; rr < r1; rr++) {
				uint64_t a = agipd_plan_split(r.out_first, r.nout, r.nkept, rr - r0, r1 - r0),
					 b = agipd_plan_split(r.out_first, r.nout, r.nkept, rr - r0 + 1, r1 - r0);
				size_t ta = 0, tb = 0;
				for (size_t q = 0; q < r.nout; q++) {
					if (r.out_first[q] < a)
						ta = q + 1;
					if (r.out_first[q] < b)
						tb = q + 1;
				}
				if (a == b)
					fprintf(o, "    rank %d: no frames\n", rr);
				else
					fprintf(o, "    rank %d: frames %" PRIu64 "-%" PRIu64 " (trains %" PRIu64 "..%" PRIu64
						   ")\n", rr, a, b - 1, r.train_id[r.out_train[ta]],
						r.train_id[r.out_train[tb - 1]]);
			}
			agipd_raw_close(&r);
		}
		if (c->writer == AGIPD_WRITE_SERIAL && k < P_)
			fprintf(o, "  ranks %d-%d idle\n", k, P_ - 1);
	}
	run_output_end(x, AGIPD_EVENT_OUTPUT, o, &buf);
	return bad;
}

void run_print_summary(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			  const uint64_t *frames, char (*msgs)[AGIPD_ERRLEN], const double *all, double wall)
{
	const struct agipd_config *c = x->c;
	char *buf;
	size_t len;
	FILE *o;
	int nok = 0, nskip = 0, nfail = 0, nnot = 0;
	uint64_t nframes = 0;
	for (int i = 0; i < ntasks; i++) {
		nok += status[i] == RES_OK;
		nskip += status[i] == RES_SKIPPED;
		nfail += status[i] == RES_FAILED;
		nnot += status[i] == RES_NONE;
		if (status[i] == RES_OK)
			nframes += frames[i];
	}
	if (c->verbosity >= 1 && (o = run_output_begin(&buf, &len))) {
		fprintf(o, "conditions:\n");
		agipd_conditions_print(o, &x->cond);
		for (int i = 0; i < ntasks; i++) {
			const struct task *t = &tasks[i];
			if (status[i] == RES_OK)
				fprintf(o, "  AGIPD%02d S%05d  corrected  %" PRIu64 " frames\n", t->module, t->seq, frames[i]);
			else if (status[i] == RES_SKIPPED)
				fprintf(o, "  AGIPD%02d S%05d  skipped    output exists (use --overwrite)\n", t->module,
					t->seq);
			else if (status[i] == RES_NONE)
				fprintf(o, "  AGIPD%02d S%05d  not run\n", t->module, t->seq);
		}
		fprintf(o, "agipd-correct %s: run %ld: %d file(s) corrected, %d skipped, %d failed%s; %" PRIu64
			   " frames in %.2f s (%.0f frames/s, %.2f GB/s of raw data) on %d rank(s)\n",
			AGIPD_VERSION, c->run, nok, nskip, nfail, nnot ? ", some not run" : "", nframes, wall,
			wall > 0 ? (double)nframes / wall : 0, wall > 0 ? (double)nframes * 4 * P / wall / 1e9 : 0,
			x->size);
		double zin = 0, zout = 0;
		for (int q = 0; q < x->size; q++) {
			zin += all[q * C_NCOUNTERS + C_Z_IN];
			zout += all[q * C_NCOUNTERS + C_Z_OUT];
		}
		if (zout > 0)
			fprintf(o, "gain+mask: %.1f MB compressed to %.2f MB (ratio %.1f), shuffle+deflate(%s)+fletcher32 "
				   "on the owning ranks\n", zin / 1e6, zout / 1e6, zin / zout, agipd_deflate_impl());
		/* Per rank, seconds: compress = this rank's gain/mask filtering (for
		 * collective-h5filter: its filtered H5Dwrite calls); write = the rest of
		 * its writes, gather = moving compressed chunks to the file. */
		fprintf(o, "%-5s %8s %7s %7s %7s %8s %7s %7s %7s %9s %8s %8s\n", "rank", "frames", "consts", "read",
			"correct", "compress", "write", "gather", "wait", "gz-chunks", "gz-MB", "peak-MB");
		for (int q = 0; q < x->size; q++) {
			const double *v = all + q * C_NCOUNTERS;
			fprintf(o, "%-5d %8.0f %7.2f %7.2f %7.2f %8.2f %7.2f %7.2f %7.2f %9.0f %8.2f %8.0f\n", q,
				v[C_FRAMES], v[C_T_CONSTS], v[C_T_READ], v[C_T_CORRECT], v[C_Z_SECONDS],
				v[C_T_WRITE] - v[C_Z_SECONDS] - v[C_T_GATHER], v[C_T_GATHER], v[C_T_WAIT], v[C_Z_CHUNKS],
				v[C_Z_OUT] / 1e6, v[C_PEAK_RSS_MB]);
		}
		run_output_end(x, AGIPD_EVENT_OUTPUT, o, &buf);
	}
	/* The failed files, one NOTE event of several lines. */
	if (nfail && (o = run_output_begin(&buf, &len))) {
		fprintf(o, "%d file(s) failed:", nfail);
		for (int i = 0; i < ntasks; i++)
			if (status[i] == RES_FAILED) {
				if (tasks[i].seq >= 0)
					fprintf(o, "\n  AGIPD%02d S%05d: %s", tasks[i].module, tasks[i].seq, msgs[i]);
				else
					fprintf(o, "\n  AGIPD%02d: %s", tasks[i].module, msgs[i]);
			}
		run_output_end(x, AGIPD_EVENT_NOTE, o, &buf);
	}
}

/* The JSON run report (--report): totals, per file, per rank, parameters.
 * Written to PATH.tmp and renamed, like the data. */
int run_write_report(struct ctx *x, const struct task *tasks, int ntasks, const int *status,
			const uint64_t *frames, const double *secs, char (*msgs)[AGIPD_ERRLEN], const double *all,
			double wall, int ret)
{
	const struct agipd_config *c = x->c;
	char tmp[4200], end[32], val[4200];
	static const char *const names[] = { "none", "corrected", "skipped", "failed", "not run" };
	if (agipd_path_fits(snprintf(tmp, sizeof tmp, "%s.tmp", c->report), sizeof tmp) < 0)
		return -1;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	run_iso_time(end, sizeof end);
	uint64_t nframes = 0;
	int n[5] = { 0 };
	for (int i = 0; i < ntasks; i++) {
		n[status[i]]++;
		if (status[i] == RES_OK)
			nframes += frames[i];
	}
	double tot[C_NCOUNTERS] = { 0 };
	for (int q = 0; q < x->size; q++)
		for (int j = 0; j < C_NCOUNTERS; j++)
			tot[j] += all[q * C_NCOUNTERS + j];
	double bytes_out = 0;
	fprintf(f, "{\n  \"program\": ");
	agipd_json_str(f, "agipd-correct");
	fprintf(f, ",\n  \"version\": ");
	agipd_json_str(f, AGIPD_VERSION);
	fprintf(f, ",\n  \"git_revision\": ");
	agipd_json_str(f, AGIPD_GIT_REV);
	fprintf(f, ",\n  \"command_line\": ");
	agipd_json_str(f, c->command_line);
	fprintf(f, ",\n  \"start_time\": ");
	agipd_json_str(f, x->start_time);
	fprintf(f, ",\n  \"end_time\": ");
	agipd_json_str(f, end);
	fprintf(f, ",\n  \"exit_status\": %d,\n", ret);
	fprintf(f, "  \"n_ranks\": %d,\n  \"frames\": %" PRIu64 ",\n  \"seconds\": %.6f,\n", x->size, nframes, wall);
	fprintf(f, "  \"conditions\": ");
	agipd_conditions_json(f, &x->cond);
	fprintf(f, ",\n");
	fprintf(f, "  \"frames_per_second\": %.3f,\n  \"raw_gb_per_second\": %.6f,\n",
		wall > 0 ? (double)nframes / wall : 0, wall > 0 ? (double)nframes * 4 * P / wall / 1e9 : 0);
	fprintf(f, "  \"bytes_in\": %.0f,\n", (double)nframes * 4 * P);
	fprintf(f, "  \"files_corrected\": %d,\n  \"files_skipped\": %d,\n  \"files_failed\": %d,\n"
		   "  \"files_not_run\": %d,\n", n[RES_OK], n[RES_SKIPPED], n[RES_FAILED], n[RES_NONE]);
	fprintf(f, "  \"gain_mask\": {\"bytes_in\": %.0f, \"bytes_out\": %.0f, \"ratio\": %.3f, \"encoder\": ",
		tot[C_Z_IN], tot[C_Z_OUT], tot[C_Z_OUT] > 0 ? tot[C_Z_IN] / tot[C_Z_OUT] : 0);
	agipd_json_str(f, agipd_deflate_impl());
	fprintf(f, "},\n");
	fprintf(f, "  \"phase_seconds\": {\"constants\": %.6f, \"read\": %.6f, \"correct\": %.6f, "
		   "\"compress\": %.6f, \"write\": %.6f, \"gather\": %.6f, \"wait\": %.6f},\n",
		tot[C_T_CONSTS], tot[C_T_READ], tot[C_T_CORRECT], tot[C_Z_SECONDS],
		tot[C_T_WRITE] - tot[C_Z_SECONDS] - tot[C_T_GATHER], tot[C_T_GATHER], tot[C_T_WAIT]);
	fprintf(f, "  \"constants_loads\": %.3f,\n  \"constants_cells_loaded\": %.0f,\n", tot[C_CONST_LOADS],
		tot[C_CONST_CELLS]);
	fprintf(f, "  \"files\": [\n");
	for (int i = 0; i < ntasks; i++) {
		const struct task *t = &tasks[i];
		char out[4200];
		struct stat st;
		if (agipd_corr_name(out, sizeof out, c->out_folder, c->run, t->module, t->seq) < 0)
			out[0] = 0;     /* such a file failed in do_file */
		double osz = status[i] == RES_OK && stat(out, &st) == 0 ? (double)st.st_size : 0;
		bytes_out += osz;
		fprintf(f, "    {\"module\": %d, \"sequence\": %d, \"status\": ", t->module, t->seq);
		agipd_json_str(f, names[status[i]]);
		fprintf(f, ", \"frames\": %" PRIu64 ", \"seconds\": %.6f, \"output\": ",
			status[i] == RES_OK ? frames[i] : 0, secs[i]);
		agipd_json_str(f, status[i] == RES_OK || status[i] == RES_SKIPPED ? out : "");
		fprintf(f, ", \"output_bytes\": %.0f, \"error\": ", osz);
		agipd_json_str(f, status[i] == RES_FAILED ? msgs[i] : "");
		fprintf(f, ", \"warning\": ");
		agipd_json_str(f, status[i] == RES_OK ? msgs[i] : "");
		fprintf(f, "}%s\n", i + 1 < ntasks ? "," : "");
	}
	fprintf(f, "  ],\n  \"bytes_out\": %.0f,\n  \"ranks\": [\n", bytes_out);
	for (int q = 0; q < x->size; q++) {
		const double *v = all + q * C_NCOUNTERS;
		fprintf(f, "    {\"rank\": %d, \"frames\": %.0f, \"constants_s\": %.6f, \"read_s\": %.6f, "
			   "\"correct_s\": %.6f, \"compress_s\": %.6f, \"write_s\": %.6f, \"gather_s\": %.6f, "
			   "\"wait_s\": %.6f, \"total_s\": %.6f, \"gz_chunks\": %.0f, \"gz_bytes_in\": %.0f, "
			   "\"gz_bytes_out\": %.0f, \"constants_cells_loaded\": %.0f, \"constants_loads\": %.3f, "
			   "\"peak_rss_mb\": %.1f}%s\n",
			q, v[C_FRAMES], v[C_T_CONSTS], v[C_T_READ], v[C_T_CORRECT], v[C_Z_SECONDS],
			v[C_T_WRITE] - v[C_Z_SECONDS] - v[C_T_GATHER], v[C_T_GATHER], v[C_T_WAIT], v[C_T_TOTAL],
			v[C_Z_CHUNKS], v[C_Z_IN], v[C_Z_OUT], v[C_CONST_CELLS], v[C_CONST_LOADS], v[C_PEAK_RSS_MB],
			q + 1 < x->size ? "," : "");
	}
	fprintf(f, "  ],\n  \"parameters\": {\n");
	int first = 1;
	for (int i = 0; i < agipd_noptions; i++) {
		if (agipd_opts_value(c, agipd_options[i].name, val, sizeof val) < 0)
			continue;
		fprintf(f, "%s    ", first ? "" : ",\n");
		agipd_json_str(f, agipd_options[i].name);
		fprintf(f, ": ");
		agipd_json_str(f, val);
		first = 0;
	}
	fprintf(f, "\n  }\n}\n");
	int bad = ferror(f);
	if (fclose(f) != 0 || bad)
		return -1;
	return rename(tmp, c->report);
}
