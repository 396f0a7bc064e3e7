#!/usr/bin/env bash
# tests/demo.sh - the main job on a small synthetic run, 2 ranks:
# simulate 2 modules x 2 sequences, correct them with collective parallel
# HDF5, and show what came out.  Output: build/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
D=build/demo
rm -rf "$D"
mkdir -p "$D"
echo "== simulating a run: 2 modules x 2 sequences x 4 trains x 32 memory cells"
mpirun -np 2 bin/agipd-simulate --out-folder "$D/raw" --run 1 --modules 0-1 --sequences 2 \
	--trains 4 --cells 32 --seed 7
echo
echo "== correcting with 2 ranks"
mpirun -np 2 bin/agipd-correct --in-folder "$D/raw" --out-folder "$D/proc" --run 1 \
	--constants-folder "$D/raw/constants" --rel-gain --adjust-mg-baseline --ff-gain \
	--photon-energy 9.3 --report "$D/proc/report.json" $( [ -x bin/agipd-preview ] && echo --preview )
echo
echo "== output"
ls -l "$D/proc"
h5dump -H -d "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/gain" -p \
	"$D/proc/CORR-R0001-AGIPD00-S00000.h5" | grep -E 'DATASPACE|CHUNKED|FILTER|SHUFFLE|DEFLATE|FLETCHER' || true
echo "demo: done; corrected files in $D/proc"
