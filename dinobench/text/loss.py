"""The CLIP (symmetric InfoNCE) loss with in-batch negatives gathered across ranks.

Each rank scores its own rows against every rank's columns - ``[B_local, B_global]`` logits in each direction,
never the full ``B_global x B_global`` matrix - with ``exp(logit_scale)`` already applied by the caller:
``loss = (CE(image rows -> all texts) + CE(text rows -> all images)) / 2``, the positives on the diagonal
offset by the rank's position. The gather keeps autograd (``torch.distributed.nn``), so other ranks' rows
receive the gradients of this rank's loss; with equal local batches the mean of the ranks' losses is the
single-process loss over the global batch, and DDP's gradient averaging gives its gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dinobench.utils import distributed as ddp


def _gather(x: Tensor) -> Tensor:
    """All ranks' ``x`` concatenated along the batch (with autograd), or ``x`` itself in one process."""
    if ddp.world_size() == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x), dim=0)


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE of L2-normalised ``[B, D]`` image and text embeddings (matching rows are pairs) with the
    scale ``logit_scale`` (the exponentiated learnable temperature), in at least float32."""
    dtype = torch.promote_types(image_features.dtype, torch.float32)  # bf16/fp16 -> fp32; fp64 stays
    image, text, scale = image_features.to(dtype), text_features.to(dtype), logit_scale.to(dtype)
    all_image, all_text = _gather(image), _gather(text)
    targets = torch.arange(image.shape[0], device=image.device) + ddp.rank() * image.shape[0]
    image_to_text = scale * image @ all_text.T
    text_to_image = scale * text @ all_image.T
    return (F.cross_entropy(image_to_text, targets) + F.cross_entropy(text_to_image, targets)) / 2
