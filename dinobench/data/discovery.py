"""Unsupervised object discovery datasets: Pascal VOC07 / VOC12 trainval and COCO20k, with every object's box.

- VOC (``--data-root`` = the ``VOC2007`` / ``VOC2012`` folder): ``JPEGImages/<id>.jpg``,
  ``Annotations/<id>.xml`` (``object/bndbox`` xmin ymin xmax ymax, 1-based inclusive pixels as VOC writes
  them -> 0-based ``[x1, y1, x2, y2)``), ``ImageSets/Main/trainval.txt``;
- COCO20k (``--data-root`` = the COCO folder): ``annotations/instances_train2014.json`` + ``train2014/``
  and LOST's list of the 19,817 images, ``coco_20k_filenames.txt`` (file names, one per line; without it every
  image of the json with a non-crowd box); crowd boxes are left out and box corners rounded to whole pixels, as
  LOST does.

Items ``(image, index)``; ``boxes[index]`` ``[T, 4]`` float XYXY pixels and ``sizes[index]`` ``(width, height)``
are the ground truth. The eval transform resizes to ``transform.size`` square (boxes are scored in the
original pixels).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinobench.data.base import cache_fingerprint_of, fingerprint_of, image_size
from dinobench.data.layout import listed_path, name_component, read_lines, root_folder
from dinobench.data.square import SquareImages
from dinobench.errors import DataError
from dinobench.typed_config import reader_options


@dataclass
class VOCOptions:
    """``dataset=dict(type="voc07" | "voc12", ...)``: a Pascal VOC folder's image list and annotations."""

    root: str | None = None  # the VOC2007 / VOC2012 folder; --data-root wins over it
    split: str = "trainval"  # the image list ImageSets/Main/<split>.txt (returned as split "trainval")
    remove_difficult: bool = False  # leave out the boxes marked difficult
    max_images: int | None = None  # only the first N listed images; None (or 0) = all


@dataclass
class COCO20kOptions:
    """``dataset=dict(type="coco20k", ...)``: COCO 2014 train annotations, images and LOST's image list."""

    root: str | None = None  # the COCO folder; --data-root wins over it
    annotations: str = "instances_train2014.json"  # under <root>/annotations/
    image_dir: str = "train2014"  # under the root
    # under the root; when missing, every image of the json with a non-crowd box
    list_file: str = "coco_20k_filenames.txt"


class DiscoveryImages(SquareImages):
    """Images with all their object boxes (see the module docstring)."""

    def __init__(self, name: str, split: str, images: list[str], boxes: list[np.ndarray],
                 sizes: list[tuple[int, int]], fingerprint: str) -> None:
        super().__init__(name, split, images, sizes, fingerprint)
        self.boxes = boxes
        self.skipped: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        """What the record stores about this split."""
        return {"split": self.split, "images": len(self), "boxes": int(sum(len(b) for b in self.boxes)),
                **({"skipped": dict(self.skipped)} if self.skipped else {}), "fingerprint": self.fingerprint}


def _voc_boxes(path: Path, remove_difficult: bool) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))  # type: ignore[union-attr]
        boxes = []
        for obj in root.iter("object"):
            if remove_difficult and obj.findtext("difficult", "0").strip() == "1":
                continue
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr,arg-type]
            boxes.append([x1 - 1, y1 - 1, x2, y2])
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a Pascal VOC annotation ({type(exc).__name__}: {exc})") from exc
    if width < 1 or height < 1:
        raise DataError(f"{path}: <size> {width}x{height} is not an image size")
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    bad = ~np.isfinite(array).all(axis=1) | (array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1]) \
        | (array[:, 0] < -1) | (array[:, 1] < -1) | (array[:, 2] > width + 1) | (array[:, 3] > height + 1)
    if bad.any():
        x1, y1, x2, y2 = array[bad][0]
        raise DataError(f"{path}: object box ({x1 + 1:g}, {y1 + 1:g}, {x2:g}, {y2:g}) is not inside the {width}x{height} "
                        f"image with xmax > xmin and ymax > ymin; fix the annotation")
    return array, (width, height)


