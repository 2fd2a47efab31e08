"""Multinomial L2 logistic regression by full-batch L-BFGS in torch, warm-started along the C path.

The objective is scikit-learn's (``LogisticRegression(penalty="l2", solver="lbfgs")``): mean cross-entropy +
``||W||² / (2 C n)``, intercept not penalised, one softmax column per class present in the fit data (a single
logit for two classes, as scikit-learn fits binary problems). Its optimum is unique in ``W``, so a solver
that reaches it gives scikit-learn's predictions; what makes this one fast is that the C values of a sweep are
fitted in ascending order, each starting from the previous optimum (small C: a few iterations from zero;
each next C: a few dozen from its neighbour instead of up to ``max_iter`` from zero), on the features kept
once on the device (float64 on CPU; float32 or float64 on GPU) with all cores in every matmul.

Stopping: scipy's rule (relative objective decrease ``<= ftol``) measured over windows of 10 iterations, with
``ftol = 1e-10`` instead of scikit-learn's ``64 * eps``: on well-conditioned features every C's selection accuracy
then equals scikit-learn's (tests/classification/test_logreg.py); max-abs gradient ``<= gtol``; or ``max_iter`` iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm


@dataclass
class TorchLogReg:
    """A fitted model: ``coef [d, k]`` and ``intercept [k]`` over ``classes`` (k = 1 for a binary fit)."""

    coef: Tensor
    intercept: Tensor
    classes: np.ndarray
    n_iter: int

    def decision_function(self, x: Tensor) -> Tensor:
        """Logits ``[N, k]`` of ``x`` (on the model's device and dtype)."""
        return x.to(self.coef) @ self.coef + self.intercept

    def predict_proba(self, x: Tensor) -> Tensor:
        """``[N, len(classes)]`` class probabilities."""
        logits = self.decision_function(x)
        if len(self.classes) == 2:  # binary: one logit for the second class
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=1)
        return torch.softmax(logits, dim=1)

    def predict(self, x: Tensor) -> np.ndarray:
        """Predicted labels (from ``classes``) of ``x``."""
        logits = self.decision_function(x)
        index = (logits[:, 0] > 0).long() if len(self.classes) == 2 else logits.argmax(dim=1)
        return self.classes[index.cpu().numpy()]


def default_dtype(device: torch.device | str) -> torch.dtype:
    """float64 on CPU (scikit-learn's precision), float32 on GPU (fast there; ``dtype=`` forces float64)."""
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


def fit_path(features: np.ndarray | Tensor, labels: np.ndarray, Cs: np.ndarray | list[float], *,
             max_iter: int = 1000, ftol: float = 1e-10, gtol: float = 1e-12, history_size: int = 10,
             device: torch.device | str = "cpu", dtype: torch.dtype | None = None, init: TorchLogReg | None = None,
             progress: str | None = None) -> list[TorchLogReg]:
    """Models for every ``C`` of ``Cs`` (returned in the given order), fitted in ascending C with warm starts.

    ``init``: a model to start from (same classes), e.g. the sweep's fit at the C a refit uses; ``progress``: the
    label of a progress bar over the C values.
    """
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"logistic regression needs at least 2 classes in the fit data, got {len(classes)}")
    dtype = dtype or default_dtype(device)
    x = torch.as_tensor(features).to(device=device, dtype=dtype)
    n, dim = x.shape
    width = 1 if len(classes) == 2 else len(classes)
    target = torch.as_tensor(y, device=x.device)
    coef = torch.zeros(dim, width, dtype=dtype, device=x.device, requires_grad=True)
    intercept = torch.zeros(width, dtype=dtype, device=x.device, requires_grad=True)
    if init is not None and np.array_equal(init.classes, classes):
        with torch.no_grad():
            coef.copy_(init.coef)
            intercept.copy_(init.intercept)
    models: dict[int, TorchLogReg] = {}
    order = np.argsort(np.asarray(Cs, dtype=np.float64), kind="stable")
    for position in order if progress is None else tqdm(order, desc=progress, unit="C", leave=False):
        objective = _objective(x, target, coef, intercept, 1.0 / (float(Cs[position]) * n))
        n_iter = _lbfgs(objective, [coef, intercept], max_iter, gtol, ftol, history_size)
        models[int(position)] = TorchLogReg(coef.detach().clone(), intercept.detach().clone(), classes, n_iter)
    return [models[i] for i in range(len(Cs))]


def _objective(x: Tensor, target: Tensor, coef: Tensor, intercept: Tensor, strength: float):
    """Closure body: ``mean CE + strength / 2 * ||coef||²`` with its gradient written into ``.grad``.

    The gradient is written by hand (``X^T (P - Y) / n``): no autograd graph, one exp pass, the logits buffer
    reused for the probabilities - a third less time per evaluation than autograd on a 5000 x 256 x 100 fit.
    """
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)

    def evaluate() -> Tensor:
        with torch.no_grad():
            logits = torch.addmm(intercept, x, coef)
            if coef.shape[1] == 1:  # binary: a single logit z, loss softplus(z) - y z
                z = logits[:, 0]
                positive = target.to(z.dtype)
                loss = (torch.nn.functional.softplus(z) - positive * z).mean()
                residual = (torch.sigmoid(z) - positive).div_(n)[:, None]
            else:
                picked = logits[rows, target]
                top = logits.amax(dim=1, keepdim=True)
                probs = logits.sub_(top).exp_()
                total = probs.sum(dim=1, keepdim=True)
                loss = (total.log().squeeze(1) + top.squeeze(1) - picked).mean()
                residual = probs.div_(total)
                residual[rows, target] -= 1.0
                residual.div_(n)
            coef.grad = torch.addmm(coef, x.T, residual, beta=strength)
            intercept.grad = residual.sum(dim=0)
            return loss + 0.5 * strength * coef.pow(2).sum()

    return evaluate


def _lbfgs(objective, params: list[Tensor], max_iter: int, gtol: float, ftol: float, history_size: int,
           window: int = 10) -> int:
    """Minimise ``objective`` over ``params`` in place; returns the iterations taken.

    torch's L-BFGS (strong-Wolfe line search) run ``window`` iterations at a time, its history kept between
    windows; it stops when a whole window lowered the objective by at most ``window * ftol`` relative to
    ``max(|f|, 1)`` (scipy's rule, over a window so that one short step on a flat stretch does not end a fit),
    when the max-abs gradient is at most ``gtol``, or after ``max_iter`` iterations.
    """
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=window, max_eval=window * 3, history_size=history_size,
                                  line_search_fn="strong_wolfe", tolerance_grad=gtol, tolerance_change=0.0)

    closure = objective  # writes the gradients itself
    state = optimizer.state[params[0]]
    previous = None
    while state.get("n_iter", 0) < max_iter:
        optimizer.param_groups[0]["max_iter"] = min(window, max_iter - state.get("n_iter", 0))
        start_iter = state.get("n_iter", 0)
        value = float(optimizer.step(closure))  # the objective at the start of this window
        if previous is not None and previous - value <= window * ftol * max(abs(previous), abs(value), 1.0):
            break
        if state.get("n_iter", 0) == start_iter or max(float(p.grad.abs().max()) for p in params) <= gtol:
            break  # converged on the gradient (torch returns before iterating)
        previous = value
    return int(state.get("n_iter", 0))
