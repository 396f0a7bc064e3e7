/*
 * tests/iotrace.c - an LD_PRELOAD library that counts, per process, the
 * bytes it really took from the files whose path contains
 * $AGIPD_IOTRACE_MATCH: read by system calls (read, pread, readv, fread)
 * and mapped (the resident pages of its mmap()s of them, measured in
 * /proc/self/smaps just before munmap() or at exit).  At exit it writes one
 * line per such file into $AGIPD_IOTRACE_DIR/iotrace.<pid>:
 *
 *     file <hostname> <pid> <path> <opens> <bytes read> <bytes mapped>
 *
 * and one line per large shared mapping of any other file (at least
 * $AGIPD_IOTRACE_SHM_MIN bytes, default 8 MiB: MPI shared-memory windows):
 *
 *     shm <hostname> <pid> <path> <device:inode> <length> <resident bytes>
 *
 * The hostname is the process's own (its UTS namespace: a virtual node).
 * The tests use it to see, from outside agipd-correct, how often each node
 * loads a module's constants (tests/test_constants_sharing.py,
 * tests/test_multinode.py, tests/slurm/run-slurm-tests.sh).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define NFILES 64
#define NFDS 4096
#define NMAPS 256

struct file_ent {
	char path[1024];
	unsigned long long opens, rd, mapped;
};
struct map_ent {
	uintptr_t addr;
	size_t len;
	int file;               /* -1: a shared mapping of another file */
};
struct shm_ent {
	char path[512];
	unsigned long long dev, ino, len, rss;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct file_ent files[NFILES];
static int nfiles;
static int fd_file[NFDS];       /* file index + 1, 0: not traced */
static struct map_ent maps[NMAPS];
static int nmaps;
static struct shm_ent shms[NMAPS];
static int nshms;
static unsigned long long shm_dev[NMAPS], shm_ino[NMAPS];   /* of maps[i] when file == -1 */
static char shm_paths[NMAPS][512];

static const char *shm_path_of(int i)
{
	return shm_paths[i];
}
static __thread int busy;       /* inside this library: no tracing */

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*close_fn)(int);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef size_t (*fread_fn)(void *, size_t, size_t, FILE *);
typedef int (*fclose_fn)(FILE *);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* The next definition of a function (libc's), looked up once. */
#define REAL(type, name)                                                                                               \
	({                                                                                                             \
		static type real_;                                                                                     \
		if (!real_)                                                                                            \
			real_ = (type)next(#name);                                                                     \
		real_;                                                                                                 \
	})

static const char *match(void)
{
	const char *m = getenv("AGIPD_IOTRACE_MATCH");
	return m && *m ? m : NULL;
}

/* The index of a traced path, added when new; -1 when not traced. */
static int file_of(const char *path)
{
	const char *m = match();
	if (!m || !path || !strstr(path, m))
		return -1;
	for (int i = 0; i < nfiles; i++)
		if (!strcmp(files[i].path, path))
			return i;
	if (nfiles == NFILES)
		return -1;
	snprintf(files[nfiles].path, sizeof files[nfiles].path, "%s", path);
	return nfiles++;
}

static void opened(int fd, const char *path)
{
	if (fd < 0 || fd >= NFDS || busy)
		return;
	pthread_mutex_lock(&lock);
	int f = file_of(path);
	fd_file[fd] = f + 1;
	if (f >= 0)
		files[f].opens++;
	pthread_mutex_unlock(&lock);
}

static void count_read(int fd, ssize_t n)
{
	if (n <= 0 || fd < 0 || fd >= NFDS || busy)
		return;
	pthread_mutex_lock(&lock);
	if (fd_file[fd])
		files[fd_file[fd] - 1].rd += (unsigned long long)n;
	pthread_mutex_unlock(&lock);
}

/* Resident bytes of the mapping that starts at addr, from /proc/self/smaps. */
static unsigned long long resident(uintptr_t addr)
{
	static char buf[1 << 16];
	unsigned long long kb = 0;
	int found = 0;
	busy++;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (f) {
		while (fgets(buf, sizeof buf, f)) {
			unsigned long a, b;
			if (sscanf(buf, "%lx-%lx ", &a, &b) == 2 && strchr(buf, '-') < strchr(buf, ' ')) {
				found = a == addr;
				continue;
			}
			if (found && !strncmp(buf, "Rss:", 4)) {
				kb = strtoull(buf + 4, NULL, 10);
				break;
			}
		}
		fclose(f);
	}
	busy--;
	return kb * 1024;
}

/* Ends the record of the mapping at addr (its resident bytes counted). */
static void end_map(uintptr_t addr)
{
	for (int i = 0; i < nmaps; i++)
		if (maps[i].addr == addr) {
			unsigned long long rss = resident(addr);
			if (maps[i].file >= 0) {
				files[maps[i].file].mapped += rss;
			} else if (nshms < NMAPS) {
				struct shm_ent *h = &shms[nshms++];
				h->dev = shm_dev[i];
				h->ino = shm_ino[i];
				h->len = maps[i].len;
				h->rss = rss;
				snprintf(h->path, sizeof h->path, "%s", shm_path_of(i));
			}
			maps[i] = maps[nmaps - 1];
			shm_dev[i] = shm_dev[nmaps - 1];
			shm_ino[i] = shm_ino[nmaps - 1];
			if (i != nmaps - 1)
				memcpy(shm_paths[i], shm_paths[nmaps - 1], sizeof shm_paths[i]);
			nmaps--;
			return;
		}
}

#define OPEN_MODE(flags, mode)                                                                                         \
	do {                                                                                                           \
		if ((flags) & (O_CREAT | O_TMPFILE)) {                                                                 \
			va_list ap;                                                                                    \
			va_start(ap, flags);                                                                           \
			mode = va_arg(ap, int);                                                                        \
			va_end(ap);                                                                                    \
		}                                                                                                      \
	} while (0)

int open(const char *path, int flags, ...);
int open(const char *path, int flags, ...)
{
	int mode = 0;
	OPEN_MODE(flags, mode);
	int fd = REAL(open_fn, open)(path, flags, mode);
	opened(fd, path);
	return fd;
}

int open64(const char *path, int flags, ...);
int open64(const char *path, int flags, ...)
{
	int mode = 0;
	OPEN_MODE(flags, mode);
	int fd = REAL(open_fn, open64)(path, flags, mode);
	opened(fd, path);
	return fd;
}

int openat(int dir, const char *path, int flags, ...);
int openat(int dir, const char *path, int flags, ...)
{
	int mode = 0;
	OPEN_MODE(flags, mode);
	int fd = REAL(openat_fn, openat)(dir, path, flags, mode);
	opened(fd, path);
	return fd;
}

int openat64(int dir, const char *path, int flags, ...);
int openat64(int dir, const char *path, int flags, ...)
{
	int mode = 0;
	OPEN_MODE(flags, mode);
	int fd = REAL(openat_fn, openat64)(dir, path, flags, mode);
	opened(fd, path);
	return fd;
}

int __open_2(const char *path, int flags);
int __open_2(const char *path, int flags)
{
	int fd = REAL(open2_fn, __open_2)(path, flags);
	opened(fd, path);
	return fd;
}

int __open64_2(const char *path, int flags);
int __open64_2(const char *path, int flags)
{
	int fd = REAL(open2_fn, __open64_2)(path, flags);
	opened(fd, path);
	return fd;
}

FILE *fopen(const char *path, const char *mode)
{
	FILE *f = REAL(fopen_fn, fopen)(path, mode);
	if (f)
		opened(fileno(f), path);
	return f;
}

FILE *fopen64(const char *path, const char *mode);
FILE *fopen64(const char *path, const char *mode)
{
	FILE *f = REAL(fopen_fn, fopen64)(path, mode);
	if (f)
		opened(fileno(f), path);
	return f;
}

ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t r = REAL(read_fn, read)(fd, buf, n);
	count_read(fd, r);
	return r;
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r = REAL(pread_fn, pread)(fd, buf, n, off);
	count_read(fd, r);
	return r;
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off);
ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r = REAL(pread_fn, pread64)(fd, buf, n, off);
	count_read(fd, r);
	return r;
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
	ssize_t r = REAL(readv_fn, readv)(fd, iov, n);
	count_read(fd, r);
	return r;
}

