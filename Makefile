# agipd-correct - MPI-parallel AGIPD correction with collective parallel HDF5.
#
#   make            build bin/agipd-correct, bin/agipd-simulate and the tools
#   make demo       correct a small synthetic run on 2 ranks (installs packages)
#   make check      every test (installs packages first when some are missing)
#   make bench      the benchmark (see bench/)
#   make asan | ubsan | valgrind   re-run the test suite under a checker
#
# Dependencies come from pkg-config (hdf5-openmpi), falling back to h5pcc.

PREFIX ?= /usr/local
CC := mpicc
BUILD ?= build
BIN ?= bin

HDF5_PC := $(shell pkg-config --exists hdf5-openmpi 2>/dev/null && echo hdf5-openmpi)
ifneq ($(HDF5_PC),)
HDF5_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(HDF5_PC)))
HDF5_LIBS := $(shell pkg-config --libs $(HDF5_PC))
else
# h5pcc -show prints the compiler line it would run; keep its flags.
H5PCC_SHOW := $(shell h5pcc -show 2>/dev/null)
HDF5_CFLAGS := $(patsubst -I%,-isystem %,$(filter -I% -D%,$(H5PCC_SHOW)))
HDF5_LIBS := $(filter -L% -l% -Wl%,$(H5PCC_SHOW))
endif

have_header = $(shell printf '\#include <$(1)>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
HAVE_ISAL := $(call have_header,isa-l/igzip_lib.h)
HAVE_LIBDEFLATE := $(call have_header,libdeflate.h)
HAVE_PNG := $(call have_header,png.h)

GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)

WARN := -Wall -Wextra -Wmissing-prototypes -Wshadow -Wstrict-prototypes -Wundef -Wvla -Werror
OPT ?= -O2 -g
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -ffp-contract=off $(OPT) $(WARN) -Iinclude -Itools $(HDF5_CFLAGS) \
	-DAGIPD_GIT_REV='"$(GIT_REV)"' $(MOREFLAGS) $(CFLAGS)
# calibration_metadata.yml is read with libyaml (Debian libyaml-dev).
YAML_CFLAGS := $(shell pkg-config --cflags yaml-0.1 2>/dev/null)
YAML_LIBS := $(or $(shell pkg-config --libs yaml-0.1 2>/dev/null),-lyaml)
CFLAGS_ALL += $(YAML_CFLAGS)
LIBS := $(HDF5_LIBS) $(YAML_LIBS) -lz -lm -lpthread
ifeq ($(HAVE_ISAL),yes)
CFLAGS_ALL += -DHAVE_ISAL=1
LIBS += -lisal
endif
ifeq ($(HAVE_LIBDEFLATE),yes)
CFLAGS_ALL += -DHAVE_LIBDEFLATE=1
LIBS += -ldeflate
endif
ifeq ($(HAVE_PNG),yes)
CFLAGS_ALL += -DHAVE_PNG=1
LIBS += -lpng
endif
LDFLAGS_ALL := $(MOREFLAGS) $(LDFLAGS)

