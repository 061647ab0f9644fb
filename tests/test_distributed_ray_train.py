"""Data-parallel training on Ray Train: two workers resume a checkpoint, and the loss falls."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("ray")

from c2f.config import TrainConfig  # noqa: E402
from c2f.errors import C2FError  # noqa: E402
from c2f.distributed.ray_train import train_on_ray  # noqa: E402
from c2f.io.label_sets import FASSEG_LABELS  # noqa: E402
from c2f.training.loop import DataParallel, epoch_share, train_from_folder  # noqa: E402
from c2f.weights import load_weights  # noqa: E402

CONFIG = TrainConfig(epochs=3, crops_per_image=4, crop_size=32, batch_size=4, validation_fraction=0.0,
                     learning_rate=3e-3)


def test_epoch_shares_split_the_order_into_equal_disjoint_parts():
    order = np.arange(11)
    shares = [epoch_share(order, DataParallel(rank, 3, None, None)) for rank in range(3)]
    assert [len(share) for share in shares] == [4, 4, 4]  # equal steps on every rank, or DDP would wait forever
    assert sorted(np.concatenate(shares).tolist()) == sorted(order.tolist() + [0])  # padded with the start
    assert epoch_share(order, None) is order


def test_two_workers_resume_a_checkpoint_and_the_loss_falls(local_ray, generic_dataset, tmp_path):
    run = tmp_path / "run"
    # Epoch 1 in one process, as a run interrupted after its first epoch; two Ray workers resume it.
    train_from_folder(generic_dataset, run, FASSEG_LABELS, CONFIG, width=4, depth=2, until_epoch=1)
    assert not (run / "model.safetensors").exists()
    with open(run / "log.csv") as log:
        (first,) = [float(row["train_loss"]) for row in csv.DictReader(log)]
    weights = train_on_ray(generic_dataset, run, FASSEG_LABELS, CONFIG, width=4, depth=2, resume=True, workers=2)
    with open(run / "log.csv") as log:
        losses = [float(row["train_loss"]) for row in csv.DictReader(log)]
    assert len(losses) == 3 and losses[0] == first and losses[2] < losses[0]  # the history was resumed
    model, _, _ = load_weights(weights, None)
    assert model.config.width == 4 and (run / "curves.png").is_file()


@pytest.mark.parametrize("device, gpus, workers, expected", [
    ("auto", 0, 2, (False, "gloo")), ("auto", 1, 2, (False, "gloo")), ("auto", 2, 2, (True, "nccl")),
    ("cpu", 8, 2, (False, "gloo")), ("cuda", 4, 2, (True, "nccl")),
])
def test_workers_get_gpus_and_nccl_only_when_each_has_one(device, gpus, workers, expected):
    from c2f.distributed.ray_train import gpu_plan

    assert gpu_plan(device, gpus, workers) == expected


def test_cuda_workers_without_enough_gpus_are_refused():
    from c2f.distributed.ray_train import gpu_plan

    with pytest.raises(C2FError, match="needs 2 GPUs in the Ray cluster; it has 1"):
        gpu_plan("cuda", 1, 2)
