/*
 * unit.h - the smallest test harness that can work: each CHECK prints nothing
 * when it holds, and a FAIL line with file, line and values when it does not.
 * Each TEST(name) block ends with one "PASS name" or "FAIL name" line, which
 * tests/run.sh counts.
 */
#ifndef AGIPD_TEST_UNIT_H
#define AGIPD_TEST_UNIT_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int unit_failed_;   /* failures in the current test */
static int unit_total_failed_;

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                      \
	do {                                                                    \
		long long a_ = (long long)(a), b_ = (long long)(b);             \
		if (a_ != b_) {                                                 \
			printf("  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, \
			       __LINE__, #a, a_, #b, b_);                       \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

/* Bit-exact float comparison; NaN equals NaN. */
#define CHECK_EQ_F32(a, b)                                                      \
	do {                                                                    \
		float a_ = (a), b_ = (b);                                       \
		if (!((isnan(a_) && isnan(b_)) || memcmp(&a_, &b_, sizeof a_) == 0)) { \
			printf("  %s:%d: %s == %.9g, expected %.9g\n", __FILE__, \
			       __LINE__, #a, (double)a_, (double)b_);           \
			unit_failed_++;                                         \
		}                                                               \
	} while (0)

#define TEST(name)                                                              \
	for (int once_ = (unit_failed_ = 0, 1); once_;                          \
	     once_ = 0, unit_total_failed_ += unit_failed_ != 0,                \
	     printf("%s %s\n", unit_failed_ ? "FAIL" : "PASS", name), fflush(stdout))

#define UNIT_EXIT() return unit_total_failed_ ? 1 : 0

#endif
