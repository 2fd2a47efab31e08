"""COCO-format object detection through pycocotools: ``annotations/instances_<split>.json`` + ``<split>/`` images.

:func:`build_coco` validates the layout before any compute (annotation json missing or unreadable, an
annotation naming an unknown category, image files missing: one line naming the file and the fix). Boxes with
zero or negative width/height are skipped and counted; crowd annotations are left out of the training targets
(DETR's convention; the COCO evaluation still sees them as ignore regions); images without boxes are kept.

Labels: ``label_mode="category_id"`` (default; DETR's and the DINOv3 release's convention: the label is the
COCO category id, ``num_classes = max id + 1``, 91 for COCO) or ``"contiguous"`` (0..K-1 in category-id
order). ``label_to_category`` maps back for the evaluation. A sample is ``{"image": float [3, H, W] in [0, 1],
"boxes": float [T, 4] XYXY pixels, "labels": long [T], "image_id": int, "orig_size": (H, W), "name": str}``;
a joint ``transform`` (:mod:`dinobench.data.detection_transforms`) maps it to the augmented, normalised one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from dinobench.backbones.loading import sha256_file
from dinobench.data.base import fingerprint_of, load_rgb
from dinobench.data.coco_format import check_instances, load_coco
from dinobench.data.dense import image_to_tensor
from dinobench.data.layout import listed_path
from dinobench.errors import DataError
from dinobench.typed_config import reader_options

log = logging.getLogger(__name__)
LABEL_MODES = ("category_id", "contiguous")
#: the largest category id ``label_mode="category_id"`` accepts (COCO's is 90; the head has max id + 1 outputs)
MAX_CATEGORY_ID = 10_000


@dataclass
class COCOOptions:
    """``dataset=dict(type="coco", ...)``: ``annotations/instances_<split>.json`` + ``<split>/`` per split."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train2017"  # names both the image folder and instances_<split>.json
    val_split: str = "val2017"
    # one of LABEL_MODES (checked by the reader, a DataError naming them): labels = COCO category ids
    # (num_classes = max id + 1) or 0..K-1 in category-id order
    label_mode: str = "category_id"
    max_train_samples: int | None = None  # only the first N images (sorted ids); None = all
    max_val_samples: int | None = None


