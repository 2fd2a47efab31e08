"""Image-caption data for dino.txt: COCO Captions, Karpathy's split files (Flickr30k, COCO 5k), a CSV of
``image_path,caption``, and class-name prompts over any labelled image dataset (offline alignment).

A sample is ``{"image": <PIL or transformed>, "caption": str, "image_index": int}``; ``image_index`` groups the
captions of one image (retrieval counts a hit on any of them). Layouts are validated before any compute:
a missing file, or captions naming missing images, is a one-line :class:`DataError`; empty captions are skipped
and counted; captions longer than the context (77 tokens) are kept, counted, and cut by the tokenizer (its end
token kept). Counts go to ``describe()["skipped"]`` / ``["truncated"]`` and the log.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from torch.utils.data import Dataset

from dinobench.data.base import fingerprint_of, load_rgb
from dinobench.data.layout import listed_path, read_json
from dinobench.errors import DataError
from dinobench.text.tokenizer import default_tokenizer
from dinobench.typed_config import reader_options

log = logging.getLogger(__name__)
DEFAULT_PROMPT = "a photo of a {}."


@dataclass
class COCOCaptionsOptions:
    """``dataset=dict(type="coco_captions", ...)``: ``annotations/captions_<split>.json`` + ``<split>/`` per split."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train2017"  # names both the image folder and captions_<split>.json
    val_split: str = "val2017"


@dataclass
class KarpathyCaptionsOptions:
    """``dataset=dict(type="karpathy_captions", ...)``: a Karpathy split file and its images."""

    root: str | None = None  # --data-root wins over it
    json: str | None = None  # the split file under the root (None: dataset_flickr30k.json, else dataset_coco.json)
    # the image folder under the root (None: flickr30k-images for a Flickr30k file, else the root itself)
    image_dir: str | None = None
    val_split: str = "test"  # the Karpathy split read as val (train = "train" + "restval")


@dataclass
class CaptionCSVOptions:
    """``dataset=dict(type="caption_csv", ...)``: two CSVs with the header ``image_path,caption``."""

    root: str | None = None  # --data-root wins over it
    train_csv: str | None = None  # None: <root>/train.csv
    val_csv: str | None = None  # None: <root>/val.csv


class CaptionDataset(Dataset):
    """``(image path, caption, image index)`` items (see the module docstring)."""

    def __init__(self, name: str, split: str, items: Sequence[tuple[str, str, int]], fingerprint: str,
                 skipped: int = 0, truncated: int = 0, transform: Callable | None = None) -> None:
        self.name, self.split, self.items = name, split, list(items)
        self.fingerprint, self.skipped, self.truncated, self.transform = fingerprint, skipped, truncated, transform
        self.num_images = len({index for _, _, index in self.items})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, caption, image_index = self.items[index]
        image = load_rgb(path)
        return {"image": self.transform(image) if self.transform else image, "caption": caption,
                "image_index": image_index}

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "images": self.num_images, "skipped": self.skipped,
                "truncated": self.truncated, "fingerprint": self.fingerprint}


def _checked(name: str, split: str, source: Path, rows: list[tuple[str, str, int]],
             context_length: int = 77) -> CaptionDataset:
    """Validate images, skip empty captions, count over-long ones; the dataset."""
    missing = sorted({path for path, _, _ in rows if not Path(path).is_file()})
    if missing:
        raise DataError(f"{source}: {len(missing)} captioned images are missing (first: {', '.join(missing[:3])}); "
                        f"restore them or drop their captions")
    kept = [(p, c.strip(), i) for p, c, i in rows if isinstance(c, str) and c.strip()]
    skipped = len(rows) - len(kept)
    if not kept:
        raise DataError(f"{source}: no non-empty captions; a caption file needs at least one")
    tokenizer = default_tokenizer(None)
    truncated = sum(len(tokenizer.encode(c)) + 2 > context_length for _, c, _ in kept)
    if skipped or truncated:
        log.warning("%s: skipped %d empty captions; %d captions longer than %d tokens will be cut", source, skipped,
                    truncated, context_length)
    listing = [[Path(p).name, c] for p, c, _ in kept]
    return CaptionDataset(name, split, kept, fingerprint_of({"items": listing}), skipped, truncated)


def build_coco_captions(cfg: dict[str, Any], data_root: str | None) -> dict[str, CaptionDataset]:
    """COCO Captions: ``annotations/captions_{train,val}2017.json`` + ``train2017/`` + ``val2017/``."""
    cfg = reader_options(COCOCaptionsOptions, cfg)
    root = Path(data_root or cfg["root"] or "").expanduser()
    if not root.is_dir():
        raise DataError(f"{root or '<none>'}: pass --data-root with annotations/captions_{{train,val}}2017.json, "
                        f"train2017/, val2017/")
    splits = {}
    for key in ("train", "val"):
        folder = cfg[f"{key}_split"]
        path = root / "annotations" / f"captions_{folder}.json"
        if not path.is_file():
            raise DataError(f"{path}: caption file missing; expected COCO captions json (annotations/captions_<split>.json)")
        try:
            payload = read_json(path, "caption file")
            files = {int(img["id"]): img["file_name"] for img in payload["images"]}
            anns = payload["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not a COCO captions file ({type(exc).__name__}); needs images (id, file_name) "
                            f"and annotations (id, image_id, caption)") from None
        if not isinstance(anns, list) or not all(isinstance(a, dict) and isinstance(a.get("image_id"), int)
                                                 and isinstance(a.get("id", 0), int) for a in anns):
            raise DataError(f"{path}: annotations must be a list of objects with integer id and image_id")
        order = {image_id: i for i, image_id in enumerate(sorted(files))}
        rows = []
        for ann in sorted(anns, key=lambda a: (a["image_id"], a.get("id", 0))):
            image_id = ann["image_id"]
            if image_id not in files:
                raise DataError(f"{path}: caption {ann.get('id')} names unknown image_id {image_id}")
            image = listed_path(root / folder, files[image_id], path, f"image {image_id} file_name")
            rows.append((str(image), ann.get("caption", "") if isinstance(ann.get("caption"), str) else "",
                         order[image_id]))
        splits[key] = _checked("coco_captions", key, path, rows)
    return splits


