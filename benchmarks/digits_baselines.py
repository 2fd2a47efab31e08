"""Raw-pixel baselines on the digits split every digits-* task uses: the kNN and logistic-regression
protocols of dinobench applied to the 64 raw pixel values instead of backbone features.

Puts the demo's numbers (random-init vs SSL-pretrained vit_tiny) in context:
    python benchmarks/digits_baselines.py
"""

from __future__ import annotations

import numpy as np
import torch

from dinobench.data.digits import stratified_split
from dinobench.plugins.knn import KNNProtocol
from dinobench.plugins.logreg import LogRegProtocol, selection_split


def main() -> None:
    """Print raw-pixel kNN and logreg top-1 on the held-out digits (seeded 80/20 split, seed 0)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels, targets = bunch.data.astype(np.float64) / 16.0, bunch.target.astype(np.int64)
    train_idx, val_idx = stratified_split(targets, 0.2, 0)  # the split of configs/_base_/datasets/digits.py
    x_train, y_train, x_val, y_val = pixels[train_idx], targets[train_idx], pixels[val_idx], targets[val_idx]
    knn = KNNProtocol({}).evaluate(torch.from_numpy(x_train).float(), torch.from_numpy(y_train),
                                   torch.from_numpy(x_val).float(), torch.from_numpy(y_val), 10)
    fit, select = selection_split(y_train, 0.1, 0)
    logreg = LogRegProtocol({}).evaluate(x_train[fit], y_train[fit], x_train[select], y_train[select],
                                         x_val, y_val, 10)
    print(f"raw pixels (64-d), {len(y_train)} train / {len(y_val)} held-out digits")
    print(f"  kNN    top-1 {knn['top1']:.2f} (best k {int(knn['best_k'])})")
    print(f"  logreg top-1 {logreg['top1']:.2f} (C = {logreg['best_C']:.3g})")


if __name__ == "__main__":
    main()
