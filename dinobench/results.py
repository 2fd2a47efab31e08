"""The result record: typed schema, provenance, atomic write.

Each run writes ``<output>/<backbone>/<task>/<UTC-timestamp>/result.json``. The run directory
is assembled under a temporary name and renamed into place, so a crash never leaves a partial
result behind and an existing result is never overwritten.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinobench._version import __version__
from dinobench.utils.io import make_public as _make_public, safe_component, write_atomic  # noqa: F401

SCHEMA_VERSION = 2  # 2: higher_is_better per metric, tables, runtime_keys


_STRING_FIELDS = ("task", "protocol", "protocol_plugin", "protocol_hash", "backbone", "weights")
_DICT_FIELDS = ("config", "dataset", "backbone_config", "environment", "timings", "higher_is_better", "tables",
                "input_files", "head", "recipe")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_record(data: Any) -> None:
    """Check a record (a ``result.json`` / baseline line, parsed) against the typed schema; ``ValueError`` naming the
    first bad key otherwise. The main value must be a finite number and no metric infinite: a NaN or inf is never
    counted. (A NaN secondary metric is an undefined one, e.g. COCO AP of an empty size range in older records; new
    records leave those out.)"""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for key in ("task", "protocol", "protocol_version", "backbone", "seed", "metrics", "main_metric"):
        if key not in data:
            raise ValueError(f"missing key {key!r}")
    for key in _STRING_FIELDS:
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{key}: expected a string, got {json.dumps(data[key])[:60]}")
    if not isinstance(data["protocol_version"], (str, int)) or isinstance(data["protocol_version"], bool):
        raise ValueError(f"protocol_version: expected a string, got {json.dumps(data['protocol_version'])[:60]}")
    if not isinstance(data["seed"], int) or isinstance(data["seed"], bool):
        raise ValueError(f"seed: expected an integer, got {json.dumps(data['seed'])[:60]}")
    for key in _DICT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ValueError(f"{key}: expected an object, got {type(data[key]).__name__}")
    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics: expected an object of name -> number, got {type(metrics).__name__}")
    for name, value in metrics.items():  # NaN = undefined on that data (records before 0.1 kept COCO's empty ranges)
        if not _is_number(value) or math.isinf(value):
            raise ValueError(f"metrics.{name}: expected a finite number, got {json.dumps(value)[:60]}")
    main = data["main_metric"]
    if not isinstance(main, dict) or not isinstance(main.get("name"), str):
        raise ValueError("main_metric: expected {\"name\": str, \"value\": number, \"higher_is_better\": bool}")
    value = main.get("value")
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"main_metric.value: expected a finite number, got {json.dumps(value)[:60]}")
    if not isinstance(main.get("higher_is_better", True), bool):
        raise ValueError("main_metric.higher_is_better: expected true or false")
    if main["name"] in metrics and metrics[main["name"]] != value:
        raise ValueError(f"main_metric.value: {value} disagrees with metrics.{main['name']} = {metrics[main['name']]}")
    for name, seconds in (data.get("timings") or {}).items():
        if not _is_number(seconds) or not math.isfinite(seconds):
            raise ValueError(f"timings.{name}: expected a finite number, got {json.dumps(seconds)[:60]}")
    for dotted, check, wanted in _NESTED:
        present, found = _lookup(data, dotted)
        if present and not check(found):
            raise ValueError(f"{dotted}: expected {wanted}, got {json.dumps(found, default=str)[:60]}")
    splits = (data.get("dataset") or {}).get("splits") or {}
    for split, info in splits.items():
        size = info.get("size")
        if size is not None and not _is_count(size):
            raise ValueError(f"dataset.splits.{split}.size: expected a count, got {json.dumps(size)[:60]}")


def _lookup(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(whether ``dotted`` is set to something other than null, its value) in nested objects."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return False, None
        node = node[part]
    return True, node


def _list_of(kind: type) -> Any:
    return lambda v: isinstance(v, list) and all(isinstance(x, kind) for x in v)


def _dict_of(check: Any) -> Any:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: nested fields the leaderboard, the reports and the gate read: (dotted key, test, what it must be); null = unset
_NESTED = (
    ("weights_sha256", lambda v: isinstance(v, str), "a hex string"),
    ("created_at", lambda v: isinstance(v, str), "a UTC timestamp string"),
    ("artifacts", _list_of(str), "a list of file names"),
    ("runtime_keys", _list_of(str), "a list of dotted keys"),
    ("higher_is_better", _dict_of(lambda x: isinstance(x, bool)), "an object of metric -> true/false"),
    ("tables", _dict_of(_list_of(dict)), "an object of name -> list of row objects"),
    ("input_files", _dict_of(lambda x: isinstance(x, dict)), "an object of key -> {path, sha256}"),
    ("head", _dict_of(lambda x: isinstance(x, str)), "an object of strings (hub, path, sha256)"),
    ("config.backbone", lambda v: isinstance(v, dict), "an object"),
    ("dataset.fingerprint", lambda v: isinstance(v, str), "a string"),
    ("dataset.splits", _dict_of(lambda x: isinstance(x, dict)), "an object of split -> object"),
    ("backbone_config.params", _is_count, "a parameter count"),
    ("backbone_config.overrides", lambda v: isinstance(v, dict), "an object of constructor overrides"),
    *((f"environment.{k}", lambda v: isinstance(v, str), "a string")
      for k in ("git_commit", "dinobench_version", "torch", "device", "dtype")),
    ("environment.git_dirty", lambda v: isinstance(v, bool), "true or false"),
)


@dataclass
class MainMetric:
    """The one number a leaderboard column shows."""

    name: str
    value: float
    higher_is_better: bool = True


@dataclass
class Result:
    """One (backbone, task) evaluation. Field names are a public contract (leaderboards, CI checks)."""

    task: str
    protocol: str
    protocol_version: str
    protocol_plugin: str
    protocol_hash: str
    backbone: str
    weights: str  # checkpoint path, or "random-init"
    weights_sha256: str | None
    seed: int
    metrics: dict[str, float]
    main_metric: MainMetric
    config: dict[str, Any]
    dataset: dict[str, Any]
    backbone_config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # files beside result.json (e.g. predictions/*.png)
    #: metric -> whether higher is better (every metric of ``metrics``)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    #: named per-class / per-category tables (lists of rows) the protocol reported
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: dotted config keys left out of ``protocol_hash`` (they cannot change a result)
    runtime_keys: list[str] = field(default_factory=list)
    #: dotted config key -> {"path", "sha256"} of input files named by the config (hashed by content)
    input_files: dict[str, dict[str, str]] = field(default_factory=dict)
    #: a given (released or exported) head that was evaluated instead of trained: ``hub`` name ("" if none),
    #: ``path``, ``sha256``; empty when the run trained its head
    head: dict[str, str] = field(default_factory=dict)
    #: the official recipe the task follows and whether this run's config equals it (:mod:`dinobench.recipes`):
    #: ``official`` (source), ``equal``, ``differs`` (dotted keys); empty when the task has no official recipe
    recipe: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    schema_version: int = SCHEMA_VERSION
    path: str | None = None  # where it was written (not serialised)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without :attr:`path`)."""
        data = asdict(self)
        data.pop("path")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> "Result":
        """Inverse of :meth:`to_dict` after :func:`validate_record`; unknown keys are ignored (forward compatibility)."""
        validate_record(data)
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["main_metric"] = MainMetric(**data["main_metric"])
        return cls(**kwargs, path=path)

    @classmethod
    def load(cls, path: str | Path) -> "Result":
        """Read a ``result.json``."""
        return cls.from_dict(json.loads(Path(path).read_text()), path=str(path))


