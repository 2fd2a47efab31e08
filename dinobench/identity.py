"""What identifies a run, in one place: which config keys enter the protocol hash (and which are runtime or
evaluation-only), how input files enter it (by content), what keys the feature cache, and the one
:class:`RunIdentity` the runner computes per run and puts on the context.

- protocol hash (:func:`dinobench.config.protocol_hash`): the resolved task config without :func:`runtime_keys`,
  input files by sha256 (:func:`hashed_config`), plus the datasets' fingerprints: results compare only under the same
  hash and protocol version;
- training run key (:func:`dinobench.training.head.run_key`): the protocol hash's config without
  :func:`eval_only_keys` too, plus the backbone and training data: evaluation-only changes resume the same training;
- feature-cache key (:func:`dinobench.features.keys.backbone_key_payload`): what computed the features — backbone
  identity (:func:`backbone_identity`), weights, constructor overrides, transform, normalisation, precision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dinobench.backbones.loading import sha256_file
from dinobench.config import GLOBAL_RUNTIME_KEYS, protocol_hash
from dinobench.context import FEATURES_RUNTIME_KEYS
from dinobench.errors import ConfigError
from dinobench.training.config import RUNTIME_TRAIN_KEYS


def result_train_keys(protocol_cls: Any, cfg: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The runtime ``train`` keys that change a result of ``protocol_cls`` under the resolved task config ``cfg``
    (``Protocol.result_train_keys`` of its ``protocol`` section; none without ``cfg``)."""
    hook = getattr(protocol_cls, "result_train_keys", None)
    if cfg is None or not callable(hook):
        return ()
    return tuple(hook(cfg.get("protocol") or {}))


def runtime_keys(protocol_cls: Any, cfg: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Every dotted key of a task config that cannot change a result (left out of its hash): the task's
    description and backbone overrides, the features section, the train section's runtime keys (but those
    :func:`result_train_keys` names for ``cfg``) and the protocol's own ``runtime_keys``."""
    hashed = result_train_keys(protocol_cls, cfg)
    return (*GLOBAL_RUNTIME_KEYS, *FEATURES_RUNTIME_KEYS, *(k for k in RUNTIME_TRAIN_KEYS if k not in hashed),
            *(f"protocol.{key}" for key in protocol_cls.runtime_keys))


def eval_only_keys(protocol_cls: Any, cfg: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Keys that change evaluation but not what a protocol trains (left out of training run keys)."""
    return (*runtime_keys(protocol_cls, cfg), *result_train_keys(protocol_cls, cfg), "transform.eval",
            *(f"protocol.{key}" for key in protocol_cls.eval_keys))


def input_files(cfg: Mapping[str, Any], protocol_cls: Any) -> dict[str, dict[str, str]]:
    """The protocol's ``file_keys`` that the config sets: dotted key -> {"path", "sha256"}; a missing file is a
    one-line ConfigError."""
    files = {}
    for key in protocol_cls.file_keys:
        value = cfg["protocol"].get(key)
        if value in (None, ""):
            continue
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise ConfigError(f"protocol.{key}: {path} is not a file; pass an existing file (or leave it unset)")
        files[f"protocol.{key}"] = {"path": str(path.resolve()), "sha256": sha256_file(path)}
    return files


def hashed_config(cfg: Mapping[str, Any], files: Mapping[str, Mapping[str, str]], protocol_cls: Any) -> dict[str, Any]:
    """What the protocol hash sees of ``cfg``: each input file's path replaced by ``sha256:<digest>``, and the
    protocol's file and optional keys left out while unset (None)."""
    out = json.loads(json.dumps(cfg, default=str))

    def parent(dotted: str) -> tuple[Any, str]:
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node, leaf

    for dotted in (*protocol_cls.file_keys, *protocol_cls.optional_keys):
        node, leaf = parent(f"protocol.{dotted}")
        if isinstance(node, dict) and node.get(leaf, "") is None:
            del node[leaf]
    for dotted, entry in files.items():
        node, leaf = parent(dotted)
        node[leaf] = f"sha256:{entry['sha256']}"
    return out


def backbone_identity(spec: Any, provider: str) -> dict[str, Any]:
    """What builds a registered backbone (factory, default args, providing package): part of the cache key."""
    factory = spec.factory if isinstance(spec.factory, str) else (
        f"{getattr(spec.factory, '__module__', '?')}:{getattr(spec.factory, '__qualname__', repr(spec.factory))}")
    return {"factory": factory, "defaults": dict(getattr(spec, "defaults", None) or {}), "provider": provider}


@dataclass(frozen=True)
class RunIdentity:
    """Computed once per run (:meth:`of`): the protocol hash and the key sets the record and the engine read."""

    protocol_hash: str
    runtime_keys: tuple[str, ...]
    eval_only_keys: tuple[str, ...]
    dataset_fingerprint: str
    input_files: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Mapping[str, Any], protocol_cls: Any, datasets: Mapping[str, Any],
           files: Mapping[str, Mapping[str, str]]) -> "RunIdentity":
        """The identity of a run of ``cfg`` on ``datasets`` (their fingerprints, sorted by name)."""
        fingerprint = "+".join(ds.fingerprint for _, ds in sorted(datasets.items()))
        excluded = runtime_keys(protocol_cls, cfg)
        return cls(protocol_hash=protocol_hash(hashed_config(cfg, files, protocol_cls), fingerprint, excluded),
                   runtime_keys=excluded, eval_only_keys=eval_only_keys(protocol_cls, cfg),
                   dataset_fingerprint=fingerprint, input_files={k: dict(v) for k, v in files.items()})
