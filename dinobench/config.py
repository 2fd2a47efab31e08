"""Task configs: mmengine ``Config`` files with ``_base_`` inheritance, plus validated overrides.

``--cfg-options a.b=1 c=[1,2]`` overrides existing keys only (a typo is an error naming the key);
``backbone.<arg>=value`` passes constructor overrides to the backbone (official argument names).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from dinobench.errors import ConfigError

#: keys whose values cannot change a result; left out of the protocol hash
RUNTIME_KEYS = (
    "features.batch_size", "features.num_workers", "features.cache", "features.cache_dir", "features.chunk_size",
    "protocol.chunk_size", "protocol.n_jobs", "protocol.num_visualizations", "task.description",
    "train.num_workers", "train.eval_every", "train.checkpoint_every", "train.max_to_keep", "train.log_every",
    "train.work_dir", "train.resume",
    # the backbone's constructor overrides identify the model (a leaderboard row), not the protocol ...
    "backbone",
)
#: ... except these, which change how the protocol trains it (frozen vs fine-tuned)
BACKBONE_PROTOCOL_KEYS = ("finetune", "layer_decay")
#: sections that accept new keys from --cfg-options (backbone constructor overrides)
OPEN_SECTIONS = ("backbone",)


def load_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Resolve a config file (``_base_`` merged) or a dict into a plain, deep-copied dict."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    from mmengine.config import Config

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many types for a bad file
        raise ConfigError(f"{path}: cannot load config: {type(exc).__name__}: {exc}") from exc
    return _plain(cfg.to_dict())


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_options(items: list[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (values parsed like mmengine's DictAction)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    from mmengine.config import DictAction

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--cfg-options: {item!r} is not key=value (e.g. protocol.temperature=0.1)")
        value = DictAction._parse_iterable(raw)
        options[key.strip()] = value
    return options


def apply_options(cfg: dict[str, Any], options: Mapping[str, Any], where: str = "config",
                  open_sections: tuple[str, ...] = OPEN_SECTIONS) -> dict[str, Any]:
    """Set dotted ``options`` in a copy of ``cfg``; unknown keys are refused with their name.

    Keys under one of ``open_sections`` (dotted prefixes) may be new.
    """
    cfg = copy.deepcopy(cfg)
    for dotted, value in options.items():
        parts = dotted.split(".")
        node: Any = cfg
        open_section = any(dotted.startswith(prefix + ".") for prefix in open_sections)
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: cannot set {dotted!r}: {'.'.join(parts[:depth])!r} is not a section")
            if part not in node and not open_section:
                close = [k for k in node if k.lower().startswith(part[:3].lower())] or sorted(node)
                raise ConfigError(f"{where}: unknown key {dotted!r} (known at this level: {', '.join(close[:6])})")
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {}) if open_section else node[part]
    return cfg


def _without(cfg: Mapping[str, Any], dotted_keys: tuple[str, ...]) -> dict[str, Any]:
    cfg = copy.deepcopy(dict(cfg))
    for dotted in dotted_keys:
        *parents, leaf = dotted.split(".")
        node: Any = cfg
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return cfg


def protocol_hash(cfg: Mapping[str, Any], dataset_fingerprint: str) -> str:
    """sha256 of the resolved task config (runtime-only keys removed) and the dataset content."""
    payload = {"config": _without(cfg, RUNTIME_KEYS), "dataset": dataset_fingerprint}
    backbone = cfg.get("backbone") or {}
    training = {k: backbone[k] for k in BACKBONE_PROTOCOL_KEYS if k in backbone}
    if training:  # only when set, so that hashes of frozen-backbone results stay as they were
        payload["backbone_training"] = training
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
