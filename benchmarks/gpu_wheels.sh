#!/usr/bin/env bash
# The wheels the GPU machine's Python (3.12, no network; it holds torch, torchvision, numpy,
# scikit-learn, matplotlib, tqdm, safetensors, numba, pytest, pytorch-lightning, ...) lacks for
# benchmarks/gpu_run.sh: nbval and a Jupyter kernel (the notebooks part), ipywidgets and
# umap-learn (the notebooks' own imports) and lightly (the throughput part). Downloaded here into
# the ignored .whl/ from the package registry, one version each and no dependencies resolved
# (the list below names them); gpu_run.sh installs them there with --no-index --no-deps.
#
#   bash benchmarks/gpu_wheels.sh        # then carry .whl (and .gpu) in the device call
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
PY="${PYTHON:-python3}"
PACKAGES=(
  # nbval and the kernel it runs
  nbval nbformat fastjsonschema jsonschema jsonschema-specifications referencing rpds-py
  jupyter_client jupyter_core ipykernel ipython ipython_pygments_lexers traitlets comm debugpy
  matplotlib-inline nest_asyncio pyzmq tornado jedi parso prompt_toolkit wcwidth pexpect ptyprocess
  decorator stack_data asttokens executing pure_eval platformdirs
  # the notebooks' imports
  ipywidgets widgetsnbextension jupyterlab_widgets umap-learn pynndescent
  # the throughput benchmark's comparison
  lightly lightly_utils aenum hydra-core omegaconf antlr4-python3-runtime
)
mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$DEST" "${PACKAGES[@]}"
echo "$(ls "$DEST" | wc -l) wheels in $DEST, $(du -sh "$DEST" | cut -f1)"
