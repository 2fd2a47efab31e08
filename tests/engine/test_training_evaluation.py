"""Sharded evaluation: mergeable dense metrics, each rank its share (rank::world), and a 2-rank gloo run on
CPU that gives exactly the single-process metrics; recursive device moves of nested batches."""

from __future__ import annotations

import collections
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from dinobench.metrics.dense import DEPTH_METRIC_NAMES, DepthMetric, SegmentationMetric
from dinobench.training import evaluate_sharded, shard_indices
from dinobench.utils.distributed import to_device

N_IMAGES = 7  # odd: the shards are unequal (4 + 3)


class PairSet(Dataset):
    """Seeded (prediction, target) pairs of varying sizes: segmentation maps and depth maps."""

    def __len__(self):
        return N_IMAGES

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        h, w = 9 + i, 13 - i
        label = torch.randint(0, 5, (h, w), generator=g)
        label[torch.rand(h, w, generator=g) < 0.1] = 255
        pred = torch.where(torch.rand(h, w, generator=g) < 0.6, label.clamp(max=4), torch.randint(0, 5, (h, w), generator=g))
        gt = torch.rand(h, w, generator=g, dtype=torch.float64) * 12
        if i == 3:
            gt.zero_()  # no valid pixel: skipped
        depth = gt * torch.exp(0.3 * torch.randn(h, w, generator=g, dtype=torch.float64))
        return {"index": i, "pred": pred, "label": label, "depth_pred": depth.float(), "depth": gt.float()}


def _evaluate(seen: list[int] | None = None) -> dict[str, dict[str, float]]:
    seg, depth = SegmentationMetric(5), DepthMetric(min_depth=1e-3, max_depth=10.0)

    def update_seg(batch):
        if seen is not None:
            seen.append(int(batch["index"][0]))
        seg.update(batch["pred"][0], batch["label"][0])

    def update_depth(batch):
        depth.update(batch["depth_pred"][0], batch["depth"][0])

    return {"seg": evaluate_sharded(PairSet(), update_seg, seg, desc="seg"),
            "depth": evaluate_sharded(PairSet(), update_depth, depth, desc="depth"),
            "counts": {"images": seg.num_images, "depth_rows": len(depth.per_image), "skipped": depth.skipped}}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from dinobench.utils import distributed as ddp

    torch.set_num_threads(1)
    ddp.init_from_env("gloo")
    try:
        seen: list[int] = []
        result = _evaluate(seen)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump({"result": result, "seen": seen}, fh)
    finally:
        ddp.shutdown()


def test_two_gloo_ranks_give_exactly_the_single_process_metrics(tmp_path):
    single = _evaluate()
    assert single["counts"] == {"images": 7, "depth_rows": 6, "skipped": 1}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["seen"] for r in ranks] == [[0, 2, 4, 6], [1, 3, 5]]  # each rank evaluated its share only
    for r in ranks:
        assert r["result"] == json.loads(json.dumps(single))  # bit for bit, on every rank, counts merged too


def test_shard_indices_cover_the_dataset_once():
    shards = [shard_indices(10, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert shard_indices(1, 1, 2) == []


def test_merged_metrics_equal_one_metric_over_everything():
    data = PairSet()
    whole_seg, parts_seg = SegmentationMetric(5), [SegmentationMetric(5), SegmentationMetric(5)]
    whole_depth, parts_depth = DepthMetric(), [DepthMetric(), DepthMetric()]
    for i in range(len(data)):
        sample = data[i]
        whole_seg.update(sample["pred"], sample["label"])
        whole_depth.update(sample["depth_pred"], sample["depth"])
        parts_seg[i % 2].update(sample["pred"], sample["label"])
        parts_depth[(i * 5) % 3 % 2].update(sample["depth_pred"], sample["depth"])  # another split and order
    merged_seg, merged_depth = SegmentationMetric(5), DepthMetric()
    merged_seg.merge([p.state() for p in parts_seg])
    merged_depth.merge([p.state() for p in reversed(parts_depth)])
    assert merged_seg.compute() == whole_seg.compute() and merged_seg.num_images == 7
    assert torch.equal(torch.stack(merged_seg.areas()), torch.stack(whole_seg.areas()))
    assert merged_depth.compute() == whole_depth.compute()  # exactly rounded sums: order does not matter
    assert merged_depth.skipped == 1 and len(merged_depth.per_image) == 6
    # the mean is the exactly rounded mean of the per-image values
    rows = np.array([[r[n] for n in DEPTH_METRIC_NAMES] for r in whole_depth.per_image])
    np.testing.assert_allclose(list(whole_depth.compute().values()), rows.mean(0), rtol=1e-12)


def test_depth_mean_skips_nan_and_keeps_infinities():
    metric = DepthMetric()
    metric.merge([{"rows": torch.tensor([[float("nan")] + [1.0] * 9, [2.0] * 10]), "skipped": 0},
                  {"rows": torch.tensor([[4.0] + [float("inf")] + [3.0] * 8]), "skipped": 2}])
    result = metric.compute()
    assert result["a1"] == 3.0 and result["a2"] == float("inf") and result["a3"] == 2.0 and metric.skipped == 2


Pair = collections.namedtuple("Pair", "image target")


def test_to_device_moves_nested_batches_and_keeps_the_rest():
    batch = {"image": torch.zeros(2), "meta": {"boxes": [torch.ones(1, 4), torch.ones(2, 4)], "name": ["a", "b"]},
             "pair": Pair(torch.ones(1), 3), "tuple": (torch.ones(1), "x"), "n": 5}
    moved = to_device(batch, "meta")
    assert moved["image"].device.type == "meta"
    assert [b.device.type for b in moved["meta"]["boxes"]] == ["meta", "meta"]
    assert moved["meta"]["name"] == ["a", "b"] and moved["n"] == 5
    assert isinstance(moved["pair"], Pair) and moved["pair"].image.device.type == "meta" and moved["pair"].target == 3
    assert isinstance(moved["tuple"], tuple) and moved["tuple"][0].device.type == "meta" and moved["tuple"][1] == "x"
    assert batch["image"].device.type == "cpu"  # the input is not modified


def test_a_metric_without_state_cannot_be_sharded(monkeypatch):
    from dinobench.errors import PluginError
    from dinobench.metrics import sharded as evaluation

    class Plain:
        def compute(self):
            return {"x": 1.0}

    monkeypatch.setattr(evaluation.ddp, "world_size", lambda: 2)
    with pytest.raises(PluginError, match="Plain has no state\\(\\)/merge\\(\\): it cannot be evaluated on 2 ranks"):
        evaluation.sync_metric(Plain())
