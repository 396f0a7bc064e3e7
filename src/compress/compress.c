/*
 * compress.c - zlib-format deflate streams with ISA-L's igzip or zlib.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "agipd_compress.h"

const char *agipd_deflate_impl(void)
{
#ifdef HAVE_ISAL
	return "isa-l";
#else
	return "zlib";
#endif
}

const char *agipd_deflate_encoder(int level)
{
	return level & AGIPD_DEFLATE_ZLIB ? "zlib" : agipd_deflate_impl();
}

size_t agipd_deflate_bound(size_t n)
{
	/* zlib's bound, plus room for igzip's stored-block fallback. */
	return compressBound((uLong)n) + n / 16 + 64;
}

static size_t deflate_zlib(const void *src, size_t n, void *dst, size_t cap, int level)
{
	uLongf len = (uLongf)cap;
	if (compress2(dst, &len, src, (uLong)n, level) != Z_OK)
		return 0;
	return len;
}

#ifdef HAVE_ISAL
/* One level buffer per thread, kept (allocating it per chunk costs more than
 * compressing a sparse chunk) and freed when the thread ends. */
static pthread_key_t lvl_key;
static pthread_once_t lvl_once = PTHREAD_ONCE_INIT;

static void lvl_key_make(void)
{
	pthread_key_create(&lvl_key, free);
}

static size_t deflate_isal(const void *src, size_t n, void *dst, size_t cap)
{
	struct isal_zstream s;
	pthread_once(&lvl_once, lvl_key_make);
	uint8_t *lvl_buf = pthread_getspecific(lvl_key);
	if (!lvl_buf) {
		if (!(lvl_buf = malloc(ISAL_DEF_LVL1_DEFAULT)))
			return 0;
		pthread_setspecific(lvl_key, lvl_buf);
	}
	memset(&s, 0, sizeof s);
	isal_deflate_stateless_init(&s);
	s.level = 1;
	s.level_buf = lvl_buf;
	s.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
	s.gzip_flag = IGZIP_ZLIB;
	s.flush = NO_FLUSH;
	s.end_of_stream = 1;
	s.next_in = (uint8_t *)src;
	s.avail_in = (uint32_t)n;
	s.next_out = dst;
	s.avail_out = (uint32_t)cap;
	if (isal_deflate_stateless(&s) != COMP_OK)
		return 0;
	return s.total_out;
}
#endif

size_t agipd_deflate(const void *src, size_t n, void *dst, size_t cap, int level)
{
	if (n > UINT32_MAX || cap > UINT32_MAX)
		return 0;
	const int zlib = level & AGIPD_DEFLATE_ZLIB;
	level &= ~AGIPD_DEFLATE_ZLIB;
#ifdef HAVE_ISAL
	if (!zlib && level <= 1)
		return deflate_isal(src, n, dst, cap);
#else
	(void)zlib;
#endif
	return deflate_zlib(src, n, dst, cap, level);
}

size_t agipd_inflate(const void *src, size_t n, void *dst, size_t cap)
{
	uLongf len = (uLongf)cap;
	if (uncompress(dst, &len, src, (uLong)n) != Z_OK)
		return 0;
	return len;
}

#if defined(__SSE2__)
#include <emmintrin.h>
/* 4-byte elements, 16 at a time: three rounds of byte interleaving gather
 * each byte position together (the transpose bitshuffle uses). */
static size_t shuffle4_sse2(const uint8_t *s, uint8_t *d, size_t n)
{
	size_t i;
	for (i = 0; i + 16 <= n; i += 16) {
		__m128i a0 = _mm_loadu_si128((const __m128i *)(s + 4 * i));
		__m128i b0 = _mm_loadu_si128((const __m128i *)(s + 4 * i + 16));
		__m128i c0 = _mm_loadu_si128((const __m128i *)(s + 4 * i + 32));
		__m128i d0 = _mm_loadu_si128((const __m128i *)(s + 4 * i + 48));
		__m128i a1 = _mm_unpacklo_epi8(a0, b0), b1 = _mm_unpackhi_epi8(a0, b0);
		__m128i c1 = _mm_unpacklo_epi8(c0, d0), d1 = _mm_unpackhi_epi8(c0, d0);
		a0 = _mm_unpacklo_epi8(a1, b1);
		b0 = _mm_unpackhi_epi8(a1, b1);
		c0 = _mm_unpacklo_epi8(c1, d1);
		d0 = _mm_unpackhi_epi8(c1, d1);
		a1 = _mm_unpacklo_epi8(a0, b0);
		b1 = _mm_unpackhi_epi8(a0, b0);
		c1 = _mm_unpacklo_epi8(c0, d0);
		d1 = _mm_unpackhi_epi8(c0, d0);
		_mm_storeu_si128((__m128i *)(d + 0 * n + i), _mm_unpacklo_epi64(a1, c1));
		_mm_storeu_si128((__m128i *)(d + 1 * n + i), _mm_unpackhi_epi64(a1, c1));
		_mm_storeu_si128((__m128i *)(d + 2 * n + i), _mm_unpacklo_epi64(b1, d1));
		_mm_storeu_si128((__m128i *)(d + 3 * n + i), _mm_unpackhi_epi64(b1, d1));
	}
	return i;
}
#endif

void agipd_shuffle(const void *src, void *dst, size_t n, size_t size)
{
	const uint8_t *s = src;
	uint8_t *d = dst;
	size_t i0 = 0;
	if (size == 1) {
		memcpy(dst, src, n);
		return;
	}
#if defined(__SSE2__)
	if (size == 4)
		i0 = shuffle4_sse2(s, d, n);
#endif
	for (size_t b = 0; b < size; b++)
		for (size_t i = i0; i < n; i++)
			d[b * n + i] = s[i * size + b];
}

uint32_t agipd_fletcher32(const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t len = n / 2;
	uint32_t s1 = 0, s2 = 0;
	while (len) {
		/* 360 words keep the sums from overflowing before folding. */
		size_t t = len > 360 ? 360 : len;
		len -= t;
		do {
			s1 += (uint32_t)p[0] << 8 | p[1];
			p += 2;
			s2 += s1;
		} while (--t);
		s1 = (s1 & 0xffff) + (s1 >> 16);
		s2 = (s2 & 0xffff) + (s2 >> 16);
	}
	if (n % 2) {
		s1 += (uint32_t)*p << 8;
		s2 += s1;
		s1 = (s1 & 0xffff) + (s1 >> 16);
		s2 = (s2 & 0xffff) + (s2 >> 16);
	}
	s1 = (s1 & 0xffff) + (s1 >> 16);
	s2 = (s2 & 0xffff) + (s2 >> 16);
	return s2 << 16 | s1;
}

size_t agipd_chunk_encode(const void *src, size_t nelem, size_t elsize, void *dst, size_t cap, int level,
			  void *scratch)
{
	const void *in = src;
	if (elsize > 1) {
		agipd_shuffle(src, scratch, nelem, elsize);
		in = scratch;
	}
	if (cap < 4)
		return 0;
	size_t len = agipd_deflate(in, nelem * elsize, dst, cap - 4, level);
	if (!len)
		return 0;
	uint32_t f = agipd_fletcher32(dst, len);
	uint8_t *t = (uint8_t *)dst + len;
	t[0] = (uint8_t)f;
	t[1] = (uint8_t)(f >> 8);
	t[2] = (uint8_t)(f >> 16);
	t[3] = (uint8_t)(f >> 24);
	return len + 4;
}
