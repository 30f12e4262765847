#!/usr/bin/env bash
# One prepared GPU session (the project's GPU machine is lent 15 minutes at a time, start-up
# included, and has no network): builds every reference run on CUDA, all methods at once (the
# small backbones leave an H200 mostly idle, so one process per method shares it), then brings
# back the weights, cards and logs. Every part writes its results under $OUT before the next
# starts, so a run cut off still returns what it finished.
#
#   bash benchmarks/gpu_run.sh [--minutes M] [--dry-run] [--only "simclr byol ..."]
#
# --minutes: each reference's wall-clock training budget (default 5; the card records the
#   epochs it reached). --dry-run: CPU, a few steps, evaluation on a subset: what CI runs, so the
#   script works the first time a GPU is there. Data: data/cifar10-jpeg, else the tarball
#   .gpu/cifar10-jpeg.tar.gz carried to the GPU machine (see benchmarks/RESULTS.md, "GPU session").
set -uo pipefail
cd "$(dirname "$0")/.."

MINUTES=5
DRY=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    *) echo "gpu_run.sh: unknown argument '$1': use --minutes M, --dry-run or --only \"METHODS\"." >&2; exit 2 ;;
  esac
done

OUT="${OUT:-gpu_out}"
WORK="${GPU_RUN_WORK:-.gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" "$WORK/logs" "$WORK/refs"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export SSLKIT_DATA="${SSLKIT_DATA:-$PWD/data}" SSLKIT_CACHE="${SSLKIT_CACHE:-$PWD/$WORK/cache}"
# each build process: a couple of CPU threads for its kNN and probes (16 cores, ~10 processes)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu_run.log"; }

# ---- data
if [ ! -d "$SSLKIT_DATA/cifar10-jpeg/train" ]; then
  if [ -f "$WORK/cifar10-jpeg.tar.gz" ]; then
    log "extracting $WORK/cifar10-jpeg.tar.gz"
    mkdir -p "$SSLKIT_DATA/.cifar10-jpeg.tmp" && tar xzf "$WORK/cifar10-jpeg.tar.gz" -C "$SSLKIT_DATA/.cifar10-jpeg.tmp" \
      && mv "$SSLKIT_DATA/.cifar10-jpeg.tmp" "$SSLKIT_DATA/cifar10-jpeg"
  else
    log "no CIFAR-10 at $SSLKIT_DATA/cifar10-jpeg and no $WORK/cifar10-jpeg.tar.gz: copy ../shared/data/cifar10-jpeg.tar.gz there first."
    exit 2
  fi
fi

# ---- the machine
{
  log "machine: $(uname -m), $(nproc) cores"
  $PY - <<'EOF'
import torch, platform
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
} 2>&1 | tee -a "$OUT/gpu_run.log"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  BUDGET=(--epochs 0.01)
  EVAL=(--eval-subset 500 200)
else
  DEVICE=cuda
  BUDGET=(--minutes "$MINUTES")
  EVAL=()
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { log "no CUDA GPU here: run with --dry-run on a CPU."; exit 2; }
fi

log "decoding CIFAR-10 once into the cache"
$PY -c "from sslkit.data import load_dataset; d = load_dataset('cifar10'); print(d.name, tuple(d.train_x.shape), tuple(d.test_x.shape))" \
  2>&1 | tee -a "$OUT/gpu_run.log"

# ---- the builds: one process per reference, side by side
# name | method | group | extra arguments. The jigsaw rows are the variants measured against each
# other (benchmarks/RESULTS.md): the paper's context-free 3x3 puzzles and others. Each group comes
# back as one tar file (the device returns files of at most 16 MiB).
JOBS=(
  "rotation|rotation|a|"
  "simclr|simclr|a|"
  "moco|moco|a|"
  "byol|byol|a|"
  "supervised|supervised|a|"
  "mae|mae|b|"
  "jigsaw|jigsaw|b|"
  "jigsaw-3x3-tiles|jigsaw|c|--config grid=3 --config num_permutations=100 --config whole_image=false --config tile_dim=256"
  "jigsaw-2x2-tiles|jigsaw|c|--config whole_image=false"
  "jigsaw-3x3-whole|jigsaw|c|--config grid=3 --config num_permutations=100"
)
MONITOR=""
if command -v nvidia-smi >/dev/null && [ "$DRY" = 0 ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > "$OUT/nvidia_smi.csv" 2>&1 &
  MONITOR=$!
fi
PIDS=()
for job in "${JOBS[@]}"; do
  IFS='|' read -r name method group extra <<< "$job"
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  variant=()
  [ "$name" != "$method" ] && variant=(--name "$name")
  # shellcheck disable=SC2086
  $PY -m sslkit reference build "$method" --device "$DEVICE" "${BUDGET[@]}" "${EVAL[@]}" "${variant[@]}" $extra \
      --dir "$WORK/refs" --work-dir "$WORK/work" > "$WORK/logs/$name.log" 2>&1 &
  PIDS+=("$!:$name:$group")
  log "started $name (pid $!)"
done

FAILED=0
for entry in "${PIDS[@]}"; do
  IFS=':' read -r pid name group <<< "$entry"
  if wait "$pid"; then
    log "finished $name: $(tail -n 1 "$WORK/logs/$name.log")"
  else
    log "FAILED $name: $(tail -n 3 "$WORK/logs/$name.log" | tr '\n' ' ')"
    FAILED=1
  fi
  # bring back what is finished so far, whatever happens next
  files=()
  for j in "${JOBS[@]}"; do
    IFS='|' read -r n _ g _ <<< "$j"
    [ "$g" = "$group" ] && [ -f "$WORK/refs/$n.json" ] && files+=("$n.json" "$n.safetensors")
  done
  [ ${#files[@]} -gt 0 ] && tar cf "$OUT/references_$group.tar" -C "$WORK/refs" "${files[@]}"
  tar czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null
done
[ -n "$MONITOR" ] && kill "$MONITOR" 2>/dev/null
$PY -m sslkit reference list --dir "$WORK/refs" 2>&1 | tee -a "$OUT/gpu_run.log"
log "done (failed: $FAILED)"
exit $FAILED
