"""Keypoint-correspondence datasets: SPair-71k and a generic "image pairs + keypoints" json.

SPair-71k (``--data-root`` = the ``SPair-71k`` folder): ``JPEGImages/<category>/<name>.jpg`` and
``PairAnnotation/{trn,val,test}/*.json`` (``src_imname``, ``trg_imname``, ``category``, ``src_kps``,
``trg_kps`` as ``[x, y]`` lists, ``trg_bndbox`` ``[x1, y1, x2, y2]``); ``ImageAnnotation/`` is not needed.

Generic (``--data-root`` = the folder holding ``pairs.json``; image paths relative to it)::

    {"pairs": [{"source": "a.jpg", "target": "b.jpg",
                "source_keypoints": [[x, y], ...], "target_keypoints": [[x, y], ...],
                "target_bbox": [x1, y1, x2, y2],   # optional: PCK is then relative to the image's larger side
                "category": "car"}]}                # optional

Keypoint ``i`` of the source corresponds to keypoint ``i`` of the target (semantic parts, or geometric
matches NAVI-style). The dataset's items are the distinct images (each encoded once, cached); ``pairs``
holds the annotations. The eval transform resizes every image to ``transform.size`` square.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dinobench.data.base import cache_fingerprint_of, fingerprint_of, image_size
from dinobench.data.layout import listed_path, name_component, read_json, root_folder
from dinobench.data.square import SquareImages
from dinobench.errors import DataError
from dinobench.typed_config import reader_options


@dataclass
class SPairOptions:
    """``dataset=dict(type="spair", ...)``: which SPair-71k pair annotations to read (returned as split ``test``)."""

    root: str | None = None  # the SPair-71k folder; --data-root wins over it
    split: Literal["trn", "val", "test"] = "test"  # the folder PairAnnotation/<split>/
    categories: list[str] | None = None  # only pairs of these categories; None = all
    max_pairs: int | None = None  # only the first N pairs (sorted file names); None (or 0) = all


@dataclass
class PairsOptions:
    """``dataset=dict(type="pairs", ...)``: the generic pairs json (returned as split ``test``)."""

    root: str | None = None  # the folder holding the json (image paths are relative to it); --data-root wins
    file: str = "pairs.json"  # under the root


@dataclass(frozen=True)
class Pair:
    """One annotated pair: image indices, keypoints ``[K, 2]`` (x, y in pixels), target box, category."""

    source: int
    target: int
    source_keypoints: np.ndarray
    target_keypoints: np.ndarray
    target_bbox: tuple[float, float, float, float] | None
    category: str
    name: str


class PairImages(SquareImages):
    """The distinct images of a split of pairs; items ``(image, index)``; ``pairs`` the annotations."""

    def __init__(self, name: str, split: str, images: list[str], sizes: list[tuple[int, int]], pairs: list[Pair],
                 fingerprint: str) -> None:
        super().__init__(name, split, images, sizes, fingerprint)
        self.pairs = pairs

    def describe(self) -> dict[str, Any]:
        """What the record stores about this split."""
        return {"split": self.split, "pairs": len(self.pairs), "images": len(self.images),
                "keypoints": int(sum(len(p.source_keypoints) for p in self.pairs)), "fingerprint": self.fingerprint}


def _keypoints(value: Any, where: str, key: str, size: tuple[int, int]) -> np.ndarray:
    """``[N, 2]`` finite (x, y) points inside an image of ``size`` (width, height); else one DataError line."""
    try:
        points = np.asarray(value, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{where}: {key} must be a list of [x, y] points ({type(exc).__name__})") from None
    width, height = size
    bad = ~np.isfinite(points).all(axis=1) | (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) \
        | (points[:, 1] > height)
    if bad.any():
        raise DataError(f"{where}: {key}[{int(np.argmax(bad))}] = {points[bad][0].tolist()} is not a point inside the "
                        f"{width}x{height} image; fix the annotation")
    return points


def _box(value: Any, where: str, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The target box (x1, y1, x2, y2): four finite numbers, x2 > x1, y2 > y1, inside the image (1 px tolerance)."""
    if value is None:
        return None
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        box = ()
    width, height = size
    if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1] or box[0] < -1 \
            or box[1] < -1 or box[2] > width + 1 or box[3] > height + 1:
        raise DataError(f"{where}: target_bbox {value!r:.60} is not a box (x1, y1, x2, y2) with x2 > x1, y2 > y1 "
                        f"inside the {width}x{height} target image (an inverted box would make PCK meaningless)")
    return box  # type: ignore[return-value]


