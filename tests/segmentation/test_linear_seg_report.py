"""ade20k-linear reports what the official linear segmentation script reports: the metrics of its best-mIoU
evaluation among those every ``eval.eval_interval`` iterations (the last one included). The record holds the
best and the final head's metrics; ``protocol.report=final`` reports the final head's instead."""

import json
from types import SimpleNamespace

import pytest

from dinobench.config import protocol_hash
from dinobench.errors import ConfigError
from dinobench.protocols.linear_seg import LinearSegProtocol
from dinobench.resolve import eval_only_keys, hashed_config, resolve_task, runtime_keys
from dinobench.synthetic.dense import write_synthetic_ade20k
from dinobench.training.head import run_key
from helpers import run_task


def _summary(values: dict[int, float], total: int) -> dict:
    evaluations = [{"iteration": t, "metrics": {"mIoU": v, "aAcc": 100 - t}} for t, v in sorted(values.items())]
    return {"metrics": dict(evaluations[-1]["metrics"]), "iterations": total, "evaluations": evaluations}


def test_best_is_the_official_default_and_final_is_an_option():
    protocol = LinearSegProtocol({})
    assert protocol.config.report == "best" and protocol.main_metric == "mIoU"
    summary = _summary({5: 40.0, 10: 47.5, 15: 47.5, 20: 45.0, 22: 44.0}, 22)  # 22: the final, off the grid
    best, rows = protocol.reported_metrics(summary, 5, "best")
    assert best == {"mIoU": 47.5, "aAcc": 90, "mIoU_best": 47.5, "aAcc_best": 90, "mIoU_final": 44.0,
                    "aAcc_final": 78, "best_iteration": 10.0}  # the earliest of equal ones, its other metrics too
    assert [(r["iteration"], r["best"], r["reported"]) for r in rows] == [
        (5, False, False), (10, True, True), (15, False, False), (20, False, False), (22, False, False)]
    final, rows = protocol.reported_metrics(summary, 5, "final")
    assert final == {**best, "mIoU": 44.0, "aAcc": 78} and rows[-1]["reported"] and not rows[1]["reported"]
    coarser, _ = protocol.reported_metrics(summary, 10, "best")  # evaluations off the grid do not count
    assert coarser["best_iteration"] == 10.0
    with pytest.raises(ConfigError, match=r"iterations \[3, 6, 9"):
        protocol.reported_metrics(summary, 3, "best")
    assert protocol.reported_metrics(summary, 3, "final")[0] == summary["metrics"]  # best unknown: final only


def test_eval_every_enters_the_hash_when_the_best_is_reported_and_never_the_run_key():
    def identity(*options):
        cfg = resolve_task("ade20k-linear", list(options))
        ctx = SimpleNamespace(cfg=cfg, backbone_name="vit_tiny", weights_sha256=None, seed=0, backbone=None,
                              datasets={}, eval_only_keys=eval_only_keys(cfg))
        return protocol_hash(hashed_config(cfg, {}), "FP", runtime_keys(cfg)), run_key(ctx)

    best, best_other = identity(), identity("train.eval_every=1000")
    final, final_other = identity("protocol.report=final"), identity("protocol.report=final", "train.eval_every=1000")
    assert best[0] != best_other[0] and final[0] == final_other[0] and best[0] != final[0]
    assert best[1] == best_other[1] == final[1] == final_other[1]  # the same training serves every report
    given = [identity("protocol.head_weights=/h.pth", *extra)[0] for extra in ([], ["train.eval_every=1000"])]
    assert given[0] == given[1]  # a given head is evaluated once: no periodic evaluation to choose from
    assert "train.eval_every" not in runtime_keys(resolve_task("ade20k-linear", None))


def test_ade20k_linear_records_the_best_and_the_final_evaluation(run_cli, tmp_path, output):
    """The smoke run with an evaluation every 10 of its 40 iterations; then the same run with report=final:
    it resumes the finished training (nothing retrained) and reports the final head from the same history."""
    root = write_synthetic_ade20k(tmp_path / "ade")
    record, _ = run_task(run_cli, "ade20k-linear", root, output, "train.eval_every=10")
    metrics, rows = record["metrics"], record["tables"]["evaluations"]
    assert [r["iteration"] for r in rows] == [10, 20, 30, 40]
    log = [json.loads(x) for x in next(output.glob(".runs/*/ade20k-linear/*/metrics.jsonl")).read_text().splitlines()]
    assert [{k: r[k] for k in ("mIoU", "aAcc", "mAcc")} for r in rows] == [x["eval"] for x in log if "eval" in x]
    best = max(rows, key=lambda r: r["mIoU"])
    assert best["iteration"] != 40, "the synthetic run no longer peaks before its end: pick another eval_every"
    assert record["main_metric"] == {"name": "mIoU", "value": best["mIoU"], "higher_is_better": True}
    assert metrics["mIoU"] == metrics["mIoU_best"] == best["mIoU"] and metrics["aAcc"] == best["aAcc"]
    assert metrics["mIoU_final"] == rows[-1]["mIoU"] < metrics["mIoU"]
    assert metrics["best_iteration"] == best["iteration"]
    assert best["best"] and best["reported"] and record["config"]["protocol"]["report"] == "best"
    assert "train.eval_every" not in record["runtime_keys"]  # it chooses the candidates: part of the hash
    table = record["tables"]["per_class_iou"]  # the final head's
    assert sum(r["IoU"] for r in table if r["IoU"] == r["IoU"]) / sum(r["IoU"] == r["IoU"] for r in table) == \
        pytest.approx(metrics["mIoU_final"], abs=0.01)

    trained = sum("loss" in x for x in log)
    again, _ = run_task(run_cli, "ade20k-linear", root, output, "train.eval_every=10", "protocol.report=final")
    log = next(output.glob(".runs/*/ade20k-linear/*/metrics.jsonl")).read_text().splitlines()
    assert sum('"loss"' in x for x in log) == trained  # the finished training was resumed, not redone
    assert again["main_metric"]["value"] == metrics["mIoU_final"] == again["metrics"]["mIoU"]
    assert {k: v for k, v in again["metrics"].items() if "_" in k} == {k: v for k, v in metrics.items() if "_" in k}
    assert again["protocol_hash"] != record["protocol_hash"]
