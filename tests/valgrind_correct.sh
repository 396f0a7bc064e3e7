#!/usr/bin/env bash
# tests/valgrind_correct.sh - agipd-correct under valgrind memcheck, on one
# rank (MPI is too noisy beyond that), on a small simulated run: every
# correction on; the serial writer with float16; a run with broken inputs (a
# truncated raw file, a missing constants file) for the error paths; a bad
# option; the input folder as output folder.  tests/run.sh runs it when
# AGIPD_SANITIZER=valgrind.  Suppressions for Open MPI's and HDF5's own
# allocations: tests/valgrind.supp.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
dir=$(mktemp -d "${TMPDIR:-/tmp}/agipd-vg.XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! bin/agipd-simulate --out-folder "$dir/sim" --modules 0-1 --sequences 2 --trains 2 --cells 2 --no-truth \
	>"$dir/sim.log" 2>&1; then
	cat "$dir/sim.log"
	echo "FAIL valgrind_correct: agipd-simulate failed"
	exit 1
fi
# The broken copy: S00001 of module 0 truncated, no constants for module 1.
mkdir -p "$dir/bad/r0001" "$dir/badc"
cp "$dir"/sim/r0001/*.h5 "$dir/bad/r0001/"
truncate -s 100000 "$dir/bad/r0001/RAW-R0001-AGIPD00-S00001.h5"
cp "$dir/sim/constants/AGIPD00.h5" "$dir/badc/"

VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=40 --suppressions=tests/valgrind.supp)
failed=0
check() {   # name, expected exit status, agipd-correct arguments...
	local name=$1 want=$2 rc
	shift 2
	mpirun -np 1 "${VG[@]}" bin/agipd-correct --run 1 "$@" >"$dir/$name.log" 2>&1
	rc=$?
	if [ "$rc" -eq "$want" ] && ! grep -q '^==[0-9]*== ' "$dir/$name.log"; then
		echo "PASS valgrind_correct_$name"
	else
		echo "FAIL valgrind_correct_$name: exit $rc (expected $want)"
		grep -v '^\(  \|--\)' "$dir/$name.log" | tail -n 120
		failed=1
	fi
}
good=(--in-folder "$dir/sim" --constants-folder "$dir/sim/constants")
check all_corrections 0 "${good[@]}" --out-folder "$dir/out1" --rel-gain --adjust-mg-baseline --ff-gain \
	--common-mode --force-mg-if-below --force-hg-if-below --photon-energy 9.3 --round-photons --data-dtype int16
check serial_float16 0 "${good[@]}" --out-folder "$dir/out2" --writer serial --data-dtype float16 --batch-frames 3
check broken_inputs 1 --in-folder "$dir/bad" --constants-folder "$dir/badc" --out-folder "$dir/out3"
check bad_option 2 "${good[@]}" --out-folder "$dir/out4" --cells 5:2
check out_is_in_folder 2 "${good[@]}" --out-folder "$dir/sim/r0001"
exit $failed
