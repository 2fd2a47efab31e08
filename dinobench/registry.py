"""Small typed registries (backbones, datasets, protocols, tasks, feature kinds) with "did you mean" lookups.

Plugins fill them through the hooks in :mod:`dinobench.hookspecs`; the core only reads them.
Entries name their implementation lazily (``"package.module:attr"``) so that listing stays fast
and a plugin's heavy imports happen only when its entry is used.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from dinobench.errors import PluginError, UnknownNameError
from dinobench.protocol import check_protocol_class

T = TypeVar("T")


def resolve_object(target: str | Callable[..., Any]) -> Any:
    """Import ``"package.module:attr"`` (or return a callable unchanged)."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone: how to build it and what a listing shows about it."""

    name: str
    factory: str | Callable[..., Any]  # called as factory(**overrides) -> nn.Module
    family: str = ""
    patch_size: int | None = None
    embed_dim: int | None = None
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # constructor kwargs of this variant
    #: parameter count, when known without building it (listings show it; None: counted on the meta device)
    params: int | None = None
    source: str = ""  # plugin that registered it (filled in by the registry)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset reader: ``builder(cfg: dict, data_root: str | None) -> dict[split, Dataset]``.

    ``options``: the dataclass of the reader's section (every key it reads, with its default); ``transform``:
    the dataclass of the task's ``transform`` section its datasets read. Both (``"module:attr"``) let the runner
    refuse a typo in either section, with the closest valid key, before any data is read.
    """

    name: str
    builder: str | Callable[..., Any]
    options: str | type | None = None
    transform: str | type | None = None
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class ProtocolSpec:
    """An evaluation protocol (kNN, logreg, linear seg, ...): a :class:`dinobench.protocol.Protocol` subclass.

    ``version`` (optional) repeats the class's ``version`` for listings; resolving checks they agree.
    """

    name: str
    cls: str | Callable[..., Any]
    version: str | None = None
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class FeatureKindSpec:
    """A feature kind the cache can hold: ``compute(model, images) -> Tensor [B, *shape]``.

    ``cut_from`` maps a source kind to ``plan(model, source_shape) -> FeatureCut`` (see
    :mod:`dinobench.features.kinds`): how to make this kind from a cached entry of the source kind
    without a forward (raise ``ValueError`` when that entry cannot hold it).
    """

    name: str
    compute: str | Callable[..., Any]
    cut_from: dict[str, str | Callable[..., Any]] = field(default_factory=dict)
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A task = an mmengine config file (or dict) naming a protocol and a dataset."""

    name: str
    config: str | Path | dict[str, Any]
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class HeadSpec:
    """A released head (an official hub entry): the backbone it was trained on, the tasks it evaluates and the
    ``--cfg-options`` that make a task's protocol build exactly this head.

    ``options``: dotted task-config keys -> values (applied before the user's own options); the head file
    goes into ``weights_key``. ``file`` / ``backbone_file``: the official weight file names (shown in listings).
    """

    name: str
    backbone: str
    tasks: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    weights_key: str = "protocol.head_weights"
    file: str = ""
    backbone_file: str = ""
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """A CLI subcommand a plugin adds: ``configure(parser)`` then ``run(args) -> exit code``."""

    name: str
    configure: str | Callable[..., Any]
    run: str | Callable[..., Any]
    help: str = ""
    source: str = ""


