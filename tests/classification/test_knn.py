import numpy as np
import torch

from dinobench.protocols.knn import KNNProtocol
from helpers import brute_force_knn


def test_knn_equals_float64_brute_force_for_every_k():
    rng = np.random.default_rng(0)
    num_classes, dim = 7, 16
    centers = rng.normal(size=(num_classes, dim))
    train_labels = rng.integers(0, num_classes, 300)
    query_labels = rng.integers(0, num_classes, 120)
    train = centers[train_labels] + 1.5 * rng.normal(size=(300, dim))
    query = centers[query_labels] + 1.5 * rng.normal(size=(120, dim))
    ks = [1, 10, 20, 100, 200]
    protocol = KNNProtocol({"nb_knn": ks, "temperature": 0.07, "chunk_size": 37})  # chunks of odd size
    got = protocol.evaluate(torch.tensor(train, dtype=torch.float32), torch.tensor(train_labels),
                            torch.tensor(query, dtype=torch.float32), torch.tensor(query_labels), num_classes)
    want = brute_force_knn(train, train_labels, query, query_labels, ks, 0.07, num_classes)
    assert sum(key.startswith("top5") for key in want) >= 2  # k=100, 200 at least
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-9, key
    # sanity: the data are learnable, so the check is not comparing two constants
    assert 40 < got["top1"] < 100
    assert got["top1"] == max(got[f"top1_k{k}"] for k in ks)


def test_k_larger_than_train_set_uses_all_neighbours():
    train = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    protocol = KNNProtocol({"nb_knn": [1, 50], "temperature": 0.07})
    metrics = protocol.evaluate(train, labels, train, labels, 3)
    assert metrics["top1_k1"] == 100.0
    assert metrics["top1_k50"] == 100.0  # self-similarity 1 dominates the softmax
