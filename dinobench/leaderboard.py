"""Results store -> pandas, comparability groups, leaderboard tables and the regression check.

Comparability rule: two results share a leaderboard column only when ``task``, ``protocol_version`` and
``protocol_hash`` (resolved task config + dataset fingerprint) all match. Per task, the group with the most
rows gets the plain task name as its column; every other group gets its own column
``"<task> [cfg <hash7>]"`` (``[v<version> cfg <hash7>]`` when the protocol version differs) and a note saying
why it is apart (the differing config keys, the dataset fingerprint or the protocol version). A column whose
results come from a task's official recipe with keys changed is marked ``" *"``, its note naming the keys
(:mod:`dinobench.recipes`).

Rows are (model, weights id): ``model`` is the backbone name plus its constructor overrides
(``vit_tiny(depth=2,embed_dim=64)``), the weights id is ``random-init`` or ``<file name>@<sha256[:8]>``.
Re-runs with the same seed count once (the newest); several seeds are averaged (mean, sample std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from dinobench.config import config_diff
from dinobench.recipes import recipe_line
from dinobench.results import Result, load_results

Row = tuple[str, str]  # (model, weights_id)
ROW_KEYS = ["model", "weights_id"]
#: statuses of ``check``; "regressed" and "missing" fail the check (exit code 1), "not-comparable" only
#: with ``--strict`` (a baseline entry whose result exists but under another protocol config/version)
STATUSES = ("improved", "same", "regressed", "missing", "not-comparable")
FAILING = ("regressed", "missing")
FAILING_STRICT = FAILING + ("not-comparable",)
#: absolute tolerance of ``check`` when --tolerance names neither the metric nor ``*``: float noise only
DEFAULT_TOLERANCE = 1e-6


def weights_id(result: Result) -> str:
    """``random-init``, or the checkpoint's file name plus the first 8 hex digits of its sha256."""
    if not result.weights or result.weights == "random-init":
        return "random-init"
    name = Path(result.weights).name or result.weights
    return f"{name}@{result.weights_sha256[:8]}" if result.weights_sha256 else name


def model_label(result: Result) -> str:
    """Backbone name plus its constructor overrides: two architectures never share a row."""
    overrides = (result.backbone_config or {}).get("overrides") or (result.config or {}).get("backbone") or {}
    if not overrides:
        return result.backbone
    return f"{result.backbone}(" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + ")"


def throughput(result: Result) -> float | None:
    """Feature-extraction images/s: split sizes over the ``features_<split>[_<kind>]_s`` timings
    (splits read from the feature cache, ``features_<...>_cached == 1``, measure no extraction)."""
    splits = (result.dataset or {}).get("splits") or {}
    timings = result.timings or {}
    images = seconds = 0.0
    for key, secs in timings.items():
        if not (key.startswith("features_") and key.endswith("_s")) or not secs:
            continue
        if timings.get(key[:-2] + "_cached"):
            continue
        stem = key[len("features_"):-2]
        split = max((s for s in splits if stem == s or stem.startswith(f"{s}_")), key=len, default=None)
        size = (splits.get(split) or {}).get("size") if split else None
        if size:
            images, seconds = images + float(size), seconds + float(secs)
    return images / seconds if seconds > 0 else None


def results_frame(results: list[Result]) -> pd.DataFrame:
    """One row per result, with the comparability columns ``column`` and ``note`` assigned."""
    rows = []
    for r in results:
        env = r.environment or {}
        rows.append({
            "model": model_label(r), "backbone": r.backbone, "weights_id": weights_id(r), "weights": r.weights,
            "task": r.task, "protocol": r.protocol, "protocol_version": str(r.protocol_version),
            "protocol_hash": r.protocol_hash, "seed": int(r.seed), "main_metric": r.main_metric.name,
            "main_value": float(r.main_metric.value), "higher_is_better": bool(r.main_metric.higher_is_better),
            "metrics": dict(r.metrics), "params": (r.backbone_config or {}).get("params"),
            "throughput": throughput(r), "created_at": r.created_at or "",
            "git_commit": env.get("git_commit"), "git_dirty": env.get("git_dirty"),
            "dinobench_version": env.get("dinobench_version"), "torch_version": env.get("torch"),
            "device": env.get("device"), "source": r.path, "record": r,
        })
    columns = ["model", "backbone", "weights_id", "weights", "task", "protocol", "protocol_version", "protocol_hash",
               "seed", "main_metric", "main_value", "higher_is_better", "metrics", "params", "throughput",
               "created_at", "git_commit", "git_dirty", "dinobench_version", "torch_version", "device", "source",
               "record"]
    return assign_columns(pd.DataFrame(rows, columns=columns))


