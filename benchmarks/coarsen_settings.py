"""How faithful traced polygons are, how fast coarsening is, and which coarsen settings look like real coarse maps.

Three measurements on real label maps, run from the repository root:

    python benchmarks/coarsen_settings.py

1. trace -> rasterize pixel agreement with the original map per polygon tolerance (FASSEG V2 fine test maps and
   CamVid val; CamVid's void, id 11, is left untraced and drawn back as the fill).
2. seconds per coarsen call on CamVid's 360 x 480 maps.
3. pixel accuracy of coarse maps against their fine maps for a few settings (void left out), beside FASSEG's own
   coarse V1 maps against the fine V2 maps, to see which settings make coarse maps like a person's.

It reads ../shared/data/FASSEG and ../shared/data/CamVid and skips whichever is absent. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from c2f.io.polygons import rasterize, trace_regions
from c2f.training.coarsen import coarsen, parse_coarsen_spec

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FASSEG_COLOURS = np.array([(255, 0, 0), (127, 0, 0), (255, 255, 0), (0, 0, 255), (0, 255, 255), (0, 255, 0)])
CAMVID_VOID = 11
SETTINGS = [
    "tolerance=2,min_area=0,jitter=0",
    "tolerance=4,min_area=50,jitter=0",
    "tolerance=8,min_area=100,jitter=1",
    "tolerance=16,min_area=200,jitter=2",
    "tolerance=32,min_area=400,jitter=3",
    "tolerance=4:32,min_area=50:400,jitter=0:3",  # the default ranges
    "tolerance=12:32,min_area=100:400,jitter=1:3",  # as far from FASSEG V2 as its real coarse V1 maps are
]


def read_fasseg(path: Path) -> np.ndarray:
    """A FASSEG colour-coded label BMP as an (H, W) uint8 class map, each pixel the nearest of the six colours."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
    distances = ((rgb[:, :, None, :] - FASSEG_COLOURS) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1).astype(np.uint8)


def read_camvid(path: Path) -> np.ndarray:
    """A CamVid annotation PNG as an (H, W) uint8 class map (11 = void)."""
    return np.asarray(Image.open(path)).astype(np.uint8)


def trace_agreement(maps: list[np.ndarray], tolerance: float, skip_ids: tuple[int, ...], fill: int) -> np.ndarray:
    """Per map, the fraction of pixels that trace -> rasterize gives back unchanged."""
    names = [str(value) for value in range(256)]
    label_ids = {name: value for value, name in enumerate(names)}
    agreements = []
    for class_map in maps:
        shapes = trace_regions(class_map, names, tolerance, skip_ids=skip_ids)
        drawn = rasterize(shapes, *class_map.shape, label_ids, fill=fill, dtype=class_map.dtype)
        agreements.append((drawn == class_map).mean())
    return np.array(agreements)


def pooled_accuracy(coarse_maps: list[np.ndarray], fine_maps: list[np.ndarray], void: int | None) -> float:
    """Pixel accuracy of coarse maps against fine ones over all maps together, void pixels of the fine maps left out."""
    correct = counted = 0
    for coarse, fine in zip(coarse_maps, fine_maps):
        valid = np.ones(fine.shape, dtype=bool) if void is None else fine != void
        correct += int((coarse == fine)[valid].sum())
        counted += int(valid.sum())
    return correct / counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerances", default="0,0.5,0.75,1", help="comma-separated polygon tolerances, px")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    tolerances = [float(value) for value in arguments.tolerances.split(",")]

    datasets = {}
    fasseg_fine = sorted((DATA / "FASSEG" / "V2" / "Test_Labels").glob("*.bmp"), key=lambda path: int(path.stem))
    if fasseg_fine:
        datasets["FASSEG V2"] = ([read_fasseg(path) for path in fasseg_fine], None)
    else:
        print(f"skipping FASSEG: no maps under {DATA / 'FASSEG'}")
    camvid = sorted((DATA / "CamVid" / "valannot").glob("*.png"))
    if camvid:
        datasets["CamVid val"] = ([read_camvid(path) for path in camvid], CAMVID_VOID)
    else:
        print(f"skipping CamVid: no maps under {DATA / 'CamVid'}")
    if not datasets:
        return

    print("\ntrace -> rasterize agreement (mean / worst map)")
    for name, (maps, void) in datasets.items():
        for tolerance in tolerances:
            skip = () if void is None else (void,)
            agreement = trace_agreement(maps, tolerance, skip, fill=0 if void is None else void)
            print(f"  {name:11s} tolerance {tolerance:4.2f}: {100 * agreement.mean():6.2f} % / "
                  f"{100 * agreement.min():6.2f} %  over {len(maps)} maps")

    print("\ncoarse vs fine pixel accuracy (pooled; seconds per map, median / max)")
    if "FASSEG V2" in datasets:
        fasseg_coarse = [read_fasseg(DATA / "FASSEG" / "V1" / "Test_Labels" / path.name) for path in fasseg_fine]
        accuracy = pooled_accuracy(fasseg_coarse, datasets["FASSEG V2"][0], None)
        print(f"  FASSEG V2   real coarse V1 maps: {100 * accuracy:.1f} %")
    for name, (maps, void) in datasets.items():
        for spec in SETTINGS:
            rng = np.random.default_rng(arguments.seed)
            skip = () if void is None else (void,)
            coarse_maps, seconds = [], []
            for class_map in maps:
                start = time.perf_counter()
                coarse_maps.append(coarsen(class_map, parse_coarsen_spec(spec), rng, ignore_value=void,
                                           skip_values=skip))
                seconds.append(time.perf_counter() - start)
            accuracy = pooled_accuracy(coarse_maps, maps, void)
            print(f"  {name:11s} {spec:44s}: {100 * accuracy:5.1f} %  "
                  f"({np.median(seconds):.3f} / {max(seconds):.3f} s)")


if __name__ == "__main__":
    main()
