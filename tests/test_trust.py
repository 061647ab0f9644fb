"""The trust battery: c2f handed bad, odd and hostile inputs never loses a user's file.

Every refusal must follow one contract (assert_refused): exit 1, exactly one
`error:` line on stderr, no traceback, no output (not even a hidden .part
file), and every input byte-identical. One test per item of the issue
"Never lose a user's file" and per variant. Resource bombs run in a subprocess
capped in memory and time (run_limited), so that the old code fails them
instead of exhausting the machine.
"""

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from c2f.cli import app

runner = CliRunner()
# The CLI's module, for subprocess runs; follows the import above.
CLI_MODULE = app.registered_commands[0].callback.__module__
REPOSITORY = Path(__file__).resolve().parent.parent


def invoke(*arguments: object):
    """Run `c2f arguments...` in this process."""
    return runner.invoke(app, [str(argument) for argument in arguments])


def snapshot(*paths: Path) -> dict[str, object]:
    """Every file (and symlink) under the given paths: bytes, or ('link', target) for a symlink."""
    state: dict[str, object] = {}

    def record(path: Path) -> None:
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                record(child)
        elif path.exists():
            state[str(path)] = path.read_bytes()
    for path in paths:
        record(Path(path))
    return state


def assert_intact(before: dict[str, object]) -> None:
    """Every snapshotted input is still there, byte for byte (and links are still links)."""
    after = snapshot(*[Path(path) for path in before])
    for path, content in before.items():
        assert path in after, f"input {path} is gone"
        assert after[path] == content, f"input {path} was changed"


def stderr_lines(result) -> list[str]:
    text = result.stderr if hasattr(result, "stderr") else ""
    return [line for line in text.splitlines() if line.strip()]


def assert_refused(result, inputs: dict[str, object], absent: tuple = (), says: tuple = ()) -> str:
    """The refusal contract; returns the error line."""
    exception = getattr(result, "exception", None)
    assert exception is None or isinstance(exception, SystemExit), f"crashed: {exception!r}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exit_code == 1, f"exit {result.exit_code}, expected 1\n{result.stderr}"
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), f"expected one error line, got:\n{result.stderr}"
    for words in says:
        assert words in lines[0], f"{words!r} not in {lines[0]!r}"
    for path in absent:
        assert not os.path.lexists(path), f"output {path} was written"
    folders = {Path(path).parent for path in absent}
    for folder in folders:
        if folder.is_dir():
            leftovers = [child.name for child in folder.iterdir() if child.name.endswith(".part")]
            assert not leftovers, f"temporary files left in {folder}: {leftovers}"
    assert_intact(inputs)
    return lines[0]


def assert_no_crash(result) -> None:
    exception = getattr(result, "exception", None)
    assert exception is None or isinstance(exception, SystemExit), f"crashed: {exception!r}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


@dataclass
class Limited:
    """What a resource-limited subprocess run of c2f left: exit code, stderr, and whether it ran out of time."""

    exit_code: int
    stderr: str
    timed_out: bool
    exception: object = None


