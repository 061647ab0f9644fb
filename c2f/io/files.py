"""Writing files so that none is ever half-written, and the policy for replacing existing ones."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from c2f.errors import C2FError

# Suffixes whose formats change pixel values on saving: a label map written so would change its classes.
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")

# write_atomically's temporary files: ".NAME.RANDOM.part" beside NAME (mkstemp's 8 random characters).
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".", ".part"
TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")
# A temporary file is stale when older than this before the run began: another run still writing
# refreshes its file's time as it writes, so one untouched this long was left by a run that died.
STALE_MARGIN_SECONDS = 60.0


def new_file_mode() -> int:
    """Permission bits a newly created file gets under the current umask (0644 for the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temporary_path) in path's folder, then rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}.",
                                                 suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None
    os.close(descriptor)
    try:
        write(Path(temporary))
        # mkstemp makes 0600 files, and some writers (safetensors) replace the file they are given:
        # set the mode last, so outputs read like any other file.
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        # Writers (PIL, numpy) report a full disk without a file name, or with the temporary one: name the output.
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sweep_stale_temporaries(folders: Iterable[Path | None], started: float | None = None) -> int:
    """Remove write_atomically's temporary files left in these folders by runs that died; return how many.

    Only files named as write_atomically names them and untouched since well before `started`
    (default: now) are removed: another program's files, and those of a run still writing, stay.
    """
    threshold = (time.time() if started is None else started) - STALE_MARGIN_SECONDS
    removed = 0
    for folder in {Path(folder) for folder in folders if folder is not None}:
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if (TEMPORARY_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < threshold):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def same_file(first: Path, second: Path) -> bool:
    """True when two paths name one file: the same real path (links, "./", "..") or one inode (hard links)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def guard_outputs(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse before any work an output that is an input, another output, or a symbolic link.

    inputs and outputs map how the user named each path ("the photo", "-o") to the path; None is
    skipped. Paths are compared by real path and by inode, so "./a.png", "x/../a.png", symbolic
    and hard links to an input are all caught. An output that is a link is refused as well:
    writing atomically would replace the link itself.
    """
    for name, path in outputs.items():
        if path is not None and Path(path).is_symlink():
            raise C2FError(f"{name} {path} is a symbolic link; c2f would replace the link, not write through it. "
                           "Give the real path or another name.")
    refuse_clashes(inputs, outputs, "file", "give each its own name.")


def guard_output_folders(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Folder mode: refuse an output folder that is an input folder or another output folder (links resolved)."""
    refuse_clashes(inputs, outputs, "folder", "maps and check images share file names, so give each its own folder.")


def refuse_clashes(inputs: dict[str, Path | None], outputs: dict[str, Path | None], kind: str, hint: str) -> None:
    """Refuse an output (file or folder) that is one of the inputs, or the same as an earlier output."""
    named_outputs = [(name, Path(path)) for name, path in outputs.items() if path is not None]
    for position, (name, path) in enumerate(named_outputs):
        for input_name, input_path in inputs.items():
            if input_path is not None and same_file(path, input_path):
                raise C2FError(f"{name} {path} is {input_name} {input_path} itself; c2f never writes over its "
                               f"inputs. Choose another {name}{' folder' if kind == 'folder' else ''}.")
        for other_name, other in named_outputs[:position]:
            if same_file(path, other):
                raise C2FError(f"{name} {path} and {other_name} {other} are the same {kind}; {hint}")


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
