#!/usr/bin/env bash
# tests/demo.sh - the main job on a small synthetic run, 2 ranks:
# simulate 2 modules x 5 sequences with control data and a calibration-
# database store, correct them with the facility's command line (conditions
# from the control data, constants from calibration_metadata.yml) and
# collective parallel HDF5, and show what came out.  Output: build/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
D=build/demo
rm -rf "$D"
mkdir -p "$D"
echo "== simulating a run: 2 modules x 5 sequences x 2 trains x 32 memory cells,"
echo "   its control data and a calibration-database store"
mpirun -np 2 bin/agipd-simulate --out-folder "$D/raw" --run 1 --modules 0-1 --sequences 5 \
	--trains 2 --cells 32 --seed 7 --caldb
echo
echo "== correcting with 2 ranks, the facility's command line (xfel-calibrate AGIPD CORRECT's options)"
echo "   plus the constants' calibration_metadata.yml"
mpirun -np 2 bin/agipd-correct --in-folder "$D/raw" --run 1 \
	--karabo-id SPB_DET_AGIPD1M-1 --out-folder "$D/proc" \
	--karabo-id-control SPB_IRU_AGIPD1M1 --karabo-da-control AGIPD1MCTRL00 --sequences 0-4 \
	--calibration-metadata "$D/raw/caldb/calibration_metadata.yml" \
	--rel-gain --adjust-mg-baseline --ff-gain \
	--photon-energy 9.3 --report "$D/proc/report.json" $( [ -x bin/agipd-preview ] && echo --preview )
echo
echo "== output"
ls -l "$D/proc"
h5dump -H -d "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/gain" -p \
	"$D/proc/CORR-R0001-AGIPD00-S00000.h5" | grep -E 'DATASPACE|CHUNKED|FILTER|SHUFFLE|DEFLATE|FLETCHER' || true
echo "demo: done; corrected files in $D/proc"
