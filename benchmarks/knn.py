"""kNN speed and accuracy: dinobench's ``knn_class_scores`` vs scikit-learn's KNeighborsClassifier.

Synthetic clustered features (Gaussian classes around random centres), the same train/query
arrays for both, timed side by side in one run:

    python benchmarks/knn.py                                  # 100k x 768 train, 10k queries, 1000 classes
    python benchmarks/knn.py --n-train 20000 --n-query 2000   # quick try

The votes differ by design: dinobench weights the k neighbours by ``softmax(cos / 0.07)`` (the
official DINOv3 protocol), scikit-learn (``metric="cosine", weights="distance",
algorithm="brute"``) by ``1 / (1 - cos)``; both use the same cosine neighbours, so the accuracy
of each is printed together with how often their predictions agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dinobench.protocols.knn import knn_class_scores  # noqa: E402


def clustered_features(n_train: int, n_query: int, dim: int, num_classes: int, noise: float,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/query features ``centre[label] + noise * N(0, I)`` (float32) with balanced train labels."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=gen)
    train_labels = torch.arange(n_train) % num_classes
    query_labels = torch.randint(0, num_classes, (n_query,), generator=gen)
    train = centres[train_labels] + noise * torch.randn(n_train, dim, generator=gen)
    query = centres[query_labels] + noise * torch.randn(n_query, dim, generator=gen)
    return train, train_labels, query, query_labels


def time_dinobench(train, train_labels, query, ks, temperature, num_classes, chunk_size, device="cpu"):
    """Seconds and per-k predictions of dinobench's chunked cosine top-k + softmax vote (on ``device``)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    scores = knn_class_scores(train, train_labels, query, ks, temperature, num_classes, chunk_size, device)
    seconds = time.perf_counter() - start
    return seconds, {k: s.argmax(dim=1).numpy() for k, s in scores.items()}


def time_sklearn(train, train_labels, query, k, n_jobs):
    """Seconds (fit + predict) and predictions of KNeighborsClassifier(cosine, distance-weighted, brute)."""
    from sklearn.neighbors import KNeighborsClassifier

    x_train, y_train, x_query = train.numpy(), train_labels.numpy(), query.numpy()
    start = time.perf_counter()
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance", algorithm="brute", n_jobs=n_jobs)
    predictions = clf.fit(x_train, y_train).predict(x_query)
    return time.perf_counter() - start, predictions


def main(argv: list[str] | None = None) -> None:
    """Parse flags, build the features, run both, print a side-by-side table and the speed ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-query", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=4.0, help="cluster spread (per-dimension std; centres ~N(0,1))")
    parser.add_argument("--k", type=int, default=20, help="neighbours for the one-k comparison")
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--n-jobs", type=int, default=None, help="scikit-learn n_jobs (default: its own)")
    parser.add_argument("--device", default="cpu", help="dinobench's device (cuda: float16 similarities)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, train_labels, query, query_labels = clustered_features(
        args.n_train, args.n_query, args.dim, args.classes, args.noise, args.seed)
    truth = query_labels.numpy()
    print(f"kNN benchmark: train {args.n_train} x {args.dim}, {args.n_query} queries, {args.classes} classes, "
          f"k={args.k}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    official_ks = sorted({10, 20, 100, 200, args.k})
    db_seconds, db_pred = time_dinobench(train, train_labels, query, [args.k], args.temperature, args.classes,
                                         args.chunk_size, args.device)
    db_all_seconds, db_all_pred = time_dinobench(train, train_labels, query, official_ks, args.temperature,
                                                 args.classes, args.chunk_size, args.device)
    sk_seconds, sk_pred = time_sklearn(train, train_labels, query, args.k, args.n_jobs)

    def acc(pred):
        return 100.0 * float(np.mean(pred == truth))

    rows = [
        (f"dinobench knn_class_scores on {args.device}, k={args.k} (softmax(cos/{args.temperature:g}))", db_seconds,
         acc(db_pred[args.k])),
        (f"dinobench, k in {official_ks} in one pass (k={args.k} shown)", db_all_seconds, acc(db_all_pred[args.k])),
        (f"scikit-learn KNeighborsClassifier, k={args.k} (cosine, 1/distance)", sk_seconds, acc(sk_pred)),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'method':<{width}}  {'seconds':>8}  {'top-1 %':>7}")
    for name, seconds, top1 in rows:
        print(f"{name:<{width}}  {seconds:8.2f}  {top1:7.2f}")
    print("dinobench top-1 per k (one pass): " + ", ".join(f"k={k}: {acc(p):.2f}" for k, p in db_all_pred.items()))
    agree = 100.0 * float(np.mean(db_pred[args.k] == sk_pred))
    print(f"ratio: dinobench is {sk_seconds / db_seconds:.1f}x faster than scikit-learn at k={args.k} "
          f"({sk_seconds / db_all_seconds:.1f}x with all {len(official_ks)} k in one pass); "
          f"predictions agree on {agree:.2f}% of queries")


if __name__ == "__main__":
    main()
