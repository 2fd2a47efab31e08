"""``create_backbone``: registry lookup, construction with official-name overrides, weight loading."""

from __future__ import annotations

import importlib
import logging
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from dinobench.backbones.variants import FAMILIES
from dinobench.errors import ConfigError, DinobenchError, WeightsError
from dinobench.registry import resolve_object

logger = logging.getLogger("dinobench")

CONTRACT_ATTRIBUTES = ("embed_dim", "patch_size", "n_storage_tokens", "forward_features", "get_intermediate_layers")
#: pseudo-backbone whose architecture comes from a Hugging Face config.json
AUTO_NAME = "hf"


def check_contract(model: nn.Module, name: str) -> nn.Module:
    """Raise if ``model`` lacks an attribute of the backbone contract (catches plugin bugs early)."""
    missing = [a for a in CONTRACT_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise TypeError(f"backbone {name!r} does not honour the backbone contract: missing {missing}")
    return model


def family_module(family: str) -> ModuleType | None:
    """The first-party module of ``family`` (None for third-party families)."""
    return importlib.import_module(FAMILIES[family][1]) if family in FAMILIES else None


def family_for_hf_config(config: dict[str, Any], where: Any) -> ModuleType:
    """The family module that reads a transformers ``config.json`` (by its ``model_type``)."""
    model_type = config.get("model_type")
    for family in FAMILIES:
        module = family_module(family)
        if model_type in getattr(module, "HF_MODEL_TYPES", ()):
            return module
    known = [t for f in FAMILIES for t in getattr(family_module(f), "HF_MODEL_TYPES", ())]
    raise WeightsError(f"{where}: config.json model_type {model_type!r} is not supported (known: {known})")


def requires_weights(**_: Any) -> nn.Module:
    """Factory of the ``hf`` pseudo-backbone: only meaningful with a Hugging Face directory."""
    raise ConfigError(f"backbone {AUTO_NAME!r} reads its architecture from a Hugging Face directory: "
                      "pass --weights DIR (config.json + model.safetensors) or an HF repo id")


def _build(factory: Any, name: str, overrides: dict[str, Any], meta: bool) -> nn.Module:
    try:
        if meta:
            with torch.device("meta"):
                return factory(**overrides)
        return factory(**overrides)
    except TypeError as exc:
        raise ConfigError(f"backbone {name!r}: invalid override: {exc}") from exc


def create_backbone(name: str, weights: str | Path | None = None, strict: bool = True,
                    **overrides: Any) -> nn.Module:
    """Build backbone ``name``; load ``weights`` if given, else random init (seeded by the caller).

    ``weights``: official/dinobench ``.pth``, ``.safetensors``, a timm- or HF-named state dict, a
    Hugging Face directory, an HF repo id or a URL; the format is detected from the keys. The
    model is built on the meta device and the tensors are assigned, so memory holds one copy.
    ``name="hf"`` builds the architecture from the directory's ``config.json``.
    """
    from dinobench.plugin_manager import get_registries

    spec = get_registries().backbones.get(name)
    if weights is None:
        model = _build(resolve_object(spec.factory), name, overrides, meta=False)
        model.weights_path = None
    else:
        from dinobench.backbones.loading import load_into, read_checkpoint

        checkpoint = read_checkpoint(weights)  # fails fast (missing/corrupt file) before building
        if name == AUTO_NAME:
            if checkpoint.hf_config is None:
                raise WeightsError(f"{checkpoint.path}: backbone 'hf' needs a Hugging Face directory with "
                                   "config.json; for other checkpoints name the architecture (--backbone)")
            module = family_for_hf_config(checkpoint.hf_config, checkpoint.path)
            kwargs = {**module.kwargs_from_hf_config(checkpoint.hf_config), **overrides}
            model = _build(partial(module.build, None), name, kwargs, meta=strict)
        else:
            module = family_module(spec.family)
            # strict: build on the meta device (one copy in memory); non-strict: random init first
            # so that tensors missing from the checkpoint keep their initial values
            model = _build(resolve_object(spec.factory), name, overrides, meta=strict)
        state = checkpoint.state
        if module is not None:
            fmt = module.detect_format(state)
            if fmt is None:
                raise WeightsError(f"{checkpoint.path}: tensors are not in a known {spec.family or 'backbone'} "
                                   f"format (first keys: {', '.join(list(state)[:4])})")
            logger.debug("reading %s-format checkpoint %s", fmt, checkpoint.path)
            # "official" passes through (some families normalise e.g. chunked-block training keys)
            state = module.convert_state_dict(state, fmt, getattr(model, "variant_config", {}))
        model = load_into(model, state, path=checkpoint.path, strict=strict)
        model.weights_path = str(checkpoint.path)
    model.backbone_name = name
    return check_contract(model.eval(), name)


def from_pretrained(hf_dir: str | Path, **overrides: Any) -> nn.Module:
    """A backbone built from a Hugging Face directory or repo id (``config.json`` + weights)."""
    return create_backbone(AUTO_NAME, weights=hf_dir, **overrides)


def count_parameters(name: str) -> int | None:
    """Parameter count of backbone ``name`` on the meta device (None if it needs weights to know)."""
    from dinobench.plugin_manager import get_registries

    factory = resolve_object(get_registries().backbones.get(name).factory)
    try:
        with torch.device("meta"):
            model = factory()
    except DinobenchError:
        return None
    return sum(p.numel() for p in model.parameters())
