#!/usr/bin/env bash
# One prepared GPU session. The project's GPU machine (one H200, no network) is lent 15 minutes at
# a time, start-up included, so this is one command that wastes none of it: its default finishes
# in about 9 minutes of wall time, and every part writes its results under $OUT before the next
# starts, so a run cut off still brings back what it finished.
#
#   bash benchmarks/gpu_run.sh [--parts "throughput notebooks"] [--dry-run]
#                              [--minutes M] [--only "simclr byol ..."] [--speed-minutes M]
#
# Parts, run in the order given (default "throughput notebooks"; the others are for a later session):
#   throughput  benchmarks/throughput.py on CUDA, small CNN and ResNet-18, against lightly (~1 min)
#   notebooks   every notebook on the full profile through nbval, one at a time, each with its wall
#               time (a notebook past NB_TIMEOUT seconds, default 150, is stopped and recorded so)
#   speed       benchmarks/simclr_speed.py: ResNet-18 SimCLR, kNN against wall time, --speed-minutes
#               (default 8)
#   references  every reference run built side by side (`sslkit reference build`, --minutes each,
#               default 5; --only picks some)
# --dry-run: the same parts on the CPU with tiny budgets (the quick profile, notebook 00 only, a
#   few steps): what CI runs (tests/test_gpu_run.py), so the script works the first time a GPU is there.
#
# What the machine lacks travels with the call: the wheels from `bash benchmarks/gpu_wheels.sh` in
# .whl/ and the CIFAR-10 tarball in .gpu/cifar10-jpeg.tar.gz (carry both: see benchmarks/RESULTS.md,
# "GPU session"). It brings back $OUT/gpu_run.log (every part's figures, the file to read),
# $OUT/results.tar.gz (the JSON results, the notebooks' timings and every log),
# $OUT/notebooks.tar.gz (the executed notebooks) and $OUT/references_*.tar.
set -uo pipefail
cd "$(dirname "$0")/.."

PARTS="throughput notebooks"
MINUTES=5
SPEED_MINUTES=8
DRY=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) PARTS="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --speed-minutes) SPEED_MINUTES="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    *) echo "gpu_run.sh: unknown argument '$1': use --parts \"PARTS\", --minutes M, --speed-minutes M, --dry-run or --only \"METHODS\"." >&2; exit 2 ;;
  esac
done
for part in $PARTS; do
  case "$part" in
    throughput|notebooks|speed|references) ;;
    *) echo "gpu_run.sh: unknown part '$part': use throughput, notebooks, speed or references." >&2; exit 2 ;;
  esac
done

OUT="${OUT:-gpu_out}"
WORK="${GPU_RUN_WORK:-.gpu}"
PY="${PYTHON:-python3}"
NB_TIMEOUT="${NB_TIMEOUT:-150}"
mkdir -p "$OUT" "$WORK/logs" "$WORK/refs" "$WORK/results"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export SSLKIT_DATA="${SSLKIT_DATA:-$PWD/data}" SSLKIT_CACHE="${SSLKIT_CACHE:-$PWD/$WORK/cache}"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu_run.log"; }
# everything small comes back in one file, rewritten after every part
pack() { tar czf "$OUT/results.tar.gz" -C "$WORK" results logs 2>/dev/null; }

# ---- what the machine lacks: wheels (benchmarks/gpu_wheels.sh) and the data
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  log "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/sslkit-site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sslkit-site .whl/*.whl \
    2>&1 | tail -3 | tee -a "$OUT/gpu_run.log"
  export PYTHONPATH="$PYTHONPATH:/tmp/sslkit-site"     # after the machine's own packages: theirs win
fi
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
  log "machine: $(uname -m), $(nproc) cores; parts: $PARTS$([ "$DRY" = 1 ] && echo ' (dry run)')"
  $PY - <<'EOF'
