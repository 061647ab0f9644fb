#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, train two epochs on CUDA, refine FASSEG faces on CUDA
# with both backends, check that torch and ONNX Runtime agree, and print time per epoch and per face.
#
#   benchmarks/gpu_check.sh /path/to/FASSEG          # needs c2f's dependencies with CUDA builds:
#                                                    # torch with CUDA, onnxruntime-gpu (c2f[train,gpu])
#
# Runs the checkout it lies in (PYTHONPATH), with ${PYTHON:-python3}. Exits 1 with one line when there
# is no GPU, when torch or ONNX Runtime cannot use it, or when a check fails. Takes a few minutes.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1/V1" ] || [ ! -d "$1/V2" ]; then
    echo "usage: $0 FASSEG_DIR  (the FASSEG folder holding V1/ and V2/)" >&2
    exit 2
fi
fasseg="$(cd "$1" && pwd)"
repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
export PYTHONPATH="$repository${PYTHONPATH:+:$PYTHONPATH}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU here (nvidia-smi finds none); run this on a machine with one." >&2
    exit 1
fi
nvidia-smi -L
"$python" - <<'EOF'
import sys
try:
    import torch
except ImportError:
    sys.exit('error: torch is not installed: pip install "c2f[train,gpu]" (a CUDA build of torch)')
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA GPU (a CPU-only build?); install a CUDA build of torch.")
import onnxruntime
if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
    sys.exit("error: this ONNX Runtime has no CUDA provider: "
             'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "c2f[gpu]"')
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}, bf16: {torch.cuda.is_bf16_supported()}; "
      f"onnxruntime {onnxruntime.__version__}")
EOF

work="$(mktemp -d "${TMPDIR:-/tmp}/c2f-gpu.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== training 2 epochs on CUDA (the default recipe otherwise)"
"$python" -m c2f train --data "$fasseg" --out "$work/run" --epochs 2 --device cuda
"$python" -m c2f export --weights "$work/run/model.safetensors" --output "$work/run/model.onnx"

echo "== refining on CUDA with both backends"
"$python" - "$fasseg" "$work/run" <<'EOF'
import csv
import sys
import time
from pathlib import Path

import numpy as np

import c2f
from c2f.inference.network_input import network_input
from c2f.io.label_maps import read_label_map
from c2f.io.photos import read_photo
from c2f.shipped import default_weights_path

fasseg, run = Path(sys.argv[1]), Path(sys.argv[2])
with open(run / "log.csv") as handle:
    rows = list(csv.DictReader(handle))
for row in rows:
    print(f"epoch {row['epoch']}: {float(row['seconds']):.1f} s, validation accuracy "
          f"{float(row['val_accuracy']):.2%}, mIoU {float(row['val_miou']):.3f}")

photos = sorted((fasseg / "V1" / "Test_RGB").glob("*.bmp"))[:20]
coarse = [fasseg / "V1" / "Test_Labels" / photo.name for photo in photos]


def failed_note(note: str) -> None:
    sys.exit(f"error: the GPU was not used: {note}")


for label, weights in (("shipped", None), ("trained", run)):
    sources = {"torch": (weights / "model.safetensors") if weights else default_weights_path(),
               "onnx": (weights / "model.onnx") if weights else None}
    refiners = {backend: c2f.Refiner(sources[backend], backend=backend, device="cuda", on_note=failed_note)
                for backend in ("torch", "onnx")}
    maps, seconds = {}, {}
    for backend, refiner in refiners.items():
        refiner.refine(photos[0], coarse[0])  # warm-up: CUDA context, cuDNN kernel choice
        started = time.perf_counter()
        maps[backend] = [refiner.refine(photo, coarse_map) for photo, coarse_map in zip(photos, coarse)]
        seconds[backend] = (time.perf_counter() - started) / len(photos)
    # Logits of one whole face from both backends, and the maps of every face.
    labels = refiners["torch"].labels
    photo = read_photo(photos[0])
    coarse_ids = read_label_map(coarse[0], labels).class_ids
    height, width = (side // 32 * 32 for side in photo.shape[:2])
    batch = network_input(photo[:height, :width], coarse_ids[:height, :width], labels.num_classes)[None]
    logits = {backend: np.asarray(refiner.predictor(batch), dtype=np.float32) for backend, refiner in refiners.items()}
    difference = float(np.abs(logits["torch"] - logits["onnx"]).max())
    agreement = float(np.mean([np.mean(a == b) for a, b in zip(maps["torch"], maps["onnx"])]))
    print(f"{label} model: {seconds['torch'] * 1000:.0f} ms per face (torch, CUDA), "
          f"{seconds['onnx'] * 1000:.0f} ms per face (ONNX Runtime, CUDA), {len(photos)} faces; "
          f"largest logit difference {difference:.1e}, maps agree on {agreement:.4%} of pixels")
    if not (difference < 5e-2 and agreement > 0.999):
        sys.exit(f"error: torch and ONNX Runtime disagree on CUDA ({label} model): logits by {difference:.2g}, "
                 f"maps on {1 - agreement:.3%} of pixels.")
print("gpu check passed")
EOF
