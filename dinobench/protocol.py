"""The typed protocol API: what a protocol plugin implements and what it returns.

A protocol is a :class:`Protocol` subclass with

- ``name`` and ``version`` (bump ``version`` whenever a change could move the numbers: results of
  different versions are never compared);
- ``Config``: a dataclass whose field defaults are the protocol's defaults, the one place they live
  (task configs state only what differs; unknown keys and wrongly typed values are one-line errors);
- ``runtime_keys``: keys of its ``protocol`` section that cannot change a result (chunk sizes, worker
  counts): left out of the protocol hash and of training run keys; ``eval_keys``: keys that change
  evaluation but not what is trained (left out of training run keys only);
- ``datasets``: the named datasets it needs (checked before any compute);
- ``file_keys``: keys of its ``protocol`` section naming input files (e.g. released head weights) whose
  *content* identifies a result: the protocol hash uses their sha256 instead of the path, and the record
  lists them (``input_files``);
- ``optional_keys``: keys of its ``protocol`` section (dotted below it, e.g. ``head.min_depth``) that enter the
  protocol hash only when set (not None), like ``file_keys``: a feature added later leaves the hashes of
  configs that do not use it as they were;
- ``trains``: whether it trains something with the engine, i.e. reads the task's ``train`` section (checked
  against :class:`dinobench.training.TrainConfig` before any compute; a protocol that trains nothing refuses one);
- ``run(ctx) -> ProtocolResult``.

The dataset contract every dataset reader returns (:class:`DatasetLike`) is written here once too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol as TypingProtocol, runtime_checkable

from dinobench.errors import ConfigError, PluginError
from dinobench.typed_config import resolve_section

logger = logging.getLogger("dinobench")

if TYPE_CHECKING:
    from dinobench.context import RunContext


@runtime_checkable
class DatasetLike(TypingProtocol):
    """A dataset split as dinobench uses it: sized, indexable, with a content fingerprint and a description.

    ``fingerprint`` changes whenever the samples change (it enters protocol hashes and cache keys);
    ``describe()`` is what the result record stores about the split (size, classes, ...). Optionally
    ``eval_transform(transform_cfg, mean, std, backbone) -> callable``: a dataset whose samples are more than
    an image (image + foreground mask pooled to the patch grid, a clip of frames) builds its own transform from
    the task's ``transform`` section; the runner sets it, and its features are disk-cached like images'.
    """

    fingerprint: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class ProtocolResult:
    """What :meth:`Protocol.run` returns.

    ``higher_is_better``: one bool for every metric, or a mapping metric -> bool (missing metrics: True).
    ``tables``: named lists of rows (per-class IoU, per-category AP, ...) written into the record and report.
    ``artifacts``: files the protocol wrote into ``ctx.predictions_dir`` (names relative to it).
    ``head``: the head it trained, in the official layout (saved beside the record for ``dinobench export``).
    """

    metrics: dict[str, float]
    main_metric: str
    higher_is_better: bool | Mapping[str, bool] = True
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    head: "TrainedHead | None" = None

    def __post_init__(self) -> None:
        try:
            self.metrics = {str(k): float(v) for k, v in self.metrics.items()}
        except (TypeError, ValueError) as exc:
            raise PluginError(f"protocol returned a non-numeric metric: {exc}") from exc
        if self.main_metric not in self.metrics:
            raise PluginError(f"protocol's main metric {self.main_metric!r} is not among its metrics "
                              f"({', '.join(sorted(self.metrics)) or 'none'})")
        bad = [name for name, value in self.metrics.items() if not math.isfinite(value)]
        if self.main_metric in bad or any(math.isinf(v) for v in self.metrics.values()):
            # a diverged computation: never a record, never counted in a leaderboard
            shown = ", ".join(f"{k}={v:.6g}" for k, v in list(self.metrics.items())[:12])
            raise PluginError(f"protocol produced a non-finite metric ({', '.join(bad[:5])}); no record was written "
                              f"(metrics: {shown})")
        if bad:  # NaN = undefined (e.g. COCO AP of a size range without ground truth): left out of the record
            logger.info("dinobench: %s undefined on this data (NaN): left out of the record", ", ".join(bad))
            self.metrics = {k: v for k, v in self.metrics.items() if k not in bad}
        for name, rows in self.tables.items():
            if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
                raise PluginError(f"protocol table {name!r} must be a list of dicts (rows)")

    def direction(self, metric: str) -> bool:
        """Whether a higher ``metric`` is better."""
        if isinstance(self.higher_is_better, bool):
            return self.higher_is_better
        return bool(self.higher_is_better.get(metric, True))

    def directions(self) -> dict[str, bool]:
        """``metric -> higher is better`` for every metric."""
        return {name: self.direction(name) for name in self.metrics}


@dataclass
class TrainedHead:
    """A head a run trained, as the official tools read it: ``state`` (official key layout, CPU tensors),
    ``layout`` (a registered head layout, ``dinobench_register_head_layouts``: which official files it becomes;
    ``dinobench list`` shows them) and ``config`` (the official decoder
    config's fields, e.g. a depth ``DecoderConfig``)."""

    state: dict[str, Any]
    layout: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmptyConfig:
    """A protocol without options."""


class Protocol:
    """Base class of every evaluation protocol (see the module docstring)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type] = EmptyConfig
    runtime_keys: ClassVar[tuple[str, ...]] = ()
    eval_keys: ClassVar[tuple[str, ...]] = ()
    datasets: ClassVar[tuple[str, ...]] = ("train", "val")
    file_keys: ClassVar[tuple[str, ...]] = ()
    optional_keys: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        """``config``: an instance of ``Config``, or a mapping of the ``protocol`` section (validated)."""
        if config is None or isinstance(config, Mapping):
            section = {k: v for k, v in dict(config or {}).items() if k != "type"}
            _, config = resolve_section(self.Config, section, "protocol")
        elif not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a {self.Config.__name__} or a dict, got "
                              f"{type(config).__name__}")
        self.config = config
        self.validate()

    @classmethod
    def resolve_section(cls, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """The ``protocol`` section with every default filled in and checked (``type`` kept first)."""
        given = {k: v for k, v in dict(section or {}).items() if k != "type"}
        merged, _ = resolve_section(cls.Config, given, "protocol")
        return {"type": (section or {}).get("type", cls.name), **merged}

    @classmethod
    def result_train_keys(cls, section: Mapping[str, Any]) -> tuple[str, ...]:
        """Runtime ``train`` keys (``dinobench.training.RUNTIME_TRAIN_KEYS``) that do change this protocol's result
        under its resolved ``protocol`` section ``section``: they enter the protocol hash (never the training run
        key). Default none; e.g. ``train.eval_every`` when the best periodic evaluation is reported."""
        return ()

    def validate(self) -> None:
        """Check value ranges beyond types (one-line ConfigError); called after construction."""

    def run(self, ctx: "RunContext") -> ProtocolResult:  # pragma: no cover - abstract
        """Evaluate ``ctx.backbone`` on ``ctx.datasets``."""
        raise NotImplementedError


def check_protocol_class(obj: Any, registered_as: str, source: str = "") -> type[Protocol]:
    """``obj`` if it honours the protocol contract, else a one-line :class:`PluginError` naming what is wrong."""
    where = f"protocol {registered_as!r}" + (f" (from {source})" if source else "")
    if not (isinstance(obj, type) and issubclass(obj, Protocol)):
        raise PluginError(f"{where}: {obj!r} is not a dinobench.protocol.Protocol subclass")
    if not dataclasses.is_dataclass(obj.Config):
        raise PluginError(f"{where}: {obj.__name__}.Config must be a dataclass (the protocol's defaults)")
    missing = [f.name for f in dataclasses.fields(obj.Config)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PluginError(f"{where}: {obj.__name__}.Config field {missing[0]!r} has no default")
    if obj.run is Protocol.run:
        raise PluginError(f"{where}: {obj.__name__} does not implement run(ctx)")
    field_names = {f.name for f in dataclasses.fields(obj.Config)}
    for key in (*obj.runtime_keys, *obj.eval_keys):
        if key.split(".")[0] not in field_names:
            raise PluginError(f"{where}: {obj.__name__} declares key {key!r} that its Config does not have")
    if not str(obj.version):
        raise PluginError(f"{where}: {obj.__name__}.version is empty")
    return obj
