"""Hostile records: wrong shapes and non-finite numbers are refused at read (a folder scan skips the file with one
warning line naming it; a file named explicitly is exit 2) and never written; escapes in every export."""

import json
import math
import re

import pytest

from helpers import make_result

from dinobench.results import Result, validate_record, write_jsonl

GOOD = make_result(50.0).to_dict()


def _with(**changes):
    data = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


BAD_RECORDS = {
    "list": [],
    "null": None,
    "metrics-list": _with(metrics=[1, 2]),
    "string-seed": _with(seed="0"),
    "bool-seed": _with(seed=True),
    "null-main-value": _with(main_metric__value=None),
    "string-main-value": _with(main_metric__value="50"),
    "nan-main-value": _with(main_metric__value=math.nan),
    "inf-metric": _with(metrics__top1=math.inf),
    "string-metric": _with(metrics__top1="50.0"),
    "main-metric-string": _with(main_metric="top1"),
    "config-scalar": _with(config=3),
    "task-number": _with(task=7),
    "missing-task": {k: v for k, v in GOOD.items() if k != "task"},
    "timings-string": _with(timings__features_train_s="fast"),
}


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_validate_record_names_the_bad_key(name):
    with pytest.raises(ValueError) as info:
        validate_record(BAD_RECORDS[name])
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_an_undefined_secondary_metric_is_read_but_never_written():
    from dinobench.protocol import ProtocolResult

    validate_record(_with(metrics__APl=math.nan))  # an older record with COCO's empty-range NaN still reads
    result = ProtocolResult({"AP": 12.0, "APl": math.nan}, "AP")
    assert result.metrics == {"AP": 12.0}  # left out of new records
    with pytest.raises(Exception, match=r"non-finite metric \(AP\)"):
        ProtocolResult({"AP": math.nan, "APl": 3.0}, "AP")
    with pytest.raises(Exception, match=r"non-finite metric \(APl\)"):
        ProtocolResult({"AP": 1.0, "APl": math.inf}, "AP")


def test_a_good_record_round_trips():
    validate_record(GOOD)
    assert Result.from_dict(GOOD).to_dict() == GOOD


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # json writes NaN / Infinity literals, as a careless tool would
    return path


def test_report_skips_each_bad_record_with_one_warning_and_keeps_the_good_ones(run_cli, tmp_path, caplog):
    results = tmp_path / "results"
    _write(results / "good" / "result.json", GOOD)
    for name, data in BAD_RECORDS.items():
        _write(results / name / "result.json", data)
    code, out, err = run_cli("report", str(results), "--output", str(tmp_path / "report"), "--format", "md")
    assert code == 0, err
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == len(BAD_RECORDS)
    for name in BAD_RECORDS:
        assert sum(f"/{name}/result.json" in line for line in skipped) == 1
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "50.00" in board and not re.search(r"\b(nan|inf)\b", board, re.IGNORECASE)
    assert "results shown: 1" in board.lower()


@pytest.mark.parametrize("name", ["nan-main-value", "metrics-list", "null"])
def test_a_bad_record_named_explicitly_is_exit_2_one_line(run_cli, tmp_path, name):
    path = _write(tmp_path / "result.json", BAD_RECORDS[name])
    code, _, err = run_cli("report", str(path), "--output", str(tmp_path / "report"))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0]
    assert not (tmp_path / "report").exists()


def test_check_never_counts_an_infinite_result_or_a_nan_baseline(run_cli, tmp_path, caplog):
    baseline = write_jsonl(tmp_path / "baseline.jsonl", [make_result(50.0)])
    results = tmp_path / "results"
    _write(results / "run" / "result.json", _with(metrics__top1=math.inf, main_metric__value=math.inf))
    code, out, err = run_cli("check", "--baseline", str(baseline), "--results", str(results))
    assert code == 1 and "0 improved" in out and "1 missing" in out  # the inf record is skipped, never counted
    assert "missing" in out and any("skipping" in r.getMessage() and "Infinity" in r.getMessage()
                                    for r in caplog.records)
    nan_baseline = tmp_path / "nan.jsonl"
    nan_baseline.write_text(json.dumps(_with(main_metric__value=math.nan, metrics__top1=math.nan)) + "\n")
    _write(tmp_path / "ok" / "run" / "result.json", GOOD)
    code, _, err = run_cli("check", "--baseline", str(nan_baseline), "--results", str(tmp_path / "ok"))
    assert code == 2 and f"{nan_baseline}:1" in err and "expected a finite number, got NaN" in err
    assert len(err.strip().splitlines()) == 1


def test_a_protocol_that_returns_nan_fails_the_run_prints_the_metrics_and_writes_nothing(run_cli, tmp_path,
                                                                                        monkeypatch):
    from conftest import TINY_OPTIONS

    import dinobench.protocols.knn as knn

    monkeypatch.setattr(knn, "topk_accuracy", lambda scores, labels, k: math.nan)
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--output", str(tmp_path),
                           "--cfg-options", *TINY_OPTIONS, "protocol.nb_knn=[10]")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "warning" not in line]
    assert len(lines) == 1 and "non-finite metric (top1_k10, top5_k10, top1)" in lines[0]
    assert "no record was written" in lines[0]
    assert "top1=nan" in lines[0]  # the numbers are shown, not lost
    assert not list(tmp_path.rglob("result.json"))
