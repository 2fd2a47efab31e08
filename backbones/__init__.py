"""First-party backbones and the ``create_backbone`` entry point.

One family per file (``dinov3_vit.py``, ...); variants are data in ``variants.py`` (torch-free,
so listing stays fast). The plugin :mod:`dinobench.plugins.backbones` registers them;
``create_backbone`` looks names up in the registry, so third-party backbones work the same way.

A family module ``backbones/<family>.py`` provides:

- ``build(variant: str | None, **overrides) -> nn.Module`` (random init; no init on meta device;
  ``variant=None`` builds from the given constructor kwargs alone) and a module ``__getattr__``
  returning ``partial(build, variant)`` for each variant name;
- ``HF_MODEL_TYPES``: the ``model_type`` values of transformers ``config.json`` it reads;
- ``kwargs_from_hf_config(config: dict) -> dict``: constructor kwargs (official names);
- ``detect_format(state) -> "official" | "hf" | "timm" | None`` and
  ``convert_state_dict(state, fmt, config=None) -> dict``: foreign key names -> ours;
- ``export_hf(model) -> (config_json: dict, state: dict)``: transformers-loadable layout;
- ``TINY_OVERRIDES``: overrides that build any of its variants tiny (registry-wide contract tests).

Models carry ``variant_config`` (constructor kwargs), ``image_mean``, ``image_std`` and
``feature_info`` (channels and stride of every level ``get_intermediate_layers`` returns; see
:mod:`dinobench.backbones.contract`, which also holds ``check_backbone`` and ``level_info``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def create_backbone(name: str, weights: str | Path | None = None, strict: bool = True,
                    **overrides: Any) -> "nn.Module":
    """Build backbone ``name`` (see :func:`dinobench.backbones.factory.create_backbone`)."""
    from dinobench.backbones.factory import create_backbone as _create

    return _create(name, weights=weights, strict=strict, **overrides)


def from_pretrained(hf_dir: str | Path, **overrides: Any) -> "nn.Module":
    """Build from a Hugging Face directory or repo id; the architecture comes from ``config.json``."""
    from dinobench.backbones.factory import from_pretrained as _from_pretrained

    return _from_pretrained(hf_dir, **overrides)
