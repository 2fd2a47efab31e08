"""Video classification datasets: UCF-101, Kinetics-400, Something-Something-v2 and class folders.

A video is a file decoded with PyAV (``pip install av``) or a folder of frames (sorted image files) at
the same path without the extension. ``num_frames`` frames are sampled uniformly: the video is cut into
``num_frames`` equal segments and clip ``j`` of ``n`` takes the frame at ``(j + 0.5) / n`` of each
segment. Each item is one view (clip x spatial crop) of a video: the train split has one view per video
(centre clip, centre crop), the others ``test_clips x test_crops`` views (crops evenly spaced along the
longer side after resizing the shorter one to ``transform.resize``), whose predictions the protocol
averages per video. Items are ``(frames [T, 3, crop, crop], {"label": int, "video": int})``.

Layouts (``--data-root``):

- ``ucf101``: ``UCF-101/<Class>/<name>.avi`` + ``ucfTrainTestlist/{classInd.txt, trainlist0S.txt,
  testlist0S.txt}`` (``split`` S in 1..3; the test list is the ``val`` split);
- ``kinetics400`` / ``video_folder``: ``{train,val}/<class>/<video>`` (the class-folder layout of the
  public Kinetics download scripts);
- ``ssv2``: ``20bn-something-something-v2/<id>.webm`` + ``labels/{labels.json, train.json,
  validation.json}`` (label = the template without brackets, looked up in labels.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from dinobench.data.base import cache_fingerprint_of, check_pixels, fingerprint_of, load_rgb
from dinobench.data.joint import ToFloatImage, normalize
from dinobench.data.layout import listed_path, name_component, read_json, read_lines, root_folder
from dinobench.data.folder import IMAGE_EXTENSIONS
from dinobench.errors import ConfigError, DataError
from dinobench.typed_config import reader_options

VIDEO_EXTENSIONS = {".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v"}


def frame_indices(n_frames: int, num_frames: int, clip: int = 0, n_clips: int = 1) -> list[int]:
    """Indices of ``num_frames`` frames sampled uniformly from ``n_frames`` for clip ``clip`` of ``n_clips``."""
    segment = n_frames / num_frames
    offset = (clip + 0.5) / n_clips
    return [min(int(math.floor(segment * (t + offset))), n_frames - 1) for t in range(num_frames)]


def _decode(path: Path, wanted: Sequence[int] | None) -> tuple[int, dict[int, Image.Image]]:
    """(frame count, {index: frame}) of a video file; ``wanted`` None: every frame."""
    try:
        import av
    except ImportError as exc:
        raise DataError(f"{path}: decoding video files needs PyAV; pip install av (or extract the frames into a "
                        f"folder {path.with_suffix('')}/)") from exc
    frames: dict[int, Image.Image] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            check_pixels(path, stream.codec_context.width or 0, stream.codec_context.height or 0, "video frame")
            keep = None if wanted is None else set(wanted)
            last = None if wanted is None else max(wanted)
            for count, frame in enumerate(container.decode(video=0), start=1):
                index = count - 1
                check_pixels(path, frame.width, frame.height, "video frame")  # a stream may change size
                if keep is None or index in keep:
                    frames[index] = frame.to_image().convert("RGB")
                if last is not None and index >= last:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot decode video ({type(exc).__name__}: {exc}); fix or remove the file") from exc
    if count == 0:
        raise DataError(f"{path}: video has no decodable frames; fix or remove the file")
    return count, frames


def _frame_count(path: Path) -> int:
    """Number of frames of a video file as its container metadata says (0: it does not say, e.g. webm)."""
    import av

    try:
        with av.open(str(path)) as container:
            frames = int(container.streams.video[0].frames or 0)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot open video ({type(exc).__name__}: {exc}); fix or remove the file") from exc
    return max(frames, 0)


def read_clip(source: str, num_frames: int, clip: int, n_clips: int) -> list[Image.Image]:
    """The ``num_frames`` sampled frames of clip ``clip`` of a video file or frame folder."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"{path}: frame folder has no images")
        return [load_rgb(files[i]) for i in frame_indices(len(files), num_frames, clip, n_clips)]
    total = _frame_count(path)
    if total == 0:  # unknown length: decode once and sample from what decodes
        count, frames = _decode(path, None)
        return [frames[i] for i in frame_indices(count, num_frames, clip, n_clips)]
    indices = frame_indices(total, num_frames, clip, n_clips)
    count, frames = _decode(path, indices)
    if count < total and max(indices) >= count:  # metadata over-counted: sample from what decodes
        indices = frame_indices(count, num_frames, clip, n_clips)
        count, frames = _decode(path, indices)
    return [frames[i] for i in indices]


