"""Feature extraction: batched, ``inference_mode``, progress bar; one place for every protocol.

Feature kinds (what a protocol asks for):

- ``"cls"``: the normalised CLS token ``x_norm_clstoken`` ``[N, D]`` (kNN, logistic regression);
- ``"cls4_avgpool"``: ``[N, 5D]`` = normalised CLS tokens of the last 4 blocks (oldest first) then
  the mean of the last block's normalised patch tokens — the official linear-probe input; its
  last ``2D`` columns are the ``n=1`` input ``[cls_L, avgpool_L]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dinobench.errors import DataError

logger = logging.getLogger("dinobench")


@dataclass
class FeatureSet:
    """Features ``[N, D]`` (float32, CPU) and integer labels ``[N]`` of one dataset split."""

    features: Tensor
    labels: Tensor


def _unwrap_worker_error(exc: DataError) -> DataError:
    """DataLoader workers re-raise with the whole traceback in the message; keep the last line."""
    message = str(exc)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return DataError(last.split("DataError: ", 1)[-1])
    return exc


FEATURE_KINDS = ("cls", "cls4_avgpool")


def compute_features(model: nn.Module, images: Tensor, kind: str = "cls") -> Tensor:
    """One batch of features of ``kind`` (see the module docstring)."""
    if kind == "cls":
        return model.forward_features(images)["x_norm_clstoken"]
    if kind == "cls4_avgpool":
        layers = model.get_intermediate_layers(images, n=4, return_class_token=True, norm=True)
        patch_last = layers[-1][0]
        return torch.cat([cls for _, cls in layers] + [patch_last.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")


@torch.inference_mode()
def extract_features(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", desc: str = "features", kind: str = "cls") -> FeatureSet:
    """Features of ``kind`` (default: normalised CLS token) of every sample of ``dataset``."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    feats, labels = [], []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    model.eval().to(device)
    try:
        for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False):
            with autocast:
                out = compute_features(model, images.to(device, non_blocking=True), kind)
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(targets, dtype=torch.long))
    except DataError as exc:
        raise _unwrap_worker_error(exc) from None
    if not feats:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    return FeatureSet(torch.cat(feats), torch.cat(labels))
