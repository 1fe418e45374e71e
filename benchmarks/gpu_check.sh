#!/usr/bin/env bash
# The GPU check of visiontasks, for a fresh GPU machine: install, the CUDA tests, two timings, one
# summary table.
#
# NOT YET RUN ON A GPU: it was written when no GPU was lent to this project; only its --dry-run has
# run (on a CPU, tests/test_gpu_check.py). The budget below is an estimate, not a measurement.
#
#   bash benchmarks/gpu_check.sh              # on a GPU machine (about 6 minutes on one H200, estimated)
#   bash benchmarks/gpu_check.sh --dry-run    # the same steps at tiny sizes, on any machine
#
# Steps (each one's output also goes to OUT/STEP.log; a failed step is reported and the next runs):
#   1. install: `make install` (a .venv with `pip install -e ".[test,tensorboard]"`, as the Makefile
#      does; needs the package index). Skipped with --no-install or VISIONTASKS_SKIP_INSTALL=1, which
#      use $PYTHON (default python3) as it is.
#   2. pytest_gpu: `pytest -m gpu` (tests/test_gpu.py: 16-mixed and bf16-mixed fits of every task
#      family, channels_last, pinned memory, 2-GPU DDP when there are 2 GPUs, export of a CUDA-trained
#      checkpoint; skipped without CUDA).
#   3. precision: benchmarks/precision_throughput.py: Faster R-CNN R50-FPN training images/s on
#      COCO128 at 640 px, batch 8, under 32-true, 16-mixed and bf16-mixed, `visiontasks fit` vs a
#      torchvision-references-style loop, with GPU utilisation (nvidia-smi) and peak memory.
#   4. end_to_end: benchmarks/end_to_end.py with the default loader settings (ResNet-18 on
#      hymenoptera, Faster R-CNN MobileNet v2 FPN on COCO128; 3 epochs, 1 round): images/s and GPU
#      utilisation of fit and of the plain loop.
#   5. summary: ONE table (benchmarks/gpu_check_summary.py) of everything above.
#
# Data: COCO128 and hymenoptera under ../shared/data relative to the repository (as the benchmarks
# expect; --dry-run generates its own). Options: --out DIR (default runs/gpu_check), --no-install.
# --dry-run: generated images, 2 training steps at 128 px, 16-mixed left out on a CPU, LeNet-5 on
# 800 generated digits for end_to_end; no nvidia-smi needed. Exit status: 0 when every step passed.
set -u -o pipefail

DRY=0
INSTALL=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "${VISIONTASKS_SKIP_INSTALL:-0}" = "1" ] && INSTALL=0

cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
: > "$OUT/steps.tsv"
FAILED=0

# run_step NAME COMMAND...: the command's output to the console and OUT/NAME.log, its exit status
# and seconds to OUT/steps.tsv
run_step() {
  local name="$1"; shift
  echo "== $name: $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >> "$OUT/steps.tsv"
  [ "$rc" -eq 0 ] || { FAILED=1; echo "== $name failed (exit $rc); see $OUT/$name.log"; }
  return 0
}

if [ "$INSTALL" = "1" ]; then
  run_step install make install
  PY="$PWD/.venv/bin/python"
else
  PY="${PYTHON:-python3}"
fi

echo "== machine"
if command -v nvidia-smi > /dev/null; then nvidia-smi -L; fi
"$PY" -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, '| CUDA:', c, '|', torch.cuda.get_device_name() if c else 'CPU only', '| bf16:', c and torch.cuda.is_bf16_supported())" || FAILED=1

run_step pytest_gpu "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" --junitxml "$OUT/pytest_gpu.xml" tests

if [ "$DRY" = "1" ]; then
  run_step precision "$PY" benchmarks/precision_throughput.py --dry-run --work-dir "$WORK" --json "$OUT/precision.json"
  run_step end_to_end "$PY" benchmarks/end_to_end.py --cases lenet5 --epochs 1 --repeats 1 --lenet-images 800 \
    --work-dir "$WORK" --json "$OUT/end_to_end.json"
else
  run_step precision "$PY" benchmarks/precision_throughput.py --work-dir "$WORK" --json "$OUT/precision.json"
  run_step end_to_end "$PY" benchmarks/end_to_end.py --cases resnet18,faster_rcnn --epochs 3 --repeats 1 \
    --work-dir "$WORK" --json "$OUT/end_to_end.json"
fi

echo
echo "== summary ($([ "$DRY" = "1" ] && echo "dry run: tiny sizes, the figures mean nothing" || echo "GPU check"); files in $OUT)"
"$PY" benchmarks/gpu_check_summary.py "$OUT" || FAILED=1
exit "$FAILED"
