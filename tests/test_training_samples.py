"""Finding (photo, coarse, fine) samples in FASSEG's layout and the generic one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_scene, write_scene_files
from PIL import Image

from c2f.errors import C2FError
from c2f.io.label_maps import write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.io.pairing import pair_by_stem
from c2f.training.samples import find_samples, find_validation_samples, load_sample


def make_fasseg_folder(root: Path, layout: dict[str, list[int]], missing_fine: tuple[str, ...] = ()) -> Path:
    """A FASSEG-shaped folder: V1/{split}_RGB and _Labels (coarse), V2/{split}_RGB and _Labels (fine), BMPs."""
    for split, numbers in layout.items():
        for number in numbers:
            photo, coarse, fine = make_scene(24, 20, seed=number)
            for version in ("V1", "V2"):
                (root / version / f"{split}_RGB").mkdir(parents=True, exist_ok=True)
                Image.fromarray(photo).save(root / version / f"{split}_RGB" / f"{number}.bmp")
            write_label_map(root / "V1" / f"{split}_Labels" / f"{number}.bmp", coarse, FASSEG_LABELS, "color")
            if f"{split}_{number}" not in missing_fine:
                write_label_map(root / "V2" / f"{split}_Labels" / f"{number}.bmp", fine, FASSEG_LABELS, "color")
    return root


def test_generic_layout_pairs_images_coarse_and_fine_by_stem(generic_dataset):
    samples = find_samples(generic_dataset)
    assert [sample.name for sample in samples] == ["face_00", "face_01", "face_02", "face_03"]
    for sample in samples:
        assert sample.photo == generic_dataset / "images" / f"{sample.name}.png"
        assert sample.coarse == generic_dataset / "coarse" / f"{sample.name}.png"
        assert sample.fine == generic_dataset / "fine" / f"{sample.name}.png"


def test_generic_layout_allows_samples_without_a_fine_map(tmp_path):
    write_scene_files(tmp_path, "labelled", make_scene(20, 20, seed=0))
    write_scene_files(tmp_path, "coarse_only", make_scene(20, 20, seed=1), with_fine=False)
    samples = {sample.name: sample for sample in find_samples(tmp_path)}
    assert samples["labelled"].fine is not None
    assert samples["coarse_only"].fine is None
    assert load_sample(samples["coarse_only"], FASSEG_LABELS).fine is None


def test_generic_layout_without_any_fine_folder_still_finds_pairs(tmp_path):
    write_scene_files(tmp_path, "a", make_scene(20, 20), with_fine=False)
    assert [sample.fine for sample in find_samples(tmp_path)] == [None]


def test_generic_layout_refuses_photos_without_a_coarse_map(tmp_path):
    write_scene_files(tmp_path, "a", make_scene(20, 20))
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(C2FError, match="lonely.png"):
        find_samples(tmp_path)


def test_fasseg_layout_names_samples_by_split_and_number(tmp_path):
    root = make_fasseg_folder(tmp_path / "FASSEG", {"Train": [1, 2], "Test": [1, 12]})
    samples = find_samples(root)
    assert [sample.name for sample in samples] == ["Test_1", "Test_12", "Train_1", "Train_2"]
    test_12 = samples[1]
    assert test_12.photo == root / "V1" / "Test_RGB" / "12.bmp"
    assert test_12.coarse == root / "V1" / "Test_Labels" / "12.bmp"
    assert test_12.fine == root / "V2" / "Test_Labels" / "12.bmp"


def test_fasseg_layout_keeps_faces_whose_fine_map_is_missing(tmp_path):
    root = make_fasseg_folder(tmp_path / "FASSEG", {"Test": [1, 2]}, missing_fine=("Test_2",))
    fine_maps = {sample.name: sample.fine for sample in find_samples(root)}
    assert fine_maps["Test_1"] is not None and fine_maps["Test_2"] is None


def test_loaded_sample_holds_the_arrays_that_were_written(tmp_path):
    photo, coarse, fine = make_scene(30, 26, seed=5)
    write_scene_files(tmp_path, "face", (photo, coarse, fine), encoding="palette")
    loaded = load_sample(find_samples(tmp_path)[0], FASSEG_LABELS)
    assert loaded.name == "face"
    np.testing.assert_array_equal(loaded.photo, photo)
    np.testing.assert_array_equal(loaded.coarse, coarse)
    np.testing.assert_array_equal(loaded.fine, fine)


@pytest.mark.parametrize("kind", ["coarse", "fine"])
def test_a_map_of_another_size_than_its_photo_is_refused(tmp_path, kind):
    write_scene_files(tmp_path, "face", make_scene(20, 24))
    write_label_map(tmp_path / kind / "face.png", np.zeros((20, 23), np.uint8), FASSEG_LABELS, "color")
    with pytest.raises(C2FError, match=rf"{kind}.face\.png is 23x20 but .*images.face\.png is 24x20"):
        load_sample(find_samples(tmp_path)[0], FASSEG_LABELS)


def test_a_folder_of_neither_layout_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(C2FError, match="images/ with coarse/, fine/"):
        find_samples(tmp_path)


def test_a_missing_data_folder_is_refused(tmp_path):
    with pytest.raises(C2FError, match="not found"):
        find_samples(tmp_path / "nowhere")


def test_an_empty_dataset_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "coarse").mkdir()
    with pytest.raises(C2FError, match="no .* pairs"):
        find_samples(tmp_path)


def test_pairing_ignores_hidden_partial_and_non_image_files(tmp_path):
    for folder in ("photos", "maps"):
        (tmp_path / folder).mkdir()
        for name in ("a.png", "b.bmp", ".hidden.png", ".a.png.x7.part", "notes.txt"):
            (tmp_path / folder / name).write_bytes(b"")
    (tmp_path / "photos" / "c.jpg").write_bytes(b"")
    pairs, unpaired = pair_by_stem(tmp_path / "photos", tmp_path / "maps")
    assert [stem for stem, _, _ in pairs] == ["a", "b"]
    assert unpaired == [tmp_path / "photos" / "c.jpg"]


def test_two_images_with_the_same_stem_are_refused_naming_both(tmp_path):
    for folder in ("photos", "maps"):
        (tmp_path / folder).mkdir()
        for name in ("a.png", "b.png"):
            (tmp_path / folder / name).write_bytes(b"")
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(C2FError, match=r"photos: more than one image is named a \(a\.jpg, a\.png\); rename one"):
        pair_by_stem(tmp_path / "photos", tmp_path / "maps")


def write_fine_only_pair(photos: Path, fine_maps: Path, name: str, seed: int) -> None:
    """A photo and its fine map as single-channel class ids, as CamVid's files are."""
    photo, _, fine = make_scene(24, 32, seed=seed)
    photos.mkdir(parents=True, exist_ok=True)
    fine_maps.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(photos / f"{name}.png")
    Image.fromarray(fine).save(fine_maps / f"{name}.png")


