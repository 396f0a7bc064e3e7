/*
 * test_compress.c - deflate streams (include/agipd_compress.h): every encoder
 * (ISA-L where built, zlib) round-trips shuffled frame-like data through stock
 * zlib's inflate, and the shuffle has HDF5's layout.  Compressed bytes are
 * never compared: they change between library versions.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agipd.h"
#include "agipd_compress.h"
#include "unit.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)   /* splitmix64, upper half */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

enum kind { K_ZEROS, K_GAIN, K_MASK, K_RANDOM, K_NKINDS };
static const char *const kind_name[K_NKINDS] = { "zeros", "gain-like", "mask-like", "random" };

/* A frame of n elements of `size` bytes (1: gain, 4: mask). */
static void fill(void *buf, size_t n, size_t size, enum kind k)
{
	uint8_t *b = buf;
	uint32_t *w = buf;
	switch (k) {
	case K_ZEROS:
		memset(buf, 0, n * size);
		break;
	case K_GAIN:   /* mostly high gain, blobs of medium and low */
		for (size_t i = 0; i < n; i++) {
			size_t r = i / AGIPD_COLS, c = i % AGIPD_COLS;
			uint32_t v = (r / 40 + c / 30) % 7 == 3 ? 1 : 0;
			if ((r * 3 + c) % 97 == 0)
				v = 2;
			if (size == 1)
				b[i] = (uint8_t)v;
			else
				w[i] = v;
		}
		break;
	case K_MASK:   /* mostly zero, a few bad-pixel bits, a bad column */
		for (size_t i = 0; i < n; i++) {
			uint32_t v = 0;
			if (i % AGIPD_COLS == 17)
				v = 1u << 0 | 1u << 3;
			if (rnd() % 50 == 0)
				v |= 1u << (rnd() % 24);
			if (size == 1)
				b[i] = (uint8_t)v;
			else
				w[i] = v;
		}
		break;
	default:
		for (size_t i = 0; i < n * size; i++)
			b[i] = (uint8_t)rnd();
		break;
	}
}

/* AGIPD_DEFLATE_ZLIB in the second pass of the tests: stock zlib. */
static int zflag;

/* Compress src (n bytes) with the current encoder at `level`, check the stream
 * and inflate it back; returns the number of failed checks. */
static int round_trip(const void *src, size_t n, int level, const char *what)
{
	size_t bound = agipd_deflate_bound(n);
	uint8_t *z = malloc(bound), *back = malloc(n + 16);
	int bad = 0;
	if (!z || !back) {
		free(z);
		free(back);
		return 1;
	}
	size_t zn = agipd_deflate(src, n, z, bound, level | zflag);
	if (zn == 0 || zn >= bound) {
		printf("  %s, %s level %d: compressed length %zu (bound %zu)\n", what, agipd_deflate_encoder(zflag), level,
		       zn, bound);
		bad++;
	} else {
		/* RFC 1950 header: method 8, window <= 32K, check bits. */
		if ((z[0] & 0x0f) != 8 || (z[0] >> 4) > 7 || ((unsigned)z[0] << 8 | z[1]) % 31 != 0) {
			printf("  %s, %s: not a zlib header: %02x %02x\n", what, agipd_deflate_encoder(zflag), z[0], z[1]);
			bad++;
		}
		memset(back, 0xa5, n + 16);
		size_t bn = agipd_inflate(z, zn, back, n + 16);
		if (bn != n || memcmp(back, src, n) != 0) {
			printf("  %s, %s level %d: inflated %zu bytes of %zu, %s\n", what, agipd_deflate_encoder(zflag), level,
			       bn, n, bn == n ? "different" : "wrong length");
			bad++;
		}
	}
	free(z);
	free(back);
	return bad;
}

struct thread_arg {
	int seed, bad;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	size_t n = AGIPD_PIXELS;
	uint32_t *mask = malloc(n * 4);
	uint8_t *sh = malloc(n * 4);
	if (!mask || !sh) {
		a->bad++;
	} else {
		for (int it = 0; it < 20; it++) {
			for (size_t i = 0; i < n; i++)
				mask[i] = (uint32_t)((i * 2654435761u + (unsigned)a->seed * 977u + (unsigned)it) % 61 == 0) << (it % 24);
			agipd_shuffle(mask, sh, n, 4);
			a->bad += round_trip(sh, n * 4, 1, "threaded mask");
		}
	}
	free(mask);
	free(sh);
	return NULL;
}

