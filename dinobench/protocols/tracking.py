"""Semi-supervised video object segmentation by label propagation on frozen patch features (DAVIS-2017).

As in the official ``notebooks/segmentation_tracking.ipynb``: every frame is resized so that its shorter
side is ``transform.short_side`` (960) rounded up to whole patches, both sides rounded up to whole patches
(bicubic); its last-block patch tokens are L2-normalised. The first frame's annotation, resized to the
patch grid (nearest-exact), gives one-hot probabilities over background + objects. Each next frame's
patches attend to a context of the first frame and the ``context`` (7) most recent frames: cosine
similarity to the context patches within ``radius`` (12) patches (circle), the ``topk`` (5) best kept,
``softmax(sim / temperature)`` (0.2) weights the context probabilities; the propagated probabilities
join the queue. For the metrics they are upsampled to the annotation size (``upsample``: nearest, as the
notebook), min-max normalised per object and arg-maxed. Metrics: DAVIS J / F / J&F
(:mod:`dinobench.metrics.tracking`; void pixels count as background, as officially), a per-object table.
Frame features are cached per sequence.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from dinobench.context import RunContext
from dinobench.data.base import load_rgb
from dinobench.data.davis import Sequence, load_ids
from dinobench.data.transforms import required_pixels
from dinobench.errors import ConfigError, DataError
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.metrics.tracking import davis_summary, sequence_scores
from dinobench.utils.io import safe_component
from dinobench.visualize import colorize_mask, side_by_side


@dataclass
class TrackingConfig:
    """The official notebook's propagation settings."""

    context: int = 7  # most recent frames kept besides the first
    radius: float = 12.0  # neighbourhood, in patches
    neighborhood: Literal["circle", "square"] = "circle"
    topk: int = 5
    temperature: float = 0.2
    upsample: Literal["nearest", "bilinear"] = "nearest"
    bound_th: float = 0.008  # F boundary tolerance (fraction of the diagonal; >= 1: pixels)
    # True: void (255) annotation pixels are left out of J and F. Off: the official semi-supervised
    # definition counts them as background, so an object predicted on them is a false positive
    exclude_void: bool = False
    query_chunk: int = 4096  # current-frame patches per similarity chunk: memory only
    num_visualizations: int = 1  # sequences drawn by --save-predictions


