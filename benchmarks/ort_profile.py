"""Where an ONNX model's time goes: ONNX Runtime's own profile of one padded face, summed by operator type.

Run from the repository root:

    python benchmarks/ort_profile.py                               # the shipped int8 face model
    python benchmarks/ort_profile.py --model weights/fasseg.onnx   # any exported model

Operator times are ONNX Runtime's kernel times over the timed runs, per face.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
FACE = (512, 416)  # a FASSEG face padded to multiples of 32 (rows, columns)


def profile(path: Path, threads: int, runs: int) -> tuple[float, dict[str, float], dict[str, int]]:
    """Best ms per face, and ms per face and node count by operator type, from ONNX Runtime's profiler."""
    import onnxruntime

    from c2f.inference.onnx_session import INPUT_NAME

    # A session of its own rather than c2f's open_session: profiling is switched on at creation.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        channels = session.get_inputs()[0].shape[1]
        batch = np.random.default_rng(0).random((1, channels, *FACE), dtype=np.float32)
        session.run(None, {INPUT_NAME: batch})  # warm-up, left out below
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, {INPUT_NAME: batch})
            seconds.append(time.perf_counter() - started)
        events = json.loads(Path(session.end_profiling()).read_text())
    timed = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    # Only the timed runs: the warm-up's kernels come first, one node event per node and run.
    per_run = len(timed) // (runs + 1)
    timed = timed[per_run:]
    totals: dict[str, float] = collections.Counter()
    counts: dict[str, int] = collections.Counter()
    for event in timed:
        totals[event["args"]["op_name"]] += event["dur"] / 1000 / runs
        counts[event["args"]["op_name"]] += 1
    return min(seconds) * 1000, dict(totals), {name: count // runs for name, count in counts.items()}


def print_profile(title: str, path: Path, threads: int, runs: int) -> None:
    best, totals, counts = profile(path, threads, runs)
    whole = sum(totals.values())
    print(f"\n{title} ({path}): best {best:.1f} ms per face of {runs}, {threads} threads\n")
    print("| operator | ms per face | share | nodes |\n| --- | ---: | ---: | ---: |")
    for name, milliseconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {name} | {milliseconds:.2f} | {milliseconds / whole:.1%} | {counts[name]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPOSITORY / "weights" / "fasseg.int8.onnx")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    print(f"$ python {' '.join(sys.argv)}")
    print_profile("model", arguments.model, arguments.threads, arguments.runs)


if __name__ == "__main__":
    main()
