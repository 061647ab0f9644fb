"""Draw docs/coarsen_styles.png: a photo, its fine map and three coarse maps `c2f coarsen` drew from that map.

The photo is examples/astronaut.png and its "fine" map is the shipped face model's refinement of
examples/astronaut_coarse.png; the three coarse styles are those of benchmarks/camvid.py (polygons, rough, bands),
each drawn with seed 0. Unannotated pixels (the bands) are white.

Run from the repository root:
    python examples/coarsen_figure.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from c2f.api import Refiner
from c2f.io.label_maps import palette_of
from c2f.io.label_sets import FASSEG_LABELS
from c2f.training.coarsen import coarsen, parse_coarsen_spec

ROOT = Path(__file__).resolve().parents[1]
STYLES = {
    "polygons": "tolerance=4:32,min_area=50:400,jitter=0:3",
    "rough": "tolerance=24:48,min_area=400:1500,jitter=2:4",
    "bands": "tolerance=8:24,min_area=100:400,jitter=0:2,band=10:14",
}
SCALE = 0.5  # panels at half size keep the PNG small


def colour(class_ids: np.ndarray) -> Image.Image:
    """A class map in FASSEG's colours, unannotated pixels white."""
    palette = np.vstack([palette_of(FASSEG_LABELS)[:FASSEG_LABELS.num_classes], [[255, 255, 255]]]).astype(np.uint8)
    return Image.fromarray(palette[class_ids])


def main() -> None:
    photo_path = ROOT / "examples" / "astronaut.png"
    fine = Refiner().refine(photo_path, str(ROOT / "examples" / "astronaut_coarse.png")).astype(np.uint8)
    num_classes = FASSEG_LABELS.num_classes
    panels = [("photo", Image.open(photo_path).convert("RGB")), ("fine", colour(fine))]
    for index, (style, spec) in enumerate(STYLES.items()):
        drawn = coarsen(fine, parse_coarsen_spec(spec), np.random.default_rng([0, index]), ignore_value=num_classes)
        panels.append((f"coarse: {style}", colour(drawn)))
    width, height = (int(side * SCALE) for side in panels[0][1].size)
    caption = 18
    figure = Image.new("RGB", (width * len(panels), height + caption), "white")
    draw = ImageDraw.Draw(figure)
    for position, (title, image) in enumerate(panels):
        figure.paste(image.resize((width, height), Image.NEAREST if position else Image.BILINEAR),
                     (position * width, caption))
        draw.text((position * width + 4, 3), title, fill="black")
    output = ROOT / "docs" / "coarsen_styles.png"
    figure.save(output, optimize=True)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
