"""``create_backbone``: registry lookup, construction with official-name overrides, weight loading.

Every failure a user or a plugin can cause ends in one line: a bad override is a
:class:`ConfigError` naming ``backbone.<key>``; a plugin whose factory cannot be imported, raises,
returns something other than an ``nn.Module`` or breaks the backbone contract is a
:class:`PluginError` naming the backbone and its plugin.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from dinobench.backbones.contract import check_backbone
from dinobench.backbones.loading import load_into, read_checkpoint
from dinobench.backbones.variants import FAMILIES
from dinobench.errors import ConfigError, DinobenchError, PluginError, WeightsError
from dinobench.plugin_manager import get_registries, plugin_rows
from dinobench.registry import BackboneSpec, resolve_object

logger = logging.getLogger("dinobench")

#: pseudo-backbone whose architecture comes from a Hugging Face config.json
AUTO_NAME = "hf"


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


def tiny_overrides(name: str) -> dict[str, Any]:
    """Overrides that build backbone ``name`` tiny (contract tests): its family module's
    ``TINY_OVERRIDES`` (a third-party factory's module may define one too); ``{}`` if none."""
    spec = get_registries().backbones.get(name)
    module = family_module(spec.family)
    if module is None and isinstance(spec.factory, str):
        module = importlib.import_module(spec.factory.partition(":")[0])
    return dict(getattr(module, "TINY_OVERRIDES", {}))


def _first_party(spec: BackboneSpec) -> bool:
    return spec.source.startswith("dinobench.") or not spec.source


def _plugin_label(spec: BackboneSpec) -> str:
    """``plugin 'x' (package y 1.0)`` for messages about a third-party backbone."""
    if _first_party(spec):
        return "first-party"
    row = next((r for r in plugin_rows() if r["plugin"] == spec.source), None)
    if row is None or not row["version"]:
        return f"plugin {spec.source!r}"
    return f"plugin {spec.source!r}, package {row['package']} {row['version']}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _factory(spec: BackboneSpec) -> Callable[..., Any]:
    try:
        factory = resolve_object(spec.factory)
    except Exception as exc:  # ImportError, AttributeError, or the plugin module's own errors
        if _first_party(spec):
            raise
        raise PluginError(f"backbone {spec.name!r} ({_plugin_label(spec)}): cannot import its factory "
                          f"{spec.factory!r}: {_one_line(exc)}") from exc
    if not callable(factory):
        raise PluginError(f"backbone {spec.name!r} ({_plugin_label(spec)}): factory {spec.factory!r} is a "
                          f"{type(factory).__name__}, not a callable")
    return factory


def _build(factory: Callable[..., Any], spec: BackboneSpec, overrides: dict[str, Any], meta: bool) -> nn.Module:
    """``factory(**overrides)`` (on the meta device if ``meta``), failures as one-line errors."""
    try:
        with torch.device("meta") if meta else nullcontext():
            model = factory(**overrides)
    except DinobenchError:
        raise
    except (TypeError, ValueError) as exc:  # constructors reject bad sizes/names with these
        if overrides:
            raise ConfigError(f"backbone {spec.name!r}: invalid override ({_overrides_text(overrides)}): "
                              f"{_one_line(exc)}") from exc
        if _first_party(spec):
            raise
        raise PluginError(f"backbone {spec.name!r} ({_plugin_label(spec)}): its factory raised "
                          f"{_one_line(exc)}") from exc
    except Exception as exc:
        if _first_party(spec):
            raise
        raise PluginError(f"backbone {spec.name!r} ({_plugin_label(spec)}): its factory raised "
                          f"{_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise PluginError(f"backbone {spec.name!r} ({_plugin_label(spec)}): its factory returned a "
                          f"{type(model).__name__}, not a torch.nn.Module")
    return model


def _overrides_text(overrides: dict[str, Any]) -> str:
    return ", ".join(f"backbone.{k}={v!r}" for k, v in overrides.items())


def _checked(model: nn.Module, spec: BackboneSpec, overrides: dict[str, Any]) -> nn.Module:
    """``model`` if it honours the contract; a first-party model that does not was built from bad overrides."""
    try:
        check_backbone(model, spec.name)
    except PluginError as exc:
        if not _first_party(spec):
            raise PluginError(f"{exc} ({_plugin_label(spec)})") from None
        if overrides:
            raise ConfigError(f"{exc}: invalid override ({_overrides_text(overrides)})") from None
        raise
    return model


def _hf_kwargs(module: ModuleType, config: dict[str, Any], path: Any) -> dict[str, Any]:
    try:
        return module.kwargs_from_hf_config(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: config.json does not describe a supported {module.__name__.rsplit('.', 1)[-1]} "
                           f"model: {_one_line(exc)}") from exc


def create_backbone(name: str, weights: str | Path | None = None, strict: bool = True,
                    **overrides: Any) -> nn.Module:
    """Build backbone ``name``; load ``weights`` if given, else random init (seeded by the caller).

    ``weights``: official/dinobench ``.pth``, ``.safetensors``, a timm- or HF-named state dict, a
    Hugging Face directory, an HF repo id or a URL; the format is detected from the keys. The
    model is built on the meta device and the tensors are assigned, so memory holds one copy.
    ``name="hf"`` builds the architecture from the directory's ``config.json``.
    """
    spec = get_registries().backbones.get(name)
    if weights is None:
        model = _build(_factory(spec), spec, overrides, meta=False)
        model.weights_path = None
    else:
        checkpoint = read_checkpoint(weights)  # fails fast (missing/corrupt file) before building
        if name == AUTO_NAME:
            if checkpoint.hf_config is None:
                raise WeightsError(f"{checkpoint.path}: backbone 'hf' needs a Hugging Face directory with "
                                   "config.json; for other checkpoints name the architecture (--backbone)")
            module = family_for_hf_config(checkpoint.hf_config, checkpoint.path)
            kwargs = {**_hf_kwargs(module, checkpoint.hf_config, checkpoint.path), **overrides}
            try:
                model = _build(partial(module.build, None), spec, kwargs, meta=strict)
            except ConfigError as exc:
                if overrides:
                    raise
                raise WeightsError(f"{checkpoint.path}: config.json describes a model that cannot be built: "
                                   f"{exc}") from exc
        else:
            module = family_module(spec.family)
            # strict: build on the meta device (one copy in memory); non-strict: random init first
            # so that tensors missing from the checkpoint keep their initial values
            model = _build(_factory(spec), spec, overrides, meta=strict)
        state = checkpoint.state
        if module is not None:
            fmt = module.detect_format(state)
            if fmt is None:
                raise WeightsError(f"{checkpoint.path}: tensors are not in a known {spec.family or 'backbone'} "
                                   f"format (first keys: {', '.join(list(state)[:4])})")
            logger.debug("reading %s-format checkpoint %s", fmt, checkpoint.path)
            # "official" passes through (some families normalise e.g. chunked-block training keys)
            try:
                state = module.convert_state_dict(state, fmt, getattr(model, "variant_config", {}))
            except (KeyError, ValueError) as exc:  # e.g. an unexpected or missing key
                raise WeightsError(f"{checkpoint.path}: cannot read this {fmt}-format {spec.family} checkpoint: "
                                   f"{_one_line(exc)}") from exc
        model = load_into(model, state, path=checkpoint.path, strict=strict)
        model.weights_path = str(checkpoint.path)
    model.backbone_name = name
    return _checked(model.eval(), spec, overrides)


def from_pretrained(hf_dir: str | Path, **overrides: Any) -> nn.Module:
    """A backbone built from a Hugging Face directory or repo id (``config.json`` + weights)."""
    return create_backbone(AUTO_NAME, weights=hf_dir, **overrides)


def count_parameters(name: str) -> int | None:
    """Parameter count of backbone ``name`` on the meta device (None if it needs weights to know)."""
    spec = get_registries().backbones.get(name)
    try:
        model = _build(_factory(spec), spec, {}, meta=True)
    except DinobenchError:
        return None
    return sum(p.numel() for p in model.parameters())
