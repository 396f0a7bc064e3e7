/*
 * agipd_compress.h - deflate for gain and mask chunks.  Pure: no HDF5.
 *
 * Streams are zlib format (RFC 1950: header, deflate, Adler-32), exactly what
 * HDF5's deflate filter (id 1) stores and stock zlib inflates.  The encoder is
 * ISA-L's igzip where the build has it (several times faster than zlib at
 * level 1), else zlib.  Thread-safe.
 */
#ifndef AGIPD_COMPRESS_H
#define AGIPD_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound of a compressed stream of n bytes. */
size_t agipd_deflate_bound(size_t n);

/*
 * Compress n bytes of src into dst (capacity cap) at `level` (1-9; the ISA-L
 * encoder maps 1 to its level 1, 2+ to zlib's own levels; level |
 * AGIPD_DEFLATE_ZLIB: stock zlib even where ISA-L is built, for benchmarks
 * and tests).  Returns the stream length, or 0 when it does not fit or fails.
 */
#define AGIPD_DEFLATE_ZLIB 0x100
size_t agipd_deflate(const void *src, size_t n, void *dst, size_t cap, int level);

/* Inflate a zlib stream with stock zlib; returns bytes written or 0 on error. */
size_t agipd_inflate(const void *src, size_t n, void *dst, size_t cap);

/* Byte shuffle of n elements of `size` bytes (HDF5's shuffle filter layout). */
void agipd_shuffle(const void *src, void *dst, size_t n, size_t size);

/* HDF5's Fletcher-32 (H5_checksum_fletcher32: big-endian 16-bit words, an
 * odd last byte as the high byte of a word). */
uint32_t agipd_fletcher32(const void *buf, size_t n);

/*
 * One chunk through HDF5's filter pipeline shuffle(2) -> deflate(1) ->
 * fletcher32(3), as H5Dwrite would store it: byte-shuffle nelem elements of
 * elsize bytes (scratch: nelem*elsize bytes), deflate, append the checksum
 * (little-endian, as HDF5 stores it).  dst needs agipd_deflate_bound() + 4
 * bytes.  Returns the chunk's stored size, 0 on failure.
 */
size_t agipd_chunk_encode(const void *src, size_t nelem, size_t elsize, void *dst, size_t cap, int level,
			  void *scratch);

/* Name of the fast encoder of this build: "isa-l" or "zlib". */
const char *agipd_deflate_impl(void);
/* Name of the encoder that `level` (as agipd_deflate()'s) asks for. */
const char *agipd_deflate_encoder(int level);

#endif
