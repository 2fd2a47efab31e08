"""Feature extraction: batched, ``inference_mode``, progress bar; one place for every protocol.

(The on-disk feature cache of the classification issue plugs in here.)
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


@torch.inference_mode()
def extract_features(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", desc: str = "features") -> FeatureSet:
    """Normalised CLS token (``x_norm_clstoken``) of every sample of ``dataset``."""
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
                out = model.forward_features(images.to(device, non_blocking=True))
            feats.append(out["x_norm_clstoken"].float().cpu())
            labels.append(torch.as_tensor(targets, dtype=torch.long))
    except DataError as exc:
        raise _unwrap_worker_error(exc) from None
    if not feats:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    return FeatureSet(torch.cat(feats), torch.cat(labels))
