"""Folder mode: pairing by stem, planning each pair's outputs, and refining lazily one pair at a time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import coarse_echo_predictor, make_scene, write_scene_files

from c2f.config import WindowSettings
from c2f.errors import C2FError
from c2f.io.label_maps import read_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.refine import (
    FolderPair,
    check_folder_inputs,
    outputs_allowed,
    plan_folder,
    refine_folder,
)

NUM_CLASSES = FASSEG_LABELS.num_classes
SMALL_WINDOWS = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0, smoothing=0.0)


def make_folders(root, photo_stems, coarse_stems):
    """images/ and coarse/ under root holding small synthetic faces with the given stems."""
    for index, stem in enumerate(sorted(set(photo_stems) | set(coarse_stems))):
        write_scene_files(root, stem, make_scene(36, 44, seed=index), with_fine=False)
        if stem not in photo_stems:
            (root / "images" / f"{stem}.png").unlink()
        if stem not in coarse_stems:
            (root / "coarse" / f"{stem}.png").unlink()
    return root / "images", root / "coarse"


def all_files(folder):
    """Every file in folder, hidden partial files included."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("existing, overwrite, skip_existing, expected", [
    ((), False, False, "write"),
    (("fine",), False, True, "skip"),
    (("fine",), False, False, "{folder}/fine.png exists; pass --overwrite or --skip-existing"),
    (("fine", "check"), True, False, "write"),
    (("check",), False, False, "{folder}/check.png exists; pass --overwrite or --skip-existing"),
    (("check",), False, True, "write"),  # an overlay without its map is left over from an interrupted run
])
def test_outputs_allowed_decides_per_pair(tmp_path, existing, overwrite, skip_existing, expected):
    for name in existing:
        (tmp_path / f"{name}.png").write_bytes(b"")
    decision = outputs_allowed(tmp_path / "fine.png", tmp_path / "check.png", overwrite, skip_existing)
    assert decision == expected.format(folder=tmp_path)


def test_check_folder_inputs_refuses_empty_folders_and_outputs_that_are_files(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna"], ["anna"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    check_folder_inputs(images, coarse, tmp_path / "out", None)
    with pytest.raises(C2FError, match="empty holds no images"):
        check_folder_inputs(images, tmp_path / "empty", tmp_path / "out", None)
    with pytest.raises(C2FError, match="file.png is a file, but in folder mode --output names a folder"):
        check_folder_inputs(images, coarse, tmp_path / "file.png", None)
    with pytest.raises(C2FError, match="--overlay names a folder"):
        check_folder_inputs(images, coarse, tmp_path / "out", tmp_path / "file.png")


def test_plan_folder_pairs_by_stem_and_reports_unpaired_files_as_failures(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna", "ben", "cleo"], ["anna", "cleo", "dan"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "cleo.png").write_bytes(b"")
    pairs, unpaired = plan_folder(images, coarse, out, tmp_path / "checks", False, True)
    assert pairs == [
        FolderPair("anna", images / "anna.png", coarse / "anna.png", out / "anna.png", tmp_path / "checks" / "anna.png",
                   "write"),
        FolderPair("cleo", images / "cleo.png", coarse / "cleo.png", out / "cleo.png", tmp_path / "checks" / "cleo.png",
                   "skip"),
    ]
    assert [(outcome.stem, outcome.status, outcome.message) for outcome in unpaired] == [  # sorted by path
        ("dan.png", "failed", f"{coarse / 'dan.png'} has no file of the same name in {images}"),
        ("ben.png", "failed", f"{images / 'ben.png'} has no file of the same name in {coarse}"),
    ]


def test_plan_folder_refuses_folders_that_share_no_stem(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna"], ["ben"])
    with pytest.raises(C2FError, match="no photo in .* unpaired: ben.png, anna.png$"):
        plan_folder(images, coarse, tmp_path / "out", None, False, False)


def test_refine_folder_yields_one_outcome_per_pair_in_order(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna", "ben", "cleo", "dan"], ["anna", "ben", "cleo", "dan"])
    (images / "cleo.png").write_bytes((images / "cleo.png").read_bytes()[:100])
    out = tmp_path / "out"
    out.mkdir()
    (out / "ben.png").write_bytes(b"precious")
    (out / "dan.png").write_bytes(b"precious too")
    pairs, _ = plan_folder(images, coarse, out, None, False, False)
    pairs[1] = dataclasses.replace(pairs[1], decision="skip")  # as --skip-existing would decide
    outcomes = list(refine_folder(coarse_echo_predictor(NUM_CLASSES), FASSEG_LABELS, True, pairs, SMALL_WINDOWS))
    assert [(outcome.stem, outcome.status) for outcome in outcomes] == [
        ("anna", "written"), ("ben", "skipped"), ("cleo", "failed"), ("dan", "refused")]
    assert outcomes[0].result.output == out / "anna.png" and outcomes[0].coarse == coarse / "anna.png"
    assert "cleo.png" in outcomes[2].message and "truncated" in outcomes[2].message
    assert outcomes[3].message == f"{out / 'dan.png'} exists; pass --overwrite or --skip-existing"
    assert all_files(out) == ["anna.png", "ben.png", "dan.png"]
    assert (out / "ben.png").read_bytes() == b"precious" and (out / "dan.png").read_bytes() == b"precious too"
    np.testing.assert_array_equal(read_label_map(out / "anna.png", FASSEG_LABELS).class_ids,
                                  read_label_map(coarse / "anna.png", FASSEG_LABELS).class_ids)


def test_refine_folder_works_only_when_asked_for_the_next_outcome(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna", "ben", "cleo"], ["anna", "ben", "cleo"])
    pairs, _ = plan_folder(images, coarse, tmp_path / "out", tmp_path / "checks", False, False)
    outcomes = refine_folder(coarse_echo_predictor(NUM_CLASSES), FASSEG_LABELS, True, pairs, SMALL_WINDOWS,
                             windows_dir=tmp_path / "windows")
    assert not (tmp_path / "out").exists()
    assert next(outcomes).stem == "anna"
    outcomes.close()  # as the CLI does after a first Ctrl-C
    assert all_files(tmp_path / "out") == all_files(tmp_path / "checks") == ["anna.png"]
    assert all_files(tmp_path / "windows") == ["anna"]


def test_an_interrupt_during_one_pair_leaves_no_partial_file(tmp_path):
    images, coarse = make_folders(tmp_path, ["anna", "ben", "cleo"], ["anna", "ben", "cleo"])
    pairs, _ = plan_folder(images, coarse, tmp_path / "out", None, False, False)
    echo, calls = coarse_echo_predictor(NUM_CLASSES), []

    def interrupt_the_second_image(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return echo(batch)
    outcomes = refine_folder(interrupt_the_second_image, FASSEG_LABELS, True, pairs, WindowSettings(whole_image=True))
    assert next(outcomes).status == "written"
    with pytest.raises(KeyboardInterrupt):
        next(outcomes)
    assert all_files(tmp_path / "out") == ["anna.png"]