def utc_timestamp(now: datetime | None = None) -> str:
    """``20261123T183501.123456Z``: sortable, filesystem-safe, microsecond resolution."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment(device: str, dtype: str) -> dict[str, Any]:
    """Provenance: versions, git commit of the dinobench checkout (if any), device and dtype."""
    import numpy
    import torch

    from dinobench.utils.paths import repo_root

    env: dict[str, Any] = {
        "dinobench_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit_learn": _version("scikit-learn"),
        "blas": _blas(),
        "platform": platform.platform(),
        "device": device,
        "dtype": dtype,
        "git_commit": None,
        "git_dirty": None,
        "argv": sys.argv,
    }
    root = repo_root()
    if root is not None:
        env["git_commit"] = _git(["rev-parse", "HEAD"], root)
        status = _git(["status", "--porcelain", "--untracked-files=no"], root)
        env["git_dirty"] = bool(status) if status is not None else None
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _blas() -> str | None:
    """numpy's BLAS and the kernel it picked (e.g. ``openblas 0.3.29 SkylakeX``): unconverged lbfgs fits
    (logreg at large C) end at different points on different kernels, so records say which one ran."""
    try:
        from threadpoolctl import threadpool_info

        blas = next((i for i in threadpool_info() if i.get("user_api") == "blas"), None)
    except Exception:  # provenance is best effort, never a reason to fail a run
        return None
    if blas is None:
        return None
    return " ".join(str(blas[k]) for k in ("internal_api", "version", "architecture") if blas.get(k))


def write_result(result: Result, output_dir: str | Path, predictions: str | Path | None = None,
                 head: Any = None) -> Path:
    """Write ``result`` under a new ``<output>/<backbone>/<task>/<UTC>/`` folder; return the json path.

    ``predictions``: a folder of files a protocol saved (``--save-predictions``); it is moved to
    ``<run>/predictions/`` and its files are listed in ``result.artifacts`` (paths relative to the run).
    ``head``: the trained head (:class:`dinobench.protocol.TrainedHead`): ``head.pth`` (its official-layout state
    dict) and ``head.json`` (layout and official config) beside the record, for ``dinobench export``.
    """
    try:  # before anything touches the disk: a NaN or wrongly-typed metric never becomes a record
        validate_record(result.to_dict())
    except ValueError as exc:
        from dinobench.errors import DinobenchError

        shown = ", ".join(f"{k}={v}" for k, v in list(result.metrics.items())[:12]) if isinstance(
            result.metrics, dict) else repr(result.metrics)
        raise DinobenchError(f"{result.backbone} / {result.task}: refusing to write the record: {exc}; nothing was "
                             f"written (metrics: {shown})") from None
    task_dir = Path(output_dir) / safe_component(result.backbone) / safe_component(result.task)
    task_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=task_dir, prefix=".staging-"))
    try:
        _make_public(staging)
        result.created_at = result.created_at or datetime.now(timezone.utc).isoformat()
        if predictions is not None and Path(predictions).is_dir():
            import shutil

            shutil.move(str(predictions), staging / "predictions")
            _make_public(staging / "predictions")
            result.artifacts = sorted(str(p.relative_to(staging)) for p in (staging / "predictions").rglob("*")
                                      if p.is_file())
        if head is not None:
            import torch

            write_atomic(staging / "head.pth", lambda f: torch.save(dict(head.state), f))
            write_atomic(staging / "head.json", json.dumps({"layout": head.layout, "config": head.config},
                                                           indent=2, default=str) + "\n")
            result.artifacts = sorted([*result.artifacts, "head.json", "head.pth"])
        write_atomic(staging / "result.json", json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n")
        for attempt in range(1000):
            final = task_dir / (utc_timestamp() + (f"-{attempt}" if attempt else ""))
            try:
                os.rename(staging, final)  # atomic; refuses to replace an existing non-empty dir
                break
            except OSError:
                if not final.exists():
                    raise
        else:  # pragma: no cover - 1000 collisions in one microsecond
            raise RuntimeError(f"could not find a free result folder under {task_dir}")
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.path = str(final / "result.json")
    return final / "result.json"


# --- reading the store: result.json trees and JSONL baselines ----------------------------------------

#: baseline/snapshot files: one ``Result.to_dict()`` JSON object per line
JSONL_SUFFIX = ".jsonl"


def iter_result_files(root: str | Path) -> list[Path]:
    """Every ``result.json`` under ``root`` (sorted), skipping hidden folders such as ``.staging-*``
    (runs still being assembled) and ``.predictions-*``, which never hold a finished result."""
    root = Path(root)
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "result.json" in files:
            found.append(Path(folder) / "result.json")
    return sorted(found)


def read_jsonl(path: str | Path) -> list[Result]:
    """Results of a JSONL baseline file; ``Result.path`` is ``<file>:<line>``. A bad line is a DataError."""
    from dinobench.errors import DataError

    path = Path(path)
    results = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            results.append(Result.from_dict(json.loads(line), path=f"{path}:{lineno}"))
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{path}:{lineno}: not a dinobench result record ({type(exc).__name__}: {exc}); "
                            f"regenerate the file with `dinobench report PATHS --jsonl {path}`") from None
    return results


def load_results(paths: list[str | Path]) -> list[Result]:
    """Results from folders (scanned recursively for ``result.json``), ``result.json`` files and ``.jsonl``
    baselines. Unreadable files found while scanning a folder are skipped with a warning; a file named
    explicitly must be valid (DataError otherwise)."""
    import logging

    from dinobench.errors import DataError

    logger = logging.getLogger("dinobench")
    results: list[Result] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder; pass a results folder (e.g. outputs/) or a .jsonl baseline")
        if path.is_file() and path.suffix == JSONL_SUFFIX:
            results.extend(read_jsonl(path))
        elif path.is_file():
            try:
                results.append(Result.load(path))
            except (ValueError, TypeError, KeyError) as exc:
                raise DataError(f"{path}: not a dinobench result.json ({type(exc).__name__}: {exc})") from None
        else:
            for file in iter_result_files(path):
                try:
                    results.append(Result.load(file))
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    logger.warning("dinobench: warning: skipping %s: not a readable result record (%s)", file, exc)
    return results


def write_jsonl(path: str | Path, results: list[Result]) -> Path:
    """Freeze ``results`` into a JSONL baseline (one ``to_dict()`` per line), written atomically."""
    return write_atomic(path, "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in results))
