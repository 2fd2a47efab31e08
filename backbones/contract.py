"""What every backbone offers the rest of dinobench, in one place (see ``docs`` in the README).

Attributes ``embed_dim``, ``patch_size``, ``n_storage_tokens``, ``n_blocks``; methods
``forward_features`` and ``get_intermediate_layers`` with official DINOv3 semantics; optional
``image_mean``/``image_std`` (the input normalisation it was trained with) and ``feature_info``
(timm's idea: one dict per level ``get_intermediate_layers`` can return, with ``index``,
``module``, ``num_chs`` channels and ``reduction``, the stride in input pixels).
:func:`check_backbone` checks all of it and raises one line naming what is wrong.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from dinobench.errors import PluginError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: attributes every backbone must have (``n_blocks`` and ``feature_info`` are derived when absent)
CONTRACT_ATTRIBUTES = ("embed_dim", "patch_size", "n_storage_tokens", "forward_features", "get_intermediate_layers")
FORWARD_FEATURES_KEYS = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm")
LEVEL_KEYS = ("index", "module", "num_chs", "reduction")


def backbone_normalisation(model: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's input ``(mean, std)`` (``image_mean``/``image_std``; ImageNet's when it has none)."""
    return (tuple(getattr(model, "image_mean", IMAGENET_MEAN)), tuple(getattr(model, "image_std", IMAGENET_STD)))


def n_levels(model: Any) -> int:
    """How many levels ``get_intermediate_layers`` can return: ``feature_info``, else ``n_blocks``,
    else ``len(blocks)``, else 1 (a single-layer backbone)."""
    info = getattr(model, "feature_info", None)
    if info:
        return len(info)
    return int(getattr(model, "n_blocks", 0) or len(getattr(model, "blocks", None) or ()) or 1)


