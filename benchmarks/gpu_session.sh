#!/usr/bin/env bash
# One device session for issue 27: the table of benchmarks/extract_gpu.py for the
# gemma-3-4b-random preset on the lent GPU, a kernel profile of the fast path, and the
# gpu-marked tests. The device gives 15 minutes in all (start-up included), so this is
# run once; it stays well under one command's 600 s (about 7 minutes expected, most of it
# compiling four batch shapes of the tower, cold, at about 40 s each).
#
# Prepare here (see ../shared/device/README.md):
#   echo '/.whl/' >> .git/info/exclude && ../shared/device/wheels.sh .whl
# then the device tool's `run` with carry [".whl"], timeout_s 600, and the command
#   bash benchmarks/gpu_session.sh
# Results land in $OUT: extract_gpu.json (the rows), extract_gpu.txt (the table, the SDPA
# sweep, the profile), pytest-gpu.txt, env.txt.
#
# Try it on CPU first (tiny-random, the project's venv, no wheels):
#   OUT=/tmp/gpu-session PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh --cpu
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ "${1:-}" = "--cpu" ]; then
  PY=${PYTHON:-python3}
  export PYTHONPATH=$PWD
  ARGS=(--quick --device cpu --sdpa-sweep --profile)
  BENCH_S=300
else
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  ARGS=(--device cuda --encoder gemma-3-4b-random --batches 1,16,64 --clips 128 --seconds 3
        --sdpa-sweep --profile)
  BENCH_S=420
  nvidia-smi > "$OUT/env.txt" 2>&1
fi
"$PY" -c "import sys, torch, transformers, numpy; print(sys.version); print('torch', torch.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)" >> "$OUT/env.txt" 2>&1

timeout "$BENCH_S" "$PY" benchmarks/extract_gpu.py "${ARGS[@]}" --json "$OUT/extract_gpu.json" \
  > "$OUT/extract_gpu.txt" 2>&1
echo "extract_gpu.py exit $?" >> "$OUT/extract_gpu.txt"
tail -n 40 "$OUT/extract_gpu.txt"

timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu \
  tests/extract/test_gemma.py tests/extract/test_fastpath.py > "$OUT/pytest-gpu.txt" 2>&1
echo "pytest -m gpu exit $?" >> "$OUT/pytest-gpu.txt"
tail -n 15 "$OUT/pytest-gpu.txt"
