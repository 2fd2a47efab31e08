"""Image retrieval: cosine ranking in query chunks (torch, or faiss for large databases) and its metrics.

- :func:`revisited_metrics`: the revisited Oxford/Paris protocol (Radenovic et al. 2018, the
  ``revisitop`` ``compute_map``): per setting Easy (positives: easy; junk: junk + hard), Medium
  (easy + hard; junk) and Hard (hard; junk + easy), junk images are removed from the ranking before
  the AP, the AP is the trapezoidal one of ``revisitop`` and mP@k uses ``min(k, rank of the last
  positive)`` as denominator; queries without positives in a setting are left out of its means.
- :func:`label_retrieval_metrics`: class-label retrieval (query / database folders): mAP over the whole
  ranking, mAP@R (Musgrave et al. 2020: precision at each relevant rank within the first R, R = number
  of relevant items) and R@k (a relevant item among the first k).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dinobench.errors import ConfigError, DataError

SETTINGS = {"easy": (("easy",), ("junk", "hard")), "medium": (("easy", "hard"), ("junk",)),
            "hard": (("hard",), ("junk", "easy"))}


def iter_rankings(query: Tensor, database: Tensor, *, chunk_size: int = 256,
                  backend: Literal["torch", "faiss"] = "torch") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first query, ranks [m, N])``: database indices by decreasing cosine similarity (features
    L2-normalised here; ties in index order), one chunk of ``chunk_size`` queries at a time."""
    query = F.normalize(query.float(), dim=1)
    database = F.normalize(database.float(), dim=1)
    if query.shape[1] != database.shape[1]:
        raise DataError(f"retrieval: query features are {query.shape[1]}-d, database features "
                        f"{database.shape[1]}-d")
    if backend == "faiss":
        try:
            logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs which SIMD build it picked
            import faiss
        except ImportError as exc:
            raise ConfigError("retrieval: protocol.backend='faiss' needs faiss; pip install faiss-cpu "
                              "(or faiss-gpu), or use backend='torch'") from exc
        index = faiss.IndexFlatIP(database.shape[1])
        index.add(np.ascontiguousarray(database.numpy(), dtype=np.float32))
        for start in range(0, len(query), chunk_size):
            _, ranks = index.search(np.ascontiguousarray(query[start:start + chunk_size].numpy()), len(database))
            yield start, ranks.astype(np.int64)
        return
    if backend != "torch":
        raise ConfigError(f"retrieval: protocol.backend={backend!r}: use 'torch' or 'faiss'")
    database_t = database.T.contiguous()
    for start in range(0, len(query), chunk_size):
        sims = query[start:start + chunk_size] @ database_t
        yield start, torch.argsort(sims, dim=1, descending=True, stable=True).numpy()


def revisited_ap(positions: np.ndarray, n_positives: int) -> float:
    """``revisitop``'s AP of positives at 0-based ``positions`` (sorted, junk already removed)."""
    ranks = np.asarray(positions, dtype=np.float64)
    j = np.arange(len(ranks), dtype=np.float64)
    precision_before = np.where(ranks > 0, j / np.maximum(ranks, 1), 1.0)
    precision_after = (j + 1) / (ranks + 1)
    return float(((precision_before + precision_after) / 2).sum() / n_positives)


def _positions(ranking: np.ndarray, members: np.ndarray) -> np.ndarray:
    """0-based positions in ``ranking`` of the database indices ``members`` (sorted)."""
    return np.flatnonzero(np.isin(ranking, members))


def revisited_query(ranking: np.ndarray, positives: np.ndarray, junk: np.ndarray,
                    kappas: Sequence[int]) -> tuple[float, list[float]] | None:
    """(AP, [P@k per kappa]) of one query in one setting; None when it has no positives."""
    if len(positives) == 0:
        return None
    pos = _positions(ranking, positives)
    junk_pos = _positions(ranking, junk)
    pos = pos - np.searchsorted(junk_pos, pos, side="left")  # junk ranked before a positive does not count
    ap = revisited_ap(pos, len(positives))
    one_based = pos + 1
    precisions = []
    for k in kappas:
        kq = min(int(one_based.max()), int(k))
        precisions.append(float((one_based <= kq).sum() / kq))
    return ap, precisions


