"""`c2f coarsen`: coarse maps drawn from fine ones, file and folder, repeatable per seed and file stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from c2f.cli import app
from c2f.coarsen_maps import coarsen_maps
from c2f.errors import C2FError
from c2f.io.label_maps import read_label_map
from c2f.io.label_sets import FASSEG_LABELS, load_label_set
from c2f.training.coarsen import CoarsenSettings, parse_coarsen_spec

CAMVID = load_label_set("camvid")


def street_map() -> np.ndarray:
    """A 90 x 120 CamVid-like index map: sky, building, road, a car, a thin pole, a void strip (11)."""
    fine = np.zeros((90, 120), np.uint8)
    fine[30:60] = 1
    fine[60:] = 3
    fine[50:75, 70:100] = 8
    fine[20:70, 30:32] = 2
    fine[:, 110:] = 11
    return fine


def write_street_maps(folder: Path, stems: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(street_map()).save(folder / f"{stem}.png")
    return folder


def test_a_folder_of_maps_becomes_a_folder_of_coarse_maps_in_the_same_encoding(tmp_path):
    source = write_street_maps(tmp_path / "fine", ["a", "b"])
    settings = parse_coarsen_spec("tolerance=2:8,min_area=30:60,jitter=0:1,band=4:6")
    written = list(coarsen_maps(source, tmp_path / "coarse", CAMVID, settings, seed=3))
    assert [item.output.name for item in written] == ["a.png", "b.png"]
    coarse = read_label_map(tmp_path / "coarse" / "a.png", CAMVID)
    assert coarse.encoding == "index" and coarse.class_ids.shape == (90, 120)
    assert np.all(coarse.class_ids[:, 110:] == CAMVID.ignore_index)  # void stays unannotated
    assert 0 < written[0].unannotated_share < 0.6  # bands along boundaries, the void strip
    assert np.count_nonzero(coarse.class_ids == 2) < np.count_nonzero(street_map() == 2)  # the pole thins or goes


def test_the_same_seed_and_stem_draw_the_same_map_whatever_else_is_in_the_folder(tmp_path):
    settings = CoarsenSettings()
    list(coarsen_maps(write_street_maps(tmp_path / "one", ["a"]), tmp_path / "out1", CAMVID, settings, seed=1))
    list(coarsen_maps(write_street_maps(tmp_path / "two", ["0", "a"]), tmp_path / "out2", CAMVID, settings, seed=1))
    list(coarsen_maps(tmp_path / "one", tmp_path / "out3", CAMVID, settings, seed=2))
    first, again, other = (np.asarray(Image.open(tmp_path / name / "a.png")) for name in ("out1", "out2", "out3"))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bands_need_a_label_table_with_an_ignore_entry(tmp_path):
    source = write_street_maps(tmp_path / "fine", ["a"])
    with pytest.raises(C2FError, match="ignore entry"):
        list(coarsen_maps(source / "a.png", tmp_path / "a.png", FASSEG_LABELS, parse_coarsen_spec("band=2:4")))


def test_the_command_writes_one_file_and_refuses_to_overwrite(tmp_path):
    source = write_street_maps(tmp_path / "fine", ["a"]) / "a.png"
    arguments = ["coarsen", str(source), "-o", str(tmp_path / "coarse.png"), "--labels", "camvid",
                 "--tolerance", "8", "--band", "2:6", "--seed", "4"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "coarse.png").is_file()
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 1 and "--overwrite" in again.output
    wrong = CliRunner().invoke(app, [*arguments[:-2], "--tolerance", "8:2", "--overwrite"])
    assert wrong.exit_code == 1 and "LOW <= HIGH" in wrong.output
