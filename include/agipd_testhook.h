/*
 * agipd_testhook.h - a test-only pause at a named point of a run, so that
 * the fault tests (tests/test_faults.py, tests/test_parallel.py) kill or
 * signal a job at a known point instead of racing it.
 *
 *   AGIPD_TEST_PAUSE=POINT        every rank stops itself (SIGSTOP) the first
 *                                 time it reaches POINT;
 *   AGIPD_TEST_PAUSE=POINT@RANK   only rank RANK of MPI_COMM_WORLD does.
 *
 * The test sees the rank stopped (state T in /proc/PID/stat), does its
 * harm, and resumes it with SIGCONT.  Points:
 *
 *   frames-written   agipd_writer_write_frames has written this rank's
 *                    first frames (n > 0) of the run: a .part file exists
 *                    and is incomplete.
 *
 * Unset (every real run) a call costs a load and a branch: the environment
 * is read once.  Not for production use; no other effect.
 */
#ifndef AGIPD_TESTHOOK_H
#define AGIPD_TESTHOOK_H

/* Stop this process if AGIPD_TEST_PAUSE names point (and this rank). */
void agipd_test_pause(const char *point);

#endif
