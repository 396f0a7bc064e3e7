/*
 * agipd_mapguard.h - reading from a read-only file mapping that may shrink.
 *
 * Input files (raw data, constants) are read in place from mmap(2)
 * mappings.  When such a file is truncated or rewritten in place (`cp` over
 * it, `truncate`) after it was mapped, touching a page past its new end
 * raises SIGBUS, which would kill the whole job.  agipd_mapguard_run() runs
 * a read from a mapping so that such a fault becomes an error return instead.
 * Pure: no MPI, no HDF5.
 */
#ifndef AGIPD_MAPGUARD_H
#define AGIPD_MAPGUARD_H

#include <stddef.h>

typedef void (*agipd_mapguard_fn)(void *arg);

/*
 * Call fn(arg) with a SIGBUS handler installed for the duration of the call.
 * A SIGBUS on an address in [addr, addr + len) abandons fn at the faulting
 * access (siglongjmp) and makes the call return -1; otherwise it returns 0.
 * Any other SIGBUS goes to the handler that was installed before (Open MPI's,
 * or the default).  fn must not own resources (memory, locks) that
 * abandoning it would leak: plain computation over buffers.  With addr NULL
 * or len 0, fn is just called.  The previous SIGBUS disposition is restored
 * before returning.  The handler's state is per thread; one thread at a
 * time may be inside a guarded call.
 */
int agipd_mapguard_run(const void *addr, size_t len, agipd_mapguard_fn fn, void *arg);

/*
 * Test hook, a no-op unless the environment sets AGIPD_TEST_PAUSE_MAPPED to
 * a folder D and the file D/BASENAME.pause exists (BASENAME the last part of
 * path): then it creates D/BASENAME.PID.mapped and waits (polling, at most
 * 120 s) until D/BASENAME.go exists.  Called right after an input file was
 * mapped, so that a test can truncate it at that point, deterministically.
 */
void agipd_mapguard_test_pause(const char *path);

#endif