def level_info(model: Any, layers: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Channels and stride of each level in ``layers`` (indices as ``get_intermediate_layers(n=[...])``
    takes them, negative ones counted from the end; None: every level).

    Reads ``feature_info``; a backbone without it (a third-party ViT) gets ``num_chs=embed_dim``
    (``embed_dims[i]`` when it lists per-level widths) and ``reduction=patch_size`` for every level.
    """
    total = n_levels(model)
    layers = range(total) if layers is None else layers
    info = getattr(model, "feature_info", None)
    widths = getattr(model, "embed_dims", None)
    out = []
    for i in layers:
        index = int(i) % total
        if info:
            out.append(dict(info[index]))
        else:
            blocks = getattr(model, "blocks", None)
            out.append({"index": index, "module": f"blocks.{index}" if blocks is not None else "",
                        "num_chs": int(widths[index] if widths else model.embed_dim),
                        "reduction": int(model.patch_size)})
    return out


def _fail(name: str, what: str) -> PluginError:
    return PluginError(f"backbone {name!r} does not honour the backbone contract: {what}")


def _check_static(model: Any, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise _fail(name, f"its factory returned a {type(model).__name__}, not a torch.nn.Module")
    missing = [a for a in CONTRACT_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise _fail(name, f"missing attribute(s) {', '.join(missing)}")
    for attr in ("forward_features", "get_intermediate_layers"):
        if not callable(getattr(model, attr)):
            raise _fail(name, f"{attr} is not a method")
    for attr, minimum in (("embed_dim", 1), ("patch_size", 1), ("n_storage_tokens", 0), ("n_blocks", 1)):
        value = getattr(model, attr, minimum)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise _fail(name, f"{attr} must be an int >= {minimum}, got {value!r}")
    info = getattr(model, "feature_info", None)
    if info is None:
        return
    if not isinstance(info, (list, tuple)) or not info:
        raise _fail(name, f"feature_info must be a non-empty list of dicts, got {type(info).__name__}")
    if hasattr(model, "n_blocks") and len(info) != model.n_blocks:
        raise _fail(name, f"feature_info has {len(info)} levels but n_blocks is {model.n_blocks}")
    for i, entry in enumerate(info):
        absent = [k for k in LEVEL_KEYS if not isinstance(entry, dict) or k not in entry]
        if absent:
            raise _fail(name, f"feature_info[{i}] lacks {', '.join(absent)} (needs {', '.join(LEVEL_KEYS)})")
        sizes_ok = all(isinstance(entry[k], Integral) and entry[k] > 0 for k in ("num_chs", "reduction"))
        if entry["index"] != i or not sizes_ok:
            raise _fail(name, f"feature_info[{i}] must have index {i} and positive int num_chs/reduction, got {entry}")
        try:
            model.get_submodule(entry["module"])
        except AttributeError:
            raise _fail(name, f"feature_info[{i}] names module {entry['module']!r}, which the model does not have") \
                from None
    if info[-1]["num_chs"] != model.embed_dim:
        raise _fail(name, f"the last level has {info[-1]['num_chs']} channels but embed_dim is {model.embed_dim}")


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _call(model: Any, name: str, method: str, images: Tensor, **kwargs: Any) -> Any:
    try:
        return getattr(model, method)(images, **kwargs)
    except Exception as exc:  # a plugin's bug: one line naming the backbone (the chain keeps the traceback)
        args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise _fail(name, f"{method}(<{tuple(images.shape)} images>{args}) raised "
                          f"{type(exc).__name__}: {detail}") from exc


def _check_outputs(model: Any, name: str, images: Tensor) -> None:
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    dim, storage = model.embed_dim, model.n_storage_tokens
    n_patches = (height // model.patch_size) * (width // model.patch_size)
    with torch.no_grad():
        out = _call(model, name, "forward_features", images)
        if not isinstance(out, dict) or any(k not in out for k in FORWARD_FEATURES_KEYS):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise _fail(name, f"forward_features must return a dict with {', '.join(FORWARD_FEATURES_KEYS)}, got {got}")
        expected = {"x_norm_clstoken": (batch, dim), "x_storage_tokens": (batch, storage, dim),
                    "x_norm_patchtokens": (batch, n_patches, dim), "x_prenorm": (batch, 1 + storage + n_patches, dim)}
        for key, shape in expected.items():
            if _shape(out[key]) != shape:
                raise _fail(name, f"forward_features on {tuple(images.shape)} gave {key} of shape "
                                  f"{_shape(out[key])}, expected {shape}")
        levels = level_info(model)
        maps = _call(model, name, "get_intermediate_layers", images, n=[lv["index"] for lv in levels], reshape=True)
        if len(maps) != len(levels):
            raise _fail(name, f"get_intermediate_layers(n=<all {len(levels)} levels>) returned {len(maps)} outputs")
        for lv, fmap in zip(levels, maps):
            shape = (batch, lv["num_chs"], height // lv["reduction"], width // lv["reduction"])
            if _shape(fmap) != shape:
                raise _fail(name, f"level {lv['index']} ({lv['module'] or 'no module'}) of get_intermediate_layers("
                                  f"reshape=True) on {tuple(images.shape)} has shape {_shape(fmap)}, expected "
                                  f"{shape} (num_chs {lv['num_chs']}, reduction {lv['reduction']})")


def check_backbone(model: Any, name: str, images: Tensor | None = None) -> None:
    """Raise a one-line :class:`PluginError` naming backbone ``name`` and what breaks the contract.

    Always: an ``nn.Module`` with the contract attributes (ints of the right range) and a
    consistent ``feature_info``. With ``images`` (``[B, C, H, W]`` on the model's device), also
    runs the model: ``forward_features`` keys and shapes, and ``get_intermediate_layers`` maps of
    every level at ``num_chs`` x ``H // reduction`` x ``W // reduction``. Cheap checks only by
    default, so building a large model never runs it; plugin authors call it with images in tests.
    """
    _check_static(model, name)
    if images is not None:
        _check_outputs(model, name, images)
