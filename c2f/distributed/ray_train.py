"""Data-parallel training on Ray Train: PyTorch DistributedDataParallel over the one epoch skeleton.

Ray Train rather than torchrun: the same `pip install "c2f[ray]"` that runs refine on a
cluster also trains on it, from one command on one machine (torchrun needs a launch on
every node and a rendezvous address), and Ray Train sets up the process group itself: gloo
on CPUs, NCCL when every worker gets a GPU. Every worker runs training.loop.train_from_folder with
its rank: its share of each epoch's crops (epoch_share, from (seed, epoch)), gradients
all-reduced by DDP, rank 0 alone writing checkpoint, log and curves; --resume loads the
checkpoint on every rank. The run folder must be on a file system every node sees.
"""

from __future__ import annotations

from pathlib import Path

from c2f.config import TrainConfig
from c2f.distributed.ray_refine import connect, import_ray
from c2f.errors import C2FError
from c2f.io.label_sets import LabelSet
from c2f.training.run_state import CHECKPOINT_NAME


def average_over_workers(figures: dict[str, float]) -> dict[str, float]:
    """Each figure's mean over the process group."""
    import torch
    import torch.distributed

    names = sorted(figures)
    values = torch.tensor([figures[name] for name in names], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return {name: float(value) / torch.distributed.get_world_size() for name, value in zip(names, values)}


def train_worker(arguments: dict) -> None:
    """One Ray Train worker: train with this worker's rank, the model wrapped in DistributedDataParallel."""
    import ray.train
    from torch.nn.parallel import DistributedDataParallel

    from c2f.training.loop import DataParallel, train_from_folder

    context = ray.train.get_context()
    parallel = DataParallel(context.get_world_rank(), context.get_world_size(), DistributedDataParallel,
                            average_over_workers)
    train_from_folder(**arguments, parallel=parallel)


def gpu_plan(device: str, cluster_gpus: float, workers: int) -> tuple[bool, str]:
    """(whether each worker gets a GPU, the process group's backend) for --device and the cluster's GPU count."""
    if device == "cuda" and cluster_gpus < workers:
        raise C2FError(f"--device cuda with --workers {workers} needs {workers} GPUs in the Ray cluster; it has "
                       f"{cluster_gpus:g}. Use fewer workers or --device cpu.")
    use_gpu = device == "cuda" or (device == "auto" and cluster_gpus >= workers > 0)
    return use_gpu, "nccl" if use_gpu else "gloo"


def train_on_ray(data: Path, out_dir: Path, labels: LabelSet, config: TrainConfig, width: int | None = None,
                 depth: int | None = None, resume: bool = False, command: str = "", workers: int = 2,
                 address: str | None = None, until_epoch: int | None = None,
                 validation_data: Path | None = None, device: str = "auto", encoder: str | None = None,
                 upsampling: str | None = None) -> Path:
    """`c2f train --workers N`: train data-parallel on N Ray workers (GPUs with NCCL when the cluster has one per
    worker and --device allows, else CPUs with gloo); returns the weights path."""
    ray = import_ray()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out_dir = Path(out_dir).resolve()
    if not resume and (out_dir / CHECKPOINT_NAME).exists():  # checked here, not once per worker
        raise C2FError(f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out.")
    if workers < 1:
        raise C2FError(f"--workers must be at least 1, got {workers}.")
    connect(address)
    use_gpu, backend = gpu_plan(device, ray.cluster_resources().get("GPU", 0), workers)
    arguments = dict(data=Path(data).resolve(), out_dir=out_dir, labels=labels, config=config, width=width,
                     depth=depth, resume=resume, command=command, until_epoch=until_epoch,
                     validation_data=Path(validation_data).resolve() if validation_data else None,
                     # Ray Train shows each worker its own GPU as cuda:0
                     device="cuda" if use_gpu else "cpu", encoder=encoder,
                     upsampling=upsampling)
    trainer = TorchTrainer(train_worker, train_loop_config=arguments, torch_config=TorchConfig(backend=backend),
                           scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                           run_config=RunConfig(name="c2f-train", storage_path=str(out_dir / ".ray-train")))
    try:
        trainer.fit()
    except ray.exceptions.RayError as error:
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, C2FError):
            raise C2FError(str(cause)) from None
        raise
    return out_dir / "model.safetensors"
