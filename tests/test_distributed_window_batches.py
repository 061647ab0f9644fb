"""Windows as the unit of work: batches computed apart and stitched equal one refine of the whole photo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import (
    coarse_echo_predictor,
    make_scene,
    run_cli_without_loading,
    write_scene_files,
)

from c2f.config import ClusterSettings, WindowSettings
from c2f.distributed.window_batches import (
    compute_window_batch,
    finish_split_pair,
    prepare_windows_folder,
    window_batches,
    windows_folder_for,
)
from c2f.inference.windows_folder import MANIFEST_NAME
from c2f.io.label_sets import FASSEG_LABELS
from c2f.refine import FolderPair, refine_file

SMALL_WINDOWS = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0, smoothing=1.5)


def noisy_predictor(batch: np.ndarray) -> np.ndarray:
    """Logits that vary smoothly with the photo, so blending and float precision show in the map."""
    echo = coarse_echo_predictor(FASSEG_LABELS.num_classes, scale=2.0)(batch)
    return echo + np.sin(batch[:, :1] * 3.0 + np.arange(FASSEG_LABELS.num_classes)[None, :, None, None])


@pytest.mark.parametrize("keeps_windows", [False, True])
def test_batches_computed_apart_equal_single_process_refine_byte_for_byte(tmp_path, keeps_windows):
    write_scene_files(tmp_path, "big", make_scene(90, 110, seed=5), with_fine=False)
    pair = FolderPair("big", tmp_path / "images/big.png", tmp_path / "coarse/big.png", tmp_path / "out/big.png",
                      tmp_path / "overlay/big.png", "write")
    windows_dir = tmp_path / "windows" if keeps_windows else None
    batches = window_batches(pair, SMALL_WINDOWS, ClusterSettings(split_pixels=1000, windows_per_batch=5))
    assert len(batches) > 2 and batches[0][0] == 0
    assert all(end == start for (_, end), (start, _) in zip(batches, batches[1:]))  # contiguous
    folder = windows_folder_for(pair, windows_dir)
    prepare_windows_folder(folder)
    entries = []
    for start, end in reversed(batches):  # any worker, in any order
        entries[:0] = compute_window_batch(noisy_predictor, FASSEG_LABELS, True, pair, SMALL_WINDOWS, False,
                                           folder, start, end, keeps_windows)
    result = finish_split_pair(FASSEG_LABELS, pair, SMALL_WINDOWS, folder, entries, None, keeps_windows)
    expected = refine_file(noisy_predictor, FASSEG_LABELS, True, pair.photo, pair.coarse, tmp_path / "single.png",
                           SMALL_WINDOWS, windows_dir=tmp_path / "single_windows" if keeps_windows else None,
                           overlay_path=tmp_path / "single_overlay.png")
    assert pair.output.read_bytes() == (tmp_path / "single.png").read_bytes()
    assert pair.overlay.read_bytes() == (tmp_path / "single_overlay.png").read_bytes()
    assert result.changed_fraction == expected.changed_fraction
    assert (folder / MANIFEST_NAME).is_file() == keeps_windows  # a temporary folder is removed


def test_small_photos_are_not_split(tmp_path):
    write_scene_files(tmp_path, "face", make_scene(40, 40, seed=1), with_fine=False)
    pair = FolderPair("face", tmp_path / "images/face.png", tmp_path / "coarse/face.png", tmp_path / "o.png",
                      None, "write")
    assert window_batches(pair, SMALL_WINDOWS, ClusterSettings()) == []
    assert window_batches(pair, SMALL_WINDOWS, dataclasses.replace(ClusterSettings(), split_pixels=0)) == []


def test_help_and_plain_refine_never_import_ray(tiny_weights, tmp_path):
    write_scene_files(tmp_path, "face", make_scene(40, 40, seed=1), with_fine=False)
    run_cli_without_loading("ray", "--help")
    run_cli_without_loading("ray", "refine", tmp_path / "images", tmp_path / "coarse", "-o", tmp_path / "fine",
                            "--weights", tiny_weights)
    assert (tmp_path / "fine" / "face.png").is_file()
