#!/bin/sh
# Run ON the device (one call): sh bench/run_gpu.sh [bench/gpu.py args]
# Needs .benchdeps/ carried (bench/pack_deps.sh). Results: stdout, $OUT/gpu.json, $OUT/gpu.log.
export PYTHONPATH="$PWD/.benchdeps:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/gpu.py "$@" > "$out/gpu.log" 2>&1
rc=$?
grep -v "it/s]\|s/it]" "$out/gpu.log" | tail -c 11000
exit $rc
