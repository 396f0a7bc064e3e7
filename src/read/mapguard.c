/*
 * mapguard.c - SIGBUS on a shrunken file mapping as an error return.
 *
 * The handler is installed only around the guarded call and only jumps for
 * faults inside the guarded range; every other SIGBUS is handed back to the
 * disposition that was there before (by restoring it and returning: the
 * faulting instruction runs again under it).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "agipd_mapguard.h"

static __thread struct {
	const char *lo, *hi;
	sigjmp_buf jb;
	volatile sig_atomic_t active;
	struct sigaction old;
} guard;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	const char *a = si ? (const char *)si->si_addr : NULL;
	(void)sig;
	(void)uc;
	if (guard.active && a >= guard.lo && a < guard.hi) {
		guard.active = 0;
		siglongjmp(guard.jb, 1);
	}
	/* Not a fault of the guarded mapping: let the previous handler (or the
	 * default action) have it when the access repeats. */
	sigaction(SIGBUS, &guard.old, NULL);
}

int agipd_mapguard_run(const void *addr, size_t len, agipd_mapguard_fn fn, void *arg)
{
	if (!addr || len == 0) {
		fn(arg);
		return 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	guard.lo = addr;
	guard.hi = (const char *)addr + len;
	if (sigaction(SIGBUS, &sa, &guard.old) < 0) {
		fn(arg);   /* cannot guard: read unguarded, as before */
		return 0;
	}
	int rc = 0;
	if (sigsetjmp(guard.jb, 1) == 0) {
		guard.active = 1;
		fn(arg);
		guard.active = 0;
	} else {
		rc = -1;
	}
	sigaction(SIGBUS, &guard.old, NULL);
	return rc;
}

void agipd_mapguard_test_pause(const char *path)
{
	const char *dir = getenv("AGIPD_TEST_PAUSE_MAPPED");
	if (!dir || !*dir)
		return;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char f[4096];
	snprintf(f, sizeof f, "%s/%s.pause", dir, base);
	if (access(f, F_OK) != 0)
		return;
	snprintf(f, sizeof f, "%s/%s.%ld.mapped", dir, base, (long)getpid());
	int fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	snprintf(f, sizeof f, "%s/%s.go", dir, base);
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	for (int i = 0; i < 6000 && access(f, F_OK) != 0; i++)
		nanosleep(&ts, NULL);
}
