/*
 * agipd_sha256.h - SHA-256 (FIPS 180-4) for provenance checksums.  Pure.
 */
#ifndef AGIPD_SHA256_H
#define AGIPD_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct agipd_sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t nbuf;
};

void agipd_sha256_init(struct agipd_sha256 *s);
void agipd_sha256_update(struct agipd_sha256 *s, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL into hex. */
void agipd_sha256_hex(struct agipd_sha256 *s, char hex[65]);
/* SHA-256 of a whole file; 0 on success, -1 (errno set) on a read error. */
int agipd_sha256_file(const char *path, char hex[65]);

#endif