def build_voc(cfg: dict[str, Any], data_root: str | None, name: str) -> dict[str, DiscoveryImages]:
    """``trainval`` (``dataset.split``) of a VOC folder as split ``trainval``."""
    cfg = reader_options(VOCOptions, cfg)
    root = root_folder(cfg, data_root, name, f"the {name.upper()} folder")
    split = cfg["split"]
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: image list missing; --data-root must be the {name.upper()} folder "
                        f"(JPEGImages/, Annotations/, ImageSets/Main/{split}.txt)")
    ids = [name_component(line.split()[0], listing, "image id") for line in read_lines(listing)]
    images, boxes, sizes = [], [], []
    without_objects = 0
    for image_id in ids:
        path, xml = root / "JPEGImages" / f"{image_id}.jpg", root / "Annotations" / f"{image_id}.xml"
        if not path.is_file() or not xml.is_file():
            raise DataError(f"{path if not path.is_file() else xml}: listed in {listing.name} but missing")
        image_boxes, size = _voc_boxes(xml, cfg["remove_difficult"])
        actual = image_size(path)
        if actual != size:
            raise DataError(f"{xml}: <size> {size[0]}x{size[1]} but {path.name} is {actual[0]}x{actual[1]}; the boxes "
                            f"would be drawn and scored on another image size - fix the annotation")
        if not len(image_boxes):  # LOST skips images without (non-difficult) objects: not counted as misses
            without_objects += 1
            continue
        images.append(str(path))
        boxes.append(image_boxes)
        sizes.append(size)
    limit = cfg["max_images"]
    if limit:
        images, boxes, sizes = images[:limit], boxes[:limit], sizes[:limit]
    fingerprint = fingerprint_of({"images": [(Path(p).name, Path(p).stat().st_size) for p in images],
                                  "boxes": [b.tolist() for b in boxes]})
    if not images:
        raise DataError(f"{listing}: no listed image has an object box (all {len(ids)} skipped)")
    ds = DiscoveryImages(name, split, images, boxes, sizes, fingerprint)
    ds.skipped = {"no_objects": without_objects}
    ds.cache_fingerprint = cache_fingerprint_of(fingerprint, images)
    return {"trainval": ds}


def build_voc07(cfg: dict[str, Any], data_root: str | None) -> dict[str, DiscoveryImages]:
    """Pascal VOC 2007 trainval (5,011 images)."""
    return build_voc(cfg, data_root, "voc2007")


def build_voc12(cfg: dict[str, Any], data_root: str | None) -> dict[str, DiscoveryImages]:
    """Pascal VOC 2012 trainval (11,540 images)."""
    return build_voc(cfg, data_root, "voc2012")


def build_coco20k(cfg: dict[str, Any], data_root: str | None) -> dict[str, DiscoveryImages]:
    """COCO20k (LOST's subset of COCO 2014 train) as split ``trainval``."""
    from dinobench.data.coco_format import check_instances, load_coco

    cfg = reader_options(COCO20kOptions, cfg)
    root = root_folder(cfg, data_root, "coco20k", "the COCO folder holding annotations/ and train2014/")
    annotations = root / "annotations" / cfg["annotations"]
    image_dir = root / cfg["image_dir"]
    if not annotations.is_file() or not image_dir.is_dir():
        raise DataError(f"{annotations}: COCO annotations missing; --data-root must hold annotations/"
                        f"instances_train2014.json and train2014/ (and coco_20k_filenames.txt)")
    coco = load_coco(annotations)
    check_instances(coco, annotations)  # ids, sizes, boxes: one line each, before any image is read
    list_file = root / cfg["list_file"]
    by_name = {info["file_name"]: image_id for image_id, info in coco.imgs.items()}
    if list_file.is_file():
        names = [Path(line.strip()).name for line in read_lines(list_file)]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(f"{list_file}: {len(unknown)} listed images are not in {annotations.name} (first: {unknown[0]})")
    else:
        names = sorted(by_name)
    images, boxes, sizes = [], [], []
    for file_name in names:
        image_id = by_name[file_name]
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        if not anns:
            continue
        path = listed_path(image_dir, file_name, annotations, f"image {image_id} file_name")
        if not path.is_file():
            raise DataError(f"{path}: image of {annotations.name} is missing")
        images.append(str(path))
        # LOST / TokenCut's extract_gt_COCO (LOST datasets.py:244-245): corners rounded to whole pixels, Python's
        # round (half to even)
        boxes.append(np.asarray([[round(v) for v in (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                     a["bbox"][1] + a["bbox"][3])] for a in anns], dtype=np.float64))
        info = coco.imgs[image_id]
        sizes.append((int(info["width"]), int(info["height"])))
    if not images:
        raise DataError(f"{annotations}: no image with a non-crowd box")
    fingerprint = fingerprint_of({"images": [(Path(p).name, Path(p).stat().st_size) for p in images],
                                  "boxes": [b.tolist() for b in boxes]})
    ds = DiscoveryImages("coco20k", "trainval", images, boxes, sizes, fingerprint)
    ds.cache_fingerprint = cache_fingerprint_of(fingerprint, images)
    return {"trainval": ds}
