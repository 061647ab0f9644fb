"""refine on Ray: the same files as single-process folder mode, failures alone, resumable with --skip-existing."""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from conftest import make_scene, write_scene_files  # noqa: E402

from c2f.config import ClusterSettings, WindowSettings  # noqa: E402
from c2f.distributed.ray_refine import ModelSource, refine_folder_on_ray  # noqa: E402
from c2f.inference.backends import load_predictor  # noqa: E402
from c2f.io.files import STALE_MARGIN_SECONDS, sweep_stale_temporaries  # noqa: E402
from c2f.refine import plan_folder, refine_folder  # noqa: E402

WINDOWS = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0)
# The 80 x 96 photo is split into window batches, the others are refined whole by one actor each.
SPLIT = ClusterSettings(workers=2, split_pixels=6000, windows_per_batch=4)


@pytest.fixture
def folders(tmp_path):
    """images/ and coarse/ with three small faces and one photo large enough to be split."""
    for index, size in enumerate([(40, 48), (44, 40), (80, 96), (36, 52)]):
        write_scene_files(tmp_path, f"face_{index}", make_scene(*size, seed=index), with_fine=False)
    return tmp_path / "images", tmp_path / "coarse"


def refine_both(folders, tiny_weights, tmp_path, overwrite=False, skip_existing=False, count=None):
    """Outcomes of refining on Ray into tmp_path/ray (count of them, or all), and single-process into tmp_path/one."""
    predictor, labels, uses_coarse = load_predictor(tiny_weights, None, "torch", "cpu")
    pairs, _ = plan_folder(*folders, tmp_path / "one", tmp_path / "one_overlay", False, False)
    single = list(refine_folder(predictor, labels, uses_coarse, pairs, WINDOWS))
    pairs, _ = plan_folder(*folders, tmp_path / "ray", tmp_path / "ray_overlay", overwrite, skip_existing)
    outcomes = refine_folder_on_ray(ModelSource(tiny_weights, None, "torch", "cpu"), labels, pairs, WINDOWS,
                                    cluster=SPLIT)
    on_ray = [outcome for outcome, _ in zip(outcomes, range(count or len(pairs)))]
    outcomes.close()
    return single, on_ray


def assert_same_files(tmp_path):
    for name in ("", "_overlay"):
        single = sorted((tmp_path / f"one{name}").iterdir())
        on_ray = sorted((tmp_path / f"ray{name}").iterdir())
        assert [path.name for path in on_ray] == [path.name for path in single]  # no leftovers either
        for expected, actual in zip(single, on_ray):
            assert actual.read_bytes() == expected.read_bytes(), actual


def test_ray_refine_writes_the_single_process_files_byte_for_byte(local_ray, folders, tiny_weights, tmp_path):
    single, on_ray = refine_both(folders, tiny_weights, tmp_path)
    assert [(o.stem, o.status) for o in on_ray] == [(o.stem, o.status) for o in single]
    assert [o.result.changed_fraction for o in on_ray] == [o.result.changed_fraction for o in single]
    assert_same_files(tmp_path)


def test_a_failing_pair_fails_alone(local_ray, folders, tiny_weights, tmp_path):
    (folders[0] / "face_1.png").write_bytes(b"not a png")  # a whole pair
    (folders[0] / "face_2.png").write_bytes((folders[0] / "face_2.png").read_bytes()[:300])  # a split one
    _, on_ray = refine_both(folders, tiny_weights, tmp_path)
    assert [o.status for o in on_ray] == ["written", "failed", "failed", "written"]
    assert "face_1.png" in on_ray[1].message and "face_2.png" in on_ray[2].message
    assert sorted(path.name for path in (tmp_path / "ray").iterdir()) == ["face_0.png", "face_3.png"]


def test_an_interrupted_job_resumes_with_skip_existing(local_ray, folders, tiny_weights, tmp_path):
    _, first = refine_both(folders, tiny_weights, tmp_path, count=1)  # stopped after the first pair
    assert [o.status for o in first] == ["written"]
    _, second = refine_both(folders, tiny_weights, tmp_path, skip_existing=True)
    # Pairs the actors had already taken when the job stopped are finished and skipped now; the rest are written.
    assert second[0].status == "skipped" and {o.status for o in second[1:]} <= {"skipped", "written"}
    # An actor stopped in the middle of a write leaves only its temporary file, recent enough that the resumed
    # job keeps it (it might belong to a live writer); the next run, a minute on, sweeps it.
    sweep_stale_temporaries([tmp_path / "ray", tmp_path / "ray_overlay"],
                            started=time.time() + STALE_MARGIN_SECONDS + 1)
    assert_same_files(tmp_path)
