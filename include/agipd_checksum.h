/*
 * agipd_checksum.h - file checksums for the provenance.  Pure (no HDF5).
 *
 * CRC-32 (ISO-HDLC, the polynomial of zlib, gzip and PNG: the value `crc32`
 * and Python's zlib.crc32 print), computed with ISA-L's folding
 * implementation where available (>10 GB/s) and zlib's otherwise, with
 * identical results.  A full set of constants is gigabytes: SHA-256 at
 * ~0.4 GB/s cost seconds per module, CRC-32 costs the read.
 */
#ifndef AGIPD_CHECKSUM_H
#define AGIPD_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint32_t agipd_crc32(uint32_t crc, const void *buf, size_t n);


/* CRC-32 of bytes [off, off + len) of a file (several ranks checksum a
 * file in parts and combine them); 0, or -1 with errno set. */
int agipd_crc32_file_range(const char *path, uint64_t off, uint64_t len, uint32_t *crc);

/* CRC-32 of A followed by B from crc(A), crc(B) and len(B) (zlib's). */
uint32_t agipd_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

#endif