size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
	size_t r = REAL(fread_fn, fread)(buf, size, n, f);
	if (!busy)
		count_read(fileno(f), (ssize_t)(r * size));
	return r;
}

static void closed(int fd)
{
	if (fd < 0 || fd >= NFDS)
		return;
	pthread_mutex_lock(&lock);
	fd_file[fd] = 0;
	pthread_mutex_unlock(&lock);
}

int close(int fd)
{
	closed(fd);
	return REAL(close_fn, close)(fd);
}

int fclose(FILE *f)
{
	if (!busy)
		closed(fileno(f));
	return REAL(fclose_fn, fclose)(f);
}

static void mapped(void *p, size_t len, int flags, int fd)
{
	if (p == MAP_FAILED || fd < 0 || fd >= NFDS || busy)
		return;
	const char *mn = getenv("AGIPD_IOTRACE_SHM_MIN");
	unsigned long long shm_min = mn && *mn ? strtoull(mn, NULL, 10) : 8ull << 20;
	pthread_mutex_lock(&lock);
	if (fd_file[fd] && nmaps < NMAPS) {
		shm_dev[nmaps] = shm_ino[nmaps] = 0;
		shm_paths[nmaps][0] = 0;
		maps[nmaps++] = (struct map_ent){ (uintptr_t)p, len, fd_file[fd] - 1 };
	} else if (!fd_file[fd] && (flags & MAP_SHARED) && len >= shm_min && nmaps < NMAPS && match()) {
		struct stat st;
		char link[64];
		busy++;
		if (fstat(fd, &st) == 0) {
			snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
			ssize_t n = readlink(link, shm_paths[nmaps], sizeof shm_paths[nmaps] - 1);
			shm_paths[nmaps][n > 0 ? n : 0] = 0;
			for (char *c = shm_paths[nmaps]; *c; c++)
				if (*c == ' ')
					*c = '_';
			shm_dev[nmaps] = (unsigned long long)st.st_dev;
			shm_ino[nmaps] = (unsigned long long)st.st_ino;
			maps[nmaps++] = (struct map_ent){ (uintptr_t)p, len, -1 };
		}
		busy--;
	}
	pthread_mutex_unlock(&lock);
}

