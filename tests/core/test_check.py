"""`dinobench check` on crafted baselines: statuses, direction, tolerance, exit codes, table rows."""

from __future__ import annotations

import re

import pytest

from helpers import make_result, with_config

from dinobench.leaderboard import check, scan
from dinobench.results import Result, write_jsonl, write_result

DEPTH = {"dataset": {"type": "nyu"}, "protocol": {"type": "depth_linear"}}
#: backbone -> (baseline result, new results); every case is a different backbone of one baseline
CASES = {
    "b_improve": (make_result(50.0), [make_result(52.0)]),
    "b_same": (make_result(50.0), [make_result(50.0)]),
    "b_regress": (make_result(50.0), [make_result(49.0)]),            # beyond top1=0.5
    "b_within": (make_result(50.0), [make_result(49.7)]),             # below the tolerance: passes
    "b_missing": (make_result(50.0), []),
    "b_notcomp": (make_result(50.0), [make_result(70.0, config=with_config(temperature=0.1))]),
    "b_rmse": (make_result(0.40, task="nyu-linear", metric="rmse", higher=False, config=DEPTH),
               [make_result(0.38, task="nyu-linear", metric="rmse", higher=False, config=DEPTH)]),
}
EXPECTED = {  # status, baseline, result, delta, note fragment
    "b_improve": ("improved", "50.0000", "52.0000", "+2.0000", "result.json"),
    "b_same": ("same", "50.0000", "50.0000", "+0.0000", "result.json"),
    "b_regress": ("regressed", "50.0000", "49.0000", "-1.0000", "result.json"),
    "b_within": ("same", "50.0000", "49.7000", "-0.3000", "result.json"),
    "b_missing": ("missing", "50.0000", "–", "–", "no result for b_missing on digits-knn"),
    "b_notcomp": ("not-comparable", "50.0000", "–", "–",
                  "config differs: protocol.temperature=0.1 (baseline: 0.07)"),
    "b_rmse": ("improved", "0.4000", "0.3800", "-0.0200", "result.json"),  # lower is better
}


def _named(result, backbone):
    copy = Result.from_dict(result.to_dict())  # CASES stay untouched across tests
    copy.backbone = backbone
    return copy


def _setup(tmp_path, names):
    """A JSONL baseline and a results folder holding the chosen cases."""
    base_dir, results = tmp_path / "base-runs", tmp_path / "results"
    results.mkdir(exist_ok=True)
    for name in names:
        baseline, new = CASES[name]
        write_result(_named(baseline, name), base_dir)
        for result in new:
            write_result(_named(result, name), results)
    return base_dir, results


def _rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in {"improved", "same", "regressed", "missing", "not-comparable"}:
            rows[cells[1]] = cells
    return rows


def test_every_status_in_one_table_and_exit_code_1(run_cli, tmp_path):
    base_dir, results = _setup(tmp_path, CASES)
    baseline = tmp_path / "baseline.jsonl"
    code, out, err = run_cli("report", str(base_dir), "--jsonl", str(baseline))  # freeze with the CLI
    assert code == 0, err
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    code, out, err = run_cli("check", "--baseline", str(baseline), "--results", str(results),
                             "--tolerance", "top1=0.5", "--markdown", str(summary))
    assert code == 1, (out, err)
    rows = _rows(out)
    assert set(rows) == set(CASES)
    for name, (status, base, new, delta, note) in EXPECTED.items():
        cells = rows[name]
        assert cells[0] == status, (name, cells)
        assert cells[2:4] == ["random-init", "nyu-linear" if name == "b_rmse" else "digits-knn"]
        assert cells[6:9] == [base, new, delta], (name, cells)
        assert note in cells[-1], (name, cells)
    assert rows["b_rmse"][5] == "rmse ↓" and rows["b_improve"][5] == "top1 ↑"
    assert rows["b_within"][9] == "0.5" and rows["b_rmse"][9] == "1e-06"  # per-metric and default tolerance
    assert out.strip().splitlines()[-1] == ("check: 7 baseline entries vs 6 results: FAIL (2 improved, 2 same, "
                                            "1 regressed, 1 missing, 1 not-comparable)")
    text = summary.read_text()
    assert text.startswith("earlier step\n### dinobench check: FAIL")  # appended, like $GITHUB_STEP_SUMMARY
    assert "| regressed | b_regress | random-init | digits-knn | 0 | top1 ↑ | 50.0000 | 49.0000 | -1.0000 |" in text


@pytest.mark.parametrize("names, code", [
    (["b_improve"], 0), (["b_same"], 0), (["b_within"], 0), (["b_rmse"], 0), (["b_improve", "b_within"], 0),
    (["b_regress"], 1), (["b_missing"], 1), (["b_notcomp"], 0), (["b_improve", "b_missing"], 1),
    (["b_notcomp", "b_regress"], 1),
])
def test_exit_codes(run_cli, tmp_path, names, code):
    """Exit 1 on any regressed or missing entry, 0 otherwise (not-comparable warns on stderr)."""
    base_dir, results = _setup(tmp_path, names)
    baseline = write_jsonl(tmp_path / "b.jsonl", [r["record"] for _, r in scan([base_dir]).iterrows()])
    got, out, err = run_cli("check", "--baseline", str(baseline), "--results", str(results), "--tolerance", "top1=0.5")
    assert got == code, (out, err)
    assert set(_rows(out)) == set(names)
    assert ("PASS" if code == 0 else "FAIL") in out.strip().splitlines()[-1]
    assert ("1 baseline entries have results only under another protocol" in err) == ("b_notcomp" in names), err


