"""Task configs: mmengine ``Config`` files with ``_base_`` inheritance, plus validated overrides.

``--cfg-options a.b=1 c=[1,2]`` overrides existing keys only (a typo is an error naming the key);
``backbone.<arg>=value`` passes constructor overrides to the backbone (official argument names).
"""

from __future__ import annotations

import ast
import re
import copy
import difflib
from pathlib import Path
from typing import Any, Mapping, Sequence

from dinobench.errors import ConfigError
from dinobench.utils.hashing import payload_sha256

#: task-level keys that never change a result: the description, the official recipe it cites, and the backbone's
#: constructor overrides
#: (they identify the model, a leaderboard row, not the protocol). Sections add their own runtime keys:
#: features (:data:`dinobench.context.FEATURES_RUNTIME_KEYS`), train (``dinobench.training.RUNTIME_TRAIN_KEYS``)
#: and each protocol (``Protocol.runtime_keys``); the runner passes the union to :func:`protocol_hash`.
GLOBAL_RUNTIME_KEYS = ("task.description", "task.official", "backbone")
#: ... except these backbone keys, which change how the protocol trains it (frozen vs fine-tuned)
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
        options[key.strip()] = _option_value(key.strip(), raw, DictAction._parse_iterable)
    return options


def _option_value(key: str, raw: str, mmengine_parse: Any) -> Any:
    """A ``--cfg-options`` value: a Python literal as written (quoted strings keep their spaces:
    ``templates=["a photo of {}."]``), else mmengine's DictAction reading (``true``, bare words, ``a,b`` lists);
    text that DictAction would change by dropping its spaces is refused (one line: quote it)."""
    text = raw.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = _NOT_A_LITERAL
    if isinstance(value, tuple) and not text.startswith("("):
        value = list(value)  # ``a=1,2``: DictAction's list
    if value is not _NOT_A_LITERAL and isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))):
        return value
    if re.search(r"\s", re.sub(r"\s*([\[\](),])\s*", r"\1", text)):  # a space inside a word would be dropped
        raise ConfigError(f"--cfg-options {key}={raw!r:.80}: a value with spaces must be quoted, e.g. "
                          f"{key}=\"'a b'\" or {key}='[\"a b\", \"c\"]' (unquoted, its spaces would be dropped)")
    return mmengine_parse(raw)


_NOT_A_LITERAL = object()


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
                close = difflib.get_close_matches(part, list(node), n=1, cutoff=0.5)
                prefix = ".".join(parts[:depth] + close[:1])
                hint = f"did you mean {prefix}?" if close else f"known at this level: {', '.join(sorted(node)[:8])}"
                raise ConfigError(f"{where}: unknown key {dotted!r} ({hint})")
            if last:
                if isinstance(node.get(part), dict) and node[part] and not isinstance(value, (dict, type(None))):
                    raise ConfigError(f"{where}: {dotted} is a section ({', '.join(sorted(node[part])[:4])}, ...); "
                                      f"set its keys ({dotted}.<key>=value) or None to turn it off, not {value!r:.40}")
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


def protocol_hash(cfg: Mapping[str, Any], dataset_fingerprint: str, runtime_keys: Sequence[str] = ()) -> str:
    """sha256 of the resolved task config without :data:`GLOBAL_RUNTIME_KEYS` and ``runtime_keys`` (dotted),
    and of the dataset content."""
    payload = {"config": _without(cfg, (*GLOBAL_RUNTIME_KEYS, *runtime_keys)), "dataset": dataset_fingerprint}
    backbone = cfg.get("backbone") or {}
    training = {k: backbone[k] for k in BACKBONE_PROTOCOL_KEYS if k in backbone}
    if training:  # only when set, so that hashes of frozen-backbone results stay as they were
        payload["backbone_training"] = training
    return payload_sha256(payload, 16)


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any],
                runtime_keys: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(key, a value, b value)`` of the hashed config keys that differ (``runtime_keys``, as the records
    name them, and the global runtime keys ignored)."""
    ignored = (*GLOBAL_RUNTIME_KEYS, *runtime_keys)
    fa, fb = flatten(a or {}), flatten(b or {})
    keys = sorted(k for k in set(fa) | set(fb)
                  if not any(k == rk or k.startswith(f"{rk}.") for rk in ignored))
    return [(k, fa.get(k, "<unset>"), fb.get(k, "<unset>")) for k in keys if fa.get(k, "<unset>") != fb.get(k, "<unset>")]