class ClipTransform:
    """Frames -> ``[T, 3, crop, crop]``: resize the shorter side, crop ``crop_index`` of ``n_crops`` along the
    longer side (centre for one), to tensor, normalise - one set of parameters for every frame of the clip (the
    joint system, :mod:`dinobench.data.joint`, with the frames as one ``tv_tensors.Video``)."""

    def __init__(self, resize: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.resize, self.crop = int(resize), int(crop)
        self.resize_step = v2.Resize(self.resize, interpolation=InterpolationMode.BICUBIC, antialias=True)
        self.to_image, self.normalize = ToFloatImage(), normalize(mean, std)

    def __call__(self, frames: list[Image.Image], crop_index: int = 0, n_crops: int = 1) -> torch.Tensor:
        frames = self.resize_step(list(frames))
        width, height = frames[0].size
        if n_crops == 1:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
        else:
            step = crop_index / (n_crops - 1)
            top = round(step * (height - self.crop)) if height > width else (height - self.crop) // 2
            left = round(step * (width - self.crop)) if width >= height else (width - self.crop) // 2
        clip = tv_tensors.Video(torch.stack([self.to_image(F.crop(frame, top, left, self.crop, self.crop))
                                             for frame in frames]))
        return self.normalize(clip).as_subclass(torch.Tensor)


class VideoDataset(Dataset):
    """Views of videos (see the module docstring); ``transform`` is a :class:`ClipTransform`."""

    def __init__(self, name: str, split: str, samples: Sequence[tuple[str, int]], classes: Sequence[str],
                 fingerprint: str, *, num_frames: int, n_clips: int = 1, n_crops: int = 1) -> None:
        self.name, self.split, self.samples, self.classes = name, split, list(samples), list(classes)
        self.num_frames, self.n_clips, self.n_crops = int(num_frames), int(n_clips), int(n_crops)
        self.fingerprint = fingerprint_of({"files": fingerprint, "num_frames": self.num_frames,
                                           "clips": self.n_clips, "crops": self.n_crops})
        self.transform: ClipTransform | None = None

    @property
    def views(self) -> int:
        """Views per video."""
        return self.n_clips * self.n_crops

    def eval_transform(self, transform_cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                       backbone: Any) -> ClipTransform:
        """The clip transform of ``transform.resize`` / ``transform.crop``."""
        resize, crop = transform_cfg.get("resize"), transform_cfg.get("crop")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (resize, crop)) or crop > resize:
            raise ConfigError(f"transform.resize={resize!r} / transform.crop={crop!r}: video tasks need both, in "
                              f"pixels, with crop <= resize")
        return ClipTransform(resize, crop, mean, std)

    def __len__(self) -> int:
        return len(self.samples) * self.views

    def __getitem__(self, index: int) -> tuple[Any, dict[str, int]]:
        video, view = divmod(index, self.views)
        clip, crop = divmod(view, self.n_crops)
        source, label = self.samples[video]
        frames = read_clip(source, self.num_frames, clip, self.n_clips)
        clip_tensor = self.transform(frames, crop, self.n_crops) if self.transform else frames
        return clip_tensor, {"label": label, "video": video}

    def describe(self) -> dict[str, Any]:
        """What the record stores about this split."""
        return {"split": self.split, "videos": len(self.samples), "views": self.views, "num_frames": self.num_frames,
                "num_classes": len(self.classes), "fingerprint": self.fingerprint}