class DetectionDataset(Dataset):
    """Images of a COCO annotation file with their non-crowd, non-degenerate boxes (see the module doc)."""

    def __init__(self, name: str, split: str, coco: Any, image_dir: Path, image_ids: Sequence[int],
                 label_mode: str, fingerprint: str, skipped: dict[str, int],
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.name, self.split, self.coco, self.image_dir = name, split, coco, image_dir
        self.image_ids = list(image_ids)
        self.category_ids = sorted(int(c) for c in coco.cats)
        self.class_names = [str(coco.cats[c].get("name", c)) for c in self.category_ids]
        self.label_mode = label_mode
        if label_mode == "category_id":
            self.label_to_category = list(range(max(self.category_ids) + 1))
            self._label = {c: c for c in self.category_ids}
        else:
            self.label_to_category = list(self.category_ids)
            self._label = {c: i for i, c in enumerate(self.category_ids)}
        self.num_classes = len(self.label_to_category)
        self.fingerprint, self.skipped, self.transform = fingerprint, dict(skipped), transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def target(self, image_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(XYXY boxes, labels) of the usable annotations of ``image_id``."""
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or not _valid_box(ann.get("bbox")):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes.append([x, y, x + w, y + h])
            labels.append(self._label[int(ann["category_id"])])
        return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long))

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = load_rgb(self.image_dir / info["file_name"])
        boxes, labels = self.target(image_id)
        sample = {"image": image_to_tensor(image), "boxes": boxes, "labels": labels, "image_id": int(image_id),
                  "orig_size": (image.height, image.width), "name": Path(info["file_name"]).stem}
        return self.transform(sample) if self.transform is not None else sample

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "num_classes": self.num_classes,
                "num_categories": len(self.category_ids), "label_mode": self.label_mode,
                "skipped": self.skipped, "fingerprint": self.fingerprint}


def _valid_box(bbox: Any) -> bool:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return False
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return False
    return all(math.isfinite(v) for v in (x, y, w, h)) and w > 0 and h > 0


def _check(coco: Any, ann_file: Path, image_dir: Path, label_mode: str = "category_id") -> dict[str, int]:
    """Validate every record, the categories and the image files; count what the targets leave out. Boxes of zero
    width or height are skipped for training (DETR's convention) and removed from the evaluation ground truth
    too (a perfect detector cannot match them), counted in ``skipped``."""
    if not coco.cats:
        raise DataError(f"{ann_file}: no categories; a COCO instances file lists its categories")
    check_instances(coco, ann_file, max_category_id=MAX_CATEGORY_ID if label_mode == "category_id" else None)
    skipped = {"crowd": 0, "degenerate_boxes": 0}
    kept = []
    for ann in coco.dataset["annotations"]:
        if ann["iscrowd"]:
            skipped["crowd"] += 1  # kept: COCOeval treats crowd regions as ignore regions
        elif not _valid_box(ann["bbox"]):
            skipped["degenerate_boxes"] += 1
            continue
        kept.append(ann)
    if skipped["degenerate_boxes"]:
        coco.dataset["annotations"] = kept
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        log.warning("%s: skipped %d annotations with zero-width or zero-height boxes (training and evaluation)",
                    ann_file, skipped["degenerate_boxes"])
    for info in coco.imgs.values():  # a path in the json stays inside the image folder
        listed_path(image_dir, info.get("file_name"), ann_file, f"image {info.get('id')!r:.20} file_name")
    missing = [info["file_name"] for info in coco.imgs.values() if not (image_dir / info["file_name"]).is_file()]
    if missing:
        raise DataError(f"{image_dir}: {len(missing)} of {len(coco.imgs)} images listed in {ann_file.name} are "
                        f"missing (first: {', '.join(missing[:3])}); restore them or remove them from the json")
    return skipped


def build_coco(cfg: dict[str, Any], data_root: str | None) -> dict[str, DetectionDataset]:
    """COCO 2017 layout: ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``."""
    cfg = reader_options(COCOOptions, cfg)
    root = data_root or cfg["root"]
    expected = "annotations/instances_{train,val}2017.json + train2017/ + val2017/"
    if not root:
        raise DataError(f"dataset 'coco' needs a data root; pass --data-root DIR ({expected})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist; pass --data-root pointing at the COCO folder ({expected})")
    mode = cfg["label_mode"]
    if mode not in LABEL_MODES:
        raise DataError(f"dataset.label_mode={mode!r}: expected one of {', '.join(LABEL_MODES)}")
    splits = {}
    for key in ("train", "val"):
        folder = cfg[f"{key}_split"]
        ann_file = root / "annotations" / f"instances_{folder}.json"
        coco = load_coco(ann_file)
        image_dir = root / folder
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: image folder missing; expected {expected}")
        skipped = _check(coco, ann_file, image_dir, mode)
        ids = sorted(int(i) for i in coco.imgs)
        limit = cfg[f"max_{key}_samples"]
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise DataError(f"dataset.max_{key}_samples={limit!r}: expected a positive integer or None")
            ids = ids[:limit]
        listing = [[coco.imgs[i]["file_name"], (image_dir / coco.imgs[i]["file_name"]).stat().st_size] for i in ids]
        fp = fingerprint_of({"annotations": sha256_file(ann_file), "files": listing, "label_mode": mode})
        splits[key] = DetectionDataset("coco", key, coco, image_dir, ids, mode, fp, skipped)
    if splits["train"].category_ids != splits["val"].category_ids:
        raise DataError(f"{root}/annotations: train and val list different categories; both need the same set")
    return splits
