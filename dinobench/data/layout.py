"""Layout helpers every reader uses: the data root, required folders, the images of a folder, image/target pairs
by file stem, the first N samples, the listing that fingerprints a split's files. Each failure is one
:class:`~dinobench.errors.DataError` line naming the path and what belongs there, raised before any compute."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from dinobench.data.folder import IMAGE_EXTENSIONS
from dinobench.errors import DataError


def root_folder(cfg: dict[str, Any], data_root: str | None, name: str, expected: str) -> Path:
    """``--data-root``, else ``dataset.root`` (``cfg``: a reader's merged options), as an existing folder."""
    root = data_root or cfg["root"]
    if not root:
        raise DataError(f"dataset {name!r} needs a data root; pass --data-root DIR ({expected})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist; pass --data-root pointing at the dataset folder "
                        f"({expected})")
    return root


def require_dir(path: Path, expected: str) -> Path:
    """``path`` if it is a folder, else a one-line DataError naming what belongs there."""
    if not path.is_dir():
        raise DataError(f"{path}: folder missing; expected {expected}")
    return path


def images_in(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted; none is a one-line DataError."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); put the split's images here")
    return files


def pair_by_stem(images: list[Path], target_dir: Path, suffix: str, what: str) -> list[tuple[str, str]]:
    """``(image, target)`` path pairs, the target named ``<image stem><suffix>`` in ``target_dir``; images without one
    are a one-line DataError naming the first few."""
    pairs, missing = [], []
    for image in images:
        target = target_dir / (image.stem + suffix)
        if target.is_file():
            pairs.append((str(image), str(target)))
        else:
            missing.append(image.name)
    if missing:
        raise DataError(f"{target_dir}: {len(missing)} of {len(images)} images have no {what} "
                        f"(<stem>{suffix}; first: {', '.join(missing[:3])}); add the {what}s or remove those images")
    return pairs


def first_samples(pairs: list, cfg: dict[str, Any], split_key: str) -> list:
    """The first ``dataset.max_<split_key>_samples`` of ``pairs`` (None: all)."""
    limit = cfg[f"max_{split_key}_samples"]
    if limit is None:
        return pairs
    if not isinstance(limit, int) or limit < 1:
        raise DataError(f"dataset.max_{split_key}_samples={limit!r}: expected a positive integer or None")
    return pairs[:limit]


def file_listing(pairs: Sequence[tuple[str, str]], root: Path) -> list[Any]:
    """(relative path, size) of every image and target: the content part of a fingerprint."""
    return [[os.path.relpath(a, root), os.path.getsize(a), os.path.relpath(b, root), os.path.getsize(b)]
            for a, b in pairs]


def listed_path(root: Path, entry: Any, source: Path | str, what: str = "image") -> Path:
    """``root / entry`` for a path listed in a dataset file (``source``: a COCO ``file_name``, an id in a list file,
    a ``pairs.json`` field, ...): a non-empty relative path that stays inside ``root`` after resolving ``..`` and
    symlinks; anything else (absolute, ``../``, a symlink out of the data root, not a string) is one DataError line
    naming the file and the entry. The file itself need not exist yet (readers check that separately)."""
    if not isinstance(entry, str) or not entry.strip() or "\x00" in entry:
        raise DataError(f"{source}: {what} entry {entry!r:.80} is not a file name; fix the file")
    candidate = Path(entry)
    if candidate.is_absolute() or candidate.drive:
        raise DataError(f"{source}: {what} entry {entry!r:.80} is an absolute path; entries are relative to "
                        f"{root}")
    base = Path(root).resolve()
    path = (base / candidate).resolve()
    if path != base and base not in path.parents:
        raise DataError(f"{source}: {what} entry {entry!r:.80} leads outside the data root {base}; fix the file")
    return Path(root) / candidate


def name_component(entry: Any, source: Path | str, what: str = "name") -> str:
    """``entry`` if it is a single path component (a sequence or split name read from a dataset file and later used
    to name a folder or an output file): no separator, not ``.`` / ``..``, not empty; else one DataError line."""
    if (not isinstance(entry, str) or not entry.strip() or entry in (".", "..") or "/" in entry or "\\" in entry
            or "\x00" in entry or (os.altsep and os.altsep in entry)):
        raise DataError(f"{source}: {what} {entry!r:.80} is not a plain name (no '/', '..' or empty names); fix the "
                        f"file")
    return entry


def read_json(path: Path | str, what: str = "file") -> Any:
    """The JSON document in ``path``; unreadable, not UTF-8, not JSON or nested too deeply (a 200k-deep document
    would otherwise end in a RecursionError traceback) is one DataError line naming the file."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: the {what} is not valid UTF-8 JSON ({type(exc).__name__}: {str(exc)[:80]}); "
                        f"fix or re-export it") from None
    except RecursionError:
        raise DataError(f"{path}: the {what} is nested too deeply to read; it is not a genuine one") from None


def read_lines(path: Path | str) -> list[str]:
    """The non-empty lines of a list file (UTF-8 text); unreadable or not text is one DataError line."""
    try:
        return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the list ({type(exc).__name__}); it must be UTF-8 text") from None
