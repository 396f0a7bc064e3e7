/*
 * run_outdir.c - the output folder's policy (rank 0): the folder made and
 * checked, one lock per file for the whole run, temporaries of runs that
 * are gone removed, complete outputs made alike kept unless --overwrite.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agipd_names.h"
#include "agipd_writer_h5.h"
#include "run_internal.h"

int run_is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int run_file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int run_mkdir_p(const char *path)
{
	char buf[4096];
	if (agipd_path_fits(snprintf(buf, sizeof buf, "%s", path), sizeof buf) < 0)
		return -1;
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(buf, 0775) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(buf, 0775) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/*
 * realpath() of a folder that may not exist yet: its deepest existing
 * ancestor resolved, the rest appended with "." and ".." applied.  Returns 0,
 * or -1 with errno set.
 */
int run_resolve_future(const char *path, char out[PATH_MAX])
{
	char head[PATH_MAX], tail[PATH_MAX] = "";
	if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head) {
		errno = ENAMETOOLONG;
		return -1;
	}
	while (!realpath(head[0] ? head : ".", out)) {
		char *s = strrchr(head, '/');
		if (errno != ENOENT || !head[0])
			return -1;
		char t[PATH_MAX];
		if (agipd_path_fits(snprintf(t, sizeof t, "%s%s%s", s ? s + 1 : head, tail[0] ? "/" : "", tail),
			      sizeof t) < 0)
			return -1;
		memcpy(tail, t, strlen(t) + 1);
		if (s == head)
			head[1] = 0;
		else if (s)
			*s = 0;
		else
			head[0] = 0;
	}
	for (char *save = NULL, *p = strtok_r(tail, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		size_t n = strlen(out);
		if (!strcmp(p, "."))
			continue;
		if (!strcmp(p, "..")) {
			char *s = strrchr(out, '/');
			if (s)
				s[s == out] = 0;
			continue;
		}
		if (n + 1 + strlen(p) >= PATH_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		snprintf(out + n, PATH_MAX - n, "%s%s", out[n - 1] == '/' ? "" : "/", p);
	}
	return 0;
}

/* Output folder checks (rank 0). */
int run_check_out_folder(struct ctx *x, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char rin[PATH_MAX], rraw[PATH_MAX], rout[PATH_MAX];
	if (!realpath(c->in_folder, rin) || !realpath(x->raw_dir, rraw))
		return agipd_err_set(e, "%s: %s", c->in_folder, strerror(errno));
	size_t lr = strlen(rraw);
	/* Compared before anything is created (a new folder inside the raw
	 * folder would be a change to it), and again once it exists. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0 ? run_resolve_future(c->out_folder, rout) < 0 : !realpath(c->out_folder, rout))
			return agipd_err_set(e, "%s: %s", c->out_folder, strerror(errno));
		if (!strcmp(rout, rin) || !strcmp(rout, rraw) || (!strncmp(rout, rraw, lr) && rout[lr] == '/'))
			return agipd_err_set(e, "%s: the output folder must not be the input folder (or inside it): "
					     "raw data is never written to", c->out_folder);
		if (pass == 0 && c->dry_run)
			return 0;
		if (pass == 0 && run_mkdir_p(c->out_folder) < 0)
			return agipd_err_set(e, "%s: cannot create output folder: %s", c->out_folder,
					     strerror(errno));
	}
	if (!c->dry_run) {
		/* Try it: access() says yes to root even where writing fails. */
		char probe[PATH_MAX + 64];
		snprintf(probe, sizeof probe, "%s/.agipd-write-test.%ld", rout, (long)getpid());
		int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return agipd_err_set(e, "%s: output folder is not writable: %s", c->out_folder, strerror(errno));
		close(fd);
		unlink(probe);
	}
	return 0;
}

/* ---- output locks, temporaries, outputs that exist ---- */

/*
 * Two runs into one output folder must not undo each other's work.  Rank 0
 * of a run holds, for the whole run, a write lock on one byte per file it may
 * write of OUT/.agipd-correct.lock (open-file-description locks, fcntl
 * F_OFD_SETLK: released by the kernel when the process ends, however it
 * ends).  A file whose byte another run holds is left alone and reported.
 * Temporaries carry the writing run's host and pid
 * (.CORR-R0001-AGIPD00-S00000.h5.HOST.PID.part), and those of a file are
 * removed only under its lock, when no live run can own them.  The last run
 * to leave removes the lock file (checked for by the others: a run that
 * opened a lock file just removed opens the new one).
 */