@dataclass(frozen=True)
class ScheduleEntry:
    """A learning-rate schedule for ``train.scheduler.type``: ``fn(cfg, base_lr, iteration, total) -> {"lr": ...}``
    and the defaults of its own keys (see :mod:`dinobench.training.schedules`)."""

    name: str
    fn: str | Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer for ``train.optimizer.type``: ``build(param_groups, cfg) -> torch.optim.Optimizer`` and the
    defaults of its keys (``lr`` among them; see :mod:`dinobench.training.optim`)."""

    name: str
    build: str | Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


def install_entries(table: dict[str, Any], installed: dict[str, Any], entries: Any, kind: str,
                    make: Callable[[Any], Any]) -> None:
    """Put plugin ``entries`` (with ``name`` and ``source``) into an engine's own ``table`` as ``make(entry)``;
    ``installed`` remembers what came from where, so a second call is a no-op and a name the engine has built in
    is a one-line PluginError (a plugin adds, never replaces)."""
    for entry in entries:
        if installed.get(entry.name) == entry:
            continue
        if entry.name in table and entry.name not in installed:
            raise PluginError(f"{kind} {entry.name!r} (from {entry.source or '?'}) is a built-in {kind}; rename it")
        table[entry.name] = make(entry)
        installed[entry.name] = entry


@dataclass(frozen=True)
class SyntheticWriterEntry:
    """A procedural dataset writer in a reader's real layout (``python -m dinobench.synthetic KIND``):
    ``writer(out_dir, n_train=, n_val=, size=, seed=, **fixed) -> data root``; ``size``: its default image size."""

    name: str
    writer: str | Callable[..., Any]
    size: int | tuple[int, int] = 64
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class HeadLayoutEntry:
    """How a trained head of layout ``name`` (``TrainedHead.layout``) becomes the files its official tools read:
    ``files(state, config) -> {file name: str (text) | object (torch.save)}`` (``dinobench export --run``)."""

    name: str
    files: str | Callable[..., Any]
    description: str = ""
    source: str = ""


class Registry(Generic[T]):
    """Name -> spec mapping; duplicates are refused, unknown names get suggestions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._current_source = ""

    def register(self, spec: T) -> T:
        """Add ``spec`` (its ``name`` must be new); returns the stored spec."""
        name = getattr(spec, "name")
        if not name or not isinstance(name, str):
            raise PluginError(f"{self._current_source or 'a plugin'} registered a {self.kind} without a name")
        if name in self._entries:
            first = getattr(self._entries[name], "source", "?")
            raise PluginError(
                f"{self.kind} {name!r} registered twice (by {first} and by {self._current_source or '?'}); "
                "rename one of them"
            )
        if hasattr(spec, "source") and not getattr(spec, "source"):
            spec = type(spec)(**{**spec.__dict__, "source": self._current_source})  # type: ignore[arg-type]
        self._entries[name] = spec
        return spec

    def get(self, name: str) -> T:
        """The spec called ``name``; raises :class:`UnknownNameError` with close matches."""
        try:
            return self._entries[name]
        except KeyError:
            matches = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"`dinobench list {self.kind}s` shows all {len(self._entries)}"
            raise UnknownNameError(self.kind, name, matches, hint) from None

    def names(self) -> list[str]:
        """Sorted names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


class BackboneRegistry(Registry[BackboneSpec]):
    """Registry of backbones; ``add`` is a keyword shortcut for plugins."""

    def __init__(self) -> None:
        super().__init__("backbone")

    def add(self, name: str, factory: str | Callable[..., Any], **meta: Any) -> BackboneSpec:
        """Register ``BackboneSpec(name, factory, **meta)``."""
        return self.register(BackboneSpec(name=name, factory=factory, **meta))


class DatasetRegistry(Registry[DatasetSpec]):
    """Registry of dataset readers."""

    def __init__(self) -> None:
        super().__init__("dataset")

    def add(self, name: str, builder: str | Callable[..., Any], **meta: Any) -> DatasetSpec:
        """Register ``DatasetSpec(name, builder, **meta)``."""
        return self.register(DatasetSpec(name=name, builder=builder, **meta))


class ProtocolRegistry(Registry[ProtocolSpec]):
    """Registry of evaluation protocols."""

    def __init__(self) -> None:
        super().__init__("protocol")

    def add(self, name: str, cls: str | Callable[..., Any], **meta: Any) -> ProtocolSpec:
        """Register ``ProtocolSpec(name, cls, **meta)``."""
        return self.register(ProtocolSpec(name=name, cls=cls, **meta))

    def resolve(self, name: str) -> Any:
        """The protocol class registered as ``name``, imported and checked against the protocol contract
        (:func:`dinobench.protocol.check_protocol_class`); a broken entry is a one-line PluginError."""
        spec = self.get(name)
        try:
            obj = resolve_object(spec.cls)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"protocol {name!r} (from {spec.source or '?'}): cannot import {spec.cls!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
        cls = check_protocol_class(obj, name, spec.source)
        if spec.version is not None and str(spec.version) != str(cls.version):
            raise PluginError(f"protocol {name!r} (from {spec.source or '?'}): registered as version {spec.version} "
                              f"but {cls.__name__}.version is {cls.version}; register without version=")
        return cls


class FeatureKindRegistry(Registry[FeatureKindSpec]):
    """Registry of feature kinds (what :func:`dinobench.features.load_or_extract` extracts and caches)."""

    def __init__(self) -> None:
        super().__init__("feature kind")

    def add(self, name: str, compute: str | Callable[..., Any], **meta: Any) -> FeatureKindSpec:
        """Register ``FeatureKindSpec(name, compute, **meta)``."""
        return self.register(FeatureKindSpec(name=name, compute=compute, **meta))


class TaskRegistry(Registry[TaskSpec]):
    """Registry of tasks; ``add_config_dir`` registers every ``*.py`` config in a folder."""

    def __init__(self) -> None:
        super().__init__("task")

    def add(self, name: str, config: str | Path | dict[str, Any], **meta: Any) -> TaskSpec:
        """Register ``TaskSpec(name, config, **meta)``."""
        return self.register(TaskSpec(name=name, config=config, **meta))

    def add_config_dir(self, folder: str | Path) -> list[TaskSpec]:
        """Register each ``<folder>/<task-name>.py`` as task ``<task-name>``."""
        return [self.add(p.stem, p) for p in sorted(Path(folder).glob("*.py")) if not p.name.startswith("_")]


class HeadRegistry(Registry[HeadSpec]):
    """Registry of released heads (``dinobench run --head NAME --head-weights FILE``)."""

    def __init__(self) -> None:
        super().__init__("head")

    def add(self, name: str, backbone: str, tasks: str | Sequence[str], **meta: Any) -> HeadSpec:
        """Register ``HeadSpec(name, backbone, tasks, **meta)`` (the first task is the default)."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        if not tasks:
            raise ValueError(f"head {name!r}: name at least one task it evaluates")
        return self.register(HeadSpec(name=name, backbone=backbone, tasks=tasks, **meta))


