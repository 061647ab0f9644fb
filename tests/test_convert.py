"""Every command reads every format: convert between them, refine from and to polygons, score and train with ignore."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import make_generic_dataset, write_scene_files
from typer.testing import CliRunner

from c2f.cli import app
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS, IgnoreEntry, LabelSet, load_label_set
from c2f.training.augment import void_coarse_regions
from c2f.training.loop import class_weights
from c2f.training.samples import find_samples, load_sample

runner = CliRunner()
VOIDED_FASSEG = LabelSet(FASSEG_LABELS.names, FASSEG_LABELS.colors, ignore=(IgnoreEntry("void", 255, (9, 9, 9)),))


def run(*arguments, expect_exit: int = 0):
    result = runner.invoke(app, [str(argument) for argument in arguments])
    assert result.exit_code == expect_exit, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def write_table(path: Path, labels: LabelSet) -> Path:
    path.write_text(labels.to_json())
    return path


def test_convert_a_folder_through_every_format_and_back(tmp_path):
    labels = load_label_set("camvid")
    source = tmp_path / "source"
    source.mkdir()
    rng = np.random.default_rng(0)
    maps = {}
    for stem in ("a", "b"):
        class_ids = np.repeat(np.repeat(rng.integers(0, 12, (6, 8)), 5, axis=0), 5, axis=1).astype(np.uint8)
        maps[stem] = class_ids  # 11 = Unlabelled, read as ignored
        write_label_map(source / f"{stem}.png", class_ids, labels, "index")
    previous = source
    for encoding in ("labelme", "coco", "palette", "color", "index"):
        target = tmp_path / encoding
        run("convert", previous, "-o", target, "--format", encoding, "--labels", "camvid")
        previous = target
    for stem, class_ids in maps.items():
        np.testing.assert_array_equal(read_label_map(previous / f"{stem}.png", labels).class_ids, class_ids)


def test_convert_splits_a_coco_file_of_many_images_into_a_folder(tmp_path):
    class_ids = np.zeros((10, 12), np.uint8)
    class_ids[2:8, 3:9] = 2
    write_label_map(tmp_path / "one.json", class_ids, FASSEG_LABELS, "coco", image_path=tmp_path / "x.jpg")
    document = json.loads((tmp_path / "one.json").read_text())
    document["images"].append({"id": 2, "file_name": "y.jpg", "height": 10, "width": 12})
    (tmp_path / "coco.json").write_text(json.dumps(document))
    run("convert", tmp_path / "coco.json", "-o", tmp_path / "out", "--format", "color")
    np.testing.assert_array_equal(read_label_map(tmp_path / "out" / "x.png", FASSEG_LABELS).class_ids, class_ids)
    assert (tmp_path / "out" / "y.png").is_file()


def test_refine_reads_labelme_coarse_maps_and_writes_labelme_and_coco(tiny_weights, tmp_path, scene):
    photo, coarse, _ = scene
    write_scene_files(tmp_path, "face", scene)
    write_label_map(tmp_path / "face.json", coarse, FASSEG_LABELS, "labelme", image_path=tmp_path / "images" / "face.png")
    photo_path = tmp_path / "images" / "face.png"
    run("refine", photo_path, tmp_path / "face.json", "-o", tmp_path / "fine.json", "--weights", tiny_weights)
    document = json.loads((tmp_path / "fine.json").read_text())
    assert document["imagePath"] == "images/face.png" and document["shapes"]
    run("refine", photo_path, tmp_path / "face.json", "-o", tmp_path / "fine_coco.json", "--format", "coco",
        "--weights", tiny_weights)
    assert json.loads((tmp_path / "fine_coco.json").read_text())["images"][0]["file_name"] == "face.png"
    fine = read_label_map(tmp_path / "fine.json", FASSEG_LABELS).class_ids
    fine_coco = read_label_map(tmp_path / "fine_coco.json", FASSEG_LABELS, "face.png").class_ids
    assert fine.shape == photo.shape[:2] and (fine == fine_coco).mean() > 0.99
    run("refine", photo_path, tmp_path / "face.json", "-o", tmp_path / "fine.png", "--format", "labelme",
        "--weights", tiny_weights, expect_exit=1)


def test_refine_fills_in_unannotated_pixels(tiny_weights, tmp_path, scene):
    write_scene_files(tmp_path, "face", scene)
    coarse = scene[1].copy()
    coarse[:, : coarse.shape[1] // 2] = VOIDED_FASSEG.ignore_index
    write_label_map(tmp_path / "void.png", coarse, VOIDED_FASSEG, "palette")
    table = write_table(tmp_path / "table.json", VOIDED_FASSEG)
    run("refine", tmp_path / "images" / "face.png", tmp_path / "void.png", "-o", tmp_path / "fine.png",
        "--weights", tiny_weights, "--labels", table, "--overlay", tmp_path / "check.png")
    fine = read_label_map(tmp_path / "fine.png", VOIDED_FASSEG).class_ids
    assert fine.max() < VOIDED_FASSEG.num_classes  # refine never outputs the ignore value


def test_score_leaves_ignored_fine_pixels_out_and_says_how_many(tmp_path):
    truth = np.zeros((10, 10), np.uint8)
    truth[:, 5:] = 2
    truth[0, :] = VOIDED_FASSEG.ignore_index
    predicted = np.where(truth == VOIDED_FASSEG.ignore_index, 1, truth).astype(np.uint8)  # wrong only where ignored
    write_label_map(tmp_path / "fine.png", truth, VOIDED_FASSEG, "index")
    write_label_map(tmp_path / "pred.png", predicted, VOIDED_FASSEG, "color")
    table = write_table(tmp_path / "table.json", VOIDED_FASSEG)
    result = run("score", tmp_path / "pred.png", tmp_path / "fine.png", "--labels", table, "--json")
    data = json.loads(result.stdout)
    assert data["predicted"]["pixel_accuracy"] == 1.0 and data["ignored_pixels"] == 10


def test_training_reads_json_maps_and_leaves_ignored_pixels_out_of_the_loss(tmp_path):
    root = make_generic_dataset(tmp_path / "data", [(40, 48), (36, 44)])
    fine_path = root / "fine" / "face_00.png"
    fine = read_label_map(fine_path, FASSEG_LABELS).class_ids.copy()
    fine[:4] = VOIDED_FASSEG.ignore_index
    fine_path.unlink()
    write_label_map(root / "fine" / "face_00.json", fine, VOIDED_FASSEG, "labelme",
                    image_path=root / "images" / "face_00.png")
    samples = [load_sample(sample, VOIDED_FASSEG) for sample in find_samples(root)]
    assert (samples[0].fine[:4] == VOIDED_FASSEG.ignore_index).all()
    weights = class_weights([sample.fine for sample in samples], 6, 1.0)
    assert weights.shape == (6,) and np.isfinite(weights).all()
    loss = torch.nn.CrossEntropyLoss(ignore_index=6)  # as training builds it: ignore_index = K
    logits = torch.randn((1, 6, 2, 2), generator=torch.Generator().manual_seed(0))
    only_annotated = loss(logits[:, :, :1, :1], torch.tensor([[[0]]]))
    assert torch.isclose(loss(logits, torch.tensor([[[0, 6], [6, 6]]])), only_annotated)


def test_void_augmentation_marks_bands_along_boundaries_only_when_drawn():
    coarse = np.zeros((32, 32), np.uint8)
    coarse[:, 16:] = 2
    crop = (np.zeros((32, 32, 3), np.uint8), coarse, coarse)
    assert void_coarse_regions(crop, 6, 0.0, np.random.default_rng(0)) is crop
    _, voided, target = void_coarse_regions(crop, 6, 1.0, np.random.default_rng(0))
    assert (voided[:, 15:17] == 6).all() and (voided[:, 0] != 6).any() and target is coarse
