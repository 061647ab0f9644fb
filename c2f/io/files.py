"""Writing files so that none is ever half-written, and the policy for replacing existing ones."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from PIL import Image

from c2f.errors import C2FError

# Suffixes whose formats change pixel values on saving: a label map written so would change its classes.
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


def new_file_mode() -> int:
    """Permission bits a newly created file gets under the current umask (0644 for the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temporary_path) in path's folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(descriptor)
    try:
        write(Path(temporary))
        # mkstemp makes 0600 files, and some writers (safetensors) replace the file they are given:
        # set the mode last, so outputs read like any other file.
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_image(image: Image.Image, path: Path) -> None:
    """Save a PIL image atomically, in the format its suffix names (PNG when unsure)."""
    suffix = Path(path).suffix.lower()
    image_format = {".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, "PNG")
    write_atomically(path, lambda temporary: image.save(temporary, format=image_format))


def check_new_file(path: Path, overwrite: bool) -> None:
    """Refuse to write over a folder, or over an existing file without --overwrite."""
    path = Path(path)
    if path.is_dir():
        raise C2FError(f"{path} is a folder; give a file name such as {path / 'fine.png'}.")
    if path.exists() and not overwrite:
        raise C2FError(f"{path} already exists; pass --overwrite to replace it.")


def check_map_output(path: Path, overwrite: bool) -> None:
    """check_new_file, and refuse lossy formats for label maps."""
    if Path(path).suffix.lower() in LOSSY_SUFFIXES:
        raise C2FError(f"{path}: lossy formats change class colours; write .png (or .bmp, .tif) instead.")
    check_new_file(path, overwrite)
