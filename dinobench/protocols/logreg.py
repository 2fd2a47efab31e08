"""Logistic regression on frozen CLS features, the official DINOv3 protocol.

Follows ``dinov3/eval/log_regression.py``: features are the backbone's LayerNorm-ed CLS token
(``x_norm_clstoken``, *not* L2-normalised: the official logreg does not wrap the model in
``ModelWithNormalize``), cast to float64; scikit-learn ``LogisticRegression`` (L2, lbfgs,
``tol=1e-12``, ``max_iter=1000``) for each ``C`` in ``10**linspace(-6, 5, 45)``; ``C`` is chosen
by top-1 on a selection split (ties -> the smaller ``C``, as the official incremental tracker),
then the model is refit with that ``C`` on train + selection split and evaluated once.

Solvers (``protocol.solver``): ``sklearn`` (default) runs the official ``LogisticRegression`` per C (joblib over
cores), prediction for prediction the official code; ``torch`` minimises the same objective by L-BFGS on the
run's device, warm-started along the ascending C path (:mod:`dinobench.protocols.logreg_torch`): the same
optimum where lbfgs converges, much faster on a GPU (benchmarks/logreg.py). Where scikit-learn stops at
``max_iter`` short of the optimum (ill-conditioned features) the two end points, and so the numbers, differ.

Splits: with a ``test`` split, select on ``val`` and report on ``test``; otherwise (ImageNet:
official train/val only) hold out 10% of train per class (official ``split_train_val_datasets``: a seed-0
shuffle, ``protocol.split_seed``), fit in the shuffled order, refit on fit + held-out rows in that order, report
on ``val``. The C values are the official float32 grid's. On the same features the selected C and predictions
equal the official code's (tests/classification/test_logreg.py, golden fixture from scripts/logreg_golden.py).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from dinobench.context import RunContext
from dinobench.errors import ConfigError, DataError
from dinobench.metrics.classification import classification_metrics
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.protocols.logreg_torch import fit_path

logger = logging.getLogger("dinobench")


def c_grid(c_min_exp: float = -6.0, c_max_exp: float = 5.0, grid_size: int = 45) -> np.ndarray:
    """Inverse regularisation strengths ``10**linspace(c_min_exp, c_max_exp, grid_size)`` computed as the official
    code does, in float32 torch (each value read as a Python float): the exact C values it fits."""
    return np.array((10 ** torch.linspace(float(c_min_exp), float(c_max_exp), int(grid_size))).tolist())


def selection_split(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, selection rows) in the official ``split_train_val_datasets`` order.

    A ``torch.randperm`` shuffle seeded with ``seed`` (official: 0), then per class the first
    ``max(1, int(fraction * n_c))`` shuffled samples go to selection (a class with a single sample stays in the
    fit part); both parts keep the shuffled order - the order the official code fits in, which moves the result
    when lbfgs stops at ``max_iter``.
    """
    labels = np.asarray(labels)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(seed))).numpy()
    shuffled = labels[order]
    selected = np.zeros(len(labels), dtype=bool)  # over shuffled positions
    for cls in np.unique(labels):
        positions = np.flatnonzero(shuffled == cls)
        n_select = max(1, int(fraction * len(positions))) if len(positions) > 1 else 0
        selected[positions[:n_select]] = True
    return order[~selected], order[selected]


