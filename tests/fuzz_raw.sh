#!/usr/bin/env bash
# tests/fuzz_raw.sh - bin/fuzz_raw (tests/fuzz_raw.c) on a small simulated
# raw file, for FUZZ_SECONDS (default 20); under valgrind memcheck when
# AGIPD_SANITIZER=valgrind.  Prints one PASS/FAIL/SKIP fuzz_raw line.
set -u
cd "$(dirname "$0")/.."
if [ ! -x bin/fuzz_raw ] || [ ! -x bin/agipd-simulate ]; then
	echo "SKIP fuzz_raw: bin/fuzz_raw not built (make fuzz)"
	exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/agipd-fuzz.XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! bin/agipd-simulate --out-folder "$dir/sim" --modules 0 --trains 3 --cells 4 --no-truth --no-constants \
	>"$dir/sim.log" 2>&1; then
	cat "$dir/sim.log"
	echo "FAIL fuzz_raw: agipd-simulate failed"
	exit 1
fi
raw=$dir/sim/r0001/RAW-R0001-AGIPD00-S00000.h5
export FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "${AGIPD_SANITIZER:-}" = valgrind ]; then
	TMPDIR=$dir valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--suppressions=tests/valgrind.supp bin/fuzz_raw "$raw"
else
	TMPDIR=$dir bin/fuzz_raw "$raw"
fi
