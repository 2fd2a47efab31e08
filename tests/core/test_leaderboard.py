"""Results store and comparability rule: scanning, groups, seeds, throughput, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_OPTIONS
from helpers import make_result, with_config

import dinobench
from dinobench.errors import DataError
from dinobench.leaderboard import build_leaderboard, results_frame, scan, throughput
from dinobench.results import load_results, write_jsonl, write_result


def test_results_differing_only_in_config_hash_never_share_a_column(tmp_path):
    for seed in (0, 1):  # the 0.07 group has more rows: it keeps the plain task name
        write_result(make_result(50.0 + seed, seed=seed), tmp_path)
    write_result(make_result(60.0, weights="/ckpt/a.pth", sha="ab" * 32), tmp_path)
    write_result(make_result(99.0, config=with_config(temperature=0.1)), tmp_path)
    write_result(make_result(11.0, version="2"), tmp_path)
    write_result(make_result(22.0, fingerprint="fp-other"), tmp_path)

    df = scan([tmp_path])
    assert len(df) == 6
    assert df.groupby("column")["protocol_hash"].nunique().max() == 1  # one hash per column
    assert df.groupby("column")["protocol_version"].nunique().max() == 1
    lb = build_leaderboard(df)
    labels = [c.label for c in lb.columns]
    hot = make_result(0, config=with_config(temperature=0.1)).protocol_hash
    other_data = make_result(0, fingerprint="fp-other").protocol_hash
    base_hash = make_result(0).protocol_hash
    assert labels[0] == "digits-knn"
    assert set(labels[1:]) == {f"digits-knn [cfg {hot[:7]}]", f"digits-knn [cfg {other_data[:7]}]",
                               f"digits-knn [v2 cfg {base_hash[:7]}]"}
    notes = {c.label: c.note for c in lb.columns}
    assert notes["digits-knn"] == ""
    assert notes[f"digits-knn [cfg {hot[:7]}]"] == \
        "not comparable with digits-knn: config differs: protocol.temperature=0.1 (digits-knn: 0.07)"
    assert "dataset changed" in notes[f"digits-knn [cfg {other_data[:7]}]"]
    assert "protocol version 2 (digits-knn: 1)" in notes[f"digits-knn [v2 cfg {base_hash[:7]}]"]
    rand, ckpt = ("vit_tiny", "random-init"), ("vit_tiny", f"a.pth@{'ab' * 4}")
    assert lb.rows == [rand, ckpt]
    assert lb.cells[rand, "digits-knn"].mean == 50.5 and lb.cells[ckpt, "digits-knn"].mean == 60.0
    assert lb.cells[rand, f"digits-knn [cfg {hot[:7]}]"].mean == 99.0  # not averaged into digits-knn
    assert (ckpt, f"digits-knn [cfg {hot[:7]}]") not in lb.cells
    assert lb.best["digits-knn"] == {ckpt}


def test_real_runs_with_another_temperature_get_their_own_column(tmp_path):
    options = TINY_OPTIONS + ["protocol.nb_knn=[10]", "transform.resize=32", "transform.crop=32"]
    a = dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path), options=options)
    b = dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path),
                      options=options + ["protocol.temperature=0.5", "features.batch_size=32"])
    assert a.protocol_hash != b.protocol_hash
    lb = build_leaderboard(scan([tmp_path]))
    assert [c.label for c in lb.columns] == ["digits-knn", f"digits-knn [cfg {a.protocol_hash[:7]}]"]
    # one row each: the newest group keeps the plain task name
    assert lb.columns[1].note == "not comparable with digits-knn: config differs: protocol.temperature=0.07 " \
                                 "(digits-knn: 0.5)"
    apart = lb.columns[1]
    assert "batch_size" not in apart.note  # runtime-only keys never make results incomparable
    row = ("vit_tiny(depth=2,embed_dim=64,num_heads=2)", "random-init")
    assert lb.rows == [row]
    assert {lb.cells[row, c.label].mean for c in lb.columns} == {a.main_metric.value, b.main_metric.value}


def test_seeds_are_averaged_and_reruns_of_a_seed_count_once(tmp_path):
    values = {0: 48.0, 1: 51.5, 2: 50.25}
    for seed, value in values.items():
        write_result(make_result(value, seed=seed, created_at=f"2026-01-0{seed + 2}T00:00:00+00:00"), tmp_path)
    write_result(make_result(10.0, seed=1, created_at="2026-01-01T00:00:00+00:00"), tmp_path)  # older re-run
    lb = build_leaderboard(scan([tmp_path]))
    cell = lb.cells[("vit_tiny", "random-init"), "digits-knn"]
    want = np.array(list(values.values()), dtype=np.float64)
    assert cell.seeds == [0, 1, 2]
    assert cell.mean == pytest.approx(want.mean(), abs=1e-12)
    assert cell.std == pytest.approx(want.std(ddof=1), abs=1e-12)
    assert lb.n_scanned == 4 and len(lb.runs) == 3


def test_best_is_direction_aware_and_rows_keep_architectures_apart(tmp_path):
    depth = {"dataset": {"type": "nyu"}, "protocol": {"type": "depth_linear"}}
    write_result(make_result(0.40, task="nyu-linear", metric="rmse", higher=False, config=depth), tmp_path)
    write_result(make_result(0.35, task="nyu-linear", metric="rmse", higher=False, config=depth,
                             overrides={"depth": 2}), tmp_path)
    write_result(make_result(70.0, overrides={"depth": 2}), tmp_path)
    write_result(make_result(75.0), tmp_path)
    lb = build_leaderboard(scan([tmp_path]))
    assert lb.rows == [("vit_tiny", "random-init"), ("vit_tiny(depth=2)", "random-init")]
    assert lb.best == {"digits-knn": {("vit_tiny", "random-init")}, "nyu-linear": {("vit_tiny(depth=2)", "random-init")}}
    col = next(c for c in lb.columns if c.task == "nyu-linear")
    assert col.arrow == "↓" and col.metric == "rmse"


def test_throughput_uses_split_sizes_over_feature_timings():
    result = make_result(1.0, timings={"features_train_s": 2.0, "features_val_s": 0.5, "features_val_patch_s": 1.0,
                                       "protocol_s": 9.0},
                         splits={"train": {"size": 1000}, "val": {"size": 250}, "val_patch": {"size": 7}})
    # val_patch is a split here: its own size counts for features_val_patch_s (longest split-name match)
    assert throughput(result) == pytest.approx((1000 + 250 + 7) / 3.5)
    assert throughput(make_result(1.0, timings={"protocol_s": 3.0})) is None
    # features read from the on-disk cache measure no extraction: left out
    cached = make_result(1.0, timings={"features_train_s": 2.0, "features_val_s": 0.01, "features_val_cached": 1.0},
                         splits={"train": {"size": 1000}, "val": {"size": 250}})
    assert throughput(cached) == pytest.approx(1000 / 2.0)
    all_cached = make_result(1.0, timings={"features_train_s": 0.01, "features_train_cached": 1.0},
                             splits={"train": {"size": 1000}})
    assert throughput(all_cached) is None
    df = results_frame([make_result(1.0)])
    assert df.loc[0, "throughput"] == pytest.approx((1438 + 359) / 2.5)


def _write_many(args: tuple[str, int, int, object]) -> None:
    out, worker, count, barrier = args
    barrier.wait()  # every process starts writing at the same moment
    for i in range(count):
        write_result(make_result(float(worker * 1000 + i), seed=worker * 1000 + i), out)


@pytest.mark.parametrize("frozen_clock", [False, True])
def test_eight_concurrent_writers_lose_nothing(tmp_path, monkeypatch, frozen_clock):
    if frozen_clock:  # every write of every process races for the same folder names
        monkeypatch.setattr("dinobench.results.utc_timestamp", lambda now=None: "20260101T000000.000000Z")
    ctx = multiprocessing.get_context("fork")  # children only write files (no torch), so fork is safe and fast
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_write_many, args=((str(tmp_path), w, 25, barrier),)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    df = scan([tmp_path])
    assert len(df) == 200 and df["source"].nunique() == 200
    assert sorted(df["main_value"]) == sorted(float(w * 1000 + i) for w in range(8) for i in range(25))
    assert not list(tmp_path.rglob(".staging-*"))
    if frozen_clock:
        names = {Path(p).parent.name for p in df["source"]}
        assert names == {"20260101T000000.000000Z"} | {f"20260101T000000.000000Z-{i}" for i in range(1, 200)}


def test_scan_skips_staging_and_junk_but_explicit_bad_files_are_errors(tmp_path, caplog):
    good = write_result(make_result(50.0), tmp_path / "out")
    staging = good.parent.parent / ".staging-abc"
    staging.mkdir()
    (staging / "result.json").write_text(good.read_text())  # a run still being assembled
    junk = tmp_path / "out" / "old" / "result.json"
    junk.parent.mkdir()
    junk.write_text("{not json")
    assert len(load_results([tmp_path / "out"])) == 1
    assert "skipping" in caplog.text and str(junk) in caplog.text
    with pytest.raises(DataError, match="not a dinobench result.json"):
        load_results([junk])
    with pytest.raises(DataError, match="no such file or folder"):
        load_results([tmp_path / "nope"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(make_result(1.0).to_dict()) + "\n\n{\"task\": 1}\n")
    with pytest.raises(DataError, match=r"bad.jsonl:3: not a dinobench result record"):
        load_results([bad])


def test_jsonl_baseline_round_trips(tmp_path):
    results = [make_result(50.0 + s, seed=s, created_at=f"2026-01-0{s + 1}T00:00:00+00:00") for s in range(3)]
    path = write_jsonl(tmp_path / "baseline.jsonl", results)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # shareable, not the temp file's 0600
    back = load_results([path])
    assert [r.to_dict() for r in back] == [r.to_dict() for r in results]
    assert [r.path for r in back] == [f"{path}:{i}" for i in (1, 2, 3)]
    df = scan([path])
    assert list(df["seed"]) == [0, 1, 2] and list(df["column"]) == ["digits-knn"] * 3
    assert Path(df.loc[0, "source"]).name == "baseline.jsonl:1"


def test_protocol_tables_reach_the_markdown_and_html_report(tmp_path):
    from dinobench.report import html_page, markdown

    result = make_result(41.5, task="ade20k-linear", metric="mIoU")
    result.tables = {"per_class_iou": [{"class": "wall", "IoU": 71.25}, {"class": "<b>sky|blue</b>", "IoU": float("nan")}]}
    write_result(result, tmp_path)
    loaded = load_results([tmp_path])
    rows = loaded[0].tables["per_class_iou"]  # the record keeps the table (NaN for a class never seen)
    assert rows[0] == {"class": "wall", "IoU": 71.25} and np.isnan(rows[1]["IoU"])
    lb = build_leaderboard(scan([tmp_path]))
    md = markdown(lb, "t")
    assert "### vit_tiny · random-init · seed 0 · per_class_iou" in md
    # HTML and '|' escaped for Markdown (issue 18: raw HTML from names never reaches a renderer), NaN as a dash
    assert "| wall | 71.25 |" in md and "| &lt;b&gt;sky\\|blue&lt;/b&gt; | – |" in md and "<b>sky" not in md
    page = html_page(lb, "t")
    assert "<summary>vit_tiny · random-init · seed 0 · per_class_iou</summary>" in page
    assert "&lt;b&gt;sky|blue&lt;/b&gt;" in page and "<b>sky" not in page  # escaped for HTML
