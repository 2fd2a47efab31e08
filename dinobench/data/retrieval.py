"""Retrieval datasets: the revisited Oxford 5k / Paris 6k layout and a generic query/database folder layout.

Revisited (``--data-root`` = the dataset folder)::

    <root>/jpg/<name>.jpg          every database and query image
    <root>/gnd_roxford5k.pkl       {"imlist": [...], "qimlist": [...], "gnd": [{"bbx", "easy", "hard", "junk"}]}

The ground truth is read with :func:`dinobench.utils.safe_pickle.restricted_load` (plain containers and
numpy arrays only). Queries are cropped to their ``bbx`` (x1, y1, x2, y2) as in the protocol. Splits:
``query`` and ``database``.

Folder layout: ``<root>/query/<label>/<images>`` and ``<root>/database/<label>/<images>``; a query's
relevant items are the database images of its label (labels are matched by folder name).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dinobench.data.base import ClassificationDataset, cache_fingerprint_of, fingerprint_of
from dinobench.data.layout import listed_path, root_folder
from dinobench.data.folder import IMAGE_EXTENSIONS
from dinobench.errors import DataError
from dinobench.typed_config import reader_options
from dinobench.utils.safe_pickle import restricted_load


@dataclass
class RevisitedOptions:
    """``dataset=dict(type="roxford5k" | "rparis6k", ...)``: the revisited layout (``gnd_<name>.pkl`` + images)."""

    root: str | None = None  # the folder holding jpg/ and gnd_<name>.pkl; --data-root wins over it
    image_dir: str = "jpg"  # under the root
    suffix: str = ".jpg"  # image file = <image_dir>/<name in the ground truth><suffix>


@dataclass
class RetrievalFolderOptions:
    """``dataset=dict(type="retrieval_folder", ...)``: ``<root>/<split>/<label>/<images>`` for query and database."""

    root: str | None = None  # --data-root wins over it
    query_split: str = "query"  # folder names of the two splits under the root
    database_split: str = "database"


class RetrievalImages(ClassificationDataset):
    """Images (optionally cropped to boxes) with a label each; ``gnd`` holds the revisited ground truth."""

    def __init__(self, name: str, split: str, samples: Sequence[tuple[Any, int]], classes: Sequence[str],
                 fingerprint: str, boxes: Sequence[Sequence[float]] | None = None,
                 gnd: list[dict[str, Any]] | None = None) -> None:
        super().__init__(name, split, samples, classes, fingerprint)
        self.boxes = None if boxes is None else [tuple(float(v) for v in box) for box in boxes]
        self.gnd = gnd

    def __getitem__(self, index: int):
        source, label = self.samples[index]
        image = self.load(source)
        if self.boxes is not None:
            x1, y1, x2, y2 = self.boxes[index]
            image = image.crop((max(0, round(x1)), max(0, round(y1)), min(image.width, round(x2)),
                                min(image.height, round(y2))))
        return (self.transform(image) if self.transform else image), label

    def describe(self) -> dict[str, Any]:  # noqa: D102
        return {**super().describe(), "cropped_to_boxes": self.boxes is not None}


def _check_gnd(gnd_path: Path, data: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """``(imlist, qimlist, gnd)`` of a revisited ground-truth dict, its structure and types checked (one line each)."""
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= set(data):
        raise DataError(f"{gnd_path}: not a revisited ground-truth file (expected a dict with imlist, qimlist, gnd)")
    lists = []
    for key in ("imlist", "qimlist", "gnd"):
        if not isinstance(data[key], (list, tuple)):
            raise DataError(f"{gnd_path}: {key} is a {type(data[key]).__name__}, not a list")
        lists.append(list(data[key]))
    imlist, qimlist, gnd = lists
    for key, names in (("imlist", imlist), ("qimlist", qimlist)):
        bad = next((i for i, n in enumerate(names) if not isinstance(n, str)), None)
        if bad is not None:
            raise DataError(f"{gnd_path}: {key}[{bad}] is a {type(names[bad]).__name__}, not an image name")
    if len(gnd) != len(qimlist):
        raise DataError(f"{gnd_path}: {len(qimlist)} query names but {len(gnd)} ground-truth entries")
    for q, entry in enumerate(gnd):
        if not isinstance(entry, dict) or "bbx" not in entry:
            raise DataError(f"{gnd_path}: gnd[{q}] has no bbx (query box x1, y1, x2, y2)")
        try:
            box = [float(v) for v in np.asarray(entry["bbx"]).reshape(-1)]
        except (TypeError, ValueError, OverflowError):
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
            raise DataError(f"{gnd_path}: gnd[{q}]['bbx'] = {entry['bbx']!r:.60} is not a box (x1, y1, x2, y2 with "
                            f"x2 > x1, y2 > y1)")
        for key in ("easy", "hard", "junk"):
            try:
                values = np.asarray(entry.get(key, []))
            except (TypeError, ValueError, OverflowError):  # ragged or odd nesting
                values = np.asarray([object()])
            if values.dtype.kind not in "iu" and values.size:
                raise DataError(f"{gnd_path}: gnd[{q}]['{key}'] holds {values.dtype} values, not database indices")
            bad = [int(i) for i in values.reshape(-1) if not 0 <= int(i) < len(imlist)]
            if bad:
                raise DataError(f"{gnd_path}: gnd[{q}]['{key}'] holds database index {bad[0]} outside "
                                f"0..{len(imlist) - 1}")
    return imlist, qimlist, gnd


def _image_path(folder: Path, name: str, suffix: str, gnd_path: Path) -> Path:
    path = listed_path(folder, name if Path(name).suffix else name + suffix, gnd_path, "imlist")
    if not path.is_file():
        raise DataError(f"{path}: image listed in the ground truth is missing; the dataset folder is incomplete")
    return path


def build_revisited(cfg: dict[str, Any], data_root: str | None, name: str) -> dict[str, RetrievalImages]:
    """``query`` (cropped to their boxes) and ``database`` splits of revisited ``name`` (roxford5k, rparis6k)."""
    cfg = reader_options(RevisitedOptions, cfg)
    root = root_folder(cfg, data_root, name, f"the folder holding jpg/ and gnd_{name}.pkl")
    gnd_path, jpg = root / f"gnd_{name}.pkl", root / cfg["image_dir"]
    if not gnd_path.is_file():
        raise DataError(f"{gnd_path}: ground-truth file missing; --data-root must be the folder holding jpg/ and "
                        f"gnd_{name}.pkl")
    if not jpg.is_dir():
        raise DataError(f"{jpg}: image folder missing; expected {root}/jpg/<image>.jpg")
    imlist, qimlist, gnd = _check_gnd(gnd_path, restricted_load(gnd_path))
    suffix = cfg["suffix"]
    db_paths = [_image_path(jpg, n, suffix, gnd_path) for n in imlist]
    q_paths = [_image_path(jpg, n, suffix, gnd_path) for n in qimlist]
    gnd_sha = hashlib.sha256(gnd_path.read_bytes()).hexdigest()
    listing = {"gnd": gnd_sha, "db": [(p.name, p.stat().st_size) for p in db_paths],
               "q": [(p.name, p.stat().st_size) for p in q_paths]}
    fingerprint = fingerprint_of(listing)
    boxes = [entry["bbx"] for entry in gnd]
    query = RetrievalImages(name, "query", [(str(p), 0) for p in q_paths], ["image"], fingerprint, boxes=boxes, gnd=gnd)
    database = RetrievalImages(name, "database", [(str(p), 0) for p in db_paths], ["image"], fingerprint)
    for ds, paths in ((query, q_paths), (database, db_paths)):
        ds.cache_fingerprint = cache_fingerprint_of(fingerprint, paths, split=ds.split)
    return {"query": query, "database": database}


def build_roxford5k(cfg: dict[str, Any], data_root: str | None) -> dict[str, RetrievalImages]:
    """Revisited Oxford 5k (70 queries, 4,993 database images)."""
    return build_revisited(cfg, data_root, "roxford5k")


def build_rparis6k(cfg: dict[str, Any], data_root: str | None) -> dict[str, RetrievalImages]:
    """Revisited Paris 6k (70 queries, 6,322 database images)."""
    return build_revisited(cfg, data_root, "rparis6k")


def _scan(split_dir: Path) -> list[tuple[str, Path]]:
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder missing; expected {split_dir}/<label>/<images>")
    labels = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [(label, p) for label in labels for p in sorted((split_dir / label).iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not items:
        raise DataError(f"{split_dir}: no images; expected {split_dir}/<label>/<images>")
    return items


def build_retrieval_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, RetrievalImages]:
    """``query`` and ``database`` splits of ``<root>/{query,database}/<label>/<images>``."""
    cfg = reader_options(RetrievalFolderOptions, cfg)
    root = root_folder(cfg, data_root, "retrieval_folder", "the folder holding query/ and database/")
    scanned = {split: _scan(root / cfg[f"{split}_split"]) for split in ("query", "database")}
    classes = sorted({label for items in scanned.values() for label, _ in items})
    index = {label: i for i, label in enumerate(classes)}
    listing = {split: [(label, p.name, p.stat().st_size) for label, p in items] for split, items in scanned.items()}
    fingerprint = fingerprint_of(listing)
    out = {}
    for split, items in scanned.items():
        ds = RetrievalImages("retrieval_folder", split, [(str(p), index[label]) for label, p in items], classes,
                             fingerprint)
        ds.cache_fingerprint = cache_fingerprint_of(fingerprint, [p for _, p in items], split=split)
        out[split] = ds
    shared = {label for label, _ in scanned["query"]} & {label for label, _ in scanned["database"]}
    if not shared:
        raise DataError(f"{root}: no label has images in both query/ and database/; nothing can be retrieved")
    return out
