"""Label tables: ordered classes (name, colour, index-map id) plus 'ignore' entries, read from TOML or JSON files.

Inside c2f a label map holds class indices 0..K-1 and one more value, K, for pixels that are 'not annotated' (in a
coarse map) or 'ignored' (in a fine map): the table's ignore entries all read as K. Files hold the table's own ids,
which reading maps through `index_lookup` and writing through `written_ids` translate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2f.config import MAX_CLASSES
from c2f.errors import C2FError
from c2f.io.documents import parse_json, parse_toml
from c2f.shipped import shipped_label_table

Color = tuple[int, int, int]
VOID_INDEX = 255  # the value palette and index maps (VOC, Cityscapes' trainIds) use for 'ignore'
MAX_ID = 65535  # index maps are at most 16-bit
NO_COLOR: Color = (0, 0, 0)  # what an ignore entry without a colour is drawn as
# Names of tables shipped with c2f, usable as `--labels NAME`.
SHIPPED_TABLES = ("cityscapes", "camvid", "voc", "fasseg")


@dataclass(frozen=True)
class IgnoreEntry:
    """A void entry: pixels holding its id (or colour) are not annotated in a coarse map and ignored in a fine one."""

    name: str
    id: int  # its value in index maps; -1 = it never appears in them (Cityscapes' license plate)
    color: Color = NO_COLOR


@dataclass(frozen=True)
class LabelSet:
    """Ordered classes with one RGB colour and one index-map id each, plus ignore entries (which are no classes)."""

    names: tuple[str, ...]
    colors: tuple[Color, ...]
    ids: tuple[int, ...] = ()  # index-map value of each class; () = their positions 0..K-1
    ignore: tuple[IgnoreEntry, ...] = ()

    def __post_init__(self) -> None:
        if not self.ids:
            object.__setattr__(self, "ids", tuple(range(len(self.names))))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def ignore_index(self) -> int:
        """The value that stands for 'not annotated / ignored' in c2f's (H, W) maps: the class count K."""
        return len(self.names)

    def palette(self) -> np.ndarray:
        """Class colours as a uint8 (K, 3) array."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)

    def ignore_color(self) -> Color:
        """The colour that draws ignored pixels: the first ignore entry's."""
        return self.ignore[0].color if self.ignore else NO_COLOR

    def display_palette(self) -> np.ndarray:
        """uint8 (K + 1, 3): the class colours, then the colour of ignored pixels (index K)."""
        return np.concatenate([self.palette(), np.array([self.ignore_color()], dtype=np.uint8)])

    def ignore_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.ignore)

    def name_lookup(self) -> dict[str, int]:
        """Class and ignore-entry names -> c2f's values (class index, K for ignore entries)."""
        lookup = {entry.name: self.ignore_index for entry in self.ignore}
        lookup.update({name: index for index, name in enumerate(self.names)})
        return lookup

    def index_lookup(self) -> np.ndarray:
        """int32 (65536,): index-map value -> class index, K for ignore, -1 for a value the table does not know."""
        lookup = np.full(MAX_ID + 1, -1, dtype=np.int32)
        for entry in self.ignore:
            if entry.id >= 0:
                lookup[entry.id] = self.ignore_index
        if self.ignore and lookup[VOID_INDEX] < 0:
            lookup[VOID_INDEX] = self.ignore_index  # 255 is 'void' in VOC's and Cityscapes' train-id maps
        lookup[list(self.ids)] = np.arange(self.num_classes)
        return lookup

    def ignore_id(self) -> int | None:
        """The value written for ignored pixels in index and palette maps: the first ignore entry's id (or 255)."""
        written = [entry.id for entry in self.ignore if entry.id >= 0]
        if written:
            return written[0]
        return VOID_INDEX if self.ignore and VOID_INDEX not in self.ids else None

    def color_table(self) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, 3) colours to decode colour maps by, and the c2f value of each (classes first, then the ignore
        entries whose colour no class has)."""
        colors, values = list(self.colors), list(range(self.num_classes))
        for entry in self.ignore:
            if entry.color not in colors:
                colors.append(entry.color)
                values.append(self.ignore_index)
        return np.array(colors, dtype=np.uint8).reshape(-1, 3), np.array(values, dtype=np.int64)

    def matched_to(self, model_labels: "LabelSet", source: str) -> "LabelSet":
        """This table with its classes in a model's order; refuse one whose classes (by name) differ."""
        if set(self.names) != set(model_labels.names) or len(self.names) != len(model_labels.names):
            raise C2FError(
                f"{source} was trained for classes {', '.join(model_labels.names)}, not for "
                f"{', '.join(self.names)}; pass matching --labels and --weights (ignore entries may be added).")
        order = [self.names.index(name) for name in model_labels.names]
        return LabelSet(tuple(self.names[index] for index in order), tuple(self.colors[index] for index in order),
                        tuple(self.ids[index] for index in order), self.ignore)

    def to_dict(self) -> dict:
        """The JSON-able form stored in weights, ONNX files and window manifests."""
        classes = []
        for position, (name, color, value) in enumerate(zip(self.names, self.colors, self.ids)):
            classes.append({"name": name, "color": list(color)} | ({"id": value} if value != position else {}))
        classes += [{"name": entry.name, "color": list(entry.color), "id": entry.id, "ignore": True}
                    for entry in self.ignore]
        return {"classes": classes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "LabelSet":
        """Build from {"classes": [{"name", "color", "id"?, "ignore"?}, ...]} or Cityscapes' table
        ({"labels": [{"name", "id", "trainId", "ignoreInEval", "color"}, ...]})."""
        entries = None
        if isinstance(data, dict):
            entries = data.get("classes", data.get("labels"))
        if not isinstance(entries, list):
            raise C2FError(f'{source}: a label file needs a list "classes" of {{name = "...", color = [r, g, b]}} '
                           "entries (optional: id = N, ignore = true)")
        cityscapes = any(isinstance(entry, dict) and "trainId" in entry for entry in entries)
        classes, ignore = [], []  # classes: (order key, name, color, id)
        for position, entry in enumerate(entries):
            name, color, value, is_ignore, train_id = parse_entry(entry, position, source, cityscapes)
            if is_ignore:
                ignore.append(IgnoreEntry(name, value, color or NO_COLOR))
            else:
                classes.append((train_id if cityscapes else position, name, color, value, position))
        if len(classes) > MAX_CLASSES:
            raise C2FError(f"{source} lists {len(classes)} classes; c2f handles at most {MAX_CLASSES}.")
        classes.sort()
        check_table(classes, ignore, source, cityscapes)
        return cls(tuple(item[1] for item in classes), tuple(item[2] for item in classes),
                   tuple(item[3] for item in classes), tuple(ignore))

    @classmethod
    def from_json(cls, text: str, source: str = "label set") -> "LabelSet":
        return cls.from_dict(parse_json(text, source), source)


def is_color(value: object) -> bool:
    # type(): JSON's true is no colour value
    return (isinstance(value, list) and len(value) == 3 and all(type(v) is int and 0 <= v <= 255 for v in value))


def parse_entry(entry: object, position: int, source: str,
                cityscapes: bool) -> tuple[str, Color | None, int, bool, int]:
    """(name, colour, id, is ignore, train id) of one label-file entry; errors name the entry."""
    where = f"{source}: entry {position}"
    if not isinstance(entry, dict):
        raise C2FError(f"{where} is {entry!r}, not a table {{name = \"...\", color = [r, g, b]}}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise C2FError(f"{where} ({entry!r}) needs a non-empty name")
    where = f"{source}: entry {position} ({name!r})"
    value = entry.get("id", position)
    if type(value) is not int or not -1 <= value <= MAX_ID:
        raise C2FError(f"{where}: id must be an integer from 0 to {MAX_ID} (or -1: never in maps), not {value!r}")
    train_id = entry.get("trainId", -1)
    if cityscapes and type(train_id) is not int:
        raise C2FError(f"{where}: trainId must be an integer (255 or -1 for ignored), not {train_id!r}")
    is_ignore = entry.get("ignore", False)
    if cityscapes:
        is_ignore = train_id in (VOID_INDEX, -1) or entry.get("ignoreInEval") is True
    if type(is_ignore) is not bool:
        raise C2FError(f"{where}: ignore must be true or false, not {is_ignore!r}")
    color = entry.get("color")
    if color is not None and not is_color(color):
        raise C2FError(f"{where}: color must be [r, g, b] with values 0..255, not {color!r}")
    if color is None and not is_ignore:
        raise C2FError(f"{where}: a class needs a color = [r, g, b]")
    if not is_ignore and value < 0:
        raise C2FError(f"{where}: a class needs an id of 0 or more")
    return name, tuple(color) if color is not None else None, value, is_ignore, train_id


def check_table(classes: list[tuple], ignore: list[IgnoreEntry], source: str, cityscapes: bool) -> None:
    """Refuse tables c2f cannot use: under two classes, repeated names, colours or ids, gaps in Cityscapes' trainIds."""
    if len(classes) < 2:
        raise C2FError(f"{source}: a label table needs at least two classes (entries without ignore = true).")
    if cityscapes and [item[0] for item in classes] != list(range(len(classes))):
        raise C2FError(f"{source}: the trainIds of the classes must run 0, 1, 2, ... without gaps or repeats, "
                       f"not {[item[0] for item in classes]}")
    seen_names, seen_colors, seen_ids = {}, {}, {}
    for _, name, color, value, position in classes:
        for seen, key, what in ((seen_names, name, "name"), (seen_colors, color, "color"), (seen_ids, value, "id")):
            if key in seen:
                raise C2FError(f"{source}: entry {position} ({name!r}) has the same {what} as entry {seen[key]}; "
                               "class names, colours and ids must each be unique")
            seen[key] = position
    for entry in ignore:
        if entry.name in seen_names or (entry.id >= 0 and entry.id in seen_ids):
            raise C2FError(f"{source}: ignore entry {entry.name!r} repeats a class's name or id")
        if entry.id >= 0:
            seen_ids[entry.id] = entry.name


FASSEG_LABELS = LabelSet(
    names=("background", "hair", "skin", "eyes", "nose", "mouth"),
    colors=((255, 0, 0), (127, 0, 0), (255, 255, 0), (0, 0, 255), (0, 255, 255), (0, 255, 0)),
)


def check_labels(stored: LabelSet, requested: LabelSet | None, path: Path) -> LabelSet:
    """The table to read and write maps with: the requested one in the model's class order (refused when its classes
    differ from the model's), else the model's own."""
    return stored if requested is None else requested.matched_to(stored, str(path))


def shipped_table(name: str) -> Path | None:
    """The path of a label table shipped with c2f (`--labels cityscapes`), or None."""
    if name not in SHIPPED_TABLES:
        return None
    return shipped_label_table(name)


def load_label_set(path: Path | str | None) -> LabelSet:
    """Read a label set from a .toml or .json file or a shipped table's name; None gives FASSEG's six classes."""
    if path is None:
        return FASSEG_LABELS
    path = Path(path)
    if not path.is_file() and shipped_table(str(path)) is not None:
        path = shipped_table(str(path))
    if not path.is_file():
        raise C2FError(f"label file not found: {path} (shipped tables: {', '.join(SHIPPED_TABLES)})")
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: editors on Windows add a BOM
    if path.suffix.lower() == ".json":
        return LabelSet.from_json(text, str(path))
    return LabelSet.from_dict(parse_toml(text, str(path), "; see `c2f train --help` for the format"), str(path))
