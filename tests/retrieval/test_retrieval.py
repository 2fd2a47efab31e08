"""Image retrieval: the revisited Oxford/Paris metrics against a direct float64 transcription of the protocol's
formula (``revisitop``'s compute_map: junk removal by a running counter, trapezoidal AP, mP@k with
``min(k, last positive)``), label-retrieval metrics against scikit-learn / hand counts, the restricted unpickler
refusing a malicious ground-truth file without running it, torch and faiss rankings agreeing, and the three
tasks end to end on synthetic data in the real layouts."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from dinobench.data.retrieval import build_roxford5k
from dinobench.synthetic.retrieval import write_synthetic_retrieval_folder, write_synthetic_revisited
from dinobench.errors import DataError
from dinobench.metrics.retrieval import iter_rankings, label_retrieval_metrics, revisited_ap, revisited_metrics
from dinobench.utils.safe_pickle import restricted_load, restricted_loads
from helpers import run_task


# ------------------------------------------------------------------ the revisited formula, written out directly
def reference_ap(ranks, nres):
    ap = 0.0
    recall_step = 1.0 / nres
    for j, rank in enumerate(ranks):
        precision_0 = 1.0 if rank == 0 else float(j) / rank
        precision_1 = float(j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * recall_step / 2.0
    return ap


def reference_map(ranks, gnd, kappas):
    """``ranks`` [N, Q] (database index at each rank, per query column) as revisitop takes it."""
    nq = len(gnd)
    total, nempty, pr = 0.0, 0, np.zeros(len(kappas))
    for i in range(nq):
        qgnd = np.array(gnd[i]["ok"])
        if qgnd.shape[0] == 0:
            nempty += 1
            continue
        qgndj = np.array(gnd[i]["junk"]) if len(gnd[i]["junk"]) else np.empty(0)
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgnd)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgndj)]
        k, ij = 0, 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        total += reference_ap(pos, len(qgnd))
        pos = pos + 1
        for j, kappa in enumerate(kappas):
            kq = min(max(pos), kappa)
            pr[j] += (pos <= kq).sum() / kq
    return total / (nq - nempty), pr / (nq - nempty)


SETTINGS = {"easy": (["easy"], ["junk", "hard"]), "medium": (["easy", "hard"], ["junk"]),
            "hard": (["hard"], ["junk", "easy"])}


def test_revisited_metrics_equal_the_protocol_formula_on_hand_made_rankings():
    rng = np.random.default_rng(0)
    n_db, kappas = 30, (1, 5, 10)
    gnd = []
    for q in range(7):
        perm = rng.permutation(n_db)
        easy, hard, junk = perm[:3].tolist(), perm[3:6].tolist(), perm[6:9].tolist()
        if q == 2:
            hard = []  # no positive in Hard: left out of that setting's means only
        if q == 4:
            easy, junk = [], []
        gnd.append({"bbx": [0, 0, 1, 1], "easy": easy, "hard": np.asarray(hard, dtype=np.int64), "junk": junk})
    ranks = np.stack([rng.permutation(n_db) for _ in gnd])  # [Q, N]
    ranks[0] = np.r_[gnd[0]["junk"], gnd[0]["easy"], [i for i in range(n_db) if i not in gnd[0]["junk"] + gnd[0]["easy"]]]
    metrics, rows = revisited_metrics(iter([(0, ranks[:4]), (4, ranks[4:])]), gnd, kappas)
    for name, (ok_keys, junk_keys) in SETTINGS.items():
        setting_gnd = [{"ok": np.concatenate([np.asarray(g[k], dtype=np.int64) for k in ok_keys]),
                        "junk": np.concatenate([np.asarray(g[k], dtype=np.int64) for k in junk_keys])} for g in gnd]
        expected_map, expected_pr = reference_map(ranks.T.copy(), setting_gnd, kappas)
        assert metrics[f"mAP_{name}"] == pytest.approx(100 * expected_map, abs=1e-10)
        for k, value in zip(kappas, expected_pr):
            assert metrics[f"mP@{k}_{name}"] == pytest.approx(100 * value, abs=1e-10)
    assert rows[2]["AP_hard"] is None and rows[4]["AP_easy"] is None and rows[2]["AP_easy"] is not None
    # query 0 ranks its 3 junk images first, then its 3 easy positives: with junk ignored, AP (easy) is exactly 1
    assert rows[0]["AP_easy"] == pytest.approx(100.0)


def test_revisited_ap_hand_computed():
    # positives at ranks 0 and 2 of 2: (1 + 1)/2 * 1/2 + (1/2 + 2/3)/2 * 1/2
    assert revisited_ap(np.array([0, 2]), 2) == pytest.approx(0.5 + (0.5 + 2 / 3) / 4)
    assert revisited_ap(np.array([0, 1, 2]), 3) == pytest.approx(1.0)
    with pytest.raises(DataError, match="no query has a positive in the hard setting"):
        revisited_metrics(iter([(0, np.arange(4)[None])]), [{"easy": [1], "hard": [], "junk": []}])


def test_label_retrieval_metrics_equal_sklearn_ap_and_hand_counts():
    rng = np.random.default_rng(1)
    query, database = torch.randn(9, 16), torch.randn(40, 16)
    q_labels, db_labels = rng.integers(0, 4, 9), rng.integers(0, 4, 40)
    q_labels[0] = 7  # a label with no database item: left out and counted
    metrics = label_retrieval_metrics(iter_rankings(query, database, chunk_size=4), q_labels, db_labels)
    sims = (torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(database, dim=1).T).double()
    aps, ap_r, r1, r5 = [], [], [], []
    for i in range(1, 9):
        relevant = db_labels == q_labels[i]
        aps.append(average_precision_score(relevant, sims[i].numpy()))
        order = np.argsort(-sims[i].numpy(), kind="stable")
        rel_sorted, big_r = relevant[order], relevant.sum()
        ap_r.append(sum(rel_sorted[:j + 1].sum() / (j + 1) for j in range(big_r) if rel_sorted[j]) / big_r)
        r1.append(rel_sorted[:1].any())
        r5.append(rel_sorted[:5].any())
    assert metrics["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-9)
    assert metrics["mAP@R"] == pytest.approx(100 * np.mean(ap_r), abs=1e-9)
    assert metrics["R@1"] == pytest.approx(100 * np.mean(r1)) and metrics["R@5"] == pytest.approx(100 * np.mean(r5))
    assert metrics["queries_without_relevant"] == 1.0


def test_faiss_ranking_gives_the_torch_numbers():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    query, database = torch.randn(13, 32), torch.randn(200, 32)
    q_labels, db_labels = rng.integers(0, 5, 13), rng.integers(0, 5, 200)
    torch_m = label_retrieval_metrics(iter_rankings(query, database, chunk_size=5), q_labels, db_labels)
    faiss_m = label_retrieval_metrics(iter_rankings(query, database, chunk_size=5, backend="faiss"), q_labels,
                                      db_labels)
    assert faiss_m == pytest.approx(torch_m, abs=1e-9)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dinobench-pwned-marker",))


def test_restricted_unpickler_admits_containers_and_arrays_and_refuses_anything_else(tmp_path):
    data = {"imlist": ["a"], "gnd": [{"bbx": [1.0, 2.0, 3.0, 4.0], "hard": np.arange(3)}], "t": (1, None, True)}
    for protocol in (2, 4, 5):
        back = restricted_loads(pickle.dumps(data, protocol=protocol))
        assert back["imlist"] == ["a"] and back["t"] == (1, None, True)
        np.testing.assert_array_equal(back["gnd"][0]["hard"], np.arange(3))
    marker = tmp_path / "marker"
    evil = pickle.dumps({"gnd": [_Boom()]}).replace(b"/tmp/dinobench-pwned-marker", str(marker).encode())
    with pytest.raises(DataError, match=r"refused to unpickle global (posix|os)\.system") as info:
        restricted_loads(evil, "gnd_roxford5k.pkl")
    assert "\n" not in str(info.value) and not marker.exists()
    (tmp_path / "gnd.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        restricted_load(tmp_path / "gnd.pkl")


def test_malicious_ground_truth_is_refused_by_the_cli_without_running(run_cli, tmp_path):
    root = write_synthetic_revisited(tmp_path, n_train=8, n_val=2)
    marker = tmp_path / "marker"
    evil = pickle.dumps({"imlist": [], "qimlist": [], "gnd": _Boom()}, protocol=2)
    (root / "gnd_roxford5k.pkl").write_bytes(evil.replace(b"/tmp/dinobench-pwned-marker", str(marker).encode()))
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "roxford5k-retrieval", "--data-root", str(root),
                           "--output", str(tmp_path / "out"))
    assert code == 2 and "refused to unpickle global" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_revisited_layout_is_validated(tmp_path):
    root = write_synthetic_revisited(tmp_path, n_train=8, n_val=2)
    splits = build_roxford5k({}, str(root))
    assert len(splits["query"]) == 2 and len(splits["database"]) == 8
    image, _ = splits["query"][0]
    x1, y1, x2, y2 = splits["query"].gnd[0]["bbx"]
    assert image.size == (round(x2) - round(x1), round(y2) - round(y1))  # cropped to its box
    (root / "jpg" / "db_0003.jpg").unlink()
    with pytest.raises(DataError, match="db_0003.jpg: image listed in the ground truth is missing"):
        build_roxford5k({}, str(root))
    with pytest.raises(DataError, match="gnd_roxford5k.pkl: ground-truth file missing"):
        build_roxford5k({}, str(tmp_path))


@pytest.mark.parametrize("task", ["roxford5k-retrieval", "rparis6k-retrieval"])
def test_revisited_tasks_end_to_end(run_cli, tmp_path, task):
    name = task.split("-")[0]
    root = write_synthetic_revisited(tmp_path, name=name)
    record, _ = run_task(run_cli, task, root, tmp_path / "out")
    assert record["protocol"] == "revisited_retrieval" and record["main_metric"]["name"] == "mAP_hard"
    assert {f"mAP_{s}" for s in ("easy", "medium", "hard")} <= set(record["metrics"])
    assert len(record["tables"]["per_query"]) == 6
    assert record["dataset"]["splits"]["query"]["cropped_to_boxes"] is True
    assert record["config"]["features"]["batch_size"] == 1
    multiscale, _ = run_task(run_cli, task, root, tmp_path / "out", "protocol.multiscale=True")
    assert multiscale["protocol_hash"] != record["protocol_hash"]
    assert multiscale["metrics"] != record["metrics"]


def test_folder_retrieval_end_to_end_and_in_the_report(run_cli, tmp_path):
    root = write_synthetic_retrieval_folder(tmp_path / "rf")
    record, _ = run_task(run_cli, "folder-retrieval", root, tmp_path / "out")
    assert record["protocol"] == "retrieval" and record["main_metric"]["name"] == "mAP"
    assert {"mAP", "mAP@R", "R@1", "R@5", "R@10"} <= set(record["metrics"])
    assert record["higher_is_better"]["queries_without_relevant"] is False
    code, out, _ = run_cli("list", "tasks")
    assert code == 0 and all(t in out for t in ("roxford5k-retrieval", "rparis6k-retrieval", "folder-retrieval"))
    code, out, err = run_cli("report", str(tmp_path / "out"), "--output", str(tmp_path / "report"))
    assert code == 0, err
    html = "".join(p.read_text() for p in (tmp_path / "report").rglob("*.html"))
    assert "folder-retrieval" in html
