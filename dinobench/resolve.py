"""Task resolution: a task (registered name or file) plus ``--cfg-options`` (and a backbone's or released head's
defaults) -> the fully resolved, checked config, and the record's recipe provenance. Reads no data and builds no
model: ``dinobench config`` prints its result, the runner runs it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from dinobench import identity, recipes
from dinobench.config import apply_options, parse_options
from dinobench.context import FeaturesConfig
from dinobench.errors import ConfigError
from dinobench.plugin_manager import get_registries
from dinobench.protocol import Protocol
from dinobench.registry import resolve_object
from dinobench.tasks import TaskSource, find_task, load_task_config, task_summary
from dinobench.training import train_config
from dinobench.training.optim import use_registered as use_registered_optimizers
from dinobench.training.schedules import use_registered as use_registered_schedules
from dinobench.typed_config import merge_section, resolve_section


def protocol_class(name: str) -> type[Protocol]:
    """The registered protocol class ``name`` (contract checked by the registry)."""
    return get_registries().protocols.resolve(name)


def runtime_keys(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Every dotted key of a resolved task config that cannot change a result (:func:`dinobench.identity.runtime_keys`)."""
    return identity.runtime_keys(protocol_class(cfg["protocol"]["type"]), cfg)


def eval_only_keys(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Keys that change evaluation but not what a protocol trains (:func:`dinobench.identity.eval_only_keys`)."""
    return identity.eval_only_keys(protocol_class(cfg["protocol"]["type"]), cfg)


def hashed_config(cfg: dict[str, Any], files: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """What the protocol hash sees of ``cfg`` (:func:`dinobench.identity.hashed_config`)."""
    return identity.hashed_config(cfg, files, protocol_class(cfg["protocol"]["type"]))


def _check_sections(cfg: dict[str, Any], where: str) -> None:
    for section in ("backbone", "transform", "features", "train", "task"):
        if cfg.get(section) is not None and not isinstance(cfg[section], dict):
            raise ConfigError(f"{where}: {section} must be a section (dict(...)), got {cfg[section]!r:.40}")
    if not isinstance(cfg.get("protocol"), dict) or "type" not in cfg["protocol"]:
        raise ConfigError(f"{where}: config needs protocol=dict(type=...)")
    if ("dataset" in cfg) == ("datasets" in cfg):
        raise ConfigError(f"{where}: config needs either dataset=dict(type=...) or datasets=dict(<name>=dict(type=...))")
    entries = _entries(cfg)
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{where}: datasets must be a non-empty dict of name=dict(type=..., from_split=...)")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "type" not in entry:
            label = name if "dataset" in cfg else f"datasets.{name}"
            raise ConfigError(f"{where}: {label} needs dict(type=...)")


def _validated(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the protocol and features sections merged over their typed defaults and checked; the
    dataset, transform and train sections checked against their readers' and the engine's dataclasses."""
    protocol = protocol_class(cfg["protocol"]["type"])
    cfg["protocol"] = protocol.resolve_section(cfg["protocol"])
    cfg["features"] = resolve_section(FeaturesConfig, cfg.get("features"), "features")[0]
    check_data_sections(cfg)
    if cfg.get("train") is not None:
        if not protocol.trains:
            raise ConfigError(f"train: protocol {protocol.name!r} trains nothing, so a train section would be "
                              "ignored; remove it")
        train_config(cfg["train"])
    return cfg


def _entries(cfg: Mapping[str, Any]) -> Any:
    """The dataset entries of a task: ``{"dataset": ...}`` for the short form, else the ``datasets`` section."""
    return {"dataset": cfg["dataset"]} if "dataset" in cfg else cfg["datasets"]


def check_data_sections(cfg: Mapping[str, Any]) -> None:
    """Every dataset entry against its reader's options dataclass and the ``transform`` section against the
    transform dataclass of each reader it feeds: an unknown key is one line naming the closest valid one.
    The sections are left as written (what protocol hashes see); each reader fills in its own defaults.
    Readers registered without ``options`` / ``transform`` are not checked."""
    registries = get_registries()
    named = "datasets" in cfg  # the named form: from_split is the runner's key, not the reader's
    transforms: dict[type, None] = {}  # each reader's transform dataclass, once, in task order
    for name, entry in _entries(cfg).items():
        spec = registries.datasets.get(entry["type"])
        label = f"datasets.{name}" if named else "dataset"
        given = {k: v for k, v in entry.items() if k != "type" and not (named and k == "from_split")}
        if spec.options is not None:
            options = resolve_object(spec.options)
            if named and "split" in given and "split" not in {f.name for f in fields(options)}:
                raise ConfigError(f"{label}.split: reader {spec.name!r} has no split option; to take one of the "
                                  f"splits it returns, write {label}.from_split")
            merge_section(options, given, label)
        if spec.transform is not None:
            transforms[resolve_object(spec.transform)] = None
    for transform in transforms:
        merge_section(transform, cfg.get("transform") or {}, "transform")


def _default_sections(cfg: dict[str, Any]) -> None:
    """A top-level backbone / transform / features section left out or set to None means its defaults."""
    for section in ("backbone", "transform", "features"):
        if cfg.get(section) is None:
            cfg[section] = {}


def resolve_task(task: str, options: Mapping[str, Any] | list[str] | None,
                 backbone: str | None = None) -> dict[str, Any]:
    """The task's resolved config (a registered name or a task file, :func:`dinobench.tasks.find_task`): defaults
    filled in (with those the task sets for ``backbone``, :mod:`dinobench.recipes`), ``options`` applied, every
    section checked; an error names the task (file) and the key."""
    return _resolve(find_task(task, get_registries()), options, backbone)


def _resolve(source: TaskSource, options: Mapping[str, Any] | list[str] | None,
             backbone: str | None = None) -> dict[str, Any]:
    """:func:`resolve_task` of a found task."""
    registries = get_registries()
    use_registered_schedules(registries.schedules)  # plugins' schedules and optimizers, for the train section
    use_registered_optimizers(registries.optimizers)
    cfg = load_task_config(source.config)
    per_backbone = recipes.backbone_defaults(cfg.pop(recipes.BY_BACKBONE, None), backbone, source.where)
    _check_sections(cfg, source.where)
    _default_sections(cfg)
    try:
        cfg = _validated(cfg)  # defaults first, so that --cfg-options may set any valid key
        if per_backbone:  # the official recipe's per-backbone defaults, under the user's options
            cfg = apply_options(cfg, per_backbone, where=f"task {source.name!r} {recipes.BY_BACKBONE}[{backbone!r}]")
        cfg = apply_options(cfg, parse_options(options), where=f"task {source.name!r}")
        _default_sections(cfg)
        _check_sections(cfg, source.where)
        return _validated(cfg)
    except ConfigError as exc:  # a user's own task file: the error names it first
        if not source.user_file or str(exc).startswith(source.where):
            raise
        raise ConfigError(f"{source.where}: {exc}") from None


def dataset_entries(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """``name -> dataset entry`` of a ``datasets=`` task; None for the short form ``dataset=``."""
    if "datasets" not in cfg:
        return None
    return {name: dict(entry) for name, entry in cfg["datasets"].items()}


def with_head(head: str | None, head_weights: str | None, backbone: str | None, task: str | None,
              options: Mapping[str, Any] | list[str] | None) -> tuple[str, str, dict[str, Any]]:
    """``(backbone, task, options)`` of a run that evaluates the released head ``head`` (``dinobench list heads``):
    its backbone and first task unless given, its architecture options under the user's, its weights file."""
    options = parse_options(options)
    if head is None:
        if head_weights:
            raise ConfigError("--head-weights needs --head NAME (dinobench list heads), or set the task's "
                              "protocol.head_weights=FILE with --cfg-options")
        if not backbone or not task:
            raise ConfigError("dinobench run needs --backbone and --task (or --head NAME, which names both)")
        return backbone, task, options
    spec = get_registries().heads.get(head)
    task = task or spec.tasks[0]
    architecture = head_architecture(head, task)
    if not head_weights:
        raise ConfigError(f"--head {head}: pass its weights with --head-weights FILE"
                          + (f" (the released file is {spec.file})" if spec.file else ""))
    if spec.weights_key in options and str(options[spec.weights_key]) != str(head_weights):
        raise ConfigError(f"--head-weights {head_weights} and --cfg-options {spec.weights_key}="
                          f"{options[spec.weights_key]} name different files; give the head's weights once")
    return backbone or spec.backbone, task, {**architecture, spec.weights_key: str(head_weights), **options}


def head_architecture(head: str, task: str | None = None) -> dict[str, Any]:
    """The ``--cfg-options`` that build the released ``head``'s architecture (its weights file, an input, left
    out); ``task`` must be one the head evaluates (else a one-line ConfigError)."""
    spec = get_registries().heads.get(head)
    if task is not None and task not in spec.tasks:
        raise ConfigError(f"--head {head} evaluates {', '.join(spec.tasks)}, not {task!r}; pick one of those tasks")
    return {k: v for k, v in spec.options.items() if k != spec.weights_key}


def recipe_of(source: TaskSource, cfg: Mapping[str, Any], backbone: str, head: str | None) -> dict[str, Any]:
    """The record's ``recipe`` (:func:`dinobench.recipes.recipe_record`): ``cfg`` against the task's defaults for
    ``backbone`` and the released ``head``'s architecture (its weight file, an input, does not count). A user's
    task file (or a task folder's) inherits ``task.official`` from the shipped task it extends, so it is compared
    with the shipped tasks citing the same recipe, the closest one naming the differences."""
    official = task_summary(source.config)["official"]  # read as written (ast for literal task files)
    if not official:
        return {}
    registries = get_registries()
    options = head_architecture(head) if head is not None else {}
    protocol_cls = protocol_class(cfg["protocol"]["type"])
    ignored = (*identity.runtime_keys(protocol_cls, cfg), *(f"protocol.{key}" for key in protocol_cls.file_keys))
    own = not source.user_file and not registries.tasks.get(source.name).source.startswith("task folder")
    if own:
        return recipes.recipe_record(cfg, _resolve(source, options, backbone), ignored)
    shipped = [spec.name for spec in registries.tasks if spec.source.startswith("dinobench.")
               and task_summary(spec.config)["official"] == official]
    records = [recipes.recipe_record(cfg, _resolve(find_task(name, registries), options, backbone), ignored)
               for name in shipped]
    return min(records, key=lambda r: len(r["differs"])) if records else {}