@pytest.mark.parametrize("names, code", [(["b_notcomp"], 1), (["b_same"], 0), (["b_missing"], 1)])
def test_strict_also_fails_on_not_comparable(run_cli, tmp_path, names, code):
    base_dir, results = _setup(tmp_path, names)
    baseline = write_jsonl(tmp_path / "b.jsonl", [r["record"] for _, r in scan([base_dir]).iterrows()])
    got, out, err = run_cli("check", "--baseline", str(baseline), "--results", str(results), "--strict")
    assert got == code, (out, err)


def test_per_task_tolerance_beats_the_metric_tolerance(run_cli, tmp_path):
    base_dir, results = _setup(tmp_path, ["b_regress"])  # top1 50 -> 49 on digits-knn
    baseline = write_jsonl(tmp_path / "b.jsonl", [r["record"] for _, r in scan([base_dir]).iterrows()])
    args = ("check", "--baseline", str(baseline), "--results", str(results), "--tolerance")
    code, out, _ = run_cli(*args, "top1=0.5", "digits-knn:top1=1.5")
    assert code == 0 and _rows(out)["b_regress"][0] == "same" and _rows(out)["b_regress"][9] == "1.5"
    code, out, _ = run_cli(*args, "top1=0.5", "nyu-linear:top1=1.5")  # another task's tolerance does not apply
    assert code == 1 and _rows(out)["b_regress"][0] == "regressed"
    code, out, _ = run_cli(*args, "digits-knn:*=2", "*=0.1")
    assert code == 0 and _rows(out)["b_regress"][9] == "2"


def test_without_tolerance_a_small_drop_regresses(run_cli, tmp_path):
    base_dir, results = _setup(tmp_path, ["b_within"])
    baseline = write_jsonl(tmp_path / "b.jsonl", [r["record"] for _, r in scan([base_dir]).iterrows()])
    code, out, _ = run_cli("check", "--baseline", str(baseline), "--results", str(results))
    assert code == 1 and _rows(out)["b_within"][0] == "regressed"
    code, out, _ = run_cli("check", "--baseline", str(baseline), "--results", str(results), "--tolerance", "*=0.3")
    assert code == 0 and _rows(out)["b_within"][0] == "same"


def test_newest_comparable_result_is_used(tmp_path):
    base = scan_of(tmp_path / "b", [make_result(50.0)])
    results = scan_of(tmp_path / "r", [
        make_result(40.0, created_at="2026-01-01T00:00:00+00:00"),
        make_result(55.0, created_at="2026-01-02T00:00:00+00:00"),
        make_result(10.0, created_at="2026-01-03T00:00:00+00:00", config=with_config(temperature=0.2)),
        make_result(11.0, created_at="2026-01-04T00:00:00+00:00", seed=1),
    ])
    (row,) = check(base, results)
    assert (row.status, row.result) == ("improved", 55.0)


def test_missing_notes_and_weights_matching(tmp_path):
    base = scan_of(tmp_path / "b", [make_result(50.0, weights="/a/ckpt.pth", sha="ab" * 32, seed=3)])
    other_seed = scan_of(tmp_path / "r1", [make_result(50.0, weights="/a/ckpt.pth", sha="ab" * 32, seed=0)])
    (row,) = check(base, other_seed)
    assert row.status == "missing" and row.note == "no result with seed 3 (found seeds [0])"
    retrained = scan_of(tmp_path / "r2", [make_result(50.0, weights="/ci/ckpt.pth", sha="cd" * 32, seed=3)])
    (row,) = check(base, retrained)
    assert row.status == "missing" and row.note == "no result with these weights (found ['ckpt.pth@cdcdcdcd'])"
    (row,) = check(base, retrained, match_weights_by_name=True)
    assert row.status == "same"


def scan_of(folder, results):
    for result in results:
        write_result(result, folder)
    return scan([folder])


@pytest.mark.parametrize("argv, fragment", [
    (["--baseline", "{tmp}/none.jsonl"], "no such file"),
    (["--baseline", "{tmp}/empty.jsonl"], "holds no result records"),
    (["--baseline", "{tmp}/empty.jsonl", "--tolerance", "top1"], "expected METRIC=ABS"),
    (["--baseline", "{tmp}/empty.jsonl", "--tolerance", "top1=-1"], "expected METRIC=ABS"),
])
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, argv, fragment):
    (tmp_path / "empty.jsonl").write_text("\n")
    code, out, err = run_cli("check", *[a.format(tmp=tmp_path) for a in argv], "--results", str(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dinobench check: error:") and fragment in lines[0]


def test_real_runs_frozen_baseline_passes_and_a_config_change_is_not_comparable(run_cli, tmp_path):
    # (re-runs give identical metrics and hashes: tests/core/test_cli_run.py::test_runs_never_overwrite_each_other)
    import dinobench
    from conftest import TINY_OPTIONS

    options = TINY_OPTIONS + ["protocol.nb_knn=[10]", "transform.resize=32", "transform.crop=32"]
    dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path / "base"), options=options, seed=1)
    baseline = tmp_path / "baseline.jsonl"
    assert run_cli("report", str(tmp_path / "base"), "--jsonl", str(baseline))[0] == 0
    code, out, err = run_cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "base"))
    assert code == 0, (out, err)
    (row,) = _rows(out).values()
    assert row[0] == "same" and row[1] == "vit_tiny(depth=2,embed_dim=64,num_heads=2)" and row[8] == "+0.0000"
    dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path / "changed"), seed=1,
                  options=options + ["transform.crop=24"])
    code, out, _ = run_cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "changed"))
    (row,) = _rows(out).values()
    assert code == 0 and row[0] == "not-comparable" and row[-1] == "config differs: transform.crop=24 (baseline: 32)"
    assert run_cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "changed"), "--strict")[0] == 1
