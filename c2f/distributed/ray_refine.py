"""Folder mode on a Ray cluster: a Ray Data pipeline whose actors each load the model once.

The driver plans the folder exactly as single-process folder mode does
(refine.plan_folder). Every pair to write becomes one row, and every huge photo
one row per window batch (window_batches.py); a pool of actors reads, refines and
writes each row's outputs itself with c2f's atomic writes, so the files are the
single-process ones byte for byte and an interrupted job resumes with
--skip-existing. Rows come back in stem order and become the same PairOutcomes,
which the command line renders as it renders single-process folder mode.
Inputs and outputs must be on a file system every node sees.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from c2f.config import ClusterSettings, WindowSettings
from c2f.distributed.window_batches import (
    compute_window_batch,
    discard_windows_folder,
    finish_split_pair,
    prepare_windows_folder,
    window_batches,
    windows_folder_for,
)
from c2f.errors import C2FError
from c2f.io.label_sets import LabelSet
from c2f.refine import FolderPair, PairOutcome, RefineResult, read_inputs, refine_pair

WHOLE_PAIR = -1  # a row's start for a pair refined whole by one actor


def import_ray():
    """The ray module, or a C2FError saying how to install it."""
    # c2f says what matters; Ray's notices (Ray Data's plans and progress) would
    # drown it. Read by Ray when it is imported and started, so set first; a user's own settings win.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    try:
        import ray
    except ImportError:
        raise C2FError('--ray and --workers need Ray: pip install "c2f[ray]".') from None
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at address (or RAY_ADDRESS), else start a local Ray; True when this call started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    logging.getLogger("ray").setLevel(logging.ERROR)
    quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=num_cpus, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise C2FError(f"cannot reach the Ray cluster at {address} ({str(error).splitlines()[0]}); "
                       "check the address (ray start --head prints it).") from None
    return True


@dataclass(frozen=True)
class ModelSource:
    """What an actor needs to load its own predictor (backends.load_predictor's arguments); weights is the file
    `c2f refine` resolved for --model/--precision, or None for the default shipped model."""

    weights: Path | None
    labels: LabelSet | None  # the label set the user asked for, checked against the model's
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"  # bf16 runs the file on the torch backend in bfloat16 (backends.run_precision)


@dataclass(frozen=True)
class FolderJob:
    """Everything an actor needs besides its row: how to refine (small, so no actor waits on the object store)."""

    settings: WindowSettings
    output_format: str | None
    strict: bool
    windows_dir: Path | None


class PairRefiner:
    """A Ray actor: loads the model once, then refines, for every row, one pair or one window batch."""

    def __init__(self, source: ModelSource, job: FolderJob, threads: int):
        # Each actor gets its share of the cores; ONNX Runtime (onnx_session.thread_count) and torch honour this.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        from c2f.inference.backends import choose_backend, load_predictor, model_file

        backend = source.backend
        if backend == "auto":  # as load_predictor will choose it
            backend = choose_backend(model_file(source.weights, backend, source.precision))
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
        self.predictor, self.labels, self.uses_coarse = load_predictor(source.weights, source.labels,
                                                                       source.backend, source.device,
                                                                       precision=source.precision)
        self.job = job
        self.cached: tuple[str, object] | None = None  # the last split photo's inputs, read once per actor

    def __call__(self, row: dict) -> dict:
        pair, job = row_pair(row), self.job
        try:
            if row["start"] == WHOLE_PAIR:
                outcome = refine_pair(self.predictor, self.labels, self.uses_coarse, pair, job.settings,
                                      job.output_format, job.strict, job.windows_dir)
                return outcome_row(outcome, row)
            if self.cached is None or self.cached[0] != pair.stem:
                self.cached = (pair.stem, read_inputs(pair.photo, pair.coarse, self.labels))
            entries = compute_window_batch(self.predictor, self.labels, self.uses_coarse, pair, job.settings,
                                           job.strict, windows_folder_for(pair, job.windows_dir), row["start"],
                                           row["end"], job.windows_dir is not None, self.cached[1])
            return result_row(row, "computed", entries=json.dumps(entries))
        except (C2FError, OSError) as error:  # on a cluster a failing disk or node fails its pairs, not the job
            return result_row(row, "failed", str(error))


def result_row(row: dict, status: str, message: str = "", entries: str = "", result: RefineResult | None = None
               ) -> dict:
    """A flat row Ray Data can carry, with the same columns whatever became of the row."""
    return {**row, "status": status, "message": message, "entries": entries,
            "far_pixels": result.far_pixels if result else 0,
            "changed_fraction": result.changed_fraction if result else 0.0,
            "photo_note": (result.photo_note or "") if result else ""}


def pair_row(pair: FolderPair, start: int = WHOLE_PAIR, end: int = WHOLE_PAIR) -> dict:
    """A row of work: a pair to write, whole or windows start..end-1 of it, as plain strings and numbers."""
    return {"stem": pair.stem, "photo": str(pair.photo), "coarse": str(pair.coarse), "output": str(pair.output),
            "overlay": str(pair.overlay) if pair.overlay else "", "start": start, "end": end}


def row_pair(row: dict) -> FolderPair:
    """The pair a row of work names."""
    return FolderPair(row["stem"], Path(row["photo"]), Path(row["coarse"]), Path(row["output"]),
                      Path(row["overlay"]) if row["overlay"] else None, "write")


def outcome_row(outcome: PairOutcome, row: dict) -> dict:
    """A PairOutcome as a flat row."""
    return result_row(row, outcome.status, outcome.message, result=outcome.result)


def row_outcome(row: dict, pair: FolderPair) -> PairOutcome:
    """The PairOutcome a row of a whole pair stands for."""
    if row["status"] != "written":
        return PairOutcome(pair.stem, row["status"], row["message"], pair.coarse)
    result = RefineResult(pair.output, int(row["far_pixels"]), float(row["changed_fraction"]),
                          row["photo_note"] or None)
    return PairOutcome(pair.stem, "written", coarse=pair.coarse, result=result)


def cluster_workers(ray, cluster: ClusterSettings, device: str) -> tuple[int, int, float]:
    """How many actors to start, the CPU threads of each, and the GPUs each takes (0 on CPU clusters)."""
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    if gpus and device != "cpu":
        workers = cluster.workers or gpus
        return workers, max(1, cpus // workers), min(1.0, gpus / workers)
    workers = cluster.workers or cpus
    largest_node = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]), default=1)
    return workers, max(1, min(largest_node, cpus // workers)), 0.0


def refine_folder_on_ray(source: ModelSource, labels: LabelSet, pairs: list[FolderPair],
                         settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                         strict: bool = False, windows_dir: Path | None = None,
                         cluster: ClusterSettings = ClusterSettings()) -> Iterator[PairOutcome]:
    """Yield one outcome per planned pair in stem order, as refine.refine_folder does, computed by Ray actors.

    Needs a connected Ray (connect). labels is the model's label set, for stitching split photos.
    """
    ray = import_ray()
    cluster.check()
    job = FolderJob(settings, output_format, strict, windows_dir)
    rows, batches = [], {}
    for pair in pairs:
        if pair.decision != "write":
            continue
        batches[pair.stem] = window_batches(pair, settings, cluster)
        if batches[pair.stem]:
            prepare_windows_folder(windows_folder_for(pair, windows_dir))
        rows += [pair_row(pair, start, end) for start, end in batches[pair.stem] or [(WHOLE_PAIR, WHOLE_PAIR)]]
    results = iter(())
    if rows:
        results = run_pipeline(ray, rows, source, job, cluster)
    try:
        for pair in pairs:
            if pair.decision != "write":
                yield refine_pair(None, labels, False, pair)  # skipped or refused, as the plan says
            elif not batches[pair.stem]:
                yield row_outcome(next(results), pair)
            else:
                yield finish_split(labels, pair, [next(results) for _ in batches[pair.stem]], job)
    finally:
        close = getattr(results, "close", None)
        if close:
            close()


def run_pipeline(ray, rows: list[dict], source: ModelSource, job: FolderJob,
                 cluster: ClusterSettings) -> Iterator[dict]:
    """The Ray Data pipeline: rows in, one result row per input row out, in the input's order."""
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # outcomes in stem order, as single-process folder mode
    context.enable_progress_bars = False  # the command line draws its own
    workers, threads, gpus = cluster_workers(ray, cluster, source.device)
    with warnings.catch_warnings():  # max_restarts travels as a remote argument, which Ray 2.60 calls deprecated
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        refined = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            PairRefiner, fn_constructor_kwargs={"source": source, "job": job, "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(rows))), num_cpus=threads, num_gpus=gpus,
            max_restarts=0)  # a failed actor fails its pairs (the summary names them; --skip-existing resumes)
    return iter(refined.iter_rows())


def finish_split(labels: LabelSet, pair: FolderPair, results: list[dict], job: FolderJob) -> PairOutcome:
    """Stitch a split photo from its computed batches into its fine map; a failed batch fails the pair."""
    failed = [row["message"] for row in results if row["status"] != "computed"]
    try:
        if failed:
            raise C2FError(failed[0])
        entries = [entry for row in results for entry in json.loads(row["entries"])]
        result = finish_split_pair(labels, pair, job.settings, windows_folder_for(pair, job.windows_dir),
                                   entries, job.output_format, job.windows_dir is not None)
    except C2FError as error:
        discard_windows_folder(pair, job.windows_dir)
        return PairOutcome(pair.stem, "failed", str(error), pair.coarse)
    return PairOutcome(pair.stem, "written", coarse=pair.coarse, result=result)
