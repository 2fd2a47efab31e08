"""Logistic-regression C sweep: dinobench's torch L-BFGS path vs scikit-learn (and scikit-learn-intelex).

The official protocol's sweep (45 C values ``10**linspace(-6, 5, 45)``, L2 lbfgs, max_iter 1000) on synthetic
features of realistic shape: class centres plus anisotropic noise with a power-law spectrum, LayerNorm-ed as
the CLS features the protocol reads. Each solver fits the same rows and is scored on the same selection rows:

    python benchmarks/logreg.py                                    # 10k x 384, 100 classes, all 45 C
    python benchmarks/logreg.py --n 5000 --dim 256 --grid-step 4   # quick try (12 C values)
    python benchmarks/logreg.py --device cuda                      # torch solver on the GPU

Printed: seconds per solver, selected C, the selection top-1 at that C, how many C values have the same
selection accuracy as scikit-learn's, and the speed ratio. scikit-learn runs as the protocol runs it
(``protocol.solver=sklearn``: one fit per C, joblib over all cores, one BLAS thread each); scikit-learn-intelex
(which the official code recommends) runs when ``sklearnex`` is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dinobench.protocols.logreg import c_grid, sweep_c  # noqa: E402
from dinobench.protocols.logreg_torch import fit_path  # noqa: E402


def realistic_features(n: int, dim: int, classes: int, seed: int, spread: float, decay: float):
    """``(x, y)`` float64: centres + noise whose covariance spectrum falls as ``i**-decay``, then LayerNorm."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    spectrum = torch.arange(1, dim + 1, dtype=torch.float64) ** (-decay / 2)
    centres = torch.randn(classes, dim, generator=gen, dtype=torch.float64) * spectrum
    labels = torch.randint(0, classes, (n,), generator=gen)
    noise = torch.randn(n, dim, generator=gen, dtype=torch.float64) * spectrum * spread
    x = torch.nn.functional.layer_norm((centres[labels] + noise) @ basis.T, (dim,))
    return x.numpy(), labels.numpy()


def run_torch(fit_x, fit_y, sel_x, sel_y, grid, device, max_iter):
    start = time.perf_counter()
    models = fit_path(fit_x, fit_y, grid, max_iter=max_iter, device=device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    select = torch.as_tensor(sel_x)
    return seconds, np.array([np.mean(m.predict(select) == sel_y) for m in models]), sum(m.n_iter for m in models)


def run_sklearnex(fit_x, fit_y, sel_x, sel_y, grid, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearnex.linear_model import LogisticRegression  # noqa: PLC0415 - optional peer

    start, accs = time.perf_counter(), []
    for C in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=float(C), solver="lbfgs", max_iter=max_iter, tol=1e-12).fit(fit_x, fit_y)
        accs.append(np.mean(model.predict(sel_x) == sel_y))
    return time.perf_counter() - start, np.array(accs)


def main(argv: list[str] | None = None) -> None:
    """Build the features, run every available solver on the same split, print a table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="fit rows")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--spread", type=float, default=3.0, help="noise scale relative to the centres")
    parser.add_argument("--decay", type=float, default=1.0, help="power-law exponent of the covariance spectrum")
    parser.add_argument("--grid-step", type=int, default=1, help="every k-th of the 45 official C values")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-sklearn", action="store_true", help="torch only (e.g. a quick GPU check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, y = realistic_features(args.n + args.n // 5, args.dim, args.classes, args.seed, args.spread, args.decay)
    fit_x, fit_y, sel_x, sel_y = x[: args.n], y[: args.n], x[args.n:], y[args.n:]
    grid = c_grid()[:: args.grid_step]
    print(f"logreg C sweep: {args.n} x {args.dim}, {args.classes} classes, {len(grid)} C values, "
          f"max_iter {args.max_iter}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    rows = []
    t_seconds, t_accs, t_iters = run_torch(fit_x, fit_y, sel_x, sel_y, grid, args.device, args.max_iter)
    rows.append((f"dinobench torch L-BFGS path ({args.device}, {t_iters} iterations)", t_seconds, t_accs))
    reference = None
    if not args.skip_sklearn:
        start = time.perf_counter()
        reference = sweep_c(fit_x, fit_y, sel_x, sel_y, grid, args.max_iter, 1e-12, n_jobs=-1)
        rows.append(("scikit-learn LogisticRegression per C (joblib, all cores)", time.perf_counter() - start,
                     reference))
        try:
            rows.append(("scikit-learn-intelex LogisticRegression per C", *run_sklearnex(
                fit_x, fit_y, sel_x, sel_y, grid, args.max_iter)))
        except ImportError:
            print("(scikit-learn-intelex not installed: pip install scikit-learn-intelex to add it)")

    width = max(len(r[0]) for r in rows)
    print(f"{'solver':<{width}}  {'seconds':>8}  {'best C':>9}  {'sel top-1':>9}  {'C equal to sklearn':>18}")
    for name, seconds, accs in rows:
        best = int(np.argmax(accs))
        same = "-" if reference is None else f"{int(np.sum(np.abs(accs - reference) < 1e-12))}/{len(grid)}"
        print(f"{name:<{width}}  {seconds:8.1f}  {grid[best]:9.3g}  {100 * accs[best]:9.2f}  {same:>18}")
    if reference is not None:
        peers = rows[1:]
        fastest = min(peers, key=lambda r: r[1])
        print(f"ratio: dinobench torch is {fastest[1] / t_seconds:.2f}x the fastest peer ({fastest[0]}); "
              f"max |selection top-1 difference| over the grid {100 * np.abs(t_accs - reference).max():.2f} points")


if __name__ == "__main__":
    main()