static off_t lock_byte(long run, int module, int seq)
{
	return ((off_t)run << 24) + ((off_t)module << 17) + seq;
}

static int lock_range(int fd, short type, off_t start, off_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	return fcntl(fd, F_OFD_SETLK, &fl);
}

/* Is fd still the lock file of folder dir? */
static int lock_current(int fd, const char *dir)
{
	char path[4200];
	struct stat a, b;
	snprintf(path, sizeof path, "%s/" RUN_LOCK_NAME, dir);
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/*
 * Rank 0: lock every file of the selection (tasks[].state T_BUSY where
 * another run holds it).  Returns the lock file's fd, or -1 where the file
 * system has no locks (a warning says so; the run goes on unprotected).
 */
int run_lock_outputs(struct ctx *x, struct task *tasks, int ntasks)
{
	const struct agipd_config *c = x->c;
	char path[4200];
	snprintf(path, sizeof path, "%s/" RUN_LOCK_NAME, c->out_folder);
	for (int attempt = 0; attempt < 100; attempt++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664), bad = 0;
		if (fd < 0) {
			run_event(x, AGIPD_EVENT_WARNING, -1, "%s: cannot open the lock file (%s): runs into this "
					"folder at the same time are not kept apart", path, strerror(errno));
			return -1;
		}
		for (int i = 0; i < ntasks && !bad; i++) {
			if (tasks[i].seq < 0 || tasks[i].state == T_MISSING)
				continue;
			tasks[i].state = T_PENDING;
			if (lock_range(fd, F_WRLCK, lock_byte(c->run, tasks[i].module, tasks[i].seq), 1) == 0)
				continue;
			if (errno == EAGAIN || errno == EACCES)
				tasks[i].state = T_BUSY;
			else
				bad = errno;
		}
		if (bad) {
			run_event(x, AGIPD_EVENT_WARNING, -1, "%s: no file locks on this file system (%s): runs into "
					"this folder at the same time are not kept apart", path, strerror(bad));
			close(fd);
			for (int i = 0; i < ntasks; i++)
				if (tasks[i].state == T_BUSY)
					tasks[i].state = T_PENDING;
			return -1;
		}
		if (lock_current(fd, c->out_folder))
			return fd;
		close(fd);   /* removed by a run that left: take the new one */
	}
	run_event(x, AGIPD_EVENT_WARNING, -1, "%s: the lock file keeps changing: runs into this folder at the "
			"same time are not kept apart", path);
	for (int i = 0; i < ntasks; i++)
		if (tasks[i].state == T_BUSY)
			tasks[i].state = T_PENDING;
	return -1;
}

/* Rank 0: let the files go; the last run out removes the lock file. */
void run_unlock_outputs(struct ctx *x)
{
	char path[4200];
	if (x->lock_fd < 0)
		return;
	snprintf(path, sizeof path, "%s/" RUN_LOCK_NAME, x->c->out_folder);
	if (lock_range(x->lock_fd, F_WRLCK, 0, 0) == 0 && lock_current(x->lock_fd, x->c->out_folder))
		unlink(path);
	close(x->lock_fd);
	x->lock_fd = -1;
}

/*
 * Rank 0, under the locks: remove the temporaries of the files this run
 * holds (any run's, of any name: no live run can own them).  Without locks
 * (a file system that has none), only those of the old name (one per file)
 * and those of runs on this host whose process is gone.
 */
