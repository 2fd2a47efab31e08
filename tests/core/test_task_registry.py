"""Tests over the registries (timm's way): every shipped task resolves, every protocol honours the contract
and rejects unknown keys, and the protocol hash of every shipped task is frozen (comparability)."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing

import numpy as np
import pytest

from dinobench.config import protocol_hash
from dinobench.errors import ConfigError, PluginError
from dinobench.plugin_manager import get_registries
from dinobench.protocol import Protocol, ProtocolResult, check_protocol_class
from dinobench.resolve import hashed_config, protocol_class, resolve_task, runtime_keys
from conftest import FIXTURES

FROZEN = FIXTURES / "shipped_task_hashes.json"
FIRST_PARTY = "dinobench.plugins."


def _first_party(registry):
    return [spec.name for spec in registry if spec.source.startswith(FIRST_PARTY)]


TASKS = _first_party(get_registries().tasks)
PROTOCOLS = _first_party(get_registries().protocols)


def test_registries_are_not_empty():
    assert len(TASKS) >= 21 and {"knn", "logreg", "linear", "linear_seg", "linear_depth", "dpt"} <= set(PROTOCOLS)


@pytest.mark.parametrize("task", TASKS)
def test_every_shipped_task_resolves_with_every_protocol_default(task):
    cfg = resolve_task(task, None)
    cls = protocol_class(cfg["protocol"]["type"])
    defaults = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(cfg["protocol"]) == defaults | {"type"}  # the record shows every value the protocol used
    assert cls(cfg["protocol"]).config is not None  # value checks pass
    assert ("dataset" in cfg) != ("datasets" in cfg)


@pytest.mark.parametrize("task", TASKS)
def test_shipped_task_hash_is_frozen(task):
    """A changed hash means a shipped task now computes something else: bump that protocol's version, then
    refreeze tests/fixtures/shipped_task_hashes.json (and the CI baseline) and say why."""
    frozen = json.loads(FROZEN.read_text())
    cfg = resolve_task(task, None)
    cls = protocol_class(cfg["protocol"]["type"])
    got = {"protocol": cls.name, "version": cls.version, "hash": protocol_hash(hashed_config(cfg, {}), "FP", runtime_keys(cfg))}
    if task in frozen and frozen[task]["version"] == got["version"]:
        assert got == frozen[task]
    else:
        assert task in frozen, f"new shipped task {task}: add it to {FROZEN.name}"


def _nudge_floats(node, direction):
    """``node`` with every non-zero float moved one ulp towards ``direction``: what another CPU's pow / exp /
    logspace gives."""
    if isinstance(node, dict):
        return {key: _nudge_floats(value, direction) for key, value in node.items()}
    if isinstance(node, list):
        return [_nudge_floats(value, direction) for value in node]
    if isinstance(node, float) and node != 0.0:
        return float(np.nextafter(node, direction))
    return node


@pytest.mark.parametrize("task", TASKS)
def test_shipped_task_hash_does_not_move_with_last_bit_float_noise(task):
    """The same task on another CPU / libm / numpy build gives the same hash: every float of the resolved
    config (defaults computed at import included) one ulp up, then one ulp down, leaves the hash alone."""
    cfg = resolve_task(task, None)
    keys = runtime_keys(cfg)
    want = protocol_hash(hashed_config(cfg, {}), "FP", keys)
    for direction in (np.inf, -np.inf):
        assert protocol_hash(hashed_config(_nudge_floats(cfg, direction), {}), "FP", keys) == want


def test_a_cpu_dependent_default_would_be_caught():
    """The defect this guards against (folder-foreground v1): np.logspace(-7, 0, 8) gave 9.999999999999999e-06 on
    an AVX-512 Xeon and 1e-05 on an AMD EPYC; both now hash alike, and the default grid is written out."""
    cfg = resolve_task("folder-foreground", None)
    assert cfg["protocol"]["Cs"] == [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    xeon = copy.deepcopy(cfg)
    xeon["protocol"]["Cs"][2] = 9.999999999999999e-06
    assert protocol_hash(hashed_config(xeon, {}), "FP") == protocol_hash(hashed_config(cfg, {}), "FP")
    changed = copy.deepcopy(cfg)
    changed["protocol"]["Cs"][2] = 2e-5  # a real change of the grid still changes the hash
    assert protocol_hash(hashed_config(changed, {}), "FP") != protocol_hash(hashed_config(cfg, {}), "FP")


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_honours_the_contract(name):
    cls = get_registries().protocols.resolve(name)
    assert issubclass(cls, Protocol) and cls.name == name and cls.version
    assert check_protocol_class(cls, name) is cls
    instance = cls()  # all defaults are valid
    assert isinstance(instance.config, cls.Config)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_rejects_an_unknown_key_naming_the_closest(name):
    cls = get_registries().protocols.resolve(name)
    first = dataclasses.fields(cls.Config)[0].name
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    with pytest.raises(ConfigError, match=rf"protocol\.{typo}: unknown key \(did you mean {first}\?\)"):
        cls({typo: 1})


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_rejects_a_value_of_the_wrong_type(name):
    cls = get_registries().protocols.resolve(name)
    hints = typing.get_type_hints(cls.Config)
    field = next(name for name, hint in hints.items() if not dataclasses.is_dataclass(hint) and hint is not typing.Any)
    with pytest.raises(ConfigError, match=rf"protocol\.{field}=.*expected"):
        cls({field: {"not": "a valid value"}})


def test_nested_section_keys_and_types_are_checked():
    cls = protocol_class("linear_seg")
    with pytest.raises(ConfigError, match=r"protocol\.head\.dropuot: unknown key \(did you mean dropout\?\)"):
        cls({"head": {"dropuot": 0.2}})
    with pytest.raises(ConfigError, match=r"protocol\.inference\.mode='tiled': expected 'whole' or 'slide'"):
        cls({"inference": {"mode": "tiled"}})
    ok = cls({"head": {"dropout": 0}, "inference": {"crop_size": [32, 48]}})
    assert ok.config.head.dropout == 0.0 and isinstance(ok.config.head.dropout, float)
    assert ok.config.inference.crop_size == [32, 48] and ok.config.inference.stride == 341  # defaults kept


def test_cli_overrides_are_type_checked_after_defaults_are_filled():
    cfg = resolve_task("digits-knn", ["protocol.few_shot.seeds=[4,5]"])  # a default key set from the CLI
    assert cfg["protocol"]["few_shot"] == {"n_per_class": [], "seeds": [4, 5]}
    with pytest.raises(ConfigError, match=r"protocol\.temperature='hot': expected float"):
        resolve_task("digits-knn", ["protocol.temperature=hot"])
    with pytest.raises(ConfigError, match=r"did you mean protocol\.temperature\?"):
        resolve_task("digits-knn", ["protocol.temprature=0.1"])
    with pytest.raises(ConfigError, match=r"features\.cache=.*expected bool"):
        resolve_task("digits-knn", ["features.cache=1"])


def test_registry_refuses_a_class_that_breaks_the_contract():
    class NoConfig(Protocol):
        name = "broken"
        Config = dict  # not a dataclass

        def run(self, ctx):
            return ProtocolResult({"a": 1.0}, "a")

    class NoRun(Protocol):
        name = "broken"

    @dataclasses.dataclass
    class Required:
        needed: int  # no default

    class NoDefault(Protocol):
        name = "broken"
        Config = Required

        def run(self, ctx):
            return ProtocolResult({"a": 1.0}, "a")

    for cls, message in [(NoConfig, "must be a dataclass"), (NoRun, "does not implement run"),
                         (NoDefault, "field 'needed' has no default"), (object, "not a dinobench.protocol.Protocol")]:
        with pytest.raises(PluginError, match=message):
            check_protocol_class(cls, "broken", "a plugin")


def test_protocol_result_checks_what_a_protocol_returns():
    result = ProtocolResult({"rmse": 1.5, "a1": 0.9}, "rmse", higher_is_better={"rmse": False})
    assert result.directions() == {"rmse": False, "a1": True}
    with pytest.raises(PluginError, match="main metric 'top1' is not among its metrics"):
        ProtocolResult({"acc": 1.0}, "top1")
    with pytest.raises(PluginError, match=r"non-finite metric \(acc\); no record was written \(metrics: acc=nan\)"):
        ProtocolResult({"acc": float("nan")}, "acc")
    with pytest.raises(PluginError, match="must be a list of dicts"):
        ProtocolResult({"acc": 1.0}, "acc", tables={"per_class": "oops"})
