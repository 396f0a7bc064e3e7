/*
 * checksum.c - CRC-32 of files for the provenance.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/crc.h>
#endif

#include "agipd_checksum.h"
#include "agipd_mapguard.h"

uint32_t agipd_crc32(uint32_t crc, const void *buf, size_t n)
{
#ifdef HAVE_ISAL
	return crc32_gzip_refl(crc, buf, n);
#else
	const unsigned char *p = buf;
	while (n) {  /* zlib takes uInt lengths */
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, p, k);
		p += k;
		n -= k;
	}
	return crc;
#endif
}

struct crc_args {
	const void *p;
	size_t n;
	uint32_t crc;
};

static void crc_guarded(void *arg)
{
	struct crc_args *a = arg;
	a->crc = agipd_crc32(0, a->p, a->n);
}

int agipd_crc32_file_range(const char *path, uint64_t off, uint64_t len, uint32_t *crc)
{
	/* From a read-only mapping where possible: no copy out of the page cache. */
	int mfd = open(path, O_RDONLY | O_CLOEXEC);
	if (mfd >= 0 && len > 0) {
		uint64_t a = off & ~(uint64_t)4095;
		void *m = mmap(NULL, (size_t)(off + len - a), PROT_READ, MAP_SHARED, mfd, (off_t)a);
		close(mfd);
		if (m != MAP_FAILED) {
			madvise(m, (size_t)(off + len - a), MADV_SEQUENTIAL);
			struct crc_args ca = { (const char *)m + (off - a), (size_t)len, 0 };
			int rc = agipd_mapguard_run(m, (size_t)(off + len - a), crc_guarded, &ca);
			munmap(m, (size_t)(off + len - a));
			if (rc == 0) {
				*crc = ca.crc;
				return 0;
			}
			/* The file shrank under the mapping: read it (and fail) below. */
		}
	} else if (mfd >= 0) {
		close(mfd);
	}
	const size_t bufsz = 4 << 20;
	unsigned char *buf = malloc(bufsz);
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	uint32_t c = 0;
	if (!buf || fd < 0) {
		err = buf ? errno : ENOMEM;
		goto out;
	}
	posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_SEQUENTIAL);
	while (len) {
		ssize_t n = pread(fd, buf, len < bufsz ? (size_t)len : bufsz, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : EIO;
			goto out;
		}
		c = agipd_crc32(c, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	*crc = c;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	errno = err;
	return err ? -1 : 0;
}

uint32_t agipd_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return (uint32_t)crc32_combine64(crc_a, crc_b, (z_off64_t)len_b);
}