class CommandRegistry(Registry[CommandSpec]):
    """Registry of plugin CLI subcommands."""

    def __init__(self) -> None:
        super().__init__("command")

    def add(self, name: str, configure: str | Callable[..., Any], run: str | Callable[..., Any],
            **meta: Any) -> CommandSpec:
        """Register ``CommandSpec(name, configure, run, **meta)``."""
        return self.register(CommandSpec(name=name, configure=configure, run=run, **meta))


class ScheduleRegistry(Registry[ScheduleEntry]):
    """Registry of learning-rate schedules a plugin adds to the engine's built-in ones."""

    def __init__(self) -> None:
        super().__init__("schedule")

    def add(self, name: str, fn: str | Callable[..., Any], defaults: dict[str, Any] | None = None,
            **meta: Any) -> ScheduleEntry:
        """Register ``ScheduleEntry(name, fn, defaults, **meta)``."""
        return self.register(ScheduleEntry(name=name, fn=fn, defaults=dict(defaults or {}), **meta))


class OptimizerRegistry(Registry[OptimizerEntry]):
    """Registry of optimizers a plugin adds to the engine's built-in ones (adamw, sgd)."""

    def __init__(self) -> None:
        super().__init__("optimizer")

    def add(self, name: str, build: str | Callable[..., Any], defaults: dict[str, Any] | None = None,
            **meta: Any) -> OptimizerEntry:
        """Register ``OptimizerEntry(name, build, defaults, **meta)``; ``defaults`` must hold ``lr``."""
        if "lr" not in (defaults or {}):
            raise PluginError(f"optimizer {name!r}: its defaults must hold lr")
        return self.register(OptimizerEntry(name=name, build=build, defaults=dict(defaults or {}), **meta))


class SyntheticWriterRegistry(Registry[SyntheticWriterEntry]):
    """Registry of synthetic dataset writers (each family registers the ones of its readers)."""

    def __init__(self) -> None:
        super().__init__("synthetic writer")

    def add(self, name: str, writer: str | Callable[..., Any], size: int | tuple[int, int] = 64,
            fixed: dict[str, Any] | None = None, **meta: Any) -> SyntheticWriterEntry:
        """Register ``SyntheticWriterEntry(name, writer, size, fixed, **meta)``."""
        return self.register(SyntheticWriterEntry(name=name, writer=writer, size=size, fixed=dict(fixed or {}),
                                                  **meta))


class HeadLayoutRegistry(Registry[HeadLayoutEntry]):
    """Registry of head export layouts (each family registers the ones its protocols save)."""

    def __init__(self) -> None:
        super().__init__("head layout")

    def add(self, name: str, files: str | Callable[..., Any], **meta: Any) -> HeadLayoutEntry:
        """Register ``HeadLayoutEntry(name, files, **meta)``."""
        return self.register(HeadLayoutEntry(name=name, files=files, **meta))


@dataclass
class Registries:
    """All registries, filled once per process by the plugin manager."""

    backbones: BackboneRegistry = field(default_factory=BackboneRegistry)
    datasets: DatasetRegistry = field(default_factory=DatasetRegistry)
    protocols: ProtocolRegistry = field(default_factory=ProtocolRegistry)
    tasks: TaskRegistry = field(default_factory=TaskRegistry)
    feature_kinds: FeatureKindRegistry = field(default_factory=FeatureKindRegistry)
    commands: CommandRegistry = field(default_factory=CommandRegistry)
    heads: HeadRegistry = field(default_factory=HeadRegistry)
    schedules: ScheduleRegistry = field(default_factory=ScheduleRegistry)
    optimizers: OptimizerRegistry = field(default_factory=OptimizerRegistry)
    synthetic_writers: SyntheticWriterRegistry = field(default_factory=SyntheticWriterRegistry)
    head_layouts: HeadLayoutRegistry = field(default_factory=HeadLayoutRegistry)

    def all(self) -> tuple[Registry[Any], ...]:
        """Every registry."""
        return (self.backbones, self.datasets, self.protocols, self.tasks, self.feature_kinds, self.commands,
                self.heads, self.schedules, self.optimizers, self.synthetic_writers, self.head_layouts)

    def set_source(self, source: str) -> None:
        """Attribute what gets registered next to plugin ``source``."""
        for reg in self.all():
            reg._current_source = source