def _resolve(path: Path) -> Path:
    """A video file, or the frame folder at the same path without extension; DataError naming it if neither."""
    if path.is_file():
        return path
    if path.with_suffix("").is_dir():
        return path.with_suffix("")
    raise DataError(f"{path}: video listed in the split is missing (neither the file nor a frame folder "
                    f"{path.with_suffix('')}/ exists)")


@dataclass
class ClipOptions:
    """The clip sampling every video reader's section has (see the module docstring)."""

    num_frames: int = 8  # frames per clip, sampled uniformly
    test_clips: int = 1  # views per video of the splits other than train: test_clips x test_crops
    test_crops: int = 1


@dataclass
class UCF101Options(ClipOptions):
    """``dataset=dict(type="ucf101", ...)``: UCF-101 with one of its three official train/test lists."""

    root: str | None = None  # the folder holding UCF-101/ and ucfTrainTestlist/; --data-root wins over it
    video_dir: str = "UCF-101"  # under the root
    split: int = 1  # ucfTrainTestlist/{trainlist,testlist}0<split>.txt: 1, 2 or 3


@dataclass
class VideoFolderOptions(ClipOptions):
    """``dataset=dict(type="video_folder" | "kinetics400", ...)``: ``<root>/<split>/<class>/<videos>``."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train"  # folder names of the two splits under the root
    val_split: str = "val"


@dataclass
class SSv2Options(ClipOptions):
    """``dataset=dict(type="ssv2", ...)``: Something-Something-v2 videos + ``labels/*.json``."""

    root: str | None = None  # the folder holding the video folder and labels/; --data-root wins over it
    video_dir: str = "20bn-something-something-v2"  # under the root
    suffix: str = ".webm"  # video file = <video_dir>/<id><suffix> (or a frame folder <id>/)


def _views(cfg: dict[str, Any], split: str) -> dict[str, int]:
    num_frames = cfg["num_frames"]
    clips, crops = (1, 1) if split == "train" else (cfg["test_clips"], cfg["test_crops"])
    if num_frames < 1 or clips < 1 or crops < 1:
        raise ConfigError("dataset.num_frames, dataset.test_clips and dataset.test_crops must be >= 1")
    return {"num_frames": num_frames, "n_clips": clips, "n_crops": crops}


def _dataset(name: str, split: str, samples: list[tuple[Path, int]], classes: list[str], root: Path,
             cfg: dict[str, Any]) -> VideoDataset:
    if not samples:
        raise DataError(f"{root}: the {split} split lists no videos")
    listing = [(str(p.relative_to(root)), p.stat().st_size if p.is_file() else len(list(p.iterdir())))
               for p, _ in samples]
    ds = VideoDataset(name, split, [(str(p), label) for p, label in samples], classes, fingerprint_of(listing),
                      **_views(cfg, split))
    ds.cache_fingerprint = cache_fingerprint_of(ds.fingerprint, [p for p, _ in samples])
    return ds


def build_ucf101(cfg: dict[str, Any], data_root: str | None) -> dict[str, VideoDataset]:
    """UCF-101 with the official train/test lists of ``split`` (1..3)."""
    cfg = reader_options(UCF101Options, cfg)
    root = root_folder(cfg, data_root, "ucf101", "the folder holding UCF-101/ and ucfTrainTestlist/")
    lists, videos = root / "ucfTrainTestlist", root / cfg["video_dir"]
    split = cfg["split"]
    class_file = lists / "classInd.txt"
    if not class_file.is_file() or not videos.is_dir():
        raise DataError(f"{root}: expected UCF-101/<Class>/<video>.avi and ucfTrainTestlist/classInd.txt")
    index: dict[str, int] = {}
    for number, line in enumerate(read_lines(class_file), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) < 1 or fields[1] in index:
            raise DataError(f"{class_file}: line {number} {line.strip()!r:.60} is not '<index from 1> <ClassName>' "
                            f"(each class once)")
        index[fields[1]] = int(fields[0]) - 1
    if sorted(index.values()) != list(range(len(index))):
        raise DataError(f"{class_file}: class indices are not 1..{len(index)} without gaps")
    classes = [name for name, _ in sorted(index.items(), key=lambda kv: kv[1])]
    out = {}
    for key, list_name in (("train", f"trainlist0{split}.txt"), ("val", f"testlist0{split}.txt")):
        list_file = lists / list_name
        if not list_file.is_file():
            raise DataError(f"{list_file}: split list missing (dataset.split={split}: 1, 2 or 3)")
        samples = []
        for line in read_lines(list_file):
            relative = line.split()[0]
            class_name = relative.split("/")[0]
            if class_name not in index:
                raise DataError(f"{list_file}: {relative} names class {class_name!r} that classInd.txt lacks")
            samples.append((_resolve(listed_path(videos, relative, list_file, "video")), index[class_name]))
        out[key] = _dataset("ucf101", key, samples, classes, root, cfg)
    return out


def build_video_folder(cfg: dict[str, Any], data_root: str | None, name: str = "video_folder") -> dict[str, VideoDataset]:
    """``{train,val}/<class>/<video file or frame folder>`` (Kinetics-400's class-folder layout)."""
    cfg = reader_options(VideoFolderOptions, cfg)
    root = root_folder(cfg, data_root, name, "the folder holding train/<class>/<videos> and val/<class>/<videos>")
    scans = {}
    for key in ("train", "val"):
        split_dir = root / cfg[f"{key}_split"]
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: split folder missing; expected {split_dir}/<class>/<videos>")
        scans[key] = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS
                                     or (p.is_dir() and not p.name.startswith(".")))
                      for d in sorted(split_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    classes = sorted(scans["train"])
    extra = sorted(set(scans["val"]) - set(classes))
    if not classes or extra:
        raise DataError(f"{root}: " + (f"val has classes train lacks ({extra[:3]})" if extra else "train/ has no class folders"))
    out = {}
    for key, scan in scans.items():
        samples = [(path, classes.index(c)) for c, paths in scan.items() for path in paths]
        out[key] = _dataset(name, key, samples, classes, root, cfg)
    return out


def build_kinetics400(cfg: dict[str, Any], data_root: str | None) -> dict[str, VideoDataset]:
    """Kinetics-400 in the class-folder layout."""
    return build_video_folder(cfg, data_root, "kinetics400")


def build_ssv2(cfg: dict[str, Any], data_root: str | None) -> dict[str, VideoDataset]:
    """Something-Something-v2: webm videos + labels/{labels,train,validation}.json."""
    cfg = reader_options(SSv2Options, cfg)
    root = root_folder(cfg, data_root, "ssv2", "the folder holding 20bn-something-something-v2/ and labels/")
    videos, labels_dir = root / cfg["video_dir"], root / "labels"
    label_file = labels_dir / "labels.json"
    if not label_file.is_file() or not videos.is_dir():
        raise DataError(f"{root}: expected 20bn-something-something-v2/<id>.webm and labels/labels.json")
    try:
        label_ids = {name: int(i) for name, i in read_json(label_file, "label file").items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{label_file}: not a {{template: id}} JSON object ({type(exc).__name__})") from None
    classes = [name for name, _ in sorted(label_ids.items(), key=lambda kv: kv[1])]
    out = {}
    for key, file_name in (("train", "train.json"), ("val", "validation.json")):
        path = labels_dir / file_name
        try:
            entries = read_json(path, "split file")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the split ({exc})") from exc
        samples = []
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a JSON list of {{\"id\", \"template\"}} entries")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
                raise DataError(f"{path}: entry {index} is not an object with \"id\" and \"template\"")
            template = str(entry.get("template", "")).replace("[", "").replace("]", "")
            if template not in label_ids:
                raise DataError(f"{path}: video {entry.get('id')} has template {template!r} that labels.json lacks")
            video = name_component(f"{entry['id']}{cfg['suffix']}", path, "video id")
            samples.append((_resolve(videos / video), label_ids[template]))
        out[key] = _dataset("ssv2", key, samples, classes, root, cfg)
    return out