def fit_logreg(features: np.ndarray, labels: np.ndarray, C: float, max_iter: int = 1000, tol: float = 1e-12,
               blas_threads: int | None = 1) -> LogisticRegression:
    """One L2 lbfgs ``LogisticRegression`` fit (float64), BLAS limited to ``blas_threads`` threads.

    Limiting BLAS threads keeps grid workers from oversubscribing cores (OpenBLAS spinning made
    one digits fit 200x slower on a loaded 2-core machine) and makes the fit reproducible.
    """
    model = LogisticRegression(C=float(C), l1_ratio=0.0, solver="lbfgs", max_iter=int(max_iter), tol=float(tol))
    with warnings.catch_warnings(), threadpool_limits(limits=blas_threads, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=1e-12 stops on max_iter by design
        return model.fit(np.asarray(features, dtype=np.float64), np.asarray(labels))


def class_probabilities(model: LogisticRegression, features: np.ndarray, num_classes: int) -> np.ndarray:
    """``[N, num_classes]`` probabilities; classes absent from the fit data get probability 0."""
    proba = np.zeros((len(features), num_classes))
    proba[:, model.classes_] = model.predict_proba(np.asarray(features, dtype=np.float64))
    return proba


def _grid_accuracy(fit_x: np.ndarray, fit_y: np.ndarray, select_x: np.ndarray, select_y: np.ndarray, C: float,
                   max_iter: int, tol: float) -> float:
    model = fit_logreg(fit_x, fit_y, C, max_iter, tol, blas_threads=1)
    return float(accuracy_score(select_y, model.predict(select_x)))


def sweep_c(fit_x: np.ndarray, fit_y: np.ndarray, select_x: np.ndarray, select_y: np.ndarray, grid: np.ndarray,
            max_iter: int = 1000, tol: float = 1e-12, n_jobs: int = -1) -> np.ndarray:
    """Selection-split top-1 accuracy (fraction) of a fit for every ``C`` of ``grid``, in parallel (joblib)."""
    jobs = (delayed(_grid_accuracy)(fit_x, fit_y, select_x, select_y, float(C), max_iter, tol) for C in grid)
    results = Parallel(n_jobs=_n_jobs(n_jobs, len(grid)), return_as="generator")(jobs)  # in grid order
    return np.array(list(tqdm(results, total=len(grid), desc="logreg C grid", unit="C", leave=False)))


#: below this many multiply-adds per lbfgs step the refit runs on one BLAS thread (threads cost more)
SINGLE_THREAD_MACS = 50_000_000


def refit_blas_threads(macs_per_step: int, n_jobs: int) -> int:
    """BLAS threads for the final refit: 1 for small problems, else the cores ``n_jobs`` allows."""
    return 1 if macs_per_step < SINGLE_THREAD_MACS else _n_jobs(n_jobs, os.cpu_count() or 1)


def _n_jobs(n_jobs: int, n_tasks: int) -> int:
    cores = os.cpu_count() or 1
    wanted = cores if n_jobs is None or n_jobs < 0 else max(1, int(n_jobs))
    return max(1, min(wanted, cores, n_tasks))


@dataclass
class LogRegConfig:
    """Official DINOv3 logistic-regression defaults (C grid ``10 ** linspace(c_min_exp, c_max_exp, grid_size)``)."""

    c_min_exp: float = -6.0
    c_max_exp: float = 5.0
    grid_size: int = 45
    max_iter: int = 1000  # official max_train_iters
    tol: float = 1e-12  # official: lbfgs in practice stops at max_iter
    selection_fraction: float = 0.1  # held out of train per class when there is no separate val split
    split_seed: int = 0  # seed of that hold-out shuffle (official: always 0, whatever the run seed)
    n_jobs: int = -1  # sklearn solver: parallel C fits (joblib processes, 1 BLAS thread each); -1 = all cores
    # None = "sklearn" (the official fits); "torch": L-BFGS on the run's device, warm starts along C. Unset keys
    # stay out of the protocol hash (optional_keys), so results from before the solver existed stay comparable.
    solver: str | None = None
    torch_ftol: float | None = None  # torch solver: stop when 10 iterations lowered the objective by < 10 * ftol


class LogRegProtocol(Protocol):
    """Select C on a selection split, refit, report top-1 (see the module docstring for the splits)."""

    name = "logreg"
    version = "2"  # 2: the official fit order, float32 C grid and split seed 0 (v1: sorted rows, float64, run seed)
    Config = LogRegConfig
    runtime_keys = ("n_jobs",)
    optional_keys = ("solver", "torch_ftol")

    def validate(self) -> None:
        """Derived settings and range checks."""
        cfg = self.config
        self.grid = c_grid(cfg.c_min_exp, cfg.c_max_exp, cfg.grid_size)
        self.max_iter, self.tol = int(cfg.max_iter), float(cfg.tol)
        self.selection_fraction, self.n_jobs = float(cfg.selection_fraction), int(cfg.n_jobs)
        if len(self.grid) < 1 or self.max_iter < 1 or self.tol <= 0:
            raise ConfigError("logreg: protocol.grid_size and protocol.max_iter must be >= 1 and protocol.tol > 0")
        self.solver = cfg.solver or "sklearn"
        self.torch_ftol = 1e-10 if cfg.torch_ftol is None else float(cfg.torch_ftol)
        if self.solver not in ("torch", "sklearn"):
            raise ConfigError(f"logreg: protocol.solver={cfg.solver!r}: expected 'torch' or 'sklearn'")
        if not self.torch_ftol > 0:
            raise ConfigError(f"logreg: protocol.torch_ftol={cfg.torch_ftol} must be > 0, e.g. 1e-10")
        if not 0 < self.selection_fraction < 1:
            raise ConfigError(f"logreg: protocol.selection_fraction={self.selection_fraction} must be in (0, 1), "
                              "e.g. 0.1")

    def evaluate(self, fit_x: np.ndarray, fit_y: np.ndarray, select_x: np.ndarray, select_y: np.ndarray,
                 eval_x: np.ndarray, eval_y: np.ndarray, num_classes: int, device: str = "cpu") -> dict[str, float]:
        """Choose ``C`` on (select_x, select_y), refit on fit + select, score eval: metrics with ``best_C``."""
        if len(select_y) == 0:
            raise DataError("logreg: the selection split is empty (every class has a single training sample); "
                            "add training samples or a val split")
        refit_x, refit_y = np.concatenate([fit_x, select_x]), np.concatenate([fit_y, select_y])
        eval_x = np.asarray(eval_x, dtype=np.float64)
        torch_options = dict(max_iter=self.max_iter, ftol=self.torch_ftol, device=device)
        if self.solver == "torch":  # the C path by warm-started L-BFGS
            models = fit_path(fit_x, fit_y, self.grid, progress="logreg C path", **torch_options)
            select = torch.as_tensor(np.asarray(select_x, dtype=np.float64))
            accuracies = np.array([float(np.mean(m.predict(select) == select_y)) for m in models])
        else:
            accuracies = sweep_c(fit_x, fit_y, select_x, select_y, self.grid, self.max_iter, self.tol, self.n_jobs)
        best = int(np.argmax(accuracies))  # first maximum = smallest C among ties (official tracker)
        best_C = float(self.grid[best])
        logger.info("logreg: selection top-1 %s; best C = %.4g",
                    ", ".join(f"{c:.3g}:{100 * a:.2f}" for c, a in zip(self.grid, accuracies)), best_C)
        if self.solver == "torch":  # the refit warm-starts from the selected C's fit
            (model,) = fit_path(refit_x, refit_y, [best_C], init=models[best], **torch_options)
            eval_t = torch.as_tensor(eval_x)
            predictions, proba = model.predict(eval_t), np.zeros((len(eval_x), num_classes))
            proba[:, model.classes] = model.predict_proba(eval_t).cpu().double().numpy()
            iterations = float(model.n_iter)
        else:
            model = fit_logreg(refit_x, refit_y, best_C, self.max_iter, self.tol,
                               blas_threads=refit_blas_threads(refit_x.size * num_classes, self.n_jobs))
            predictions, proba = model.predict(eval_x), class_probabilities(model, eval_x, num_classes)
            iterations = float(np.max(model.n_iter_))
        metrics = classification_metrics(eval_y, predictions, proba, num_classes)
        metrics.update(best_C=best_C, selection_top1=100.0 * float(accuracies[best]), refit_iterations=iterations)
        return metrics

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Select C, refit and report on ``test`` (select on val) or on ``val`` (select on 10% of train)."""
        num_classes = len(ctx.datasets["train"].classes)
        train = ctx.features("train", "cls")
        train_x, train_y = train.features.double().numpy(), train.labels.numpy()
        val = ctx.features("val", "cls")
        val_x, val_y = val.features.double().numpy(), val.labels.numpy()
        if "test" in ctx.datasets:
            test = ctx.features("test", "cls")
            metrics = self.evaluate(train_x, train_y, val_x, val_y, test.features.double().numpy(),
                                    test.labels.numpy(), num_classes, ctx.device)
        else:
            fit_idx, select_idx = selection_split(train_y, self.selection_fraction, int(self.config.split_seed))
            metrics = self.evaluate(train_x[fit_idx], train_y[fit_idx], train_x[select_idx], train_y[select_idx],
                                    val_x, val_y, num_classes, ctx.device)
        return ProtocolResult(metrics, "top1", higher_is_better=True)
