"""Procedural action videos in the UCF-101, Kinetics-400 and Something-Something-v2 layouts (PyAV-encoded).

The classes are motions of a textured object across clutter: ``move_left``, ``move_right``, ``move_up``,
``move_down``. A single frame does not tell left from right - only the order of the frames does - so a
probe must use time (the temporal position embedding) to exceed 50 %. Videos are written with PyAV
(``mpeg4`` in ``.avi``/``.mp4``, VP8 in ``.webm``); ``frames=True`` writes frame folders instead (the
other accepted form). Every video comes from its own seeded generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dinobench.synthetic.dense import _rng, _size_hw, _texture
from dinobench.synthetic.retrieval import _clutter

MOTIONS = ("move_left", "move_right", "move_up", "move_down")
_DIRECTIONS = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (-1, 0), "move_down": (1, 0)}


def motion_frames(h: int, w: int, motion: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[n_frames, h, w, 3]``: an object (random class texture) crossing clutter in ``motion``'s direction."""
    dy, dx = _DIRECTIONS[motion]
    size = max(6, min(h, w) // 3)
    background = _clutter(h, w, rng)
    texture = _texture(int(rng.integers(1, 7)), size, size, rng)
    cy, cx = rng.uniform(0.35, 0.65) * (h - size), rng.uniform(0.35, 0.65) * (w - size)
    span_y, span_x = (h - size) * 0.8, (w - size) * 0.8
    frames = []
    for t in range(n_frames):
        progress = t / max(n_frames - 1, 1) - 0.5
        y = int(np.clip(cy + dy * progress * span_y, 0, h - size))
        x = int(np.clip(cx + dx * progress * span_x, 0, w - size))
        frame = background.copy()
        frame[y:y + size, x:x + size] = texture
        frames.append((frame * 255).round().astype(np.uint8))
    return np.stack(frames)


def write_video(frames: np.ndarray, path: Path, fps: int = 8) -> Path:
    """Encode uint8 ``[T, H, W, 3]`` frames (even H and W) with PyAV; codec by suffix."""
    import av

    codec = "libvpx" if path.suffix == ".webm" else "mpeg4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write(frames: np.ndarray, path: Path, as_frames: bool) -> None:
    if as_frames:
        folder = path.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    else:
        write_video(frames, path)


def _clips(split: str, n: int, size: int | tuple[int, int], n_frames: int, seed: int):
    h, w = _size_hw(size)
    h, w = h + h % 2, w + w % 2  # yuv420p needs even sizes
    for i in range(n):
        motion = MOTIONS[i % len(MOTIONS)]
        yield i, motion, motion_frames(h, w, motion, n_frames, _rng(seed, split, i, 31))


def write_synthetic_ucf101(root: str | Path, n_train: int = 16, n_val: int = 8, size: int | tuple[int, int] = (32, 40),
                           seed: int = 0, n_frames: int = 12, frames: bool = False) -> Path:
    """``root/UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` + ``root/ucfTrainTestlist`` (split 1); return root."""
    root = Path(root)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {m}\n" for i, m in enumerate(MOTIONS)))
    lines = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i, motion, clip in _clips(split, n, size, n_frames, seed):
            group = i // len(MOTIONS) + (1 if split == "val" else 8)
            relative = f"{motion}/v_{motion}_g{group:02d}_c{i % 7 + 1:02d}.avi"
            _write(clip, root / "UCF-101" / relative, frames)
            lines[split].append(f"{relative} {MOTIONS.index(motion) + 1}" if split == "train" else relative)
    (lists / "trainlist01.txt").write_text("\n".join(lines["train"]) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(lines["val"]) + "\n")
    return root


def write_synthetic_kinetics400(root: str | Path, n_train: int = 16, n_val: int = 8,
                                size: int | tuple[int, int] = (32, 40), seed: int = 0, n_frames: int = 12,
                                frames: bool = False) -> Path:
    """``root/{train,val}/<class>/<id>_000000_000010.mp4``; return root."""
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        for i, motion, clip in _clips(split, n, size, n_frames, seed):
            _write(clip, root / split / motion / f"{split}{i:05d}_000000_000010.mp4", frames)
    return root


def write_synthetic_ssv2(root: str | Path, n_train: int = 16, n_val: int = 8, size: int | tuple[int, int] = (32, 40),
                         seed: int = 0, n_frames: int = 12, frames: bool = False) -> Path:
    """``root/20bn-something-something-v2/<id>.webm`` + ``root/labels/{labels,train,validation}.json``; return root."""
    root = Path(root)
    templates = {m: f"Moving [something] {m.split('_')[1]}" for m in MOTIONS}
    (root / "labels").mkdir(parents=True, exist_ok=True)
    labels = {templates[m].replace("[", "").replace("]", ""): str(i) for i, m in enumerate(MOTIONS)}
    (root / "labels" / "labels.json").write_text(json.dumps(labels, indent=1))
    for split, n, file_name in (("train", n_train, "train.json"), ("val", n_val, "validation.json")):
        entries = []
        for i, motion, clip in _clips(split, n, size, n_frames, seed):
            video_id = str((1 if split == "train" else 500000) + i)
            _write(clip, root / "20bn-something-something-v2" / f"{video_id}.webm", frames)
            entries.append({"id": video_id, "label": templates[motion].replace("[something]", "a box"),
                            "template": templates[motion], "placeholders": ["a box"]})
        (root / "labels" / file_name).write_text(json.dumps(entries, indent=1))
    return root


def write_synthetic_davis(root: str | Path, n_train: int = 0, n_val: int = 2, size: int | tuple[int, int] = (64, 96),
                          seed: int = 0, n_frames: int = 10, n_objects: int = 2) -> Path:
    """A DAVIS-2017 tree of ``n_val`` sequences (``n_train`` is unused: the tracking task has no training split):
    ``n_objects`` textured shapes moving at constant speed over a static clutter background, exact palette
    annotations (ids 1..n, later objects in front); return root."""
    from dinobench.synthetic.dense import _shape_mask
    from dinobench.visualize import palette

    h, w = _size_hw(size)
    root = Path(root)
    names = [f"synthetic-{i:02d}" for i in range(n_val)]
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[1:n_objects + 1] = palette(n_objects)
    for s, name in enumerate(names):
        rng = _rng(seed, "val", s, 41)
        background = _clutter(h, w, rng)
        objects = []
        for k in range(n_objects):
            oh, ow = int(h * rng.uniform(0.25, 0.4)), int(w * rng.uniform(0.2, 0.3))
            shape = _shape_mask(oh, ow, rng) | _shape_mask(oh, ow, rng)
            start = np.array([rng.uniform(0, h - oh), rng.uniform(0, w - ow)])
            speed = rng.uniform(0.5, 0.9, size=2) * rng.choice([-1, 1], size=2)
            start = np.where(speed > 0, 0.05, 0.95) * np.array([h - oh, w - ow])  # cross most of the frame
            velocity = speed * np.array([h - oh, w - ow]) / n_frames
            objects.append((shape, _texture(k % 6 + 1, oh, ow, rng), start, velocity))
        for folder in ("JPEGImages", "Annotations"):
            (root / folder / "480p" / name).mkdir(parents=True, exist_ok=True)
        for t in range(n_frames):
            image, ids = background.copy(), np.zeros((h, w), dtype=np.uint8)
            for k, (shape, texture, start, velocity) in enumerate(objects):
                y, x = np.clip(start + velocity * t, 0, [h - shape.shape[0], w - shape.shape[1]]).astype(int)
                region = (slice(y, y + shape.shape[0]), slice(x, x + shape.shape[1]))
                image[region][shape] = texture[shape]
                ids[region][shape] = k + 1
            Image.fromarray((image * 255).round().astype(np.uint8)).save(
                root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
            annotation = Image.fromarray(ids, mode="P")
            annotation.putpalette(colours.ravel().tolist())
            annotation.save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
    return root
