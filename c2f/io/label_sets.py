"""Label sets: ordered class names with one colour each, read from TOML or JSON label files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2f.config import MAX_CLASSES
from c2f.errors import C2FError
from c2f.io.documents import parse_json, parse_toml


@dataclass(frozen=True)
class LabelSet:
    """Ordered class names with one RGB colour each."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """Colours as a uint8 (K, 3) array."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)

    def to_dict(self) -> dict:
        """The JSON-able form stored in weights, ONNX files and window manifests."""
        return {"classes": [{"name": n, "color": list(c)} for n, c in zip(self.names, self.colors)]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "LabelSet":
        """Build from {"classes": [{"name": ..., "color": [r, g, b]}, ...]}."""
        hint = f'{source}: a label file needs a list "classes" of {{name = "...", color = [r, g, b]}} entries'
        classes = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(classes, list) or len(classes) < 2:
            raise C2FError(f"{hint} (at least two).")
        if len(classes) > MAX_CLASSES:
            raise C2FError(f"{source} lists {len(classes)} classes; c2f handles at most {MAX_CLASSES}.")
        names, colors = [], []
        for position, entry in enumerate(classes):
            color = entry.get("color") if isinstance(entry, dict) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            valid_color = (
                isinstance(color, list) and len(color) == 3
                and all(type(v) is int and 0 <= v <= 255 for v in color)  # type(): JSON true is no colour value
            )
            if not isinstance(name, str) or not name or not valid_color:
                raise C2FError(f"{hint}; entry {position} is {entry!r}.")
            names.append(name)
            colors.append(tuple(color))
        if len(set(names)) != len(names) or len(set(colors)) != len(colors):
            raise C2FError(f"{source}: class names and colours must each be unique.")
        return cls(tuple(names), tuple(colors))

    @classmethod
    def from_json(cls, text: str, source: str = "label set") -> "LabelSet":
        return cls.from_dict(parse_json(text, source), source)


FASSEG_LABELS = LabelSet(
    names=("background", "hair", "skin", "eyes", "nose", "mouth"),
    colors=((255, 0, 0), (127, 0, 0), (255, 255, 0), (0, 0, 255), (0, 255, 255), (0, 255, 0)),
)


def check_labels(stored: LabelSet, requested: LabelSet | None, path: Path) -> None:
    """Refuse weights trained for another label set than the one asked for."""
    if requested is not None and requested != stored:
        raise C2FError(
            f"{path} was trained for classes {', '.join(stored.names)}, not for "
            f"{', '.join(requested.names)}; pass matching --labels and --weights."
        )


def load_label_set(path: Path | None) -> LabelSet:
    """Read a label set from a .toml or .json file; None gives FASSEG's six classes."""
    if path is None:
        return FASSEG_LABELS
    path = Path(path)
    if not path.is_file():
        raise C2FError(f"label file not found: {path}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: editors on Windows add a BOM
    if path.suffix.lower() == ".json":
        return LabelSet.from_json(text, str(path))
    return LabelSet.from_dict(parse_toml(text, str(path), "; see `c2f train --help` for the format"), str(path))