void run_remove_stale_temporaries(struct ctx *x, const struct task *tasks, int ntasks)
{
	const struct agipd_config *c = x->c;
	char host[sizeof x->tmp_tag] = "";
	DIR *d = opendir(c->out_folder);
	struct dirent *de;
	if (!d)
		return;
	snprintf(host, sizeof host, "%s", x->tmp_tag);
	if (strrchr(host, '.'))
		*strrchr(host, '.') = 0;
	while ((de = readdir(d)) != NULL) {
		long run, pid = 0;
		int m, sq, n = 0, mine = 0;
		size_t len = strlen(de->d_name);
		if (sscanf(de->d_name, ".CORR-R%4ld-AGIPD%2d-S%5d.h5%n", &run, &m, &sq, &n) != 3 || run != c->run ||
		    len < (size_t)n + 5 || strcmp(de->d_name + len - 5, ".part") || de->d_name[n] != '.')
			continue;
		for (int i = 0; i < ntasks; i++)
			if (tasks[i].module == m && tasks[i].seq == sq && tasks[i].seq >= 0 && tasks[i].state != T_BUSY &&
			    tasks[i].state != T_MISSING)
				mine = 1;
		if (!mine)
			continue;
		if (x->lock_fd < 0 && len > (size_t)n + 5) {
			/* .HOST.PID.part: a dead process of this host? */
			char tag[256];
			snprintf(tag, sizeof tag, "%.*s", (int)(len - (size_t)n - 6), de->d_name + n + 1);
			char *dot = strrchr(tag, '.');
			if (!dot)
				continue;
			*dot = 0;
			if (strcmp(host, tag))
				continue;
			pid = strtol(dot + 1, NULL, 10);
			if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
				continue;
		}
		char f[4400];
		snprintf(f, sizeof f, "%s/%s", c->out_folder, de->d_name);
		unlink(f);
	}
	closedir(d);
}

/* Does the corrected data depend on option i? */
static int data_option(int i)
{
	const char *n = agipd_options[i].name;
	return !strcmp(agipd_options[i].group, "Correction") || !strcmp(n, "karabo-id") ||
	       !strcmp(n, "constants-folder");
}

/*
 * Rank 0: is the CORR file of t, which exists, complete and made from this
 * raw file with these options?  0 yes, 1 complete but made otherwise, -1 not
 * complete; e says why.
 */
static int check_existing(struct ctx *x, const struct task *t, const char *final, agipd_err *e)
{
	const struct agipd_config *c = x->c;
	char src[256], raw[4200], idx[65];
	struct agipd_kv kv[64];
	static char vals[64][512];
	struct agipd_raw r;
	int n = 0;
	agipd_source_name(src, sizeof src, c->karabo_id, t->module);
	agipd_raw_name(raw, sizeof raw, x->raw_dir, c->run, t->module, t->seq);
	if (agipd_raw_open(&r, raw, src, &c->params, e) < 0) {
		char why[AGIPD_ERRLEN];
		snprintf(why, sizeof why, "%s", e->msg);
		return agipd_err_set(e, "its raw file cannot be read to check it: %s", why);
	}
	run_index_checksum(&r, idx);
	for (int i = 0; i < agipd_noptions && n < 64; i++)
		if (data_option(i) && run_param_value(c, agipd_options[i].name, vals[n], sizeof vals[n]) == 0) {
			kv[n].key = agipd_options[i].name;
			kv[n].str = vals[n];
			kv[n].num = 0;
			kv[n].integer = 0;
			n++;
		}
	int rc = agipd_writer_check(final, src, r.nkept, r.nout, idx, kv, (size_t)n, e);
	agipd_raw_close(&r);
	return rc;
}

/*
 * Rank 0: the files of the selection that exist under their final name are
 * kept (T_EXISTS) when complete and made alike, refused (T_OTHER, msgs[i]
 * says why) when made otherwise, and corrected again when not complete.
 */
void run_check_outputs(struct ctx *x, struct task *tasks, int ntasks, char (*msgs)[AGIPD_ERRLEN])
{
	const struct agipd_config *c = x->c;
	for (int i = 0; i < ntasks; i++) {
		char f[4200];
		agipd_err e = { "" };
		if (tasks[i].state != T_PENDING)
			continue;
		if (agipd_corr_name(f, sizeof f, c->out_folder, c->run, tasks[i].module, tasks[i].seq) < 0 || !run_file_exists(f))
			continue;
		int rc = check_existing(x, &tasks[i], f, &e);
		if (rc == 0) {
			tasks[i].state = T_EXISTS;
		} else if (rc > 0) {
			tasks[i].state = T_OTHER;
			agipd_msgf(msgs[i], AGIPD_ERRLEN, "%s exists, but %s: use --overwrite to replace it", f, e.msg);
		} else {
			run_event(x, AGIPD_EVENT_WARNING, -1, "AGIPD%02d S%05d: %s exists but is not complete (%s): "
					"it is corrected again", tasks[i].module, tasks[i].seq, f, e.msg);
		}
	}
}