def _indices(gnd: dict[str, Any], keys: Sequence[str]) -> np.ndarray:
    parts = [np.asarray(gnd.get(key, []), dtype=np.int64).reshape(-1) for key in keys]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def revisited_metrics(rankings: Iterator[tuple[int, np.ndarray]], gnd: Sequence[dict[str, Any]],
                      kappas: Sequence[int] = (1, 5, 10)) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """``mAP_<setting>`` and ``mP@<k>_<setting>`` in % for Easy/Medium/Hard, and one row per query (its APs).

    A setting where no query has positives is a one-line DataError (its mean would be undefined)."""
    aps = {name: [] for name in SETTINGS}
    precisions = {name: [] for name in SETTINGS}
    rows: list[dict[str, Any]] = []
    for start, ranks in rankings:
        for offset, ranking in enumerate(ranks):
            q = start + offset
            row: dict[str, Any] = {"query": q}
            for name, (ok_keys, junk_keys) in SETTINGS.items():
                out = revisited_query(ranking, _indices(gnd[q], ok_keys), _indices(gnd[q], junk_keys), kappas)
                row[f"AP_{name}"] = None if out is None else round(100 * out[0], 4)
                if out is not None:
                    aps[name].append(out[0])
                    precisions[name].append(out[1])
            rows.append(row)
    metrics: dict[str, float] = {}
    for name in SETTINGS:
        if not aps[name]:
            raise DataError(f"revisited retrieval: no query has a positive in the {name} setting; the ground "
                            f"truth holds no {'/'.join(SETTINGS[name][0])} images")
        metrics[f"mAP_{name}"] = 100 * float(np.mean(aps[name]))
        for k, value in zip(kappas, np.mean(np.asarray(precisions[name]), axis=0)):
            metrics[f"mP@{k}_{name}"] = 100 * float(value)
    return metrics, rows


def label_retrieval_metrics(rankings: Iterator[tuple[int, np.ndarray]], query_labels: np.ndarray,
                            database_labels: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``mAP``, ``mAP@R`` and ``R@<k>`` in % over the queries with at least one relevant database item
    (``queries_without_relevant`` counts the others)."""
    query_labels, database_labels = np.asarray(query_labels), np.asarray(database_labels)
    sums = {"mAP": 0.0, "mAP@R": 0.0, **{f"R@{k}": 0.0 for k in ks}}
    counted = skipped = 0
    for start, ranks in rankings:
        relevant = database_labels[ranks] == query_labels[start:start + len(ranks), None]  # [m, N]
        n_relevant = relevant.sum(axis=1)
        keep = n_relevant > 0
        skipped += int((~keep).sum())
        relevant, n_relevant = relevant[keep], n_relevant[keep]
        if not len(relevant):
            continue
        counted += len(relevant)
        hits = np.cumsum(relevant, axis=1)
        precision = hits / np.arange(1, relevant.shape[1] + 1)
        sums["mAP"] += float(((precision * relevant).sum(axis=1) / n_relevant).sum())
        within_r = np.arange(relevant.shape[1])[None, :] < n_relevant[:, None]
        sums["mAP@R"] += float(((precision * relevant * within_r).sum(axis=1) / n_relevant).sum())
        for k in ks:
            sums[f"R@{k}"] += float(relevant[:, :k].any(axis=1).sum())
    if counted == 0:
        raise DataError("retrieval: no query has a relevant database image (no shared labels)")
    metrics = {name: 100 * value / counted for name, value in sums.items()}
    metrics["queries_without_relevant"] = float(skipped)
    return metrics
