"""Atomic file writes and safe path components: nothing half-written survives a crash."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

logger = logging.getLogger("dinobench")


def safe_component(name: str) -> str:
    """A name (backbone, task, or one read from data) usable as one path component inside a folder:
    ``org/model`` -> ``org--model``, ``../x`` -> ``..--x``; ``.``, ``..`` and empty names become ``unnamed``."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "--", str(name)).strip("-")
    return "unnamed" if out in ("", ".", "..") else out


def make_public(path: Path) -> None:
    """Give a ``mkdtemp``/``mkstemp`` path (0700/0600) the permissions a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def write_atomic(path: Path, content: str | Callable[[BinaryIO], None]) -> Path:
    """Write ``content`` (text, or a function writing to a binary file object) to ``path`` via a
    temp file in the same folder + fsync + rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        make_public(Path(tmp))  # results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_folder_atomic(out_dir: Path, fill: Callable[[Path], None], what: str = "--output folder") -> Path:
    """Create the new folder ``out_dir`` with ``fill(staging)`` writing its files into a temporary sibling that is
    then renamed into place (an existing non-empty ``out_dir`` is refused): never a half-written folder."""
    import shutil

    from dinobench.errors import DinobenchError

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DinobenchError(f"{out_dir}: exists and is not empty; choose a new {what}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        fill(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str, kind: str, fix: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<folder>/.lock`` for the ``with`` block: a second process doing the same
    work (``what``, for the log line) waits, then finds the first one's output. Released when the process dies,
    so a killed run never leaves a stale lock. A folder that cannot be created or written is one
    DinobenchError line: ``<folder>: <kind> not writable (<error>); <fix>``."""
    from dinobench.errors import DinobenchError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a+")
    except OSError as exc:
        raise DinobenchError(f"{folder}: {kind} not writable ({exc.strerror or exc}); {fix}") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("dinobench: waiting for another process %s %s", what, folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