def _assemble(name: str, split: str, entries: list[dict[str, Any]], where: str) -> PairImages:
    """Pairs from entries with absolute image paths and keypoints (checked against the image sizes)."""
    index: dict[str, int] = {}
    images: list[str] = []
    sizes: list[tuple[int, int]] = []
    pairs = []
    for n, entry in enumerate(entries):
        source_file = entry.get("file", where)  # SPair: each pair's own json; pairs.json: the one file
        ids = []
        for role in ("source", "target"):
            path = str(entry[role])
            if path not in index:
                if not Path(path).is_file():
                    raise DataError(f"{source_file}: pair {entry.get('name', n)} names image {path}, which does not "
                                    f"exist")
                sizes.append(image_size(path))  # from the header, within the pixel limit
                index[path] = len(images)
                images.append(path)
            ids.append(index[path])
        label = f"{source_file}: pair {entry.get('name', n)}"
        src = _keypoints(entry.get("source_keypoints"), label, "source_keypoints", sizes[ids[0]])
        trg = _keypoints(entry.get("target_keypoints"), label, "target_keypoints", sizes[ids[1]])
        if len(src) != len(trg) or not len(src):
            raise DataError(f"{source_file}: pair {entry.get('name', n)} has {len(src)} source and {len(trg)} target "
                            f"keypoints; they must correspond one to one (and be at least one)")
        bbox = _box(entry.get("target_bbox"), label, sizes[ids[1]])
        pairs.append(Pair(ids[0], ids[1], src, trg, bbox,
                          str(entry.get("category", "all")), str(entry.get("name", n))))
    if not pairs:
        raise DataError(f"{where}: no pairs")
    fingerprint = fingerprint_of({"images": [(Path(p).name, Path(p).stat().st_size) for p in images],
                                  "pairs": [(p.name, p.source, p.target, p.source_keypoints.tolist(),
                                             p.target_keypoints.tolist(), p.target_bbox) for p in pairs]})
    ds = PairImages(name, split, images, sizes, pairs, fingerprint)
    ds.cache_fingerprint = cache_fingerprint_of(fingerprint, images)
    return ds


def build_spair(cfg: dict[str, Any], data_root: str | None) -> dict[str, PairImages]:
    """SPair-71k pairs of ``dataset.split`` (trn, val or test; default test) as split ``test``."""
    cfg = reader_options(SPairOptions, cfg)
    root = root_folder(cfg, data_root, "spair", "the SPair-71k folder")
    split = cfg["split"]
    folder = root / "PairAnnotation" / split
    if not folder.is_dir() or not (root / "JPEGImages").is_dir():
        raise DataError(f"{folder}: SPair-71k pair annotations missing; --data-root must be the SPair-71k folder "
                        f"(JPEGImages/, PairAnnotation/{{trn,val,test}}/)")
    files = sorted(folder.glob("*.json"))
    categories = set(cfg["categories"] or [])
    entries = []
    for path in files:
        try:
            record = read_json(path, "pair annotation")
            category = record["category"]
            if categories and category not in categories:
                continue
            images = root / "JPEGImages" / name_component(category, path, "category")
            entries.append({"name": path.stem, "category": category, "file": str(path),
                            "source": str(listed_path(images, record["src_imname"], path, "src_imname")),
                            "target": str(listed_path(images, record["trg_imname"], path, "trg_imname")),
                            "source_keypoints": record["src_kps"], "target_keypoints": record["trg_kps"],
                            "target_bbox": record["trg_bndbox"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a SPair-71k pair annotation ({type(exc).__name__}: {exc})") from exc
    limit = cfg["max_pairs"]
    return {"test": _assemble("spair", split, entries[:limit] if limit else entries, str(folder))}


def build_pairs(cfg: dict[str, Any], data_root: str | None) -> dict[str, PairImages]:
    """The generic layout: ``<root>/pairs.json`` (file name: ``dataset.file``) as split ``test``."""
    cfg = reader_options(PairsOptions, cfg)
    root = root_folder(cfg, data_root, "pairs", "the folder holding pairs.json")
    path = root / cfg["file"]
    if not path.is_file():
        raise DataError(f"{path}: pairs file missing; --data-root must hold pairs.json "
                        f'({{"pairs": [{{"source", "target", "source_keypoints", "target_keypoints"}}]}})')
    try:
        pairs = read_json(path, "pairs file")["pairs"]
        entries = [{**p, "source": str(listed_path(root, p["source"], path, f"pairs[{i}].source")),
                    "target": str(listed_path(root, p["target"], path, f"pairs[{i}].target"))}
                   for i, p in enumerate(pairs)]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a pairs file ({type(exc).__name__}: {exc}); expected "
                        f'{{"pairs": [{{"source", "target", "source_keypoints", "target_keypoints"}}]}}') from exc
    return {"test": _assemble("pairs", "test", entries, str(path))}