# src/: the corrector (build/libagipd.a) and its program; tools/: the
# simulator, the preview and the PNG writer (build/libagipd-tools.a) and
# their programs.
LIB_SRCS := $(filter-out src/main_%.c,$(wildcard src/*.c src/*/*.c))
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
TOOLS_SRCS := $(filter-out tools/main_%.c,$(wildcard tools/*.c))
TOOLS_OBJS := $(patsubst tools/%.c,$(BUILD)/tools/%.o,$(TOOLS_SRCS))
MAINS := $(patsubst src/main_%.c,$(BIN)/agipd-%,$(wildcard src/main_*.c)) \
	$(patsubst tools/main_%.c,$(BIN)/agipd-%,$(wildcard tools/main_*.c))
LIBS_ALL := $(BUILD)/libagipd-tools.a $(BUILD)/libagipd.a
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_PROGS := $(patsubst tests/%.c,$(BIN)/%,$(TEST_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCHES := $(patsubst bench/%.c,$(BIN)/%,$(BENCH_SRCS))

.PHONY: all tests deps demo check check-mpi asan ubsan valgrind bench clean install docs
all: $(MAINS) $(BENCHES)
tests: all $(TEST_PROGS)

$(BUILD)/%.o: src/%.c $(wildcard include/*.h) $(wildcard src/*/*.h) | $(BUILD)
	@echo "  CC      $<"
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS_ALL) -c -o $@ $<
$(BUILD)/tools/%.o: tools/%.c $(wildcard include/*.h) $(wildcard tools/*.h) | $(BUILD)/tools
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -c -o $@ $<
$(BUILD)/libagipd.a: $(LIB_OBJS)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^
$(BUILD)/libagipd-tools.a: $(TOOLS_OBJS)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^
$(BIN)/agipd-%: src/main_%.c $(LIBS_ALL) $(wildcard include/*.h) $(wildcard tools/*.h) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)
$(BIN)/agipd-%: tools/main_%.c $(LIBS_ALL) $(wildcard include/*.h) $(wildcard tools/*.h) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)
$(BIN)/test_%: tests/test_%.c tests/unit.h $(LIBS_ALL) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) -Itests $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)
$(BIN)/%: bench/%.c $(LIBS_ALL) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)
# The pure kernels are worth -O3 (vectorised passes); sanitizer builds set OPT.
# Without traps assumed (the program never enables floating-point traps) the
# kernel's selections on float comparisons become blends and its passes
# vectorise; the arithmetic and its results are unchanged.
$(BUILD)/correct/kernel.o $(BUILD)/compress/compress.o: OPT := -O3 -g
$(BUILD)/correct/kernel.o: CFLAGS_ALL += -fno-trapping-math
$(BUILD) $(BUILD)/tools $(BIN):
	mkdir -p $@

# Packages first (a fresh machine has none), then a new make that sees them.
deps:
	@env/setup-debian.sh --if-missing

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo.sh

check: deps
	@$(MAKE) --no-print-directory tests
	@tests/run.sh

asan: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory tests OPT='-O1 -g' MOREFLAGS='-fsanitize=address -fno-omit-frame-pointer'
	@AGIPD_SANITIZER=asan tests/run.sh
ubsan: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory tests OPT='-O1 -g' MOREFLAGS='-fsanitize=undefined -fno-sanitize-recover=undefined'
	@AGIPD_SANITIZER=ubsan tests/run.sh
valgrind: deps
	@$(MAKE) --no-print-directory tests
	@AGIPD_SANITIZER=valgrind tests/run.sh

# The option reference and README's option tables come from the option
# table (src/util/opts.c).
docs: $(BIN)/agipd-correct
	$(BIN)/agipd-correct --help-markdown > docs/agipd-correct.md
	docs/readme-options.sh README.md docs/agipd-correct.md > README.md.tmp && mv README.md.tmp README.md

clean:
	rm -rf $(BUILD) $(BIN)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/agipd-correct/jobs $(DESTDIR)$(PREFIX)/share/doc/agipd-correct
	install -m 755 $(MAINS) $(BIN)/plan_efficiency $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(filter-out %.sh %.py,$(wildcard jobs/*)) $(DESTDIR)$(PREFIX)/share/agipd-correct/jobs/
	install -m 755 $(wildcard jobs/*.sh jobs/*.py) $(DESTDIR)$(PREFIX)/share/agipd-correct/jobs/
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/agipd-correct/

# The benchmark: simulate a DAQ-shaped run, time agipd-correct (collective and
# serial writers), the Python pipeline and the measured floor, launch to exit;
# writes bench/results/.  BENCH_WORKLOAD=small (default) or production;
# sizes, ranks, output folders (BENCH_OUT_DIR: /dev/shm and the local disk),
# MPI-IO variants and the dirty-revision override: see bench/run_bench.py.
bench: deps
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 bench/run_bench.py

# The job templates (jobs/) under a private Slurm cluster of 3 virtual nodes
# on loopback (one slurmd -N per node, each in a UTS namespace named after
# its node): munge, slurmctld, the slurmds and their files under a temporary
# folder, every template submitted with sbatch --wait on 2 (and 3) nodes,
# job states, outputs and per-node constants loads checked, a rank killed
# on one node (tests/slurm/run-slurm-tests.sh).  Needs root (slurmd, unshare).
.PHONY: check-slurm
check-slurm: deps
	@$(MAKE) --no-print-directory all $(BIN)/iotrace.so
	@tests/slurm/run-slurm-tests.sh </dev/null

# ---- Reliability: faults, sanitizers, fuzzing (tests/test_reliability.py,
# the bad-input catalogue, runs in make check with the other tests) ----

# Objects remember the flags they were built with, so that the next plain
# make after make asan / ubsan / sanitize (or any OPT=, MOREFLAGS=) rebuilds
# them instead of keeping the instrumented ones.  Expanded once, at parse
# time: per-target OPT (kernel.o) does not count.
BUILD_FLAGS := $(CC) $(OPT) | $(MOREFLAGS) | $(CFLAGS) | $(LDFLAGS)
$(LIB_OBJS) $(TOOLS_OBJS) $(MAINS) $(TEST_PROGS) $(BENCHES) $(BIN)/fuzz_raw $(BIN)/consts_share_probe: $(BUILD)/.build-flags
$(BUILD)/.build-flags: agipd-build-flags | $(BUILD)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(BUILD_FLAGS)' ]; then printf '%s\n' '$(BUILD_FLAGS)' > $@; fi
.PHONY: agipd-build-flags
agipd-build-flags:
# What embeds the git revision (--version, the provenance, the report) is
# rebuilt when the revision changes: a benchmark or an output never names a
# revision its binary was not built from.
$(BUILD)/run/run_file.o $(BUILD)/run/run_report.o $(BIN)/agipd-correct: $(BUILD)/.git-rev
$(BUILD)/.git-rev: agipd-build-flags | $(BUILD)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(GIT_REV)' ]; then printf '%s\n' '$(GIT_REV)' > $@; fi

# Faults during a 3-rank run: kill -9 of one rank, SIGTERM and SIGINT to
# mpirun; the re-run must complete and equal an uninterrupted run.
.PHONY: check-faults
check-faults: deps
	@$(MAKE) --no-print-directory all
	@TESTS=test_faults tests/run.sh

# ASan and UBSan together over the whole suite, fuzzer included.  Like asan
# and ubsan: a clean rebuild into $(BUILD) and $(BIN) (a plain make
# afterwards rebuilds normally).  tests/run.sh sets ASAN_OPTIONS,
# UBSAN_OPTIONS and LSAN_OPTIONS (leaks inside MPI and HDF5 suppressed by
# tests/lsan.supp) unless they are set already.
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
.PHONY: sanitize
sanitize: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory tests OPT='-O1 -g' MOREFLAGS='$(SANITIZE_FLAGS)'
	@AGIPD_SANITIZER=asan+ubsan tests/run.sh

# The deflate spy (tests/deflate_spy.c): an LD_PRELOAD library with which
# tests/test_parallel.py sees which process made each stored chunk.
tests: $(BIN)/deflate_spy.so
$(BIN)/deflate_spy.so: tests/deflate_spy.c $(BUILD)/.build-flags | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(filter-out -fsanitize%,$(CFLAGS_ALL)) -fPIC -shared -o $@ $< -lz -ldl $(if $(filter yes,$(HAVE_ISAL)),-lisal)

# The raw-reader fuzzer (tests/fuzz_raw.c): FUZZ_SECONDS (default 20) of
# mutated metadata on a small simulated raw file.  make check runs it for a
# few seconds; make sanitize under ASan and UBSan.
tests: $(BIN)/fuzz_raw
$(BIN)/fuzz_raw: tests/fuzz_raw.c $(LIBS_ALL) $(wildcard include/*.h) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)

# The constants module's share part driven on its own, with no run around
# it (tests/consts_share_probe.c, run by tests/test_consts_share.py).
tests: $(BIN)/consts_share_probe
$(BIN)/consts_share_probe: tests/consts_share_probe.c $(LIBS_ALL) $(wildcard include/*.h) | $(BIN)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS_ALL) $(LIBS)

# An LD_PRELOAD library for the tests: the bytes each process really reads
# (and maps) of the constants files, per host name (tests/iotrace.c).  Not
# instrumented: the tests that load it into a sanitizer build say so.
tests: $(BIN)/iotrace.so
$(BIN)/iotrace.so: tests/iotrace.c | $(BIN)
	@echo "  LD      $@"
	@cc -std=gnu11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl -lpthread
.PHONY: fuzz
fuzz: all $(BIN)/fuzz_raw
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-20} tests/fuzz_raw.sh

# The tests run make themselves (make install, tests/test_docs.py): they see
# the instrumented build's flags, or the flags stamp above would rebuild the
# tree uninstrumented half-way through the run.  The same values as the
# OPT= and MOREFLAGS= of the asan, ubsan and sanitize recipes.
asan: export OPT := -O1 -g
asan: export MOREFLAGS := -fsanitize=address -fno-omit-frame-pointer
ubsan: export OPT := -O1 -g
ubsan: export MOREFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined
sanitize: export OPT := -O1 -g
sanitize: export MOREFLAGS := $(SANITIZE_FLAGS)
