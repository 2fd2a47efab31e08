"""kNN few-shot mode: seeded per-class subsets, mean/std over seeds against a float64 brute-force reference."""

import numpy as np
import pytest
import torch

from conftest import TINY_OPTIONS
from helpers import brute_force_knn

import dinobench
from dinobench.errors import ConfigError
from dinobench.protocols.knn import KNNProtocol, few_shot_indices

KS = [1, 5, 20]


def _data(num_classes=6, dim=12, n_train=240, n_query=90, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    train_labels = np.repeat(np.arange(num_classes), n_train // num_classes)
    query_labels = rng.integers(0, num_classes, n_query)
    train = centers[train_labels] + 1.2 * rng.normal(size=(len(train_labels), dim))
    query = centers[query_labels] + 1.2 * rng.normal(size=(n_query, dim))
    as_t = lambda a, dt=torch.float32: torch.tensor(a, dtype=dt)  # noqa: E731
    return as_t(train), as_t(train_labels, torch.long), as_t(query), as_t(query_labels, torch.long), num_classes


def test_few_shot_indices_take_n_per_class_seeded():
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1, 0, 0, 2, 1, 1, 0])
    idx = few_shot_indices(labels, 2, seed=0)
    assert torch.equal(idx, idx.sort().values)
    assert np.bincount(labels[idx].numpy()).tolist() == [2, 2, 2]
    assert torch.equal(idx, few_shot_indices(labels, 2, seed=0))
    assert any(not torch.equal(idx, few_shot_indices(labels, 2, seed=s)) for s in (1, 2, 3))
    # more than a class has -> the whole class; fractions -> max(1, int(fraction * n_c))
    assert len(few_shot_indices(labels, 100, seed=0)) == len(labels)
    assert np.bincount(labels[few_shot_indices(labels, 0.5, seed=0)].numpy()).tolist() == [2, 2, 2]
    assert np.bincount(labels[few_shot_indices(labels, 0.01, seed=0)].numpy()).tolist() == [1, 1, 1]


def test_all_samples_per_class_equals_the_full_knn():
    train, train_labels, query, query_labels, c = _data()
    protocol = KNNProtocol({"nb_knn": KS, "few_shot": {"n_per_class": [1000], "seeds": [0, 1]}})
    full = protocol.evaluate(train, train_labels, query, query_labels, c)
    few = protocol.evaluate_few_shot(train, train_labels, query, query_labels, c)
    for k in KS:
        assert few[f"fewshot_n1000_top1_k{k}_mean"] == full[f"top1_k{k}"]
        assert few[f"fewshot_n1000_top5_k{k}_mean"] == full[f"top5_k{k}"]
        assert few[f"fewshot_n1000_top1_k{k}_std"] == 0.0
    assert few["fewshot_n1000_top1_mean"] == full["top1"]


def test_mean_and_std_over_seeds_match_a_brute_force_reference():
    train, train_labels, query, query_labels, c = _data()
    seeds = [0, 1, 2]
    protocol = KNNProtocol({"nb_knn": KS, "few_shot": {"n_per_class": [3, 10], "seeds": seeds}})
    got = protocol.evaluate_few_shot(train, train_labels, query, query_labels, c)
    for n in (3, 10):
        subsets = [few_shot_indices(train_labels, n, s).numpy() for s in seeds]
        assert len({tuple(s) for s in subsets}) == len(seeds)  # every seed draws another subset
        per_seed = [brute_force_knn(train.double().numpy()[s], train_labels.numpy()[s], query.double().numpy(),
                                    query_labels.numpy(), KS, 0.07, c) for s in subsets]
        for k in KS:
            values = np.array([r[f"top1_k{k}"] for r in per_seed])
            assert got[f"fewshot_n{n}_top1_k{k}_mean"] == pytest.approx(values.mean(), abs=1e-9)
            assert got[f"fewshot_n{n}_top1_k{k}_std"] == pytest.approx(values.std(ddof=1), abs=1e-9)
        means = [got[f"fewshot_n{n}_top1_k{k}_mean"] for k in KS]
        assert got[f"fewshot_n{n}_top1_mean"] == max(means)
        assert got[f"fewshot_n{n}_best_k"] == KS[int(np.argmax(means))]
    assert got["fewshot_n3_top1_k1_std"] > 0  # the draws really differ
    assert got["fewshot_n10_top1_mean"] > got["fewshot_n3_top1_mean"] > 100 / c  # more shots help, beat chance


def test_one_seed_has_zero_std_and_equals_that_subset():
    train, train_labels, query, query_labels, c = _data()
    protocol = KNNProtocol({"nb_knn": KS, "few_shot": {"n_per_class": [5], "seeds": [7]}})
    got = protocol.evaluate_few_shot(train, train_labels, query, query_labels, c)
    idx = few_shot_indices(train_labels, 5, 7)
    direct = protocol.evaluate(train[idx], train_labels[idx], query, query_labels, c)
    for k in KS:
        assert got[f"fewshot_n5_top1_k{k}_std"] == 0.0 and got[f"fewshot_n5_top1_k{k}_mean"] == direct[f"top1_k{k}"]


def test_config_errors():
    with pytest.raises(ConfigError, match="main_metric"):
        KNNProtocol({"main_metric": "fewshot_n5_top1_mean"})  # few-shot is off
    with pytest.raises(ConfigError, match="few_shot"):
        KNNProtocol({"few_shot": {"n_per_class": [2.5], "seeds": [0]}})
    with pytest.raises(ConfigError, match="few_shot"):
        KNNProtocol({"few_shot": {"n_per_class": [5], "seeds": []}})
    assert "fewshot_n5_top1_mean" in KNNProtocol({"few_shot": {"n_per_class": [5]}}).metric_names()


def test_digits_knn_fewshot_task_reports_the_five_shot_mean(tmp_path):
    result = dinobench.run(backbone="vit_tiny", task="digits-knn-fewshot", output_dir=str(tmp_path),
                           options=TINY_OPTIONS)
    metrics = result.metrics
    assert result.main_metric.name == "fewshot_n5_top1_mean"
    assert result.main_metric.value == metrics["fewshot_n5_top1_mean"]
    assert metrics["fewshot_n1_top1_std"] > 0 and "top1" in metrics  # full kNN still reported
    assert 10 < metrics["fewshot_n1_top1_mean"] < metrics["fewshot_n10_top1_mean"] <= metrics["top1"] + 5
    assert set(KNNProtocol(result.config["protocol"]).metric_names()) == set(metrics)