int main(void)
{
	const size_t n = AGIPD_PIXELS;
	uint8_t *frame = malloc(n * 4), *sh = malloc(n * 4);
	if (!frame || !sh)
		return 1;
	printf("# encoder: %s\n", agipd_deflate_impl());

	for (int force = 0; force < 2; force++) {
		zflag = force ? AGIPD_DEFLATE_ZLIB : 0;
		char name[128];
		snprintf(name, sizeof name, "compress: frames round-trip through stock inflate (%s)",
			 agipd_deflate_encoder(zflag));
		TEST(name) {
			if (force)
				CHECK(strcmp(agipd_deflate_encoder(zflag), "zlib") == 0);
			else
				CHECK(!strcmp(agipd_deflate_encoder(0), agipd_deflate_impl()));
			static const size_t sizes[] = { 1, 4 };
			static const int levels[] = { 1, 2, 6, 9 };
			for (int k = 0; k < K_NKINDS; k++)
				for (size_t s = 0; s < 2; s++) {
					size_t size = sizes[s];
					fill(frame, n, size, (enum kind)k);
					agipd_shuffle(frame, sh, n, size);
					for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
						char what[64];
						snprintf(what, sizeof what, "%s uint%zu", kind_name[k], 8 * size);
						CHECK_EQ_INT(round_trip(sh, n * size, levels[l], what), 0);
					}
				}
		}

		snprintf(name, sizeof name, "compress: sparse data shrinks, small and odd sizes (%s)",
			 agipd_deflate_encoder(zflag));
		TEST(name) {
			size_t bound = agipd_deflate_bound(n * 4);
			uint8_t *z = malloc(bound);
			CHECK(z != NULL);
			if (z) {
				memset(frame, 0, n * 4);
				size_t zn = agipd_deflate(frame, n * 4, z, bound, 1 | zflag);
				CHECK(zn > 0 && zn < n * 4 / 100);
				fill(frame, n, 1, K_GAIN);
				agipd_shuffle(frame, sh, n, 1);
				zn = agipd_deflate(sh, n, z, bound, 1 | zflag);
				CHECK(zn > 0 && zn < n / 4);
				free(z);
			}
			static const size_t odd[] = { 0, 1, 2, 7, 63, 100, 1000, 4097, 65535, 65537 };
			for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
				fill(frame, odd[i], 1, K_RANDOM);
				CHECK_EQ_INT(round_trip(frame, odd[i], 1, "random bytes"), 0);
				fill(frame, odd[i], 1, K_GAIN);
				CHECK_EQ_INT(round_trip(frame, odd[i], 1, "gain bytes"), 0);
			}
		}

		snprintf(name, sizeof name, "compress: output that does not fit returns 0 (%s)", agipd_deflate_encoder(zflag));
		TEST(name) {
			uint8_t z[64];
			fill(frame, 4096, 1, K_RANDOM);
			CHECK_EQ_INT(agipd_deflate(frame, 4096, z, sizeof z, 1 | zflag), 0);
			CHECK_EQ_INT(agipd_deflate(frame, 4096, z, sizeof z, 6 | zflag), 0);
		}

		snprintf(name, sizeof name, "compress: concurrent threads (%s)", agipd_deflate_encoder(zflag));
		TEST(name) {
			pthread_t t[4];
			struct thread_arg a[4];
			for (int i = 0; i < 4; i++) {
				a[i].seed = i;
				a[i].bad = 0;
				CHECK_EQ_INT(pthread_create(&t[i], NULL, thread_main, &a[i]), 0);
			}
			for (int i = 0; i < 4; i++) {
				pthread_join(t[i], NULL);
				CHECK_EQ_INT(a[i].bad, 0);
			}
		}
	}
	zflag = 0;

	TEST("compress: inflate rejects bad input") {
		size_t bound = agipd_deflate_bound(n);
		uint8_t *z = malloc(bound), *back = malloc(n);
		CHECK(z && back);
		if (z && back) {
			fill(frame, n, 1, K_GAIN);
			size_t zn = agipd_deflate(frame, n, z, bound, 1);
			CHECK(zn > 10);
			/* Too small a destination. */
			CHECK_EQ_INT(agipd_inflate(z, zn, back, n / 2), 0);
			/* Truncated stream. */
			CHECK_EQ_INT(agipd_inflate(z, zn / 2, back, n), 0);
			/* Broken Adler-32. */
			z[zn - 1] ^= 0x55;
			CHECK_EQ_INT(agipd_inflate(z, zn, back, n), 0);
		}
		free(z);
		free(back);
	}

	TEST("compress: shuffle has HDF5's layout") {
		/* Two little-endian uint32: bytes 01..08 -> 01 05 02 06 03 07 04 08. */
		const uint8_t in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, want[8] = { 1, 5, 2, 6, 3, 7, 4, 8 };
		uint8_t out[8];
		agipd_shuffle(in, out, 2, 4);
		CHECK(memcmp(out, want, 8) == 0);
		/* uint16 {0x0201, 0x0403, 0x0605} -> low bytes then high bytes. */
		const uint16_t in16[3] = { 0x0201, 0x0403, 0x0605 };
		const uint8_t want16[6] = { 1, 3, 5, 2, 4, 6 };
		agipd_shuffle(in16, out, 3, 2);
		CHECK(memcmp(out, want16, 6) == 0);
		/* General: byte b of element i goes to b*n + i. */
		static const size_t sizes[] = { 1, 2, 4, 8 }, counts[] = { 1, 3, 1000, 65536 };
		int bad = 0;
		for (size_t s = 0; s < 4; s++)
			for (size_t c = 0; c < 4; c++) {
				size_t size = sizes[s], cnt = counts[c];
				if (cnt * size > n * 4)
					continue;
				fill(frame, cnt * size, 1, K_RANDOM);
				memset(sh, 0, cnt * size);
				agipd_shuffle(frame, sh, cnt, size);
				for (size_t i = 0; i < cnt; i++)
					for (size_t b = 0; b < size; b++)
						if (sh[b * cnt + i] != frame[i * size + b] && bad++ < 3)
							printf("  size %zu n %zu: byte %zu of element %zu misplaced\n", size,
							       cnt, b, i);
			}
		CHECK_EQ_INT(bad, 0);
	}

	free(frame);
	free(sh);
	UNIT_EXIT();
}