def test_camvid_layout_reads_train_and_trainannot_as_fine_only_samples(tmp_path):
    for split, names in (("train", ["0001TP_006690", "Seq05VD_f00000"]), ("val", ["0016E5_07959"])):
        for seed, name in enumerate(names):
            write_fine_only_pair(tmp_path / split, tmp_path / f"{split}annot", name, seed)
    samples = find_samples(tmp_path)
    assert [sample.name for sample in samples] == ["0001TP_006690", "Seq05VD_f00000"]
    assert all(sample.coarse is None and sample.fine.parent.name == "trainannot" for sample in samples)
    validation = find_validation_samples(tmp_path)
    assert [(sample.name, sample.photo.parent.name) for sample in validation] == [("0016E5_07959", "val")]
    loaded = load_sample(samples[0], FASSEG_LABELS)
    assert loaded.coarse is None and loaded.fine.shape == (24, 32)


def test_generic_layout_with_images_and_fine_alone_gives_fine_only_samples(tmp_path):
    write_fine_only_pair(tmp_path / "images", tmp_path / "fine", "street", 0)
    [sample] = find_samples(tmp_path)
    assert sample.coarse is None and sample.fine == tmp_path / "fine" / "street.png"


def test_fasseg_multipose_faces_join_as_fine_only_samples_named_by_pose(tmp_path):
    root = make_fasseg_folder(tmp_path / "FASSEG", {"Train": [1]})
    for pose in ("+15", "-30"):
        write_fine_only_pair(root / "V3" / "Train_RGB" / pose, root / "V3" / "Train_labels" / pose, "p01", 3)
    samples = {sample.name: sample for sample in find_samples(root)}
    assert sorted(samples) == ["Train_1", "V3_+15_p01", "V3_-30_p01"]
    assert samples["Train_1"].coarse is not None
    assert samples["V3_-30_p01"].coarse is None
    assert samples["V3_-30_p01"].photo == root / "V3" / "Train_RGB" / "-30" / "p01.png"


def test_soft_targets_read_a_colour_fine_map_s_blends_and_nothing_else(tmp_path):
    photo, coarse, fine = make_scene(24, 20, seed=1)
    for encoding in ("color", "palette"):
        write_scene_files(tmp_path / encoding, "face", (photo, coarse, fine), encoding=encoding)
    rgb = FASSEG_LABELS.palette()[fine]
    rgb[0, 0] = (255, 128, 0)  # anti-aliased: half background, half skin
    Image.fromarray(rgb).save(tmp_path / "color" / "fine" / "face.png")
    (sample,) = find_samples(tmp_path / "color")
    assert load_sample(sample, FASSEG_LABELS).fine_blend is None  # only asked for
    blend = load_sample(sample, FASSEG_LABELS, soft_targets=True).fine_blend
    assert (blend.share < 1).sum() == 1 and {int(blend.first[0, 0]), int(blend.second[0, 0])} == {0, 2}
    np.testing.assert_array_equal(blend.first[1:], fine[1:])
    (indexed,) = find_samples(tmp_path / "palette")
    assert load_sample(indexed, FASSEG_LABELS, soft_targets=True).fine_blend is None