def scan(paths: list[str | Path]) -> pd.DataFrame:
    """Load result folders / files / JSONL baselines into :func:`results_frame`."""
    return results_frame(load_results(list(paths)))


def difference(ref: Result, other: Result, ref_name: str) -> str:
    """Why ``other`` is not comparable with ``ref`` (named ``ref_name``), in one phrase."""
    if str(ref.protocol_version) != str(other.protocol_version):
        return f"protocol version {other.protocol_version} ({ref_name}: {ref.protocol_version})"
    diffs = config_diff(ref.config, other.config, [*(ref.runtime_keys or ()), *(other.runtime_keys or ())])
    if diffs:
        shown = "; ".join(f"{k}={vb} ({ref_name}: {va})" for k, va, vb in diffs[:3])
        return "config differs: " + shown + (f"; +{len(diffs) - 3} more" if len(diffs) > 3 else "")
    if (ref.dataset or {}).get("fingerprint") != (other.dataset or {}).get("fingerprint"):
        return f"dataset changed: content fingerprint differs from {ref_name}'s"
    return f"protocol hash {other.protocol_hash} differs from {ref_name}'s {ref.protocol_hash} (config or dataset changed)"


def _newest(frame: pd.DataFrame) -> pd.Series:
    return frame.sort_values(["created_at", "source"], na_position="first").iloc[-1]


def assign_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``column`` (leaderboard column label) and ``note`` (why it is apart) per the comparability rule."""
    df = df.copy()
    df["column"], df["note"] = df["task"], ""
    for task, sub in df.groupby("task", sort=True):
        groups = list(sub.groupby(["protocol_version", "protocol_hash"], sort=True))
        if len(groups) < 2:
            continue
        groups.sort(key=lambda kv: (len(kv[1][ROW_KEYS].drop_duplicates()), kv[1]["created_at"].max()), reverse=True)
        (version, _), primary = groups[0]
        ref = _newest(primary)["record"]
        for (other_version, other_hash), group in groups[1:]:
            tag = f"v{other_version} cfg {other_hash[:7]}" if other_version != version else f"cfg {other_hash[:7]}"
            df.loc[group.index, "column"] = f"{task} [{tag}]"
            df.loc[group.index, "note"] = f"not comparable with {task}: " + difference(ref, _newest(group)["record"], task)
    for label, group in df.groupby("column", sort=True):  # a task's official recipe, modified: marked " *"
        recipe = getattr(_newest(group)["record"], "recipe", None) or {}
        if recipe.get("official") and not recipe.get("equal"):
            note = str(group["note"].iloc[0])
            df.loc[group.index, "column"] = f"{label} *"
            df.loc[group.index, "note"] = (f"{note}; " if note else "") + recipe_line(recipe)
    return df


def latest_per_seed(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """The newest result per (model, weights, column, seed): re-runs of one seed count once."""
    by = by or [*ROW_KEYS, "column", "seed"]
    return df.sort_values(["created_at", "source"], na_position="first").drop_duplicates(subset=by, keep="last")


@dataclass
class Column:
    """One leaderboard column: a task's comparability group and its main metric."""

    label: str
    task: str
    metric: str
    higher_is_better: bool
    protocol: str
    protocol_version: str
    protocol_hash: str
    note: str = ""

    @property
    def arrow(self) -> str:
        """↑ when higher is better, ↓ otherwise."""
        return "↑" if self.higher_is_better else "↓"


@dataclass
class Cell:
    """A metric over seeds: mean, sample std (None for one seed), and the seeds it covers."""

    mean: float
    std: float | None
    seeds: list[int]

    @classmethod
    def of(cls, values: list[float], seeds: list[int]) -> "Cell":
        """Aggregate one value per seed."""
        series = pd.Series(values, dtype="float64")
        return cls(float(series.mean()), float(series.std()) if len(series) > 1 else None, sorted(seeds))


@dataclass
class Detail:
    """Per-column detail table: every metric of every row, seeds aggregated."""

    column: Column
    metrics: list[str]
    rows: list[Row]
    cells: dict[tuple[Row, str], Cell]
    throughput: dict[Row, float | None]


