"""Property-based tests (hypothesis): any JSON is a valid record or one ValueError line, and an accepted record
never breaks the leaderboard, the exports or the gate; ``--cfg-options`` values parse to data or one ConfigError,
never code; the comparability rule depends only on (task, protocol version, protocol hash), not on the order of
the records; the protocol hash ignores key order and runtime keys and sees every other leaf."""

import copy
import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_result

from dinobench.config import GLOBAL_RUNTIME_KEYS, apply_options, parse_options, protocol_hash
from dinobench.errors import ConfigError
from dinobench.leaderboard import build_leaderboard, check, results_frame
from dinobench.report import csv_safe, leaderboard_markdown, results_table
from dinobench.results import Result

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
GOOD = make_result(50.0).to_dict()

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def paths_of(data, prefix=()):
    """Every (nested) key path of a record: the places a mutation can hit."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths_of(value, (*prefix, key))


RECORD_PATHS = [p for p in paths_of(GOOD) if p]


def mutated(path, value):
    data = copy.deepcopy(GOOD)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def accepted_or_value_error(data):
    """``Result.from_dict`` on ``data`` after a JSON round trip (NaN / Infinity as json.loads reads them)."""
    data = json.loads(json.dumps(data))
    try:
        return Result.from_dict(data, path="hypothesis/result.json")
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return None


def everything_downstream(results):
    """What `report` and `check` do with records: leaderboard, Markdown, CSV, the gate against itself."""
    df = results_frame(results)
    leaderboard_markdown(build_leaderboard(df))
    csv_safe(results_table(df)).to_csv(index=False)
    rows = check(df, df)
    assert [r.status for r in rows] == ["same"] * len(rows)  # a record always equals itself


@SETTINGS
@given(json_values)
def test_any_json_document_is_a_record_or_a_one_line_value_error(data):
    result = accepted_or_value_error(data)
    if result is not None:
        everything_downstream([result])


@SETTINGS
@given(st.sampled_from(RECORD_PATHS), json_values)
def test_a_record_with_any_field_replaced_is_refused_or_works_everywhere(path, value):
    result = accepted_or_value_error(mutated(path, value))
    if result is not None:
        assert math.isfinite(result.main_metric.value)
        assert all(not math.isinf(v) for v in result.metrics.values())
        everything_downstream([result, Result.from_dict(copy.deepcopy(GOOD), path="good/result.json")])


# --- --cfg-options -----------------------------------------------------------------------------------------------

literals = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                        | st.floats(allow_nan=False, allow_infinity=False, width=32)
                        | st.from_regex(r"[a-z][a-z0-9_/]{0,7}", fullmatch=True),
                        lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=6)


def option_text(value) -> str:
    """How a user types ``value`` after ``key=`` (Python-literal spelling, as mmengine's DictAction reads it)."""
    if isinstance(value, list):
        return "[" + ",".join(option_text(v) for v in value) + "]"
    return "None" if value is None else str(value)


@SETTINGS
@given(st.text(max_size=40))
def test_any_option_text_parses_to_data_or_one_config_error_and_never_runs_code(raw):
    try:
        parsed = parse_options([f"protocol.x={raw}"])
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    value = parsed["protocol.x"]

    def plain(v):
        return v is None or isinstance(v, (bool, int, float, str)) or (
            isinstance(v, (list, tuple)) and all(plain(x) for x in v))

    assert plain(value), (raw, value)  # data only: no call was evaluated


@SETTINGS
@given(literals)
def test_typed_option_values_round_trip(value):
    parsed = parse_options([f"a.b={option_text(value)}"])["a.b"]
    assert parsed == value
    assert apply_options({"a": {"b": 0}}, {"a.b": parsed})["a"]["b"] == parsed


# --- comparability -----------------------------------------------------------------------------------------------

records = st.builds(
    lambda task, version, fingerprint, seed, value, model: make_result(
        value, task=task, version=version, fingerprint=fingerprint, seed=seed, backbone=model),
    st.sampled_from(["t1", "t2"]), st.sampled_from(["1", "2"]), st.sampled_from(["fp0", "fp1", "fp2"]),
    st.integers(0, 2), st.floats(0, 100, allow_nan=False), st.sampled_from(["vits16", "vitb16"]))


@SETTINGS
@given(st.lists(records, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_columns_follow_task_version_and_hash_whatever_the_order(results, rnd):
    for i, r in enumerate(results):
        r.path, r.created_at = f"r{i}/result.json", f"2026-01-01T00:00:{i:02d}Z"
    df = results_frame(results)
    shuffled = list(results)
    rnd.shuffle(shuffled)
    again = results_frame(shuffled)
    by_path = dict(zip(again["source"], again["column"]))
    assert all(by_path[s] == c for s, c in zip(df["source"], df["column"]))  # order does not matter
    for task, sub in df.groupby("task"):
        groups = sub.groupby(["protocol_version", "protocol_hash"])
        columns = {key: set(g["column"]) for key, g in groups}
        assert all(len(c) == 1 for c in columns.values())  # one column per (version, hash)
        names = [c.pop() for c in columns.values()]
        assert len(set(names)) == len(names) and names.count(task) == 1  # distinct; exactly one is the plain task


@SETTINGS
@given(records, records)
def test_the_gate_compares_only_equal_protocols(base, new):
    new.backbone, new.task, new.seed, new.weights, new.weights_sha256 = (base.backbone, base.task, base.seed,
                                                                         base.weights, base.weights_sha256)
    base.path, new.path = "base/result.json", "new/result.json"
    (row,) = check(results_frame([base]), results_frame([new]))
    same_protocol = (base.protocol_version, base.protocol_hash) == (new.protocol_version, new.protocol_hash)
    assert (row.status in ("same", "improved", "regressed")) == same_protocol
    assert row.status == "not-comparable" or same_protocol


configs = st.dictionaries(st.sampled_from(["protocol", "train", "transform"]),
                          st.dictionaries(st.sampled_from(["lr", "k", "size", "name"]),
                                          st.integers(0, 5) | st.text("ab", max_size=2), min_size=1, max_size=3),
                          min_size=1, max_size=3)


@SETTINGS
@given(configs, st.randoms(use_true_random=False))
def test_protocol_hash_ignores_order_and_runtime_keys_and_sees_every_other_leaf(cfg, rnd):
    reordered = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(cfg.items()))}
    assert protocol_hash(cfg, "fp") == protocol_hash(reordered, "fp")
    section = rnd.choice(sorted(cfg))
    leaf = rnd.choice(sorted(cfg[section]))
    changed = copy.deepcopy(cfg)
    changed[section][leaf] = [changed[section][leaf], "changed"]
    assert protocol_hash(changed, "fp") != protocol_hash(cfg, "fp")
    assert protocol_hash(changed, "fp", [f"{section}.{leaf}"]) == protocol_hash(cfg, "fp", [f"{section}.{leaf}"])
    assert protocol_hash(cfg, "fp") != protocol_hash(cfg, "other dataset")
    base = {**copy.deepcopy(cfg), "task": {"name": "t"}}
    runtime = {**copy.deepcopy(base), "task": {"name": "t", "description": rnd.choice(["a", "b"]),
                                               "official": rnd.choice(["x.py", "y.yaml"])},
               "backbone": {"embed_dim": rnd.choice([7, 8])}}
    assert protocol_hash(runtime, "fp") == protocol_hash(base, "fp")  # GLOBAL_RUNTIME_KEYS
    assert set(GLOBAL_RUNTIME_KEYS) == {"task.description", "task.official", "backbone"}


def test_frames_are_pandas():  # the helpers above build real frames (guards the imports against refactors)
    assert isinstance(results_frame([make_result(1.0)]), pd.DataFrame)
    with pytest.raises(ConfigError):
        parse_options(["no-equals-sign"])
