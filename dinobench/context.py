"""What a protocol sees while it runs: :class:`RunContext` (config, named datasets, backbone, device,
features on demand) and the typed ``features`` section every task accepts.

The runner builds the context; protocols only read it. Kept below the protocols (layer 2) so that a
protocol can name the type without importing the runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dinobench.backbones.contract import backbone_normalisation
from dinobench.errors import ConfigError, DataError
from dinobench.features import DEFAULT_CHUNK_SIZE, FeatureSet, cache_root, load_or_extract
from dinobench.typed_config import resolve_section
from dinobench.utils.compile import compile_backbone


@dataclass
class FeaturesConfig:
    """``features.*``: how features are extracted and cached. None of these changes a result."""

    batch_size: int = 64
    num_workers: int = 0
    cache: bool = True  # on-disk feature cache
    cache_dir: str | None = None  # None: $DINOBENCH_CACHE or ~/.cache/dinobench/features
    chunk_size: int | None = None  # rows per cache chunk; None: 4096
    compile: bool = False  # torch.compile the backbone's feature methods (falls back to eager with a warning)

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("num_workers", 0), ("chunk_size", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"features.{name}={value}: must be >= {low}")


#: ``features.*`` keys left out of protocol hashes (all of them: they never change a feature)
FEATURES_RUNTIME_KEYS = tuple(f"features.{name}" for name in FeaturesConfig.__dataclass_fields__)


@dataclass
class RunContext:
    """The resolved config, named datasets (with transforms), backbone and device of one run."""

    task: str
    cfg: dict[str, Any]
    backbone: Any
    datasets: dict[str, Any]
    device: str
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    #: resolved compute precision of feature extraction (``float32`` / ``bfloat16-autocast``, see
    #: :mod:`dinobench.utils.precision`); also in ``cache_payload``
    precision: str = "float32"
    predictions_dir: Path | None = None  # set by --save-predictions: protocols write figures here
    output_dir: Path | None = None  # the results folder (head-training runs live under <output>/.runs/)
    backbone_name: str | None = None  # registry name of the backbone
    weights_sha256: str | None = None  # None for random init
    #: run-wide part of the feature-cache key (:func:`dinobench.features.backbone_key_payload`); None: no disk cache
    cache_payload: dict[str, Any] | None = None
    #: dataset name -> the eval transform the runner set; a dataset whose transform was replaced is not disk-cached
    eval_transforms: dict[str, Any] = field(default_factory=dict)
    #: dataset name -> registered dataset type (part of its cache key)
    dataset_types: dict[str, str] = field(default_factory=dict)
    #: the feature kinds a protocol may ask for by name (the runner passes the registry it resolved; None: the
    #: built-in kinds only, :mod:`dinobench.features.builtin`)
    feature_kinds: Any = None
    #: the run's :class:`dinobench.identity.RunIdentity` (protocol hash, runtime and eval-only keys), computed once
    identity: Any = None
    _features: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    @property
    def eval_only_keys(self) -> tuple[str, ...]:
        """Dotted config keys that change evaluation only (left out of training run keys): the run identity's."""
        return () if self.identity is None else tuple(self.identity.eval_only_keys)

    @property
    def input_files(self) -> dict[str, dict[str, str]]:
        """Dotted ``file_keys`` of the protocol -> {"path", "sha256"} (checked and hashed by the runner): the run
        identity's."""
        return {} if self.identity is None else self.identity.input_files

    @property
    def image_mean(self) -> tuple[float, ...]:
        """The backbone's input normalisation mean (what the eval transform uses)."""
        return backbone_normalisation(self.backbone)[0]

    @property
    def image_std(self) -> tuple[float, ...]:
        """The backbone's input normalisation std."""
        return backbone_normalisation(self.backbone)[1]

    @property
    def features_config(self) -> FeaturesConfig:
        """The typed ``features`` section."""
        return resolve_section(FeaturesConfig, self.cfg.get("features"), "features")[1]

    def dataset(self, name: str) -> Any:
        """The named dataset ``name``; a one-line DataError naming the ones the task has."""
        if name not in self.datasets:
            raise DataError(f"task {self.task!r} has no dataset {name!r} (it has: {', '.join(sorted(self.datasets))})")
        return self.datasets[name]

    def transformed_features(self, split: str, kind: str, transform: Any, desc: str) -> FeatureSet:
        """Features of ``split`` under another ``transform`` (e.g. a random augmentation): extracted every
        call and never disk-cached; the split's own transform is restored afterwards."""
        dataset = self.dataset(split)
        original, dataset.transform = dataset.transform, transform
        try:
            return self._load_or_extract(dataset, kind, None, desc)[0]
        finally:
            dataset.transform = original

    def features(self, split: str, kind: str = "cls", dtype: str = "float32") -> FeatureSet:
        """Features of ``kind`` (a registered feature kind) of ``split``: extracted once per run, and once per
        key on disk (see :mod:`dinobench.features`; ``cls`` is cut from a cached ``cls4_avgpool`` entry when
        there is one); ``dtype="float16"`` stores and returns half-precision features (half the disk; a protocol
        that asks for it says so in its own config, since it can move results). ``timings`` records whether
        they came from the cache (1.0 also for such a cut)."""
        if (split, kind, dtype) not in self._features:
            start = time.perf_counter()
            self._features[split, kind, dtype], cached = self._load_or_extract(
                self.dataset(split), kind, self._cache_payload(split), f"{self.task} {split} {kind} features", dtype)
            suffix = ("" if kind == "cls" else f"_{kind}") + ("" if dtype == "float32" else f"_{dtype}")
            self.timings[f"features_{split}{suffix}_s"] = round(time.perf_counter() - start, 3)
            self.timings[f"features_{split}{suffix}_cached"] = 1.0 if cached else 0.0
        return self._features[split, kind, dtype]

    def dataset_features(self, dataset: Any, identity: dict[str, Any], kind: str = "patch_tokens",
                         desc: str = "features") -> FeatureSet:
        """Features of a dataset the protocol builds itself (one video sequence, a list of image pairs), cached on
        disk under the run's key plus ``identity`` (JSON-able: what makes these items these, e.g. the
        sequence name and its files' fingerprint); ``features.cache=false`` or an uncacheable run: in memory."""
        fcfg = self.features_config
        payload = None
        if fcfg.cache and self.cache_payload is not None:
            payload = {**self.cache_payload, "dataset": {"type": "protocol-built", **identity,
                                                         "size": len(dataset)}}
        return self._load_or_extract(dataset, kind, payload, desc)[0]

    def _load_or_extract(self, dataset: Any, kind: str, payload: dict[str, Any] | None,
                         desc: str, dtype: str = "float32") -> tuple[FeatureSet, bool]:
        """:func:`dinobench.features.load_or_extract` of ``dataset`` with the task's ``features.*`` settings."""
        fcfg = self.features_config
        if fcfg.compile:
            compile_backbone(self.backbone)
        return load_or_extract(
            self.backbone, dataset, payload=payload,
            cache_dir=cache_root({"cache_dir": fcfg.cache_dir}) if payload is not None else None,
            batch_size=fcfg.batch_size, num_workers=fcfg.num_workers, device=self.device, desc=desc, kind=kind,
            chunk_size=fcfg.chunk_size or DEFAULT_CHUNK_SIZE, dtype=dtype, precision=self.precision,
            kinds=self.feature_kinds)

    def _cache_payload(self, split: str) -> dict[str, Any] | None:
        """Key payload of ``split`` (feature kind added by the cache), or None when it must not be cached."""
        dataset = self.dataset(split)
        fingerprint = getattr(dataset, "cache_fingerprint", None) or getattr(dataset, "fingerprint", None)
        if (not self.features_config.cache or self.cache_payload is None or not fingerprint
                or split not in self.eval_transforms or self.eval_transforms[split] is not dataset.transform):
            return None
        if split not in self.dataset_types:
            raise ConfigError(f"task {self.task!r}: dataset {split!r} has no registered type")
        return {**self.cache_payload, "dataset": {"type": self.dataset_types[split], "fingerprint": fingerprint,
                                                  "split": split, "size": len(dataset)}}
