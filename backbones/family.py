"""Plumbing every backbone family shares: building a variant from its table, the lazy per-variant
builders (``module.vits16(**overrides)``), ``feature_info`` and the packing of
``get_intermediate_layers`` outputs."""

from __future__ import annotations

import difflib
import inspect
from functools import partial
from typing import Any, Callable, Sequence

from torch import nn

from dinobench.errors import ConfigError

VariantTable = dict[str, tuple[dict[str, Any], dict[str, Any]]]


def build_variant(model_cls: Callable[..., nn.Module], table: VariantTable, variant: str | None,
                  overrides: dict[str, Any]) -> nn.Module:
    """``model_cls(**(table[variant] kwargs + mean/std metadata + overrides))``, randomly initialised
    unless built on the meta device; records the kwargs as ``model.variant_config``."""
    check_override_names(model_cls, overrides, variant)
    kwargs, meta = table[variant] if variant is not None else ({}, {})
    config = {**kwargs, **{k: v for k, v in meta.items() if k in ("mean", "std")}, **overrides}
    model = model_cls(**config)
    if not any(p.is_meta for p in model.parameters()):
        model.init_weights()
    model.variant_config = config  # what was built, recorded in results and exports
    return model


def check_override_names(model_cls: Callable[..., nn.Module], overrides: dict[str, Any],
                         variant: str | None = None) -> None:
    """One-line :class:`ConfigError` for an override that is not a constructor argument (official names)."""
    valid = sorted(inspect.signature(model_cls).parameters)
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = f"backbone {variant!r}: " if variant else ""
            raise ConfigError(f"{where}invalid override backbone.{key}: not an argument of {model_cls.__name__}; "
                              f"{hint}valid: {', '.join(valid)}")


def variant_getattr(module_name: str, table: VariantTable, build: Callable[..., nn.Module]) -> Callable[[str], Any]:
    """A module ``__getattr__`` returning ``partial(build, name)`` for each variant name."""
    def __getattr__(name: str) -> Any:
        if name in table:
            return partial(build, name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
    return __getattr__


def level(index: int, module: str, num_chs: int, reduction: int) -> dict[str, Any]:
    """One ``feature_info`` entry (timm's keys): level ``index`` is the output of submodule
    ``module``, with ``num_chs`` channels at ``reduction`` input pixels per map cell."""
    return {"index": index, "module": module, "num_chs": int(num_chs), "reduction": int(reduction)}


def vit_feature_info(depth: int, embed_dim: int, patch_size: int) -> list[dict[str, Any]]:
    """``feature_info`` of a plain ViT: every block ``blocks.<i>`` gives ``embed_dim`` channels at
    stride ``patch_size``."""
    return [level(i, f"blocks.{i}", embed_dim, patch_size) for i in range(depth)]


def pack_layers(patches: Sequence, class_tokens: Sequence | None, extra_tokens: Sequence | None) -> tuple:
    """Official ``get_intermediate_layers`` return shape: patches alone, or tuples per layer with
    the class token and/or extra (storage) tokens when requested (None = not requested)."""
    parts = [list(patches)] + [list(p) for p in (class_tokens, extra_tokens) if p is not None]
    return tuple(parts[0]) if len(parts) == 1 else tuple(zip(*parts))


def split_vit_layers(outputs: Sequence, n_prefix: int, image_hw: tuple[int, int], patch_size: int,
                     reshape: bool, return_class_token: bool, return_extra_tokens: bool) -> tuple:
    """ViT block outputs ``[B, prefix + N, D]`` -> official ``get_intermediate_layers`` tuples
    (patches ``[B, N, D]`` or ``[B, D, h, w]``, class token, storage/register tokens)."""
    patches = [out[:, n_prefix:] for out in outputs]
    if reshape:
        grid = (image_hw[0] // patch_size, image_hw[1] // patch_size)
        patches = [p.reshape(p.shape[0], *grid, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
    return pack_layers(patches, [out[:, 0] for out in outputs] if return_class_token else None,
                       [out[:, 1:n_prefix] for out in outputs] if return_extra_tokens else None)
