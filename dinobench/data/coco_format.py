"""COCO annotation files (``instances_*.json``) through pycocotools, for every reader of a COCO-format dataset."""

from __future__ import annotations

import contextlib
import io
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
