"""Property tests of the trust contract: random bytes, random headers and random label files.

For every generated input, c2f either exits 0 with a valid output of the photo's
size, or refuses: exit 1, one `error:` line, no traceback, no output, and every
input byte-identical. Example counts are bounded so the file runs in under a minute.
"""

import io
import struct
import zlib
from pathlib import Path

from conftest import make_scene
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_trust import (
    FASSEG_PALETTE,
    assert_intact,
    assert_no_crash,
    invoke,
    png_chunk,
    snapshot,
    stderr_lines,
)

BOUNDED = settings(max_examples=25, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HEIGHT, WIDTH = 40, 52


def invoke_quietly(*arguments):
    """invoke, failing on any Python warning: outside pytest it would reach the user as extra stderr lines."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(*arguments)
    assert not caught, f"warnings reach the user: {[str(warning.message) for warning in caught]}"
    return result


def holds_contract(result, inputs: dict, output: Path, height: int = HEIGHT, width: int = WIDTH) -> None:
    """Exit 0 with a valid output, or one error line with no output; inputs untouched either way."""
    assert_no_crash(result)
    assert_intact(inputs)
    leftovers = [path.name for path in output.parent.iterdir() if path.name.endswith(".part")]
    assert not leftovers, f"temporary files left: {leftovers}"
    if result.exit_code == 0:
        with Image.open(output) as image:
            image.load()
            assert image.size == (width, height)
        return
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.stderr}"
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not output.exists()


def fresh_pair(folder: Path) -> tuple[Path, Path, Path]:
    """A clean folder with a valid photo and coarse map; returns photo, coarse and the output path."""
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photo, coarse, _ = make_scene(HEIGHT, WIDTH, seed=3)
    Image.fromarray(photo).save(folder / "photo.png")
    Image.fromarray(FASSEG_PALETTE[coarse]).save(folder / "coarse.png")
    return folder / "photo.png", folder / "coarse.png", folder / "fine.png"


def valid_png(folder: Path, which: str) -> bytes:
    return (folder / f"{which}.png").read_bytes()


@BOUNDED
@given(data=st.binary(max_size=2048), role=st.sampled_from(["photo", "coarse"]),
       suffix=st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".webp"]))
def test_random_bytes_as_photo_or_map(tmp_path, data, role, suffix):
    photo, coarse, output = fresh_pair(tmp_path / "case")
    target = photo if role == "photo" else coarse
    target.unlink()
    target = target.with_suffix(suffix)
    target.write_bytes(data)
    photo, coarse = (target, coarse) if role == "photo" else (photo, target)
    inputs = snapshot(photo, coarse)
    holds_contract(invoke_quietly("refine", photo, coarse, "-o", output), inputs, output)


@BOUNDED
@given(width=st.integers(0, 2**31), height=st.integers(0, 2**31), depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
       color_type=st.sampled_from([0, 2, 3, 4, 6, 5]), payload=st.binary(max_size=256),
       zeros=st.integers(0, 4096), role=st.sampled_from(["photo", "coarse"]))
def test_random_png_headers(tmp_path, width, height, depth, color_type, payload, zeros, role):
    """A well-formed PNG container around any IHDR, and an IDAT of random or zero bytes."""
    photo, coarse, output = fresh_pair(tmp_path / "case")
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    idat = zlib.compress(payload + bytes(zeros))
    target = photo if role == "photo" else coarse
    target.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
                       + png_chunk(b"IEND", b""))
    inputs = snapshot(photo, coarse)
    holds_contract(invoke_quietly("refine", photo, coarse, "-o", output), inputs, output)


@BOUNDED
@given(image_format=st.sampled_from(["PNG", "TIFF", "BMP", "JPEG", "WEBP", "GIF"]),
       flips=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 255)), min_size=1, max_size=6),
       role=st.sampled_from(["photo", "coarse"]))
def test_real_images_with_random_header_bytes(tmp_path, image_format, flips, role):
    """A real image of each format with a few of its first 100 bytes replaced."""
    photo, coarse, output = fresh_pair(tmp_path / "case")
    target = photo if role == "photo" else coarse
    buffer = io.BytesIO()
    Image.open(target).convert("RGB").save(buffer, format=image_format)
    data = bytearray(buffer.getvalue())
    for position, value in flips:
        data[position % len(data)] = value
    target.write_bytes(bytes(data))
    inputs = snapshot(photo, coarse)
    holds_contract(invoke_quietly("refine", photo, coarse, "-o", output), inputs, output)


names = st.text(min_size=0, max_size=12)
numbers = st.one_of(st.integers(-300, 300), st.integers(), st.integers(10**20, 10**30), st.floats(allow_nan=True),
                    st.booleans(), st.none())
colors = st.one_of(st.lists(st.integers(0, 255), min_size=3, max_size=3), st.lists(numbers, max_size=4), names)
entries = st.one_of(st.fixed_dictionaries({"name": names, "color": colors}),
                    st.dictionaries(names, st.one_of(names, numbers, colors), max_size=3), numbers, names)
label_documents = st.one_of(st.fixed_dictionaries({"classes": st.lists(entries, max_size=8)}),
                            st.dictionaries(names, st.lists(entries, max_size=3), max_size=2), st.lists(entries))


def toml_text(document) -> str:
    """Best-effort TOML for a generated document; anything unencodable becomes a deliberate syntax error."""
    import json
    try:
        classes = document["classes"] if isinstance(document, dict) else document
        rows = []
        for entry in classes:
            if isinstance(entry, dict):
                fields = ", ".join(f"{json.dumps(key)} = {json.dumps(value)}" for key, value in entry.items())
                rows.append("{" + fields + "}")
            else:
                rows.append(json.dumps(entry))
        return "classes = [" + ", ".join(rows) + "]\n"
    except (TypeError, KeyError):
        return "classes = [\n"


@BOUNDED
@given(document=label_documents, as_toml=st.booleans(), noise=st.binary(max_size=32))
def test_random_label_files(tmp_path, document, as_toml, noise):
    """score reads both maps with any label file: it scores them or refuses the file in one line."""
    import json
    predicted, fine, _ = fresh_pair(tmp_path / "case")
    labels = tmp_path / "case" / ("labels.toml" if as_toml else "labels.json")
    text = toml_text(document) if as_toml else json.dumps(document, allow_nan=True)
    labels.write_bytes(text.encode() + noise)
    inputs = snapshot(predicted, fine, labels)
    result = invoke("score", predicted, fine, "--labels", labels, "--json")
    assert_no_crash(result)
    assert_intact(inputs)
    if result.exit_code != 0:
        assert result.exit_code == 1
        lines = stderr_lines(result)
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output_kind=st.sampled_from(["photo", "coarse", "dot", "dotdot", "symlink", "hardlink", "fresh"]),
       overlay_kind=st.sampled_from(["none", "photo", "coarse", "output", "fresh"]))
def test_random_output_spellings_never_replace_an_input(tmp_path, monkeypatch, output_kind, overlay_kind):
    """With --overwrite, whatever -o and --overlay name, the inputs stay byte-identical and links stay links."""
    import os
    photo, coarse, fresh = fresh_pair(tmp_path / "case")
    folder = photo.parent
    (folder / "sub").mkdir()
    monkeypatch.chdir(folder)
    (folder / "link.png").symlink_to(coarse)
    os.link(coarse, folder / "hard.png")
    spelled = {"photo": photo, "coarse": coarse, "dot": Path("./coarse.png"), "dotdot": folder / "sub" / ".." / "photo.png",
               "symlink": folder / "link.png", "hardlink": folder / "hard.png", "fresh": fresh}
    output = spelled[output_kind]
    overlay = {"none": None, "photo": photo, "coarse": Path("./coarse.png"), "output": output,
               "fresh": folder / "check.png"}[overlay_kind]
    inputs = snapshot(photo, coarse, folder / "link.png", folder / "hard.png")
    arguments = ["refine", photo, coarse, "-o", output, "--overwrite"] + (["--overlay", overlay] if overlay else [])
    result = invoke(*arguments)
    assert_no_crash(result)
    assert_intact(inputs)
    if result.exit_code != 0:
        lines = stderr_lines(result)
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