@dataclass
class Leaderboard:
    """Rows x columns of main-metric cells, the best rows per column, and per-column details."""

    rows: list[Row]
    columns: list[Column]
    cells: dict[tuple[Row, str], Cell]
    params: dict[Row, int | None]
    best: dict[str, set[Row]]
    details: list[Detail]
    runs: pd.DataFrame  # the results shown (newest per seed)
    n_scanned: int = 0  # results read, re-runs of a seed included

    def to_frame(self) -> pd.DataFrame:
        """Wide table (one row per model + weights): per column the mean, std and number of seeds."""
        records = []
        for row in self.rows:
            rec: dict[str, Any] = {"model": row[0], "weights": row[1], "params": self.params.get(row)}
            for col in self.columns:
                cell = self.cells.get((row, col.label))
                name = f"{col.label} {col.metric}"
                rec[name] = cell.mean if cell else None
                rec[f"{name} std"] = cell.std if cell else None
                rec[f"{name} seeds"] = len(cell.seeds) if cell else 0
            records.append(rec)
        return pd.DataFrame(records)


def build_leaderboard(df: pd.DataFrame) -> Leaderboard:
    """Aggregate a :func:`results_frame` into a :class:`Leaderboard` (comparable results only share columns)."""
    runs = latest_per_seed(df)
    columns: list[Column] = []
    for label, group in runs.groupby("column", sort=False):
        head = _newest(group)
        columns.append(Column(str(label), head["task"], head["main_metric"], bool(head["higher_is_better"]),
                              head["protocol"], head["protocol_version"], head["protocol_hash"], head["note"]))
    columns.sort(key=lambda c: (c.task, c.label != c.task, c.label))
    rows: list[Row] = sorted({(m, w) for m, w in zip(runs["model"], runs["weights_id"])},
                             key=lambda r: (r[0], r[1] != "random-init", r[1]))  # random init first: the reference
    params = {row: None for row in rows}
    for row, group in runs.groupby(ROW_KEYS):
        known = group["params"].dropna()
        params[tuple(row)] = int(known.iloc[0]) if len(known) else None
    cells: dict[tuple[Row, str], Cell] = {}
    details = []
    for col in columns:
        sub = runs[runs["column"] == col.label]
        metric_names: list[str] = [col.metric]
        for metrics in sub["metrics"]:
            metric_names += [m for m in metrics if m not in metric_names]
        dcells: dict[tuple[Row, str], Cell] = {}
        speed: dict[Row, float | None] = {}
        for row, group in sub.groupby(ROW_KEYS):
            row = tuple(row)
            seeds = group["seed"].tolist()
            cells[row, col.label] = Cell.of(group["main_value"].tolist(), seeds)
            for name in metric_names:
                have = [(m[name], s) for m, s in zip(group["metrics"], seeds) if name in m]
                if have:
                    dcells[row, name] = Cell.of([v for v, _ in have], [s for _, s in have])
            known = group["throughput"].dropna()
            speed[row] = float(known.mean()) if len(known) else None
        details.append(Detail(col, metric_names, [r for r in rows if r in speed], dcells, speed))
    best: dict[str, set[Row]] = {}
    for col in columns:
        present = {row: cells[row, col.label].mean for row in rows
                   if (row, col.label) in cells and not math.isnan(cells[row, col.label].mean)}
        if len(present) >= 2:
            top = max(present.values()) if col.higher_is_better else min(present.values())
            best[col.label] = {row for row, v in present.items() if v == top}
    return Leaderboard(rows, columns, cells, params, best, details, runs, n_scanned=len(df))


def provenance(df: pd.DataFrame, n_scanned: int | None = None) -> dict[str, list[str]]:
    """Distinct dinobench/torch versions, git commits, devices, dates and sources of the results shown."""
    commits = sorted({f"{c[:10]}{'+dirty' if d else ''}" for c, d in zip(df["git_commit"], df["git_dirty"]) if c})
    dates = sorted(str(c)[:10] for c in df["created_at"] if c)
    sources = [str(s) for s in df["source"] if s]
    baselines = sorted({s.rsplit(":", 1)[0] for s in sources if ".jsonl:" in s})
    n_runs = sum(".jsonl:" not in s for s in sources)
    return {
        "results shown": [f"{len(df)}" + (f" of {n_scanned} read (re-runs of a seed count once: the newest)"
                                          if n_scanned and n_scanned != len(df) else "")],
        "dinobench": sorted({str(v) for v in df["dinobench_version"] if v}),
        "torch": sorted({str(v) for v in df["torch_version"] if v}),
        "git commit": commits,
        "device": sorted({str(v) for v in df["device"] if v}),
        "dates": [f"{dates[0]} .. {dates[-1]}" if dates[0] != dates[-1] else dates[0]] if dates else [],
        "sources": ([f"{n_runs} result.json"] if n_runs else []) + baselines,
    }