import torch, platform
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
} 2>&1 | tee -a "$OUT/gpu_run.log"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
else
  DEVICE=cuda
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { log "no CUDA GPU here: run with --dry-run on a CPU."; exit 2; }
fi
MONITOR=""
if command -v nvidia-smi >/dev/null && [ "$DRY" = 0 ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 > "$WORK/logs/nvidia_smi.csv" 2>&1 &
  MONITOR=$!
fi

log "decoding CIFAR-10 once into the cache"
$PY -c "from sslkit.data import load_dataset; d = load_dataset('cifar10'); print(d.name, tuple(d.train_x.shape), tuple(d.test_x.shape))" \
  2>&1 | tee -a "$OUT/gpu_run.log"

FAILED=0

# ---- throughput: sslkit's step against lightly's pipeline, both backbones
part_throughput() {
  local lightly=() sizes=(--steps 25 --warmup 5 --repeats 2)
  $PY -c "import lightly" 2>/dev/null || { lightly=(--without-lightly); log "lightly is not importable: timing sslkit's step alone"; }
  [ "$DRY" = 1 ] && sizes=(--steps 2 --warmup 1 --repeats 1 --batch-size 32)
  for backbone in small_cnn resnet18; do
    log "throughput: $backbone"
    if $PY benchmarks/throughput.py --device "$DEVICE" --backbone "$backbone" "${sizes[@]}" "${lightly[@]}" \
         --json "$WORK/results/throughput_${DEVICE}_${backbone}.json" > "$WORK/logs/throughput_$backbone.log" 2>&1; then
      grep -E "images/s median|ratio|no ratio" "$WORK/logs/throughput_$backbone.log" | sed 's/^/    /' | tee -a "$OUT/gpu_run.log"
    else
      log "FAILED throughput $backbone: $(tail -n 3 "$WORK/logs/throughput_$backbone.log" | tr '\n' ' ')"; FAILED=1
    fi
    pack
  done
}

# ---- notebooks: each on the full profile through nbval, its wall time recorded
part_notebooks() {
  if ! $PY -c "import nbval, ipykernel, ipywidgets, umap" 2>"$WORK/logs/notebook_imports.log"; then
    log "FAILED notebooks: nbval, ipykernel, ipywidgets or umap-learn missing (bash benchmarks/gpu_wheels.sh, carry .whl): $(tail -n 1 "$WORK/logs/notebook_imports.log")"
    FAILED=1; return
  fi
  local profile=full notebooks=(notebooks/*.ipynb)
  if [ "$DRY" = 1 ]; then profile=quick; notebooks=(notebooks/00_*.ipynb); fi
  local executed="$WORK/executed" timings="$WORK/results/notebooks.tsv"
  mkdir -p "$executed"
  local executed_abs
  executed_abs=$(cd "$executed" && pwd)
  printf 'notebook\tprofile\tseconds\tstatus\n' > "$timings"
  for nb in "${notebooks[@]}"; do
    local name start status seconds
    name=$(basename "$nb" .ipynb)
    start=$SECONDS
    SSLKIT_PROFILE=$profile SSLKIT_EXECUTED="$executed_abs" MPLBACKEND=Agg timeout "$NB_TIMEOUT" \
      $PY -m pytest "$nb" --nbval-lax -q -p no:cacheprovider --durations=5 > "$WORK/logs/notebook_$name.log" 2>&1
    status=$?
    seconds=$((SECONDS - start))
    case $status in 0) status=passed ;; 124) status="stopped after ${NB_TIMEOUT} s" ;; *) status="failed ($status)"; FAILED=1 ;; esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$profile" "$seconds" "$status" >> "$timings"
    log "notebook $name ($profile profile): $seconds s, $status"
    tar czf "$OUT/notebooks.tar.gz" -C "$WORK" executed 2>/dev/null
    pack
  done
}

# ---- speed: the SimCLR speed run
part_speed() {
  local args=(--device "$DEVICE" --minutes "$SPEED_MINUTES")
  [ "$DRY" = 1 ] && args=(--device cpu --minutes 0.1 --eval-every 3 --eval-subset 500 200 --backbone small_cnn --batch-size 64)
  log "SimCLR speed run: ${args[*]}"
  if $PY benchmarks/simclr_speed.py "${args[@]}" --json "$WORK/results/simclr_speed_$DEVICE.json" \
       > "$WORK/logs/simclr_speed.log" 2>&1; then
    grep -E "kNN|time to|best" "$WORK/logs/simclr_speed.log" | sed 's/^/    /' | tee -a "$OUT/gpu_run.log"
  else
    log "FAILED speed run: $(tail -n 3 "$WORK/logs/simclr_speed.log" | tr '\n' ' ')"; FAILED=1
  fi
  pack
}

# ---- references: one process per reference, side by side (the small backbones leave an H200
# mostly idle). name | method | group | extra arguments. The jigsaw rows are the variants measured
# against each other (benchmarks/RESULTS.md). Each group comes back as one tar file (the device
# returns files of at most 16 MiB).
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
  "simsiam|simsiam|d|"
  "barlowtwins|barlowtwins|d|"
  "vicreg|vicreg|d|"
  "dino|dino|b|"
)
part_references() {
  local budget=(--minutes "$MINUTES") eval=()
  [ "$DRY" = 1 ] && { budget=(--epochs 0.01); eval=(--eval-subset 500 200); }
  # each build process: a couple of CPU threads for its kNN and probes (16 cores, ~10 processes)
  local pids=() entry
  for job in "${JOBS[@]}"; do
    IFS='|' read -r name method group extra <<< "$job"
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    local variant=()
    [ "$name" != "$method" ] && variant=(--name "$name")
    # shellcheck disable=SC2086
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" $PY -m sslkit reference build "$method" --device "$DEVICE" "${budget[@]}" \
        "${eval[@]}" "${variant[@]}" $extra --dir "$WORK/refs" --work-dir "$WORK/work" > "$WORK/logs/$name.log" 2>&1 &
    pids+=("$!:$name:$group")
    log "started reference $name (pid $!)"
  done
  for entry in "${pids[@]}"; do
    IFS=':' read -r pid name group <<< "$entry"
    if wait "$pid"; then
      log "finished reference $name: $(tail -n 1 "$WORK/logs/$name.log")"
    else
      log "FAILED reference $name: $(tail -n 3 "$WORK/logs/$name.log" | tr '\n' ' ')"; FAILED=1
    fi
    # bring back what is finished so far, whatever happens next
    local files=()
    for j in "${JOBS[@]}"; do
      IFS='|' read -r n _ g _ <<< "$j"
      [ "$g" = "$group" ] && [ -f "$WORK/refs/$n.json" ] && files+=("$n.json" "$n.safetensors")
    done
    [ ${#files[@]} -gt 0 ] && tar cf "$OUT/references_$group.tar" -C "$WORK/refs" "${files[@]}"
    pack
  done
  $PY -m sslkit reference list --dir "$WORK/refs" 2>&1 | tee -a "$OUT/gpu_run.log"
}

for part in $PARTS; do
  log "---- part: $part"
  "part_$part"
done
[ -n "$MONITOR" ] && kill "$MONITOR" 2>/dev/null
pack
log "done (failed: $FAILED)"
exit $FAILED