def run_limited(*arguments: object, memory_gib: float = 3.0, timeout: float = 60.0, cwd: Path | None = None) -> Limited:
    """Run c2f in a subprocess capped in address space and time, so a resource bomb fails instead of hurting the machine.

    A MemoryError then shows as a traceback, and a run past the timeout as timed_out: both break the contract.
    """
    limit = int(memory_gib * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    code = f"import sys, importlib; sys.argv[0] = 'c2f'; importlib.import_module({CLI_MODULE!r}).app()"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    try:
        completed = subprocess.run([sys.executable, "-c", code, *map(str, arguments)], cwd=cwd, env=environment,
                                   preexec_fn=cap, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        return Limited(-1, stderr, True)
    return Limited(completed.returncode, completed.stderr, False)


def assert_refused_in_time(result: Limited, inputs: dict[str, object], absent: tuple = (), says: tuple = ()) -> str:
    assert not result.timed_out, f"still running after the time limit (a resource bomb?)\n{result.stderr[-2000:]}"
    return assert_refused(result, inputs, absent, says)

import errno
import json
import signal
import struct
import time
import zlib

import numpy as np
import pytest
from conftest import make_scene
from PIL import Image

FASSEG = [("background", (255, 0, 0)), ("hair", (127, 0, 0)), ("skin", (255, 255, 0)),
          ("eyes", (0, 0, 255)), ("nose", (0, 255, 255)), ("mouth", (0, 255, 0))]
FASSEG_PALETTE = np.array([color for _, color in FASSEG], dtype=np.uint8)
LABEL_HINT = "color = [r, g, b]"


# ---------------------------------------------------------------- inputs --

def write_pair(folder: Path, stem: str = "a", height: int = 40, width: int = 52, seed: int = 3) -> tuple[Path, Path]:
    """A synthetic photo `stem.png` and its colour coarse map `stem_c.png` in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    photo, coarse, _ = make_scene(height, width, seed=seed)
    photo_path, coarse_path = folder / f"{stem}.png", folder / f"{stem}_c.png"
    Image.fromarray(photo).save(photo_path)
    Image.fromarray(FASSEG_PALETTE[coarse]).save(coarse_path)
    return photo_path, coarse_path


def write_folders(root: Path, stems=("a", "b")) -> tuple[Path, Path]:
    """photos/ and coarse/ folders holding a pair per stem (same file names)."""
    photos, coarse = root / "photos", root / "coarse"
    for index, stem in enumerate(stems):
        photo_path, coarse_path = write_pair(root / "tmp", stem, seed=index)
        photos.mkdir(exist_ok=True)
        coarse.mkdir(exist_ok=True)
        photo_path.rename(photos / f"{stem}.png")
        coarse_path.rename(coarse / f"{stem}.png")
    (root / "tmp").rmdir()
    return photos, coarse


def label_file(path: Path, classes: list[tuple[str, tuple[int, int, int]]]) -> Path:
    path.write_text(json.dumps({"classes": [{"name": name, "color": list(color)} for name, color in classes]}))
    return path


def many_classes(count: int) -> list[tuple[str, tuple[int, int, int]]]:
    return [(f"class{index}", (index >> 16 & 255, index >> 8 & 255, index & 255)) for index in range(count)]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(tmp_path)


def assert_valid_map(path: Path, height: int, width: int) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.size == (width, height), f"{path} is {image.size}, expected {(width, height)}"


# ---------------------------------------- 1. an output never replaces an input --

def test_1_output_is_the_photo(pair):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo, coarse, "-o", photo, "--overwrite"), inputs, says=(photo.name,))


def test_1_output_is_the_coarse_map(pair):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo, coarse, "-o", coarse, "--overwrite"), inputs, says=(coarse.name,))


def test_1_output_is_the_coarse_map_spelled_with_dot_slash(pair, monkeypatch):
    photo, coarse = pair
    monkeypatch.chdir(photo.parent)
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo.name, coarse.name, "-o", f"./{coarse.name}", "--overwrite"), inputs)


def test_1_output_is_the_coarse_map_through_dot_dot(pair):
    photo, coarse = pair
    (photo.parent / "sub").mkdir()
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo, coarse, "-o", photo.parent / "sub" / ".." / coarse.name, "--overwrite"),
                   inputs)


@pytest.mark.parametrize("link", ["the photo given through a symlink, output its target",
                                  "output a symlink to the coarse map", "output a hard link to the coarse map"])
def test_1_links_never_let_an_output_replace_an_input(pair, link):
    photo, coarse = pair
    linked = photo.parent / ("link.png" if link.startswith("the photo") else "out.png")
    if link.startswith("the photo"):
        linked.symlink_to(photo)
        arguments = (linked, coarse, "-o", photo)
    elif "symlink" in link:
        linked.symlink_to(coarse)
        arguments = (photo, coarse, "-o", linked)
    else:
        os.link(coarse, linked)
        arguments = (photo, coarse, "-o", linked)
    inputs = snapshot(photo, coarse, linked)
    assert_refused(invoke("refine", *arguments, "--overwrite"), inputs)


def test_1_overlay_is_the_photo(pair, tmp_path):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--overlay", photo, "--overwrite"),
                   inputs, absent=(tmp_path / "fine.png",))


def test_1_overlay_is_the_coarse_map_through_a_symlink(pair, tmp_path):
    photo, coarse = pair
    link = tmp_path / "check.png"
    link.symlink_to(coarse)
    inputs = snapshot(photo, coarse, link)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--overlay", link, "--overwrite"),
                   inputs, absent=(tmp_path / "fine.png",))


def test_1_output_and_overlay_are_the_same_file(pair, tmp_path):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    out = tmp_path / "out.png"
    assert_refused(invoke("refine", photo, coarse, "-o", out, "--overlay", out), inputs, absent=(out,))


def test_1_output_and_overlay_are_the_same_file_spelled_differently(pair, tmp_path):
    photo, coarse = pair
    (tmp_path / "sub").mkdir()
    inputs = snapshot(photo, coarse)
    out = tmp_path / "out.png"
    assert_refused(invoke("refine", photo, coarse, "-o", out, "--overlay", tmp_path / "sub" / ".." / "out.png"),
                   inputs, absent=(out,))


def test_1_folder_output_is_the_coarse_folder(tmp_path):
    photos, coarse = write_folders(tmp_path)
    inputs = snapshot(photos, coarse)
    assert_refused(invoke("refine", photos, coarse, "-o", coarse, "--overwrite"), inputs)


def test_1_folder_output_is_the_photo_folder(tmp_path):
    photos, coarse = write_folders(tmp_path)
    inputs = snapshot(photos, coarse)
    assert_refused(invoke("refine", photos, coarse, "-o", photos, "--overwrite"), inputs)


def test_1_folder_output_is_a_symlink_to_the_coarse_folder(tmp_path):
    photos, coarse = write_folders(tmp_path)
    link = tmp_path / "fine"
    link.symlink_to(coarse, target_is_directory=True)
    inputs = snapshot(photos, coarse, link)
    assert_refused(invoke("refine", photos, coarse, "-o", link, "--overwrite"), inputs)


def test_1_folder_overlay_is_the_coarse_folder(tmp_path):
    photos, coarse = write_folders(tmp_path)
    inputs = snapshot(photos, coarse)
    assert_refused(invoke("refine", photos, coarse, "-o", tmp_path / "fine", "--overlay", coarse, "--overwrite"),
                   inputs, absent=(tmp_path / "fine",))


def test_1_folder_output_and_overlay_are_the_same_folder(tmp_path):
    photos, coarse = write_folders(tmp_path)
    inputs = snapshot(photos, coarse)
    assert_refused(invoke("refine", photos, coarse, "-o", tmp_path / "fine", "--overlay", tmp_path / "fine"),
                   inputs, absent=(tmp_path / "fine" / "a.png",))


@pytest.fixture
def windows_folder(pair, tmp_path) -> Path:
    photo, coarse = pair
    windows = tmp_path / "windows"
    result = invoke("refine", photo, coarse, "-o", tmp_path / "first.png", "--windows-dir", windows)
    assert result.exit_code == 0, result.stderr
    return windows


def test_1_stitch_output_is_its_own_manifest(windows_folder):
    inputs = snapshot(windows_folder)
    assert_refused(invoke("stitch", windows_folder, "-o", windows_folder / "manifest.json", "--overwrite"), inputs)


def test_1_stitch_output_is_one_of_its_windows(windows_folder):
    inputs = snapshot(windows_folder)
    assert_refused(invoke("stitch", windows_folder, "-o", windows_folder / "window_00000.npy", "--overwrite"),
                   inputs)


# ------------------------------------------------- 2. an allow-list of formats --

def eps_bytes(height: int, width: int) -> bytes:
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 " + f"{width} {height}".encode()
            + b"\n0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def psd_bytes(height: int, width: int) -> bytes:
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\0" * 6, 3, height, width, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * height * width)


def pillow_bytes(image_format: str, height: int, width: int, mode: str = "RGB") -> bytes:
    import io
    buffer = io.BytesIO()
    image = Image.fromarray(make_scene(height, width, seed=3)[0]).convert(mode)
    image.save(buffer, format=image_format, **({"sizes": [(width, height)]} if image_format == "ICO" else {}))
    return buffer.getvalue()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="52" height="40">'
       b'<rect width="52" height="40" fill="red"/></svg>')
FOREIGN_FORMATS = {
    "PostScript (EPS)": lambda: eps_bytes(40, 52),
    "PDF": lambda: pillow_bytes("PDF", 40, 52),
    "ICO": lambda: pillow_bytes("ICO", 40, 52),
    "GIF": lambda: pillow_bytes("GIF", 40, 52),
    "PSD": lambda: psd_bytes(40, 52),
    "XBM": lambda: pillow_bytes("XBM", 40, 52, mode="1"),
    "SVG": lambda: SVG,
    "PPM": lambda: pillow_bytes("PPM", 40, 52),
    "TGA": lambda: pillow_bytes("TGA", 40, 52),
    "PCX": lambda: pillow_bytes("PCX", 40, 52),
}


@pytest.mark.parametrize("kind", list(FOREIGN_FORMATS))
def test_2_a_foreign_format_named_png_is_refused_as_a_photo(kind, pair, tmp_path):
    photo, coarse = pair
    photo.write_bytes(FOREIGN_FORMATS[kind]())
    inputs = snapshot(photo, coarse)
    line = assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png"), inputs,
                          absent=(tmp_path / "fine.png",), says=(photo.name,))
    assert "not an image c2f can read" in line


@pytest.mark.parametrize("kind", ["PostScript (EPS)", "GIF", "ICO"])
def test_2_a_foreign_format_named_png_is_refused_as_a_coarse_map(kind, pair, tmp_path):
    photo, coarse = pair
    coarse.write_bytes(FOREIGN_FORMATS[kind]())
    inputs = snapshot(photo, coarse)
    line = assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png"), inputs,
                          absent=(tmp_path / "fine.png",), says=(coarse.name,))
    assert "not an image c2f can read" in line


def test_2_ghostscript_is_never_started(pair, tmp_path, monkeypatch):
    import subprocess as subprocess_module
    started = []
    for name in ("Popen", "check_call", "run"):
        monkeypatch.setattr(subprocess_module, name, lambda *a, **k: started.append(a) or (_ for _ in ()).throw(
            OSError("no subprocess in this test")))
    from PIL import EpsImagePlugin
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)  # as if Ghostscript were installed
    photo, coarse = pair
    photo.write_bytes(eps_bytes(40, 52))
    inputs = snapshot(photo, coarse)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png"), inputs,
                   absent=(tmp_path / "fine.png",))
    assert not started, f"c2f started {started}"


def test_2_a_foreign_format_is_refused_by_score(tmp_path):
    predicted, fine = write_pair(tmp_path)
    predicted.write_bytes(pillow_bytes("GIF", 40, 52))
    inputs = snapshot(predicted, fine)
    assert "not an image c2f can read" in assert_refused(invoke("score", predicted, fine), inputs)


@pytest.mark.parametrize("image_format, suffix", [("PNG", ".png"), ("BMP", ".bmp"), ("JPEG", ".jpg"),
                                                   ("TIFF", ".tif"), ("WEBP", ".webp")])
def test_2_allowed_formats_still_refine(image_format, suffix, pair, tmp_path):
    photo, coarse = pair
    moved = photo.with_suffix(suffix)
    moved.write_bytes(pillow_bytes(image_format, 40, 52))
    result = invoke("refine", moved, coarse, "-o", tmp_path / "fine.png")
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert_valid_map(tmp_path / "fine.png", 40, 52)


# ------------------------------------------------ 3. names printed literally --

@pytest.mark.parametrize("name", ["face [copy].png", "x[/]face.png", "[red]face[/red].png", "face [bold].png"])
def test_3_missing_file_names_are_printed_literally(name, pair, tmp_path):
    _, coarse = pair
    missing = tmp_path / name
    inputs = snapshot(coarse)
    assert_refused(invoke("refine", missing, coarse, "-o", tmp_path / "fine.png"), inputs, says=(str(missing),))


def test_3_a_bad_file_with_brackets_is_named_literally(pair):
    photo, coarse = pair
    odd = photo.parent / "face [copy].png"
    odd.write_bytes(b"not an image at all")
    inputs = snapshot(odd, coarse)
    assert_refused(invoke("refine", odd, coarse, "-o", photo.parent / "fine.png"), inputs, says=(str(odd),))


def test_3_label_file_hint_keeps_its_brackets(pair, tmp_path):
    photo, coarse = pair
    labels = tmp_path / "labels.toml"
    labels.write_text("classes = [1, 2]\n")
    inputs = snapshot(photo, coarse, labels)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--labels", labels), inputs,
                   says=(LABEL_HINT,))


def test_3_class_names_with_markup_are_printed_literally(pair, tmp_path):
    photo, coarse = pair
    labels = label_file(tmp_path / "labels.json", [("[/]", (1, 2, 3)), ("[bold]sky", (4, 5, 6))])
    inputs = snapshot(photo, coarse, labels)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--labels", labels), inputs,
                   says=("[/]", "[bold]sky"))


def test_3_the_wrote_line_names_the_output_literally(pair, tmp_path):
    photo, coarse = pair
    out = tmp_path / "fine [v2].png"
    result = invoke("refine", photo, coarse, "-o", out)
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert str(out) in result.stderr


def test_3_a_note_names_the_photo_literally(pair, tmp_path):
    photo, coarse = pair
    grey = tmp_path / "grey [x].png"
    Image.open(photo).convert("L").save(grey)
    result = invoke("refine", grey, coarse, "-o", tmp_path / "fine.png")
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert str(grey) in result.stderr


def test_3_folder_failures_with_markup_in_their_names_are_printed_literally(tmp_path):
    photos, coarse = write_folders(tmp_path, stems=("a", "b [bold]"))
    (coarse / "b [bold].png").write_bytes(b"garbage")
    result = invoke("refine", photos, coarse, "-o", tmp_path / "fine")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert "b [bold]" in result.stderr


# ------------------------------------------------------- 4. resource bombs --

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat or zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def zero_png(tmp_path_factory) -> Path:
    """A 12000 x 12000 all-black greyscale PNG of a few hundred KB."""
    path = tmp_path_factory.mktemp("bombs") / "zeros.png"
    Image.new("L", (12000, 12000)).save(path, compress_level=9)
    return path


def test_4_a_png_header_claiming_a_huge_size_is_refused(pair, tmp_path):
    photo, coarse = pair
    photo.write_bytes(png_claiming(100_000, 100_000))
    inputs = snapshot(photo, coarse)
    assert_refused_in_time(run_limited("refine", photo, coarse, "-o", tmp_path / "fine.png", memory_gib=2),
                           inputs, absent=(tmp_path / "fine.png",), says=(photo.name,))


def test_4_a_png_header_between_pillows_warning_and_error_is_refused_from_the_header(pair, tmp_path):
    photo, coarse = pair
    photo.write_bytes(png_claiming(10_000, 10_000))  # 100 MP: Pillow only warns, and would decode
    inputs = snapshot(photo, coarse)
    assert_refused_in_time(run_limited("refine", photo, coarse, "-o", tmp_path / "fine.png", memory_gib=1.5,
                                       timeout=30), inputs, absent=(tmp_path / "fine.png",), says=(photo.name,))


def test_4_a_small_png_of_a_huge_size_is_refused_before_decoding(zero_png, pair, tmp_path):
    _, coarse = pair
    inputs = snapshot(zero_png, coarse)
    assert_refused_in_time(run_limited("refine", zero_png, coarse, "-o", tmp_path / "fine.png", memory_gib=1.5,
                                       timeout=30), inputs, absent=(tmp_path / "fine.png",), says=(zero_png.name,))


def test_4_a_small_png_of_a_huge_size_is_refused_as_a_coarse_map(zero_png, pair, tmp_path):
    photo, _ = pair
    inputs = snapshot(photo, zero_png)
    assert_refused_in_time(run_limited("refine", photo, zero_png, "-o", tmp_path / "fine.png", memory_gib=1.5,
                                       timeout=30), inputs, absent=(tmp_path / "fine.png",), says=(zero_png.name,))


def test_4_a_compressed_tiff_of_a_huge_size_is_refused(pair, tmp_path):
    _, coarse = pair
    tiff = tmp_path / "zeros.tif"
    Image.new("L", (12000, 12000)).save(tiff, compression="tiff_adobe_deflate")
    inputs = snapshot(tiff, coarse)
    assert_refused_in_time(run_limited("refine", tiff, coarse, "-o", tmp_path / "fine.png", memory_gib=1.5,
                                       timeout=30), inputs, absent=(tmp_path / "fine.png",), says=(tiff.name,))


def test_4_a_tiff_header_claiming_a_huge_size_is_refused(pair, tmp_path):
    photo, coarse = pair
    tiff = tmp_path / "claims.tif"
    Image.new("L", (8, 8)).save(tiff)
    data = bytearray(tiff.read_bytes())  # patch ImageWidth and ImageLength (tags 256, 257) to 60000
    for tag in (256, 257):
        at = data.find(struct.pack("<HH", tag, 3))  # SHORT
        if at < 0:
            at = data.find(struct.pack("<HH", tag, 4))  # LONG
            data[at + 8:at + 12] = struct.pack("<I", 60000)
        else:
            data[at + 8:at + 10] = struct.pack("<H", 60000)
    tiff.write_bytes(bytes(data))
    inputs = snapshot(tiff, coarse)
    assert_refused_in_time(run_limited("refine", tiff, coarse, "-o", tmp_path / "fine.png", memory_gib=1.5),
                           inputs, absent=(tmp_path / "fine.png",), says=(tiff.name,))


def test_4_a_label_file_with_100000_classes_is_refused_by_score(tmp_path):
    predicted, fine = write_pair(tmp_path)
    labels = label_file(tmp_path / "labels.json", many_classes(100_000))
    inputs = snapshot(predicted, fine, labels)
    assert_refused_in_time(run_limited("score", predicted, fine, "--labels", labels, memory_gib=3), inputs,
                           says=(labels.name,))


def test_4_a_label_file_with_100000_classes_is_refused_by_train(tmp_path):
    from conftest import make_generic_dataset
    dataset = make_generic_dataset(tmp_path / "dataset", [(40, 40), (40, 40)])
    labels = label_file(tmp_path / "labels.json", many_classes(100_000))
    inputs = snapshot(dataset, labels)
    assert_refused_in_time(run_limited("train", "--data", dataset, "--out", tmp_path / "run", "--labels", labels,
                                       "--epochs", "1", "--crop-size", "32", "--width", "4", "--depth", "2",
                                       memory_gib=4, timeout=90), inputs, absent=(tmp_path / "run",),
                           says=(labels.name,))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_4_a_label_file_with_a_number_of_thousands_of_digits_is_refused(suffix, pair, tmp_path):
    photo, coarse = pair
    huge = "1" + "0" * 5000
    labels = tmp_path / f"labels{suffix}"
    if suffix == ".toml":
        labels.write_text(f'classes = [{{name = "a", color = [{huge}, 0, 0]}}, {{name = "b", color = [1, 2, 3]}}]\n')
    else:
        labels.write_text(f'{{"classes": [{{"name": "a", "color": [{huge}, 0, 0]}}, '
                          f'{{"name": "b", "color": [1, 2, 3]}}]}}')
    inputs = snapshot(photo, coarse, labels)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--labels", labels), inputs,
                   absent=(tmp_path / "fine.png",), says=(labels.name,))


def test_4_colour_decoding_of_1500_classes_is_fast(tmp_path):
    """1,500 classes near black, a map of a few colours far from all of them: near-linear decoding takes ~1 s."""
    palette = [(f"c{index}", (index % 12, index // 12 % 12, index // 144)) for index in range(1500)]
    labels = label_file(tmp_path / "labels.json", palette)
    rng = np.random.default_rng(0)
    colors = rng.integers(128, 256, size=(24, 3)).astype(np.uint8)
    picture = colors[rng.integers(0, len(colors), size=(40, 52))]
    predicted, fine = tmp_path / "predicted.png", tmp_path / "fine.png"
    Image.fromarray(picture).save(predicted)
    Image.fromarray(picture).save(fine)
    started = time.monotonic()
    result = run_limited("score", predicted, fine, "--labels", labels, "--json", memory_gib=3, timeout=20)
    assert not result.timed_out, f"colour decoding of 1,500 classes took over 20 s ({time.monotonic() - started:.0f} s)"
    assert result.exit_code == 0, result.stderr[-2000:]


def test_4_a_huge_window_is_refused(pair, tmp_path):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    assert_refused_in_time(run_limited("refine", photo, coarse, "-o", tmp_path / "fine.png", "--windows",
                                       "--window", str(2**20), memory_gib=2), inputs, absent=(tmp_path / "fine.png",),
                           says=("--window",))


def edit_manifest(windows: Path, **changes) -> None:
    manifest_path = windows / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest))


def test_4_a_stitch_manifest_claiming_26000_pixels_square_is_refused(windows_folder, tmp_path):
    edit_manifest(windows_folder, height=26000, width=26000, padded=[26016, 26016])
    inputs = snapshot(windows_folder)
    assert_refused_in_time(run_limited("stitch", windows_folder, "-o", tmp_path / "stitched.png", memory_gib=3),
                           inputs, absent=(tmp_path / "stitched.png",), says=("manifest.json",))


def test_4_a_stitch_manifest_with_an_overlap_of_10_to_the_400_is_refused(windows_folder, tmp_path):
    edit_manifest(windows_folder, overlap=10**400)
    inputs = snapshot(windows_folder)
    assert_refused(invoke("stitch", windows_folder, "-o", tmp_path / "stitched.png"), inputs,
                   absent=(tmp_path / "stitched.png",), says=("manifest.json",))


def test_4_a_stitch_manifest_with_thousands_of_digits_is_refused(windows_folder, tmp_path):
    text = (windows_folder / "manifest.json").read_text()
    (windows_folder / "manifest.json").write_text(text.replace('"height": ', '"height": 1' + "0" * 5000 + ", \"h\": ", 1))
    inputs = snapshot(windows_folder)
    assert_refused(invoke("stitch", windows_folder, "-o", tmp_path / "stitched.png"), inputs,
                   absent=(tmp_path / "stitched.png",), says=("manifest.json",))


# ------------------------------------------- 5. weights that cannot be right --

def rewrite_weights(source: Path, target: Path, change_tensors=None, change_metadata=None) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    if change_tensors:
        tensors = change_tensors(tensors)
    if change_metadata:
        metadata = change_metadata(metadata)
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(target), metadata=metadata)
    return target


def int_weights(tensors):
    import torch
    return {name: (tensor * 4).round().to(torch.int32) if tensor.is_floating_point() else tensor
            for name, tensor in tensors.items()}


def filled_weights(value: float):
    def change(tensors):
        return {name: tensor.clone().fill_(value) if tensor.is_floating_point() else tensor
                for name, tensor in tensors.items()}
    return change


def mismatched_weights(tensors):
    import torch
    name = next(name for name, tensor in tensors.items() if tensor.ndim == 4)
    tensors = dict(tensors)
    shape = list(tensors[name].shape)
    shape[0] += 1
    tensors[name] = torch.zeros(shape)
    return tensors


def missing_weights(tensors):
    tensors = dict(tensors)
    tensors.pop(next(iter(sorted(tensors))))
    return tensors


BAD_TORCH_WEIGHTS = {"int32": int_weights, "nan": filled_weights(float("nan")), "inf": filled_weights(float("inf")),
                     "shape mismatch": mismatched_weights, "missing tensor": missing_weights}


@pytest.mark.parametrize("kind", list(BAD_TORCH_WEIGHTS))
def test_5_bad_torch_weights_are_refused_in_one_line(kind, tiny_weights, pair, tmp_path):
    photo, coarse = pair
    weights = rewrite_weights(tiny_weights, tmp_path / "bad.safetensors", change_tensors=BAD_TORCH_WEIGHTS[kind])
    inputs = snapshot(photo, coarse, weights)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--weights", weights), inputs,
                   absent=(tmp_path / "fine.png",), says=(weights.name,))


def test_5_weights_metadata_with_thousands_of_digits_is_refused(tiny_weights, pair, tmp_path):
    photo, coarse = pair

    def huge(metadata):
        return {**metadata, "model_config": '{"width": 1' + "0" * 5000 + "}"}
    weights = rewrite_weights(tiny_weights, tmp_path / "huge.safetensors", change_metadata=huge)
    inputs = snapshot(photo, coarse, weights)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--weights", weights), inputs,
                   absent=(tmp_path / "fine.png",), says=(weights.name,))


def test_5_nan_weights_are_refused_by_train_init(tiny_weights, tmp_path):
    from conftest import make_generic_dataset
    dataset = make_generic_dataset(tmp_path / "dataset", [(40, 40), (40, 40)])
    weights = rewrite_weights(tiny_weights, tmp_path / "nan.safetensors", change_tensors=filled_weights(float("nan")))
    inputs = snapshot(dataset, weights)
    assert_refused(invoke("train", "--data", dataset, "--out", tmp_path / "run", "--init", weights, "--epochs", "1",
                          "--crop-size", "32", "--crops-per-image", "1", "--batch-size", "2",
                          "--validation-fraction", "0"), inputs, absent=(tmp_path / "run",), says=(weights.name,))


def onnx_file(path: Path, kind: str, config_text: str | None = None) -> Path:
    """A hand-built c2f-tagged ONNX file whose metadata says FASSEG's 6 classes.

    kind "three": outputs only 3 class planes; "nan": outputs 6 planes of NaN; "good": the coarse planes.
    """
    from onnx import TensorProto, helper, numpy_helper

    def constant(name, values, dtype=np.int64):
        return numpy_helper.from_array(np.array(values, dtype=dtype), name)
    classes = 3 if kind == "three" else 6
    initializers = [constant("starts", [3]), constant("ends", [3 + classes]), constant("axes", [1]),
                    constant("scale", [float("nan") if kind == "nan" else 8.0], np.float32)]
    nodes = [helper.make_node("Slice", ["inputs", "starts", "ends", "axes"], ["planes"]),
             helper.make_node("Mul", ["planes", "scale"], ["logits"])]
    graph = helper.make_graph(
        nodes, "c2f_test", [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["batch", 9, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "h", "w"])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    labels = {"classes": [{"name": name, "color": list(color)} for name, color in FASSEG]}
    config = config_text or json.dumps({"num_classes": 6, "use_coarse": True, "width": 4, "depth": 2})
    for key, value in (("labels", json.dumps(labels)), ("model_config", config), ("c2f_format", "1")):
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


def test_5_the_hand_built_onnx_file_works_when_sound(pair, tmp_path):
    photo, coarse = pair
    weights = onnx_file(tmp_path / "good.onnx", "good")
    result = invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--weights", weights)
    assert result.exit_code == 0, result.stderr
    assert_valid_map(tmp_path / "fine.png", 40, 52)


@pytest.mark.parametrize("kind", ["three", "nan"])
def test_5_an_onnx_file_with_wrong_outputs_is_refused(kind, pair, tmp_path):
    photo, coarse = pair
    weights = onnx_file(tmp_path / f"{kind}.onnx", kind)
    inputs = snapshot(photo, coarse, weights)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--weights", weights), inputs,
                   absent=(tmp_path / "fine.png",), says=(weights.name,))


def test_5_an_onnx_file_with_wrong_outputs_fails_only_its_pairs_in_folder_mode(tmp_path):
    photos, coarse = write_folders(tmp_path)
    weights = onnx_file(tmp_path / "three.onnx", "three")
    inputs = snapshot(photos, coarse, weights)
    result = invoke("refine", photos, coarse, "-o", tmp_path / "fine", "--weights", weights)
    assert_no_crash(result)
    assert result.exit_code == 1
    assert weights.name in result.stderr
    assert not list((tmp_path / "fine").glob("*.png")) if (tmp_path / "fine").exists() else True
    assert_intact(inputs)


def test_5_onnx_metadata_with_thousands_of_digits_is_refused(pair, tmp_path):
    photo, coarse = pair
    weights = onnx_file(tmp_path / "huge.onnx", "good", config_text='{"width": 1' + "0" * 5000 + "}")
    inputs = snapshot(photo, coarse, weights)
    assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--weights", weights), inputs,
                   absent=(tmp_path / "fine.png",), says=(weights.name,))


# ------------------------------------------------------------- 6. SIGTERM --

def test_6_sigterm_stops_a_folder_run_like_ctrl_c(tmp_path):
    photos, coarse = tmp_path / "photos", tmp_path / "coarse"
    photos.mkdir()
    coarse.mkdir()
    for index in range(60):
        photo, coarse_ids, _ = make_scene(160, 160, seed=index)
        Image.fromarray(photo).save(photos / f"f{index:02d}.png")
        Image.fromarray(FASSEG_PALETTE[coarse_ids]).save(coarse / f"f{index:02d}.png")
    inputs = snapshot(photos, coarse)
    out = tmp_path / "fine"
    code = f"import sys, importlib; sys.argv[0] = 'c2f'; importlib.import_module({CLI_MODULE!r}).app()"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code, "refine", str(photos), str(coarse), "-o", str(out)],
                               env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob("*.png"))):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 130, f"exit {process.returncode}, expected 130 (as after Ctrl-C)\n{stderr[-2000:]}"
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert not [path.name for path in out.iterdir() if path.name.endswith(".part")]
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < 60, "the run was not stopped part-way"
    for path in written:
        assert_valid_map(path, 160, 160)
    assert_intact(inputs)


def old_part(path: Path, age: float = 3600) -> Path:
    path.write_bytes(b"half a file")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_6_a_later_skip_existing_run_sweeps_stale_temporary_files(tmp_path):
    photos, coarse = write_folders(tmp_path)
    out = tmp_path / "fine"
    out.mkdir()
    stale = [old_part(out / ".a.png.k2j4h1x9.part"), old_part(out / ".b.png.zz81pq0a.part")]
    foreign = old_part(out / "notes.part")  # not c2f's naming: not c2f's to remove
    running = old_part(out / ".c.png.abcd1234.part", age=-3600)  # newer than the run: another run's
    result = invoke("refine", photos, coarse, "-o", out, "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert not [path.name for path in stale if path.exists()], "stale .part files were left behind"
    assert foreign.exists() and running.exists()


def test_6_a_single_file_run_sweeps_stale_temporary_files_of_its_output(pair, tmp_path):
    photo, coarse = pair
    stale = old_part(tmp_path / ".fine.png.q8w7e6r5.part")
    result = invoke("refine", photo, coarse, "-o", tmp_path / "fine.png")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists()


# ----------------------------------------------------------- 7. disk full --

def disk_full(monkeypatch, only: str = "") -> None:
    """Make PIL's save fail as on a full disk (the OSError names no file, as PIL's own writes don't)."""
    original = Image.Image.save

    def save(self, target, *args, **kwargs):
        if only in str(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, target, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", save)


def test_7_disk_full_names_the_fine_map(pair, tmp_path, monkeypatch):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    disk_full(monkeypatch)
    out = tmp_path / "fine.png"
    assert_refused(invoke("refine", photo, coarse, "-o", out), inputs, absent=(out,),
                   says=(str(out), "No space left on device"))


def test_7_disk_full_names_the_overlay(pair, tmp_path, monkeypatch):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    disk_full(monkeypatch, only="check.png")
    out, overlay = tmp_path / "fine.png", tmp_path / "check.png"
    assert_refused(invoke("refine", photo, coarse, "-o", out, "--overlay", overlay), inputs, absent=(out, overlay),
                   says=(str(overlay), "No space left on device"))


def test_7_disk_full_in_folder_mode_names_the_output(tmp_path, monkeypatch):
    photos, coarse = write_folders(tmp_path)
    inputs = snapshot(photos, coarse)
    disk_full(monkeypatch)
    result = invoke("refine", photos, coarse, "-o", tmp_path / "fine")
    assert_no_crash(result)
    assert result.exit_code == 1
    named = [line for line in stderr_lines(result) if "No space left on device" in line]
    assert named and all(str(tmp_path / "fine") in line for line in named), result.stderr
    assert not list((tmp_path / "fine").glob("*")) if (tmp_path / "fine").exists() else True
    assert_intact(inputs)


def test_7_disk_full_names_the_stitched_map(windows_folder, tmp_path, monkeypatch):
    inputs = snapshot(windows_folder)
    disk_full(monkeypatch)
    out = tmp_path / "stitched.png"
    assert_refused(invoke("stitch", windows_folder, "-o", out), inputs, absent=(out,),
                   says=(str(out), "No space left on device"))


def test_7_disk_full_names_the_window_file(pair, tmp_path, monkeypatch):
    photo, coarse = pair
    inputs = snapshot(photo, coarse)
    original = np.save

    def full(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np, "save", full)
    windows = tmp_path / "windows"
    line = assert_refused(invoke("refine", photo, coarse, "-o", tmp_path / "fine.png", "--windows-dir", windows),
                          inputs, absent=(tmp_path / "fine.png",), says=("No space left on device",))
    assert str(windows) in line
    monkeypatch.setattr(np, "save", original)


def test_7_disk_full_names_the_exported_onnx_file(tiny_weights, tmp_path, monkeypatch):
    inputs = snapshot(tiny_weights)

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "model.onnx"
    assert_refused(invoke("export", "--weights", tiny_weights, "-o", out), inputs, absent=(out,),
                   says=(str(out), "No space left on device"))


# ------------------------------------------------------ 8. EXIF orientation --

def oriented_photo(path: Path, photo: np.ndarray, orientation: int, image_format: str = "PNG") -> Path:
    """Store photo (as displayed) so that a viewer applying EXIF `orientation` shows it as given."""
    stored = {3: np.rot90(photo, 2), 6: np.rot90(photo, 1), 8: np.rot90(photo, -1)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, format=image_format, exif=exif,
                                                       **({"quality": 95} if image_format == "JPEG" else {}))
    from PIL import ImageOps
    with Image.open(path) as check:
        assert np.asarray(ImageOps.exif_transpose(check)).shape == photo.shape  # the test's own premise
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_8_a_photo_is_refined_as_viewers_show_it(orientation, pair, tmp_path):
    photo_path, coarse = pair
    reference = tmp_path / "reference.png"
    assert invoke("refine", photo_path, coarse, "-o", reference).exit_code == 0
    oriented = oriented_photo(tmp_path / "oriented.png", np.asarray(Image.open(photo_path)), orientation)
    out = tmp_path / "fine.png"
    result = invoke("refine", oriented, coarse, "-o", out)
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(reference)))
    notes = [line for line in stderr_lines(result) if line.startswith("note:")]
    assert notes and "orientation" in notes[0].lower(), result.stderr


def test_8_an_oriented_jpeg_photo_is_refined_at_its_displayed_size(pair, tmp_path):
    photo_path, coarse = pair
    oriented = oriented_photo(tmp_path / "oriented.jpg", np.asarray(Image.open(photo_path)), 6, "JPEG")
    result = invoke("refine", oriented, coarse, "-o", tmp_path / "fine.png")
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert_valid_map(tmp_path / "fine.png", 40, 52)


# -------------------------------------------------- 9. export of bad weights --

@pytest.mark.parametrize("kind", ["nan", "int32"])
def test_9_export_of_bad_weights_says_what_is_wrong(kind, tiny_weights, tmp_path):
    weights = rewrite_weights(tiny_weights, tmp_path / f"{kind}.safetensors", change_tensors=BAD_TORCH_WEIGHTS[kind])
    inputs = snapshot(weights)
    out = tmp_path / "model.onnx"
    line = assert_refused(invoke("export", "--weights", weights, "-o", out), inputs, absent=(out,),
                          says=(weights.name,))
    assert "report this" not in line.lower()