@dataclass
class CheckRow:
    """One baseline entry compared with the newest comparable result."""

    status: str
    model: str
    weights_id: str
    task: str
    seed: int
    metric: str
    higher_is_better: bool
    baseline: float
    result: float | None
    delta: float | None
    tolerance: float
    note: str = ""


def _short_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _status(base: float, new: float, higher_is_better: bool, tol: float) -> str:
    if math.isnan(new) or math.isnan(base):
        return "same" if math.isnan(new) and math.isnan(base) else ("regressed" if math.isnan(new) else "improved")
    gain = (new - base) if higher_is_better else (base - new)
    return "improved" if gain > tol else "regressed" if gain < -tol else "same"


def tolerance_for(tolerances: Mapping[str, float], task: str, metric: str) -> float:
    """The most specific of ``task:metric``, ``metric``, ``task:*``, ``*`` (else :data:`DEFAULT_TOLERANCE`)."""
    for name in (f"{task}:{metric}", metric, f"{task}:*", "*"):
        if name in tolerances:
            return float(tolerances[name])
    return DEFAULT_TOLERANCE


def check(baseline: pd.DataFrame, results: pd.DataFrame, tolerances: Mapping[str, float] | None = None,
          match_weights_by_name: bool = False) -> list[CheckRow]:
    """Compare every baseline (model, weights, task, seed) with the newest comparable result; see :data:`STATUSES`.

    ``tolerances``: absolute tolerance per main-metric name, looked up as ``"<task>:<metric>"``, then
    ``"<metric>"``, then ``"<task>:*"``, then ``"*"`` (see :func:`tolerance_for`). ``match_weights_by_name``:
    match checkpoints by file name only (for weights retrained in CI that are not bit-identical).
    """
    tolerances = dict(tolerances or {})
    key = "weights_key"
    frames = []
    for frame in (baseline, results):
        frame = frame.copy()
        frame[key] = frame["weights_id"].str.split("@").str[0] if match_weights_by_name else frame["weights_id"]
        frames.append(frame)
    baseline, results = frames
    identity = ["model", key, "task", "seed"]
    rows = []
    for _, b in latest_per_seed(baseline, identity + ["protocol_version", "protocol_hash"]).iterrows():
        same_key = results[(results["model"] == b["model"]) & (results[key] == b[key])
                           & (results["task"] == b["task"]) & (results["seed"] == b["seed"])]
        comparable = same_key[(same_key["protocol_version"] == b["protocol_version"])
                              & (same_key["protocol_hash"] == b["protocol_hash"])]
        tol = tolerance_for(tolerances, b["task"], b["main_metric"])
        row = CheckRow("missing", b["model"], b["weights_id"], b["task"], int(b["seed"]), b["main_metric"],
                       bool(b["higher_is_better"]), float(b["main_value"]), None, None, tol)
        if len(comparable):
            new = _newest(comparable)
            value = float(new["metrics"].get(row.metric, new["main_value"]))
            row.result, row.delta = value, value - row.baseline
            row.status = _status(row.baseline, value, row.higher_is_better, tol)
            row.note = _short_path(str(new["source"]))
        elif len(same_key):
            row.status = "not-comparable"
            row.note = difference(b["record"], _newest(same_key)["record"], "baseline")
        else:
            others = results[(results["model"] == b["model"]) & (results["task"] == b["task"])]
            if len(others[others[key] == b[key]]):
                seeds = sorted(set(others[others[key] == b[key]]["seed"]))
                row.note = f"no result with seed {b['seed']} (found seeds {seeds})"
            elif len(others):
                row.note = f"no result with these weights (found {sorted(set(others['weights_id']))})"
            else:
                row.note = f"no result for {b['model']} on {b['task']}"
        rows.append(row)
    return sorted(rows, key=lambda r: (r.task, r.model, r.weights_id, r.seed))
