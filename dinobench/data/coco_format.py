"""COCO annotation files (``instances_*.json``) through pycocotools, for every reader of a COCO-format dataset."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

from dinobench.data.layout import read_json
from dinobench.errors import DataError


def load_coco(path: Path) -> Any:
    """``pycocotools.coco.COCO`` of an annotation file (its progress prints silenced); one-line errors."""
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DataError(f"{path}: annotation file missing; expected a COCO instances json (annotations/"
                        f"instances_<split>.json)")
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a COCO instances file (a JSON object with images, annotations, categories)")
    for key in ("images", "annotations", "categories"):
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            found = "missing" if value is None else f"a {type(value).__name__}" if not isinstance(value, list) else \
                "a list holding non-objects"
            raise DataError(f"{path}: not a COCO instances file: {key!r} is {found}, not a list of objects; "
                            f"re-export the annotations")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
        return coco
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a COCO instances file (a record lacks {type(exc).__name__} {str(exc)[:40]}); "
                        f"images need id and file_name, annotations id, image_id and category_id") from None


#: how far (pixels) a box may reach past its image (float rounding in exported annotations)
BOX_TOLERANCE = 1.0


def _int_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_instances(coco: Any, ann_file: Path, max_category_id: int | None = None) -> None:
    """Every record of a COCO instances file well-formed before pycocotools' evaluation or a protocol reads it:
    unique integer ids, image sizes, known categories (at most ``max_category_id`` when given: a head indexed by
    category id), four finite bbox numbers inside the image, an area, iscrowd 0/1. One DataError line each."""
    data = coco.dataset
    seen: set[int] = set()
    for index, cat in enumerate(data.get("categories") or []):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _int_id(cid) or cid < 0 or cid in seen:
            raise DataError(f"{ann_file}: categories[{index}] id {cid!r:.30} is not a unique non-negative integer")
        if max_category_id is not None and cid > max_category_id:
            raise DataError(f"{ann_file}: category id {cid} is above {max_category_id}: with label_mode=category_id "
                            f"the head would have {cid + 1} outputs; use dataset.label_mode=contiguous")
        seen.add(cid)
    sizes: dict[int, tuple[float, float]] = {}
    for index, img in enumerate(data.get("images") or []):
        iid = img.get("id") if isinstance(img, dict) else None
        if not _int_id(iid) or iid in sizes:
            raise DataError(f"{ann_file}: images[{index}] id {iid!r:.30} is not a unique integer (a repeated id "
                            f"would hide an image)")
        width, height = img.get("width"), img.get("height")
        if not (_number(width) and _number(height) and width > 0 and height > 0):
            raise DataError(f"{ann_file}: image {iid} has no positive width/height ({width!r:.20} x {height!r:.20})")
        sizes[iid] = (float(width), float(height))
    ann_ids: set[int] = set()
    for index, ann in enumerate(data.get("annotations") or []):
        aid = ann.get("id") if isinstance(ann, dict) else None
        where = f"{ann_file}: annotation {aid!r:.30}"
        if not _int_id(aid) or aid in ann_ids:
            raise DataError(f"{ann_file}: annotations[{index}] id {aid!r:.30} is not a unique integer (COCOeval "
                            f"matches by id)")
        ann_ids.add(aid)
        missing = [k for k in ("image_id", "category_id", "bbox", "area", "iscrowd") if k not in ann]
        if missing:
            raise DataError(f"{where} lacks {', '.join(missing)} (a COCO instance has image_id, category_id, bbox "
                            f"[x, y, w, h], area, iscrowd)")
        if not _int_id(ann["image_id"]) or ann["image_id"] not in sizes:
            raise DataError(f"{where} refers to unknown image_id {ann['image_id']!r:.30}")
        if not _int_id(ann["category_id"]) or ann["category_id"] not in seen:
            raise DataError(f"{where} has unknown category_id {ann['category_id']!r:.30} (known: "
                            f"{sorted(seen)[:10]}); fix or drop it")
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], bool) or not _number(ann["area"]):
            raise DataError(f"{where}: iscrowd must be 0 or 1 and area a number (got {ann['iscrowd']!r:.10}, "
                            f"{ann['area']!r:.20})")
        box = ann["bbox"]
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_number(v) for v in box)):
            raise DataError(f"{where}: bbox {box!r:.60} is not four finite numbers [x, y, w, h]")
        x, y, w, h = (float(v) for v in box)
        width, height = sizes[ann["image_id"]]
        if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + max(w, 0) > width + BOX_TOLERANCE \
                or y + max(h, 0) > height + BOX_TOLERANCE:
            raise DataError(f"{where}: bbox {box} reaches outside its {width:g}x{height:g} image; fix the box")