def round_up(value: float, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return int(math.ceil(value / multiple) * multiple)


class FrameTransform:
    """The notebook's ``ResizeToMultiple(short_side, patch)`` + to tensor + normalise."""

    def __init__(self, short_side: int, patch_size: int, mean: Any, std: Any) -> None:
        self.short_side, self.patch_size, self.mean, self.std = int(short_side), int(patch_size), list(mean), list(std)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of a frame after resizing."""
        if width > height:
            new_h = round_up(self.short_side, self.patch_size)
            return new_h, round_up(width * new_h / height, self.patch_size)
        new_w = round_up(self.short_side, self.patch_size)
        return round_up(height * new_w / width, self.patch_size), new_w

    def __call__(self, image: Image.Image) -> Tensor:
        resized = TF.resize(image, list(self.size(*image.size)), interpolation=InterpolationMode.BICUBIC)
        return TF.normalize(TF.to_tensor(resized), self.mean, self.std)


class _Frames(Dataset):
    def __init__(self, sequence: Sequence, transform: FrameTransform) -> None:
        self.sequence, self.transform = sequence, transform

    def __len__(self) -> int:
        return len(self.sequence.frames)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(load_rgb(self.sequence.frames[index])), index


@functools.lru_cache(maxsize=8)
def neighborhood_mask(h: int, w: int, radius: float, shape: str) -> Tensor:
    """``[h*w, h*w]`` bool: context patch within ``radius`` (L2: circle, L-inf: square) of the current patch."""
    ij = torch.stack(torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                    indexing="ij"), dim=-1).reshape(-1, 2)
    order = 2 if shape == "circle" else math.inf
    return torch.linalg.vector_norm(ij[:, None, :] - ij[None, :, :], ord=order, dim=-1) <= radius


def propagate(current: Tensor, context: Tensor, context_probs: Tensor, neighbors: Tensor, topk: int,
              temperature: float, chunk: int = 4096) -> Tensor:
    """Probabilities ``[h, w, M]`` of the current frame's patches ``[h, w, D]`` from ``context`` ``[t, h, w, D]``
    and its probabilities ``[t, h, w, M]`` (see the module docstring); rows in chunks of ``chunk``."""
    t, h, w, m = context_probs.shape
    flat_context = context.reshape(t, h * w, -1)
    probs = context_probs.reshape(t * h * w, m)
    out = []
    current = current.reshape(h * w, -1)
    for start in range(0, h * w, chunk):
        rows = current[start:start + chunk]
        dot = torch.einsum("nd,tpd->ntp", rows, flat_context)  # [n, t, hw]
        dot = dot.masked_fill(~neighbors[start:start + chunk, None, :], -math.inf).flatten(1)  # [n, t*hw]
        kth = torch.topk(dot, k=min(topk, dot.shape[1]), dim=1).values[:, -1:]
        dot = dot.masked_fill(dot < kth, -math.inf)
        weights = torch.softmax(dot / temperature, dim=1)
        propagated = weights @ probs
        out.append(propagated / propagated.sum(dim=1, keepdim=True))
    return torch.cat(out).reshape(h, w, m)


def to_prediction(probs: Tensor, size: tuple[int, int], mode: str) -> np.ndarray:
    """Object ids ``[H, W]`` (uint8) of patch probabilities ``[h, w, M]``: upsampled, min-max per object, argmax."""
    up = F.interpolate(probs.permute(2, 0, 1)[None], size=size, mode=mode,
                       **({} if mode == "nearest" else {"align_corners": False}))[0]
    low = up.flatten(1).min(dim=1).values[:, None, None]
    high = up.flatten(1).max(dim=1).values[:, None, None]
    up = torch.nan_to_num((up - low) / (high - low), nan=0.0)
    return up.argmax(dim=0).to(torch.uint8).numpy()


class TrackingProtocol(Protocol):
    """Label propagation on every sequence of the ``val`` split; DAVIS J / F / J&F."""

    name = "tracking"
    version = "2"  # 2: void pixels count as background (official); the numbers move where the truth has void
    Config = TrackingConfig
    runtime_keys = ("query_chunk", "num_visualizations")
    eval_keys = ("exclude_void",)
    datasets = ("val",)

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if cfg.context < 0 or cfg.radius <= 0 or cfg.topk < 1 or cfg.temperature <= 0 or cfg.query_chunk < 1:
            raise ConfigError("tracking: protocol.context >= 0, radius > 0, topk >= 1, temperature > 0 and "
                              "query_chunk >= 1 are needed")

    def frame_transform(self, ctx: RunContext) -> FrameTransform:
        """The notebook's frame transform at ``transform.short_side``."""
        short_side = required_pixels(ctx.cfg.get("transform") or {}, "short_side", "the shorter frame side", 960)
        return FrameTransform(short_side, int(ctx.backbone.patch_size), ctx.image_mean, ctx.image_std)

    def track(self, features: Tensor, first_ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Predicted ids ``[T, H, W]`` of a sequence from its L2-normalised frame features ``[T, h, w, D]``."""
        cfg = self.config
        _, h, w, _ = features.shape
        ids = torch.from_numpy(first_ids.astype(np.int64))
        ids[ids == 255] = 0  # void is not an object to propagate
        n_masks = int(ids.max()) + 1
        grid = F.interpolate(ids[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].long()
        first_probs = F.one_hot(grid, n_masks).float()
        neighbors = neighborhood_mask(h, w, float(cfg.radius), cfg.neighborhood)
        queue_feats: list[Tensor] = []
        queue_probs: list[Tensor] = []
        predictions = [first_ids.astype(np.uint8)]
        for t in range(1, len(features)):
            context = torch.stack([features[0], *queue_feats])
            context_probs = torch.stack([first_probs, *queue_probs])
            probs = propagate(features[t], context, context_probs, neighbors, cfg.topk, cfg.temperature,
                              cfg.query_chunk)
            if cfg.context:
                queue_feats.append(features[t])
                queue_probs.append(probs)
                del queue_feats[:-cfg.context], queue_probs[:-cfg.context]
            predictions.append(to_prediction(probs, size, cfg.upsample))
        return np.stack(predictions)

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Encode, propagate and score every sequence."""
        dataset, transform = ctx.dataset("val"), self.frame_transform(ctx)
        scores, drawn = {}, []
        for index in tqdm(range(len(dataset)), desc="tracking sequences", unit="seq", leave=False):
            sequence: Sequence = dataset[index]
            truth = np.stack([load_ids(path) for path in sequence.annotations])
            frames = _Frames(sequence, transform)
            encoded = ctx.dataset_features(frames, {"sequence": sequence.name, "fingerprint": sequence.fingerprint},
                                           desc=f"{ctx.task} {sequence.name} frames")
            features = F.normalize(torch.as_tensor(np.asarray(encoded.features)).float(), dim=-1)
            if features.shape[0] != truth.shape[0]:
                raise DataError(f"sequence {sequence.name}: {features.shape[0]} frames but {truth.shape[0]} annotations")
            prediction = self.track(features, truth[0], truth.shape[1:])
            scores[sequence.name] = sequence_scores(truth, prediction, self.config.bound_th,
                                                    exclude_void=self.config.exclude_void)
            if ctx.predictions_dir is not None and len(drawn) < self.config.num_visualizations:
                drawn.append(self.draw(ctx.predictions_dir, sequence, truth, prediction))
        metrics, rows = davis_summary(scores)
        return ProtocolResult(metrics, "J&F", higher_is_better={"J_decay": False, "F_decay": False},
                              tables={"per_object": rows})

    def draw(self, out_dir: Path, sequence: Sequence, truth: np.ndarray, prediction: np.ndarray) -> str:
        """Frames | truth | prediction at four evenly spaced frames of one sequence."""
        n_ids = int(max(truth[truth != 255].max(initial=0), prediction.max())) + 2
        panels = []
        for t in np.linspace(0, len(truth) - 1, 4).astype(int):
            panels += [(f"frame {t}", load_rgb(sequence.frames[t])),
                       ("truth", colorize_mask(truth[t].astype(np.int64) - 1, n_ids, ignore_index=254)),
                       ("prediction", colorize_mask(prediction[t].astype(np.int64) - 1, n_ids, ignore_index=254))]
        name = f"tracking_{safe_component(sequence.name)}.png"  # a name from the data: one component
        side_by_side(panels, Path(out_dir) / name)
        return name
