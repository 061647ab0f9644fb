"""Peak memory of `c2f refine` on big photos, and how it grows per megapixel.

Run from the repository root:

    python benchmarks/bench_memory.py                        # 25 and 100 MP, a tiny random model
    python benchmarks/bench_memory.py --sizes 6000x4000 --default-model

One `c2f refine` command per photo in a fresh process; its peak is the maximum resident set
size from /usr/bin/time -v. The photos are the shipped example resized (bench_speed.make_photo),
with the coarse map saved both as a palette PNG (as bench_speed saves it) and as an RGB colour
PNG, the two ways c2f decodes coarse images. By default the network is a tiny random-weights
U-Net (width 2, depth 4, FASSEG's labels, exported to float32 ONNX): what the pipeline outside
the network holds (photo, coarse map, fine map, stitching bands) barely depends on the network,
so the tiny one measures it at a fraction of the CPU time. --default-model runs the shipped
int8 model instead, whose windows add their own, size-independent memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import make_photo, timed_command, tiny_model  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" as (rows, columns)."""
    width, height = (int(part) for part in text.lower().split("x"))
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["5000x5000", "10000x10000"], help="WIDTHxHEIGHT photos")
    parser.add_argument("--coarse", nargs="+", default=["palette", "color"], choices=["palette", "color"],
                        help="how the coarse map is stored")
    parser.add_argument("--default-model", action="store_true", help="the shipped int8 model, not a tiny one")
    arguments = parser.parse_args()
    print("| photo | coarse map | model | s per command | peak memory (GiB) | GiB per MP |\n"
          "| --- | --- | --- | ---: | ---: | ---: |")
    peaks: dict[str, list[tuple[float, float]]] = {kind: [] for kind in arguments.coarse}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = [] if arguments.default_model else ["--weights", str(tiny_model(folder))]
        model_name = "shipped int8" if arguments.default_model else "tiny (width 2)"
        for text in arguments.sizes:
            size = parse_size(text)
            megapixels = size[0] * size[1] / 1e6
            photo, palette_coarse = make_photo(folder, megapixels, size)
            color_coarse = folder / f"coarse_{megapixels:g}_color.png"
            with Image.open(palette_coarse) as image:
                image.convert("RGB").save(color_coarse)
            for kind, coarse in (("palette", palette_coarse), ("color", color_coarse)):
                if kind not in arguments.coarse:
                    continue
                command = [sys.executable, "-m", "c2f", "refine", str(photo), str(coarse), "-o",
                           str(folder / "fine.png"), "--overwrite", "--max-megapixels", str(max(64, megapixels * 1.1)),
                           *model]
                seconds, peak = timed_command(command)
                peaks[kind].append((megapixels, peak))
                print(f"| {size[1]} x {size[0]} ({megapixels:.0f} MP) | {kind} | {model_name} | {seconds:.1f} | "
                      f"{peak:.2f} | {peak / megapixels:.4f} |", flush=True)
            for path in (photo, palette_coarse, color_coarse):
                path.unlink()
    for kind, points in peaks.items():
        if len(points) >= 2:
            (small, small_peak), (big, big_peak) = points[0], points[-1]
            slope = (big_peak - small_peak) / (big - small)
            print(f"\n{kind} coarse map: the peak grows by {slope * 2**30 / 1e6:.1f} bytes per pixel between "
                  f"{small:.0f} and {big:.0f} MP; at 400 MP: {big_peak + slope * (400 - big):.2f} GiB with this model.")


if __name__ == "__main__":
    main()
