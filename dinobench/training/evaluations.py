"""The periodic evaluations of a training run, kept so that the best one can be reported.

Some official recipes report the best of the evaluations made during training rather than the final head's
(DINOv3's linear segmentation: every ``eval.eval_interval`` iterations, the best ``mIoU``). The
:class:`~dinobench.training.loop.TrainingLoop` records every evaluation here and stores the history in its
checkpoints, so a killed run resumed from a checkpoint still knows the evaluations made before the kill.

The history is tagged with an *evaluation key* (what the evaluation depends on beyond the training run key:
the evaluation-only config, the evaluated split); a resumed run whose key differs drops the stored
evaluations, since they measured something else. Which iterations count is the *grid* of ``eval_every``:
its multiples up to the last iteration, and the last iteration itself (the final head).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger("dinobench")


@dataclass(frozen=True)
class Evaluation:
    """The metrics of the model after ``iteration`` training iterations."""

    iteration: int
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (checkpoint ``weights_only``-loadable, JSON)."""
        return {"iteration": self.iteration, "metrics": dict(self.metrics)}


def evaluation_grid(eval_every: int, total: int) -> list[int]:
    """The iterations whose evaluations count: every multiple of ``eval_every`` up to ``total``, and ``total``
    (``eval_every`` 0: only ``total``)."""
    points = set(range(eval_every, total + 1, eval_every)) if eval_every > 0 else set()
    return sorted(points | {int(total)})


def is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether ``value`` strictly improves on ``best`` (None: nothing yet); NaN never does. Strict: of equal
    values the earliest stays, as the official loops keep theirs."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher_is_better else value < best


def best_evaluation(evaluations: Iterable[Evaluation], metric: str, higher_is_better: bool = True) -> Evaluation | None:
    """The evaluation with the best ``metric`` (earliest of ties); None when none has it."""
    best: Evaluation | None = None
    for item in sorted(evaluations, key=lambda e: e.iteration):
        value = item.metrics.get(metric)
        if value is not None and is_better(float(value), None if best is None else best.metrics[metric],
                                           higher_is_better):
            best = item
    return best


class EvaluationHistory:
    """Every evaluation of one training run by iteration, under one evaluation key (see the module docstring)."""

    def __init__(self, key: str = "") -> None:
        self.key = key
        self._items: dict[int, Evaluation] = {}
        self.dropped = 0  # stored evaluations left out on resume (another evaluation key)

    def __contains__(self, iteration: int) -> bool:
        return int(iteration) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, iteration: int, metrics: dict[str, float]) -> None:
        """Record (or replace) the evaluation after ``iteration`` iterations."""
        self._items[int(iteration)] = Evaluation(int(iteration), {k: float(v) for k, v in metrics.items()})

    def items(self) -> list[Evaluation]:
        """The evaluations, by iteration."""
        return [self._items[t] for t in sorted(self._items)]

    def on_grid(self, eval_every: int, total: int) -> list[Evaluation]:
        """The evaluations of :func:`evaluation_grid` (others, e.g. of an earlier ``eval_every``, are left out)."""
        return [self._items[t] for t in evaluation_grid(eval_every, total) if t in self._items]

    def missing(self, eval_every: int, upto: int) -> list[int]:
        """Multiples of ``eval_every`` up to ``upto`` that were not evaluated."""
        return [t for t in range(eval_every, upto + 1, eval_every) if t not in self._items] if eval_every > 0 else []

    def state(self) -> dict[str, Any]:
        """The checkpoint entry: the key and the evaluations as plain data."""
        return {"key": self.key, "evaluations": [e.as_dict() for e in self.items()]}

    def load(self, state: Any, path: Path) -> None:
        """Restore from a checkpoint entry (:meth:`state`); an entry of another key (or none: a checkpoint of an
        older dinobench) leaves the history empty and counts what was dropped."""
        self._items = {}
        stored = state.get("evaluations", []) if isinstance(state, dict) else []
        if not isinstance(state, dict) or state.get("key") != self.key:
            self.dropped = len(stored)
            if stored:
                logger.warning("%s: its %d periodic evaluations were made with another evaluation config; "
                               "left out", path, len(stored))
            return
        for entry in stored:
            self.add(int(entry["iteration"]), dict(entry["metrics"]))
