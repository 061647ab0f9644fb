"""Scaling benchmark: images per second for single-process folder mode and for Ray with 1 and 2 workers.

Run from the repository root (needs the ray extra; takes a few minutes):

    python benchmarks/bench_scale.py                 # FASSEG's test faces, shipped model
    python benchmarks/bench_scale.py --faces 12

All three modes refine the same faces with the same model on this machine's cores in one
run: single-process folder mode (refine.refine_folder, ONNX Runtime using every core), Ray
with one actor using every core, and Ray with one actor per core. Ray's start (ray.init) is
reported apart; each Ray figure includes starting its actors and loading the model in them.
Ray's overhead per image = Ray's seconds per image minus single-process seconds per image,
at equal cores. Timings are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2f.config import ClusterSettings  # noqa: E402
from c2f.distributed.ray_refine import ModelSource, connect, refine_folder_on_ray  # noqa: E402
from c2f.inference.backends import load_predictor  # noqa: E402
from c2f.refine import plan_folder, refine_folder  # noqa: E402

FASSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG" / "V1"


def copy_faces(root: Path, count: int) -> tuple[Path, Path]:
    """The first count FASSEG test faces and their coarse maps, in images/ and coarse/ under root."""
    photos = sorted((FASSEG / "Test_RGB").iterdir())[:count]
    for folder, source in (("images", "Test_RGB"), ("coarse", "Test_Labels")):
        (root / folder).mkdir(parents=True)
        for photo in photos:
            shutil.copy(FASSEG / source / photo.name, root / folder / photo.name)
    return root / "images", root / "coarse"


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=24)
    arguments = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        images, coarse = copy_faces(root, arguments.faces)
        predictor, labels, uses_coarse = load_predictor(None, None)

        def single() -> None:
            pairs, _ = plan_folder(images, coarse, root / "single", None, True, False)
            assert all(o.status == "written" for o in refine_folder(predictor, labels, uses_coarse, pairs))

        def on_ray(workers: int) -> None:
            pairs, _ = plan_folder(images, coarse, root / f"ray{workers}", None, True, False)
            outcomes = refine_folder_on_ray(ModelSource(None, None), labels, pairs,
                                            cluster=ClusterSettings(workers=workers))
            assert all(o.status == "written" for o in outcomes)

        single()  # warm the caches and the session once
        seconds = {"single-process": timed(single)}
        seconds["ray.init"] = timed(lambda: connect(None, num_cpus=cores))
        for workers in (1, 2):
            seconds[f"Ray, {workers} worker(s)"] = timed(lambda: on_ray(workers))
        same = all((root / "single" / p.name).read_bytes() == (root / "ray2" / p.name).read_bytes()
                   for p in (root / "single").iterdir())
    faces = arguments.faces
    print(f"{faces} FASSEG faces, {cores} cores, shipped ONNX model; Ray outputs equal single-process: {same}")
    print(f"ray.init: {seconds.pop('ray.init'):.1f} s (once per job)")
    print("| mode | seconds | images/s | s/image | overhead/image vs single-process |")
    print("| --- | --- | --- | --- | --- |")
    base = seconds["single-process"] / faces
    for mode, total in seconds.items():
        per_image = total / faces
        print(f"| {mode} | {total:.1f} | {faces / total:.2f} | {per_image:.3f} | "
              f"{per_image - base:+.3f} s ({(per_image - base) / base:+.0%}) |")


if __name__ == "__main__":
    main()
