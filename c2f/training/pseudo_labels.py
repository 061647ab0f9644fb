"""Self-training (`c2f train --teacher`): coarse-only photos learn from a teacher model's refinements.

A teacher (typically the model trained on the fine-labelled photos alone) refines
each coarse-only photo's coarse map, exactly as `c2f refine` would; its output
stands in for the missing fine map, and the photo then trains like any
fine-labelled one. The student sees every photo, where the teacher saw the few
with fine maps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from c2f.inference.sliding_window import refine_map
from c2f.inference.torch_backend import torch_predictor
from c2f.io.label_sets import LabelSet
from c2f.training.samples import LoadedSample
from c2f.weights import load_weights


def pseudo_labelled(samples: list[LoadedSample], teacher: Path, labels: LabelSet, device: str | torch.device = "cpu",
                    on_sample: Callable[[int, int], None] | None = None) -> list[LoadedSample]:
    """The coarse-only samples, each with the teacher's refinement of its coarse map as its fine map.

    The teacher must predict this run's label set; on_sample(done, total) reports progress.
    """
    model, _, _ = load_weights(teacher, labels)  # refuses a teacher with other classes
    predictor = torch_predictor(model, device)
    num_classes = labels.num_classes
    taught = []
    for done, sample in enumerate(samples, start=1):
        coarse = sample.coarse if model.config.use_coarse else None
        fine = refine_map(predictor, sample.photo, coarse, num_classes).astype(sample.coarse.dtype)
        taught.append(dataclasses.replace(sample, fine=fine, fine_blend=None))
        if on_sample:
            on_sample(done, len(samples))
    return taught