def build_caption_csv(cfg: dict[str, Any], data_root: str | None) -> dict[str, CaptionDataset]:
    """``--data-root`` holding ``train.csv`` and ``val.csv`` (header ``image_path,caption``; image paths relative
    to the CSV's folder, inside it); rows naming the same image share its index."""
    cfg = reader_options(CaptionCSVOptions, cfg)
    root = Path(data_root or cfg["root"] or "").expanduser()
    splits = {}
    for key in ("train", "val"):
        path = Path(cfg[f"{key}_csv"] or root / f"{key}.csv").expanduser()
        if not path.is_file():
            raise DataError(f"{path}: caption CSV missing; create it with the header image_path,caption")
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                if not {"image_path", "caption"} <= set(reader.fieldnames or []):
                    raise DataError(f"{path}: header must contain image_path,caption (found {reader.fieldnames!r:.80})")
                records = list(reader)
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
        except csv.Error as exc:  # e.g. a field above csv's size limit
            raise DataError(f"{path}: not a readable CSV (line {reader.line_num}: {exc}); fix the file") from None
        index: dict[str, int] = {}
        rows = []
        for row, record in enumerate(records, 2):
            if None in record:
                raise DataError(f"{path}: row {row} has more fields than the header; quote captions that contain "
                                f"commas")
            image = listed_path(path.parent, record["image_path"] or "", path, "image_path")
            rows.append((str(image), record["caption"] or "", index.setdefault(str(image), len(index))))
        splits[key] = _checked("caption_csv", key, path, rows)
    return splits


def build_karpathy_captions(cfg: dict[str, Any], data_root: str | None) -> dict[str, CaptionDataset]:
    """Karpathy's split files: ``dataset_flickr30k.json`` + ``flickr30k-images/`` (Flickr30k) or
    ``dataset_coco.json`` + ``val2014/`` / ``train2014/`` (COCO 5k); ``train`` = the "train" (and COCO's
    "restval") images, ``val`` = the "test" images (the reported split: 1k Flickr30k, 5k COCO)."""
    cfg = reader_options(KarpathyCaptionsOptions, cfg)
    root = Path(data_root or cfg["root"] or "").expanduser()
    names = [cfg["json"]] if cfg["json"] else ["dataset_flickr30k.json", "dataset_coco.json"]
    path = next((root / n for n in names if (root / n).is_file()), None)
    if path is None:
        raise DataError(f"{root}: no Karpathy split file ({' or '.join(names)}); pass --data-root holding it and "
                        f"the images")
    try:
        images = read_json(path, "split file")["images"]
        if not isinstance(images, list) or not all(isinstance(img, dict) for img in images):
            raise TypeError("images is not a list of objects")
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a Karpathy split file ({type(exc).__name__}); needs images: [{{filename, split, "
                        f"sentences: [{{raw}}]}}]") from None
    image_dir = cfg["image_dir"]
    if image_dir is None:
        image_dir = "flickr30k-images" if "flickr" in path.name else ""
    folder = root / image_dir
    splits = {}
    for key, wanted in (("train", {"train", "restval"}), ("val", {cfg["val_split"]})):
        rows = []
        picked = [img for img in images if img.get("split") in wanted]
        for index, img in enumerate(picked):
            image = listed_path(folder, str(Path(str(img.get("filepath", ""))) / str(img.get("filename", ""))),
                                path, "filepath/filename")
            sentences = img.get("sentences", [])
            rows += [(str(image), s.get("raw", "") if isinstance(s, dict) and isinstance(s.get("raw"), str) else "",
                      index) for s in (sentences if isinstance(sentences, list) else [])]
        if not rows:
            raise DataError(f"{path}: no images in split(s) {sorted(wanted)}")
        splits[key] = _checked(path.stem.replace("dataset_", ""), key, path, rows)
    return splits


class ClassPromptCaptions(Dataset):
    """A labelled image dataset as captions: ``prompt.format(class name)`` for each image (offline alignment)."""

    def __init__(self, dataset: Any, prompt: str = DEFAULT_PROMPT, transform: Callable | None = None) -> None:
        if "{}" not in prompt:
            raise DataError(f"caption prompt {prompt!r} needs a {{}} where the class name goes")
        self.dataset, self.prompt, self.transform = dataset, prompt, transform
        self.classes = [str(c).replace("_", " ") for c in dataset.classes]
        self.split, self.fingerprint = getattr(dataset, "split", ""), getattr(dataset, "fingerprint", "")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.dataset[index]
        return {"image": self.transform(image) if self.transform else image,
                "caption": self.prompt.format(self.classes[int(label)]), "image_index": index, "label": int(label)}

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "prompt": self.prompt, "fingerprint": self.fingerprint}