void *mmap(void *a, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = REAL(mmap_fn, mmap)(a, len, prot, flags, fd, off);
	mapped(p, len, flags, fd);
	return p;
}

void *mmap64(void *a, size_t len, int prot, int flags, int fd, off_t off);
void *mmap64(void *a, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = REAL(mmap_fn, mmap64)(a, len, prot, flags, fd, off);
	mapped(p, len, flags, fd);
	return p;
}

int munmap(void *p, size_t len)
{
	if (!busy) {
		pthread_mutex_lock(&lock);
		end_map((uintptr_t)p);
		pthread_mutex_unlock(&lock);
	}
	return REAL(munmap_fn, munmap)(p, len);
}

__attribute__((destructor)) static void iotrace_report(void)
{
	const char *dir = getenv("AGIPD_IOTRACE_DIR");
	char host[256] = "", path[4096];
	if (!dir || !*dir)
		return;
	pthread_mutex_lock(&lock);
	while (nmaps > 0)
		end_map(maps[0].addr);
	if (nfiles == 0 && nshms == 0) {
		pthread_mutex_unlock(&lock);
		return;
	}
	gethostname(host, sizeof host - 1);
	snprintf(path, sizeof path, "%s/iotrace.%ld", dir, (long)getpid());
	busy++;
	FILE *f = fopen(path, "w");
	if (f) {
		for (int i = 0; i < nfiles; i++)
			fprintf(f, "file %s %ld %s %llu %llu %llu\n", host, (long)getpid(), files[i].path, files[i].opens,
				files[i].rd, files[i].mapped);
		for (int i = 0; i < nshms; i++)
			fprintf(f, "shm %s %ld %s %llu:%llu %llu %llu\n", host, (long)getpid(), shms[i].path[0] ? shms[i].path : "?",
				shms[i].dev, shms[i].ino, shms[i].len, shms[i].rss);
		fclose(f);
	}
	busy--;
	pthread_mutex_unlock(&lock);
}
