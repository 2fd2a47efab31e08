"""A tiny procedural detection dataset in the COCO 2017 layout (``annotations/instances_{train,val}2017.json``,
``train2017/``, ``val2017/``): non-overlapping textured rectangles and ellipses on a noise background, each
category its own texture, with exact boxes (tight around the object's pixels) and areas.

Category ids are non-contiguous (2, 5, 9) to exercise the id mapping; image 1 of each split also carries a
crowd annotation and image 2 has no objects. ``python -m dinobench.synthetic coco OUT_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dinobench.synthetic.dense import _rng, _size_hw, _texture

#: (COCO category id, name, texture class of :func:`dinobench.synthetic.dense._texture`)
SYNTHETIC_COCO_CATEGORIES = ((2, "striped", 1), (5, "checkered", 3), (9, "dotted", 4))


def _object(h: int, w: int, rng: np.random.Generator, taken: np.ndarray) -> np.ndarray | None:
    """A rectangle or ellipse of 15-45% of each side not touching ``taken``; None after 20 tries."""
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(20):
        sh, sw = rng.uniform(0.15, 0.45) * h, rng.uniform(0.15, 0.45) * w
        cy, cx = rng.uniform(sh / 2, h - sh / 2), rng.uniform(sw / 2, w - sw / 2)
        if rng.uniform() < 0.5:
            mask = (np.abs(yy - cy) <= sh / 2) & (np.abs(xx - cx) <= sw / 2)
        else:
            mask = ((yy - cy) / (sh / 2)) ** 2 + ((xx - cx) / (sw / 2)) ** 2 <= 1.0
        grown = np.pad(mask, 1)[2:, 1:-1] | np.pad(mask, 1)[:-2, 1:-1] | np.pad(mask, 1)[1:-1, 2:] | mask
        if mask.sum() >= 9 and not (grown & taken).any():
            return mask
    return None


def synthetic_coco_sample(h: int, w: int, rng: np.random.Generator, n_objects: int) -> tuple[np.ndarray, list]:
    """(uint8 RGB image, [(category id, [x, y, w, h], area)]) with up to ``n_objects`` objects."""
    image = _texture(0, h, w, rng)
    taken = np.zeros((h, w), dtype=bool)
    objects = []
    for _ in range(n_objects):
        mask = _object(h, w, rng, taken)
        if mask is None:
            break
        cat, _, texture = SYNTHETIC_COCO_CATEGORIES[int(rng.integers(len(SYNTHETIC_COCO_CATEGORIES)))]
        image[mask] = _texture(texture, h, w, rng)[mask]
        taken |= mask
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        objects.append((cat, box, int(mask.sum())))
    return (image * 255).round().astype(np.uint8), objects


def write_synthetic_coco(root: str | Path, n_train: int = 16, n_val: int = 8, size: int | tuple[int, int] = (64, 96),
                         seed: int = 0) -> Path:
    """Write the dataset under ``root``; return ``root``."""
    root = Path(root)
    h, w = _size_hw(size)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, folder, n in (("train", "train2017", n_train), ("val", "val2017", n_val)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            rng = _rng(seed, split, i, 5)
            image, objects = synthetic_coco_sample(h, w, rng, 0 if i == 2 else int(rng.integers(1, 4)))
            image_id = 1000 + i
            name = f"{image_id:012d}.jpg"
            Image.fromarray(image).save(root / folder / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            for cat, box, area in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                    "bbox": box, "area": area, "iscrowd": 0, "segmentation": []})
            if i == 1:  # a crowd region (ignored by the evaluation, left out of training targets)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 2,
                                    "bbox": [0, 0, w // 4, h // 4], "area": (w // 4) * (h // 4), "iscrowd": 1,
                                    "segmentation": [[0, 0, w // 4, 0, w // 4, h // 4, 0, h // 4]]})
        categories = [{"id": c, "name": name, "supercategory": "shape"} for c, name, _ in SYNTHETIC_COCO_CATEGORIES]
        payload = {"info": {"description": "dinobench synthetic COCO"}, "images": images,
                   "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(payload))
    return root
