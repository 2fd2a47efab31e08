"""User data as CSV manifests: ``path,label`` rows (header required, extra columns ignored).

``dataset.train_csv`` / ``dataset.val_csv`` (absolute, or relative to ``--data-root`` when given,
else to the current folder), or ``--data-root DIR`` holding ``train.csv`` and ``val.csv``. Image
paths are absolute or relative to the folder of their CSV file; labels are class-name strings.
Optional ``dataset.classes`` fixes the class list and its order (default: sorted train labels).
Everything is validated before any compute; every problem is a one-line :class:`DataError`
naming the file, the row (1-based line number, header = line 1) and the fix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinobench.data.base import ClassificationDataset, fingerprint_of
from dinobench.errors import DataError
from dinobench.typed_config import reader_options

REQUIRED_COLUMNS = ("path", "label")


@dataclass
class CSVOptions:
    """``dataset=dict(type="csv", ...)``: the two manifests and, optionally, the class list."""

    root: str | None = None  # --data-root wins over it
    train_csv: str | None = None  # None: <root>/train.csv; relative paths are under the root when one is given
    val_csv: str | None = None
    # the class list and its order (None: sorted train labels); ints allowed for numeric labels, compared as text
    classes: list[str | int] | None = None


def read_manifest(csv_path: Path) -> list[tuple[int, str, str]]:
    """Rows ``(line number, path as written, label)`` of one CSV; bad header or empty cells raise DataError."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV manifest not found; create it (header: path,label) or set "
                        f"dataset.train_csv / dataset.val_csv")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} (header is "
                                f"{','.join(columns) or 'empty'}); the first line must be path,label")
            reader.fieldnames = columns
            rows = []
            for record in reader:
                line = reader.line_num
                path, label = (record.get("path") or "").strip(), (record.get("label") or "").strip()
                if not path and not label and not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                    continue  # blank line
                if not path or not label:
                    empty = "path" if not path else "label"
                    raise DataError(f"{csv_path}: row {line}: empty {empty}; fill it in or delete the row")
                rows.append((line, path, label))
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not UTF-8 text ({exc.reason}); save the manifest as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{csv_path}: malformed CSV ({exc}); fix the quoting on that line") from None
    if not rows:
        raise DataError(f"{csv_path}: no rows after the header; add lines path,label")
    return rows


def _resolve_csv(value: str | None, default_name: str, data_root: str | None, key: str) -> Path:
    if value:
        path = Path(value).expanduser()
        return path if path.is_absolute() or not data_root else Path(data_root).expanduser() / path
    if not data_root:
        raise DataError(f"dataset 'csv' needs --data-root DIR (with train.csv and val.csv) or "
                        f"dataset.{key}=PATH (and the other split)")
    return Path(data_root).expanduser() / default_name


class CSVDataset(ClassificationDataset):
    """Samples from a CSV manifest; :attr:`cache_fingerprint` adds file mtimes to :attr:`fingerprint`."""

    cache_fingerprint: str


def _check_files(csv_path: Path, rows: list[tuple[int, str, str]]) -> list[tuple[Path, os.stat_result]]:
    """Resolved image paths with their stat; all missing files reported at once (first 3 + count)."""
    resolved, missing = [], []
    for line, raw, _label in rows:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else csv_path.parent / path
        try:
            stat = path.stat()
            if not path.is_file():
                raise FileNotFoundError
        except OSError:
            missing.append(f"row {line}: {raw}")
            continue
        resolved.append((path, stat))
    if missing:
        shown = "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else "")
        raise DataError(f"{csv_path}: {len(missing)} image file(s) missing ({shown}); paths are relative to "
                        f"{csv_path.parent} unless absolute: fix them or remove the rows")
    return resolved


def build_csv(cfg: dict[str, Any], data_root: str | None = None) -> dict[str, ClassificationDataset]:
    """Train/val splits from ``train_csv``/``val_csv`` manifests (see the module docstring)."""
    cfg = reader_options(CSVOptions, cfg)
    data_root = data_root or cfg["root"]
    if data_root and not Path(data_root).expanduser().is_dir():
        raise DataError(f"{data_root}: data root does not exist; pass --data-root DIR with train.csv and val.csv")
    csv_paths = {split: _resolve_csv(cfg[f"{split}_csv"], f"{split}.csv", data_root, f"{split}_csv")
                 for split in ("train", "val")}
    rows = {split: read_manifest(path) for split, path in csv_paths.items()}
    train_labels = {label for _, _, label in rows["train"]}
    configured = cfg["classes"]
    if configured:
        classes = [str(c) for c in configured]
        if len(set(classes)) != len(classes):
            raise DataError(f"dataset.classes has duplicates: {classes}; list each class once")
        empty = [c for c in classes if c not in train_labels]
        if empty:
            raise DataError(f"{csv_paths['train']}: class(es) {', '.join(map(repr, empty[:3]))} have no rows "
                            f"({len(empty)} empty); add training images or drop them from dataset.classes")
        unknown = [(line, label) for line, _, label in rows["train"] if label not in set(classes)]
        if unknown:
            line, label = unknown[0]
            raise DataError(f"{csv_paths['train']}: row {line}: label {label!r} is not in dataset.classes "
                            f"({len(unknown)} such rows); add it to dataset.classes or fix the label")
    else:
        classes = sorted(train_labels)
    index = {name: i for i, name in enumerate(classes)}
    unseen = [(line, label) for line, _, label in rows["val"] if label not in index]
    if unseen:
        labels = sorted({label for _, label in unseen})
        raise DataError(f"{csv_paths['val']}: row {unseen[0][0]}: label {unseen[0][1]!r} does not occur in "
                        f"{csv_paths['train'].name} ({len(unseen)} row(s), labels {labels[:3]}); every val class "
                        f"needs training rows: fix the label or add training images")
    splits: dict[str, ClassificationDataset] = {}
    for split, csv_path in csv_paths.items():
        files = _check_files(csv_path, rows[split])
        samples = [(str(path), index[label]) for (path, _), (_, _, label) in zip(files, rows[split])]
        # fingerprint (-> protocol hash) is machine independent; the cache key also sees mtimes (edits)
        content = [(raw, label, stat.st_size) for (_, stat), (_, raw, label) in zip(files, rows[split])]
        ds = CSVDataset("csv", split, samples, classes,
                        fingerprint_of({"classes": classes, "rows": content}))
        ds.cache_fingerprint = fingerprint_of({"rows": content, "fingerprint": ds.fingerprint,
                                               "mtime_ns": [stat.st_mtime_ns for _, stat in files]})
        splits[split] = ds
    return splits
