"""Procedural retrieval and foreground datasets in the real layouts (for tests and smoke runs).

* revisited Oxford/Paris (``<out>/<name>/jpg/*.jpg`` + ``gnd_<name>.pkl``): "landmarks" are textured
  shapes (the class textures of :mod:`dinobench.synthetic.dense`) at fixed places; a database image is a
  view of one landmark - large (easy), small and noisy (hard), or cut by the border (junk) - or a
  distractor of clutter; each query is a view whose ``bbx`` frames the landmark;
* label-retrieval folders (``<out>/{query,database}/<label>/*.png``): one textured object per image;
* foreground folders (``<out>/{train,val}/images/*.png`` + ``masks/*.png``, 255 = foreground): one
  textured object on clutter with its exact mask.

Every image comes from its own seeded generator; the same call writes byte-identical files.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from dinobench.synthetic.dense import _rng, _shape_mask, _size_hw, _texture

N_LANDMARKS = 3


def _clutter(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float RGB background of smooth colour noise (no class texture)."""
    coarse = rng.uniform(0.2, 0.8, size=(max(h // 8, 1), max(w // 8, 1), 3))
    image = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)) / 255.0
    return np.clip(image + rng.normal(0, 0.03, size=(h, w, 3)), 0, 1)


def _object_scene(h: int, w: int, cls: int, rng: np.random.Generator, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB, bool mask): one object with the texture of ``cls`` (1..6) on clutter; ``scale`` < 1 shrinks it."""
    sh, sw = max(int(h * scale), 8), max(int(w * scale), 8)
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    mask[y0:y0 + sh, x0:x0 + sw] = _shape_mask(sh, sw, rng) | _shape_mask(sh, sw, rng)
    image = _clutter(h, w, rng)
    image[mask] = _texture(cls, h, w, rng)[mask]
    return (image * 255).round().astype(np.uint8), mask


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def write_synthetic_revisited(root: str | Path, name: str = "roxford5k", n_train: int = 24, n_val: int = 6,
                              size: int | tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """Write ``root/<name>/jpg/`` with ``n_train`` database and ``n_val`` query images and ``gnd_<name>.pkl``
    (python-2-style protocol-2 pickle: lists, ints, a numpy array); return ``root/<name>``."""
    h, w = _size_hw(size)
    out = Path(root) / name
    (out / "jpg").mkdir(parents=True, exist_ok=True)
    kinds = ["easy", "hard", "junk", "distractor"]
    db_landmark, db_kind = [], []
    for i in range(n_train):
        rng = _rng(seed, "train", i, 21)
        landmark, kind = i % (N_LANDMARKS + 1), kinds[(i // (N_LANDMARKS + 1)) % len(kinds)]
        if landmark == N_LANDMARKS:
            kind = "distractor"
        scale = {"easy": 0.8, "hard": 0.45, "junk": 0.6}.get(kind, 1.0)
        if kind == "distractor":
            image = (_clutter(h, w, rng) * 255).round().astype(np.uint8)
        else:
            image, _ = _object_scene(h, w, landmark + 1, rng, scale)
            if kind == "hard":
                image = np.clip(image.astype(np.float64) + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
            if kind == "junk":  # half the landmark cut away
                image[:, : w // 2] = (_clutter(h, w // 2, rng) * 255).astype(np.uint8)
        Image.fromarray(image).save(out / "jpg" / f"db_{i:04d}.jpg", quality=95)
        db_landmark.append(landmark)
        db_kind.append(kind)
    gnd, qimlist = [], []
    for q in range(n_val):
        rng = _rng(seed, "val", q, 22)
        landmark = q % N_LANDMARKS
        image, mask = _object_scene(h, w, landmark + 1, rng, 0.7)
        Image.fromarray(image).save(out / "jpg" / f"query_{q:04d}.jpg", quality=95)
        qimlist.append(f"query_{q:04d}")
        members = {k: [i for i in range(n_train) if db_landmark[i] == landmark and db_kind[i] == k]
                   for k in ("easy", "hard", "junk")}
        gnd.append({"bbx": _bbox(mask), "easy": members["easy"], "hard": np.asarray(members["hard"], dtype=np.int64),
                    "junk": members["junk"]})
    data = {"imlist": [f"db_{i:04d}" for i in range(n_train)], "qimlist": qimlist, "gnd": gnd}
    (out / f"gnd_{name}.pkl").write_bytes(pickle.dumps(data, protocol=2))
    return out


def write_synthetic_retrieval_folder(root: str | Path, n_train: int = 24, n_val: int = 8, size: int = 48,
                                     seed: int = 0, n_classes: int = 4) -> Path:
    """Write ``root/database/<label>/`` (``n_train`` images) and ``root/query/<label>/`` (``n_val``); return root."""
    h, w = _size_hw(size)
    root = Path(root)
    for split, n, kind in (("database", n_train, 23), ("query", n_val, 24)):
        for i in range(n):
            cls = i % n_classes
            folder = root / split / f"class_{cls}"
            folder.mkdir(parents=True, exist_ok=True)
            image, _ = _object_scene(h, w, cls + 1, _rng(seed, "train" if split == "database" else "val", i, kind), 0.8)
            Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


def write_synthetic_foreground(root: str | Path, n_train: int = 12, n_val: int = 6, size: int | tuple[int, int] = 64,
                               seed: int = 0) -> Path:
    """Write ``root/{train,val}/images/*.png`` and ``masks/*.png`` (0 background, 255 foreground); return root."""
    h, w = _size_hw(size)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = _rng(seed, split, i, 25)
            image, mask = _object_scene(h, w, int(rng.integers(1, 7)), rng, 0.75)
            Image.fromarray(image).save(root / split / "images" / f"{i:05d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "masks" / f"{i:05d}.png")
    return root


def write_synthetic_pairs(root: str | Path, n_train: int = 0, n_val: int = 6, size: int | tuple[int, int] = (48, 64),
                          seed: int = 0, layout: str = "pairs", n_keypoints: int = 8) -> Path:
    """Image pairs with known correspondences (``n_train`` unused): for each of ``n_val`` scenes the pairs
    (scene, itself) "identity", (scene, scene shifted by a few pixels) "shifted" and (scene, scene mirrored)
    "flipped", keypoints at random object pixels; ``layout`` "pairs" (``pairs.json``) or "spair" (the SPair-71k
    tree, split test); return the ``--data-root``."""
    h, w = _size_hw(size)
    root = Path(root)
    image_dir = root / ("JPEGImages" if layout == "spair" else "images")
    entries = []
    for i in range(n_val):
        rng = _rng(seed, "val", i, 26)
        image, mask = _object_scene(h, w, int(rng.integers(1, 7)), rng, 0.8)
        dy, dx = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        versions = {"identity": (image, lambda p: p), "shifted": (np.roll(image, (dy, dx), axis=(0, 1)),
                                                                  lambda p: p + np.array([dx, dy])),
                    "flipped": (image[:, ::-1], lambda p: np.stack([w - p[:, 0], p[:, 1]], axis=1))}
        ys, xs = np.nonzero(mask[: h - 6, : w - 6])
        chosen = rng.choice(len(xs), size=min(n_keypoints, len(xs)), replace=False)
        points = np.stack([xs[chosen] + 0.5, ys[chosen] + 0.5], axis=1)
        for category, (version, move) in versions.items():
            folder = image_dir / category if layout == "spair" else image_dir
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"scene_{i:03d}.png")
            Image.fromarray(np.ascontiguousarray(version)).save(folder / f"{category}_{i:03d}.png")
            target = move(points)
            entries.append({"name": f"{i:06d}-{category}", "category": category,
                            "source": f"scene_{i:03d}.png", "target": f"{category}_{i:03d}.png",
                            "source_keypoints": points.round(2).tolist(), "target_keypoints": target.round(2).tolist(),
                            "target_bbox": [0.0, 0.0, float(w), float(h)]})
    if layout == "spair":
        folder = root / "PairAnnotation" / "test"
        folder.mkdir(parents=True, exist_ok=True)
        for e in entries:
            record = {"filename": e["name"], "src_imname": e["source"], "trg_imname": e["target"],
                      "category": e["category"], "src_kps": e["source_keypoints"], "trg_kps": e["target_keypoints"],
                      "trg_bndbox": [int(v) for v in e["target_bbox"]], "src_bndbox": [0, 0, w, h]}
            (folder / f"{e['name']}:{e['category']}.json").write_text(json.dumps(record))
    else:
        for e in entries:
            e["source"], e["target"] = f"images/{e['source']}", f"images/{e['target']}"
        (root / "pairs.json").write_text(json.dumps({"pairs": entries}, indent=1))
    return root


def write_synthetic_discovery(root: str | Path, n_train: int = 8, n_val: int = 0, size: int | tuple[int, int] = (64, 80),
                              seed: int = 0, layout: str = "voc") -> Path:
    """``n_train`` images with one textured object on clutter and its exact box (``n_val`` unused), in the
    Pascal VOC layout (``layout="voc"``: JPEGImages/, Annotations/*.xml with 1-based inclusive boxes,
    ImageSets/Main/trainval.txt) or as COCO20k (``"coco20k"``: annotations/instances_train2014.json, train2014/,
    coco_20k_filenames.txt); return the ``--data-root``."""
    h, w = _size_hw(size)
    root = Path(root)
    image_dir = root / ("JPEGImages" if layout == "voc" else "train2014")
    image_dir.mkdir(parents=True, exist_ok=True)
    names, images, annotations = [], [], []
    for i in range(n_train):
        rng = _rng(seed, "train", i, 27)
        image, mask = _object_scene(h, w, int(rng.integers(1, 7)), rng, 0.55)
        x1, y1, x2, y2 = _bbox(mask)
        name = f"{2008 + i % 3}_{i:06d}" if layout == "voc" else f"COCO_train2014_{i:012d}.jpg"
        if layout == "voc":
            Image.fromarray(image).save(image_dir / f"{name}.jpg", quality=95)
            (root / "Annotations").mkdir(parents=True, exist_ok=True)
            (root / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
                f"<depth>3</depth></size><object><name>thing</name><difficult>0</difficult><bndbox>"
                f"<xmin>{int(x1) + 1}</xmin><ymin>{int(y1) + 1}</ymin><xmax>{int(x2)}</xmax><ymax>{int(y2)}</ymax>"
                f"</bndbox></object></annotation>")
        else:
            Image.fromarray(image).save(image_dir / name, quality=95)
            images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
            annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": float(mask.sum()),
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})
        names.append(name)
    if layout == "voc":
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names) + "\n")
    else:
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "instances_train2014.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
        (root / "coco_20k_filenames.txt").write_text("".join(f"train2014/{n}\n" for n in names))
    return root
