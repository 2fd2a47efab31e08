"""Batch collation for SSL training: stack multi-crops crop-major and draw the iBOT masks (official semantics).

Of the ``B = n_global_crops * batch`` global crops, ``int(B * mask_probability)`` get masks whose
ratios step linearly through ``mask_ratio_tuple`` (sample ``i`` masks ``int(N * linspace[i + 1])``
patches); the rest are unmasked, and the list is shuffled. The shuffle, the circular shifts and
the mask generator draw from ``rng`` (seeded from torch's RNG when ``None``), never the global
``random`` module.

Beyond the official function, ``world_size``/``rank`` draw the masks for the *global* batch (every
rank passes the same ``rng`` seed and keeps its own rows): the masks then do not depend on the
number of ranks, so an N-rank training run sees exactly the batch a single process would.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from dinobench.ssl.masking import RandomSource, RngLike, resolve_rng


def _stack_crop_major(samples_list: Sequence[tuple[dict, Any]], key: str, n_crops: int) -> Tensor:
    """``[n_crops * B, ...]``: every sample's crop 0, then every sample's crop 1, and so on."""
    return torch.stack([s[0][key][i] for i in range(n_crops) for s in samples_list])


def _n_tokens_of(mask_generator: Any) -> int:
    """Patch count of the generator's grid (used when ``n_tokens`` is not given)."""
    if mask_generator is None or not hasattr(mask_generator, "get_shape"):
        raise ValueError("n_tokens is required unless mask_generator has get_shape()")
    height, width = mask_generator.get_shape()
    return int(height * width)


def collate_data_and_cast(
    samples_list: Sequence[tuple[dict, Any]],
    mask_ratio_tuple: tuple[float, float],
    mask_probability: float,
    dtype: torch.dtype,
    n_tokens: int | None = None,
    mask_generator: Callable | None = None,
    random_circular_shift: bool = False,
    local_batch_size: int | None = None,
    rng: RngLike | RandomSource = None,
    world_size: int = 1,
    rank: int = 0,
) -> dict[str, Any]:
    """Collate ``(crops_dict, label, ...)`` samples into crop tensors (cast to ``dtype``) plus iBOT masks.

    With an ``rng``, ``mask_generator`` is called as ``mask_generator(n, rng=source)`` (as
    ``MaskingGenerator`` accepts) so one seed fixes the whole batch; otherwise as ``mask_generator(n)``.
    With ``world_size > 1`` the samples are rank ``rank``'s slice of a global batch (rank ``r`` holds
    global samples ``r * b .. (r + 1) * b - 1``): masks are drawn for all ``world_size * b`` samples'
    global crops, crop-major, and this rank's rows are returned (``upperbound`` counts those rows).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if world_size > 1 and rng is None:
        raise ValueError("world_size > 1 needs an rng seeded alike on every rank (else ranks' masks disagree)")
    crops0 = samples_list[0][0]
    n_global_crops = len(crops0["global_crops"])
    n_local_crops = len(crops0["local_crops"])

    collated_global_crops = _stack_crop_major(samples_list, "global_crops", n_global_crops)
    if n_local_crops:
        collated_local_crops = _stack_crop_major(samples_list, "local_crops", n_local_crops)
    else:  # the official would fail on torch.stack([])
        collated_local_crops = collated_global_crops.new_empty((0, collated_global_crops.shape[1], 0, 0))
    collated_gram_teacher_crops = None
    if "gram_teacher_crops" in crops0:
        collated_gram_teacher_crops = _stack_crop_major(samples_list, "gram_teacher_crops", n_global_crops)

    # multi-distillation: masks are drawn for the local batch, not for the data-loader batch
    per_rank = local_batch_size if local_batch_size is not None else len(samples_list)
    B = n_global_crops * per_rank * world_size
    N = int(n_tokens) if n_tokens is not None else _n_tokens_of(mask_generator)
    source = resolve_rng(rng)

    def generate(n: int) -> Tensor:
        out = mask_generator(n) if rng is None else mask_generator(n, rng=source)
        return torch.as_tensor(out, dtype=torch.bool)

    n_samples_masked = int(B * mask_probability)
    probs = torch.linspace(*mask_ratio_tuple, n_samples_masked + 1)
    masks_list = []  # (mask, requested count): shuffled together, the permutation only depends on B
    for i in range(n_samples_masked):
        n_masked = int(N * probs[i + 1])
        mask = generate(n_masked)
        if random_circular_shift:
            shift = (source.randint(0, mask.shape[0] - 1), source.randint(0, mask.shape[1] - 1))
            mask = torch.roll(mask, shift, (0, 1))
        masks_list.append((mask, n_masked))
    for _ in range(n_samples_masked, B):
        masks_list.append((generate(0), 0))
    source.shuffle(masks_list)
    if world_size > 1:  # crop c of global sample j is row c * (world_size * per_rank) + j
        per_crop, first = per_rank * world_size, rank * per_rank
        masks_list = [masks_list[c * per_crop + first + i] for c in range(n_global_crops) for i in range(per_rank)]
    upperbound = sum(n for _, n in masks_list)

    collated_masks = torch.stack([mask for mask, _ in masks_list]).flatten(1)
    mask_indices_list = collated_masks.flatten().nonzero().flatten()
    weights = 1 / collated_masks.sum(-1).clamp(min=1.0)
    masks_weight = weights.unsqueeze(-1).expand_as(collated_masks)[collated_masks]

    out = {
        "collated_global_crops": collated_global_crops.to(dtype),
        "collated_local_crops": collated_local_crops.to(dtype),
        "collated_masks": collated_masks,
        "mask_indices_list": mask_indices_list,
        "masks_weight": masks_weight,
        "upperbound": upperbound,
        "n_masked_patches": torch.full((1,), fill_value=mask_indices_list.shape[0], dtype=torch.long),
    }
    if collated_gram_teacher_crops is not None:
        out["collated_gram_teacher_crops"] = collated_gram_teacher_crops.to(dtype)
    return out
