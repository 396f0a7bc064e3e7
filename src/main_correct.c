/*
 * main_correct.c - agipd-correct: parse options, set up MPI and the heap,
 * run, map the result to the exit status.  All work is in the library.
 */
#include <ctype.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "agipd_preview.h"
#include "agipd_run.h"

/* Does the MCA parameter file `path` set `key`? */
static int mca_file_sets(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int found = 0;
	size_t n = strlen(key);
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f)) {
		const char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (strncmp(s, key, n))
			continue;
		s += n;
		while (*s == ' ' || *s == '\t')
			s++;
		found = *s == '=';
	}
	fclose(f);
	return found;
}

/*
 * Open MPI 4.1.4's sharedfp/lockedfile component overflows a buffer on output
 * paths of about 212 characters and more (every rank aborts in MPI_File_open,
 * "*** buffer overflow detected ***").  agipd-correct uses no shared file
 * pointers: the component is left out before MPI_Init, unless the user chose
 * the sharedfp components (mpirun --mca sharedfp passes OMPI_MCA_sharedfp;
 * or an MCA parameter file).
 */
static void avoid_lockedfile(void)
{
	char path[4096];
	if (getenv("OMPI_MCA_sharedfp"))
		return;
	const char *files = getenv("OMPI_MCA_mca_base_param_files");
	if (files) {
		char list[4096];
		snprintf(list, sizeof list, "%s", files);
		for (char *save = NULL, *f = strtok_r(list, ":", &save); f; f = strtok_r(NULL, ":", &save))
			if (mca_file_sets(f, "sharedfp"))
				return;
	} else {
		const char *home = getenv("HOME"), *prefix = getenv("OPAL_PREFIX");
		if (home) {
			snprintf(path, sizeof path, "%s/.openmpi/mca-params.conf", home);
			if (mca_file_sets(path, "sharedfp"))
				return;
		}
		if (prefix) {
			snprintf(path, sizeof path, "%s/etc/openmpi-mca-params.conf", prefix);
			if (mca_file_sets(path, "sharedfp"))
				return;
		}
		if (mca_file_sets("/etc/openmpi/openmpi-mca-params.conf", "sharedfp") ||
		    mca_file_sets("/usr/local/etc/openmpi-mca-params.conf", "sharedfp"))
			return;
	}
	setenv("OMPI_MCA_sharedfp", "^lockedfile", 0);
}

/*
 * The run's events rendered: routine output on stdout, the rest on stderr
 * as "agipd-correct: error [rank N]: ..." lines; progress rewritten in place
 * on a terminal, a line at a time into a log.
 */
static void render(const struct agipd_event *ev, void *arg)
{
	const int tty = *(const int *)arg;
	static const char *const level[] = { "", "error", "warning", "", "" };
	switch (ev->kind) {
	case AGIPD_EVENT_OUTPUT:
		fputs(ev->text, stdout);
		fflush(stdout);
		break;
	case AGIPD_EVENT_PROGRESS:
		fprintf(stderr, "%s%s%s", tty ? "\r" : "", ev->text, tty && !ev->final ? "   " : "\n");
		fflush(stderr);
		break;
	case AGIPD_EVENT_NOTE:
		if (ev->rank >= 0)
			fprintf(stderr, "agipd-correct: [rank %d] %s\n", ev->rank, ev->text);
		else
			fprintf(stderr, "agipd-correct: %s\n", ev->text);
		break;
	default:
		if (ev->rank >= 0)
			fprintf(stderr, "agipd-correct: %s [rank %d]: %s\n", level[ev->kind], ev->rank, ev->text);
		else
			fprintf(stderr, "agipd-correct: %s: %s\n", level[ev->kind], ev->text);
	}
}

/* --preview: one PNG of the corrected run (tools/preview*.c). */
static void preview(const struct agipd_config *c)
{
	struct agipd_preview_opts po;
	struct agipd_preview_result pr;
	agipd_err pe = { "" };
	agipd_preview_opts_defaults(&po);
	po.folder = c->out_folder;
	po.run = (int)c->run;
	po.karabo_id = c->karabo_id;
	if (agipd_preview_folder(&po, &pr, &pe) < 0)
		fprintf(stderr, "agipd-correct: warning: no preview: %s\n", pe.msg);
	else if (c->verbosity >= 1)
		printf("preview: %s (%d x %d, %d module(s))\n", pr.output, pr.width, pr.height, pr.modules_drawn);
}

static void on_signal(int sig)
{
	agipd_run_request_stop(sig);
}

int main(int argc, char **argv)
{
	struct agipd_config c;
	const char *what = NULL;
	agipd_err e = { "" };
	int rank, rc;

	/* zlib state and chunk buffers are ~100 KB - 1 MB each: keep glibc from
	 * returning them to the kernel after every chunk (measured: 1.7-3.4x on
	 * write time). */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);

	/* The option reference (docs/agipd-correct.md) comes from the same table
	 * as --help; `make docs` regenerates it.  No MPI needed. */
	if (argc == 2 && !strcmp(argv[1], "--help-markdown")) {
		agipd_opts_docs(stdout);
		return 0;
	}
	avoid_lockedfile();
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	rc = agipd_opts_parse(&c, argc, argv, &what, &e);
	if (rc != 0) {
		if (rank == 0) {
			if (rc < 0)
				fprintf(stderr, "agipd-correct: error: %s\n", e.msg);
			else if (!strcmp(what, "help"))
				agipd_opts_help(stdout, "agipd-correct");
			else
				printf("agipd-correct %s (git %s)\n", AGIPD_VERSION, AGIPD_GIT_REV);
		}
		MPI_Finalize();
		return rc < 0 ? AGIPD_EXIT_USAGE : 0;
	}
	/* HDF5 prints nothing itself: its errors reach the messages. */
	agipd_h5_quiet();
	int tty = isatty(2);
	struct agipd_run_events ev = { .fn = render, .arg = &tty, .progress_every = tty ? 0.25 : 10.0 };
	rc = agipd_run(MPI_COMM_WORLD, &c, &ev);
	if (rank == 0 && c.preview && !c.dry_run && c.writer != AGIPD_WRITE_NULL)
		preview(&c);
	long unclosed = agipd_run_unclosed_files(MPI_COMM_WORLD);
	if (unclosed > 0) {
		/* Every output is complete or removed by now; HDF5's own clean-up
		 * would crash on the file it failed to close. */
		if (rank == 0) {
			fprintf(stderr, "agipd-correct: HDF5 could not close %ld file(s) (see above); leaving without "
					"its clean-up\n", unclosed);
			fflush(stdout);
			fflush(stderr);
			MPI_Abort(MPI_COMM_WORLD, rc ? rc : AGIPD_EXIT_FILES_FAILED);
		}
		MPI_Barrier(MPI_COMM_WORLD);
	}
	MPI_Finalize();
	return rc;
}
