/*
 * test_sha256.c - SHA-256 (include/agipd_sha256.h) against the FIPS 180-4
 * example vectors, padding-boundary lengths, incremental updates split at odd
 * places, and agipd_sha256_file on a temporary file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agipd_sha256.h"
#include "unit.h"

static void digest(const void *data, size_t n, char hex[65])
{
	struct agipd_sha256 s;
	agipd_sha256_init(&s);
	agipd_sha256_update(&s, data, n);
	agipd_sha256_hex(&s, hex);
}

/* The same message fed in pieces: sizes cycle through `splits`. */
static void digest_split(const uint8_t *data, size_t n, const size_t *splits, size_t nsplits, char hex[65])
{
	struct agipd_sha256 s;
	size_t pos = 0, k = 0;
	agipd_sha256_init(&s);
	while (pos < n) {
		size_t take = splits[k++ % nsplits];
		if (take > n - pos)
			take = n - pos;
		agipd_sha256_update(&s, data + pos, take);
		pos += take;
	}
	agipd_sha256_hex(&s, hex);
}

static void pattern(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
}

#define CHECK_HEX(got, want)                                                    \
	do {                                                                    \
		if (strcmp((got), (want)) != 0) {                               \
			printf("  %s:%d: digest %s, expected %s\n", __FILE__, __LINE__, (got), (want)); \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

static const char *const MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

int main(void)
{
	char hex[65];

	TEST("sha256: FIPS 180-4 examples") {
		digest("", 0, hex);
		CHECK_HEX(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
		digest("abc", 3, hex);
		CHECK_HEX(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
		const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
		CHECK_EQ_INT(strlen(m448) * 8, 448);
		digest(m448, strlen(m448), hex);
		CHECK_HEX(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
		const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
				   "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
		CHECK_EQ_INT(strlen(m896) * 8, 896);
		digest(m896, strlen(m896), hex);
		CHECK_HEX(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
		CHECK_EQ_INT(strlen(hex), 64);
	}

	TEST("sha256: one million 'a', at once and 1 byte at a time") {
		size_t n = 1000000;
		uint8_t *a = malloc(n);
		CHECK(a != NULL);
		if (a) {
			memset(a, 'a', n);
			digest(a, n, hex);
			CHECK_HEX(hex, MILLION_A);
			struct agipd_sha256 s;
			agipd_sha256_init(&s);
			for (size_t i = 0; i < n; i++)
				agipd_sha256_update(&s, "a", 1);
			agipd_sha256_hex(&s, hex);
			CHECK_HEX(hex, MILLION_A);
			free(a);
		}
	}

	/* Lengths around the 55/56 and 64-byte padding boundaries (digests from
	 * Python's hashlib of bytes (7*i + 3) & 255). */
	static const struct {
		size_t n;
		const char *hex;
	} lens[] = {
		{ 1, "084fed08b978af4d7d196a7446a86b58009e636b611db16211b65a9aadff29c5" },
		{ 55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b" },
		{ 56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27" },
		{ 57, "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73" },
		{ 63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055" },
		{ 64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241" },
		{ 65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e" },
		{ 111, "67d9492e628fd376e0b2efec8ca2b99b123e202cf620deb270728df979b2f73e" },
		{ 119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e" },
		{ 120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5" },
		{ 127, "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07" },
		{ 128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6" },
		{ 129, "307f8fc2c1622b92762e818d39a185d4d667ad49a4b07ceae1f4afa008a93ec4" },
		{ 1000, "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371" },
	};
	TEST("sha256: padding boundary lengths") {
		uint8_t buf[1000];
		pattern(buf, sizeof buf);
		for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
			digest(buf, lens[i].n, hex);
			CHECK_HEX(hex, lens[i].hex);
		}
	}

	TEST("sha256: incremental updates with odd split sizes") {
		static const size_t s1[] = { 1 }, s2[] = { 3, 61, 0, 7 }, s3[] = { 63, 65 }, s4[] = { 64, 1, 127 },
				    s5[] = { 55, 9, 200 };
		const size_t *splits[] = { s1, s2, s3, s4, s5 };
		const size_t nsplits[] = { 1, 4, 2, 3, 3 };
		uint8_t buf[1000];
		pattern(buf, sizeof buf);
		for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
			for (size_t k = 0; k < 5; k++) {
				digest_split(buf, lens[i].n, splits[k], nsplits[k], hex);
				CHECK_HEX(hex, lens[i].hex);
			}
		/* Every length 0..300 and every single split point agree with one shot. */
		int bad = 0;
		for (size_t n = 0; n <= 300 && n <= sizeof buf; n++) {
			char whole[65];
			digest(buf, n, whole);
			for (size_t cut = 0; cut <= n; cut++) {
				struct agipd_sha256 s;
				agipd_sha256_init(&s);
				agipd_sha256_update(&s, buf, cut);
				agipd_sha256_update(&s, buf + cut, n - cut);
				agipd_sha256_hex(&s, hex);
				if (strcmp(hex, whole) && bad++ < 3)
					printf("  length %zu split at %zu: %s != %s\n", n, cut, hex, whole);
			}
		}
		CHECK_EQ_INT(bad, 0);
	}

	TEST("sha256: agipd_sha256_file") {
		char path[] = "/tmp/agipd-test-sha256.XXXXXX";
		int fd = mkstemp(path);
		CHECK(fd >= 0);
		if (fd >= 0) {
			FILE *f = fdopen(fd, "wb");
			size_t n = 1000000;
			uint8_t *a = malloc(n);
			CHECK(f != NULL && a != NULL);
			if (f && a) {
				memset(a, 'a', n);
				CHECK_EQ_INT(fwrite(a, 1, n, f), n);
				CHECK_EQ_INT(fclose(f), 0);
				memset(hex, 'x', sizeof hex);
				CHECK_EQ_INT(agipd_sha256_file(path, hex), 0);
				CHECK_HEX(hex, MILLION_A);
				/* A file that is not a multiple of the read size. */
				f = fopen(path, "wb");
				uint8_t buf[1000];
				pattern(buf, sizeof buf);
				CHECK_EQ_INT(fwrite(buf, 1, 129, f), 129);
				CHECK_EQ_INT(fclose(f), 0);
				CHECK_EQ_INT(agipd_sha256_file(path, hex), 0);
				CHECK_HEX(hex, lens[12].hex);
				/* Empty file. */
				f = fopen(path, "wb");
				CHECK_EQ_INT(fclose(f), 0);
				CHECK_EQ_INT(agipd_sha256_file(path, hex), 0);
				CHECK_HEX(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
			}
			free(a);
			unlink(path);
			errno = 0;
			CHECK_EQ_INT(agipd_sha256_file(path, hex), -1);
			CHECK_EQ_INT(errno, ENOENT);
		}
	}

	UNIT_EXIT();
}
