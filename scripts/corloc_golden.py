"""Regenerate tests/fixtures/corloc_official.json from checkouts of the LOST and TokenCut reference code.

    python scripts/corloc_golden.py --lost /path/to/LOST --tokencut /path/to/TokenCut \
        [--out tests/fixtures/corloc_official.json]

(valeoai/LOST, YangtaoWANG95/TokenCut; ``git clone``, or ``git archive HEAD datasets.py main_lost.py`` of a bare
copy, is enough; the fixture was made from LOST fcedbecb644f18358a660ce58c739cc6374feda8 and TokenCut
fed52cd5b60891baefd8ec7110dafa73be816ee1.) The reference modules cannot be imported here (``datasets.py`` pulls in skimage, the
``main_*.py`` scripts parse arguments and load a model at import), so the script reads their source and
executes only the parts it needs, located in the syntax tree with :mod:`ast`:

- ``bbox_iou`` (the ``def`` node of ``datasets.py``), run with ``torch`` and ``math`` as its only globals;
- the CorLoc decision of the evaluation loop (``main_lost.py`` / ``main_tokencut.py``: the statement assigning
  ``ious = bbox_iou(torch.from_numpy(pred), torch.from_numpy(gt_bbxs))`` and the ``if`` right after it, which
  sets ``corloc[im_id] = 1``), run with ``pred``, ``gt_bbxs``, ``corloc`` and ``im_id`` bound per case.

Every case of :data:`CASES` (IoU exactly 0.5 as float64 and as integer boxes, thin integer boxes, touching,
degenerate, inverted and tiny boxes, mixed dtypes) goes through both repositories' code, which must agree;
the inputs (with their dtype), the reference IoUs (float32 or float64 as returned, stored exactly) and
hits are written. tests/discovery/test_discovery.py compares dinobench's ``box_iou`` / ``corloc``.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
from pathlib import Path

import numpy as np
import torch

#: name -> (predicted box, ground-truth boxes, numpy dtype of both; "mixed": prediction float64, truth int64)
CASES = {
    "iou_half_float64": ([0, 0, 10, 5], [[0, 0, 10, 10]], "float64"),
    "iou_half_int64": ([0, 0, 10, 5], [[0, 0, 10, 10]], "int64"),
    "iou_half_int64_large": ([0, 0, 100, 50], [[0, 0, 100, 100]], "int64"),
    "iou_half_side_by_side_float64": ([0, 0, 30, 10], [[10, 0, 40, 10]], "float64"),
    "iou_half_side_by_side_int64": ([0, 0, 30, 10], [[10, 0, 40, 10]], "int64"),
    "iou_half_thin_int64": ([0, 0, 2, 1], [[0, 0, 4, 1]], "int64"),
    "iou_half_thin_float64": ([0, 0, 2, 1], [[0, 0, 4, 1]], "float64"),
    "just_above_half_float64": ([0, 0, 10, 5.00001], [[0, 0, 10, 10]], "float64"),
    "just_below_half_float64": ([0, 0, 10, 4.99999], [[0, 0, 10, 10]], "float64"),
    "touching": ([0, 0, 10, 10], [[10, 0, 20, 10]], "float64"),
    "identical": ([3, 4, 50, 60], [[3, 4, 50, 60]], "float64"),
    "identical_tiny": ([0, 0, 1e-4, 1e-4], [[0, 0, 1e-4, 1e-4]], "float64"),
    "point_inside": ([5, 5, 5, 5], [[0, 0, 10, 10]], "float64"),
    "point_on_point": ([5, 5, 5, 5], [[5, 5, 5, 5]], "float64"),
    "zero_height_identical": ([0, 0, 10, 0], [[0, 0, 10, 0]], "int64"),
    "inverted_prediction": ([10, 10, 0, 0], [[0, 0, 10, 10]], "float64"),
    "second_truth_hits": ([0, 0, 10, 10], [[20, 20, 30, 30], [0, 0, 10, 20], [1, 1, 9, 9]], "float64"),
    "mixed_dtypes": ([12.8, 25.6, 140.8, 200.0], [[10, 20, 150, 210], [300, 10, 400, 90]], "mixed"),
    "scaled_fractional": ([31.25, 0.0, 93.75, 46.875], [[30, 2, 95, 47], [0, 0, 20, 20]], "mixed"),
}


def arrays(pred: list, truth: list, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The case's numpy arrays with the dtypes the reference would receive."""
    if dtype == "mixed":
        return np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.int64)
    return np.asarray(pred, dtype=dtype), np.asarray(truth, dtype=dtype)


def load_bbox_iou(datasets_py: Path):
    """The reference ``bbox_iou``: its ``def`` node alone, executed with torch and math as globals."""
    tree = ast.parse(datasets_py.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "bbox_iou")
    namespace = {"torch": torch, "math": math}
    exec(compile(ast.Module([node], []), str(datasets_py), "exec"), namespace)
    return namespace["bbox_iou"], node.lineno


def load_decision(main_py: Path):
    """The evaluation loop's two statements ``ious = bbox_iou(...)`` and the following ``if ...: corloc[im_id] = 1``
    (compiled code, line of the assignment)."""
    tree = ast.parse(main_py.read_text())
    for parent in ast.walk(tree):
        body = getattr(parent, "body", None)
        if not isinstance(body, list):
            continue
        for i, node in enumerate(body[:-1]):
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ious"] \
                    and isinstance(body[i + 1], ast.If):
                return compile(ast.Module(body[i:i + 2], []), str(main_py), "exec"), node.lineno
    raise SystemExit(f"{main_py}: no 'ious = bbox_iou(...)' followed by an if")


def run(bbox_iou, decision, pred: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, bool]:
    """The reference IoUs and hit for one case."""
    namespace = {"bbox_iou": bbox_iou, "torch": torch, "np": np, "pred": pred, "gt_bbxs": truth,
                 "corloc": np.zeros(1), "im_id": 0}
    exec(decision, namespace)
    return namespace["ious"], bool(namespace["corloc"][0] == 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lost", type=Path, required=True, help="a valeoai/LOST checkout")
    parser.add_argument("--tokencut", type=Path, required=True, help="a YangtaoWANG95/TokenCut checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures"
                        / "corloc_official.json")
    args = parser.parse_args()
    references = {}
    for name, root, main_py in (("LOST", args.lost, "main_lost.py"), ("TokenCut", args.tokencut, "main_tokencut.py")):
        (iou_fn, iou_line), (decision, decision_line) = load_bbox_iou(root / "datasets.py"), load_decision(root / main_py)
        references[name] = (iou_fn, decision, {"bbox_iou": f"datasets.py:{iou_line}", "decision": f"{main_py}:{decision_line}"})
    cases = []
    for name, (pred, truth, dtype) in CASES.items():
        results = []
        for iou_fn, decision, _ in references.values():
            p, t = arrays(pred, truth, dtype)
            results.append(run(iou_fn, decision, p, t))
        (ious, hit), (other_ious, other_hit) = results
        if hit != other_hit or not torch.equal(ious, other_ious):
            raise SystemExit(f"{name}: LOST and TokenCut disagree ({ious} {hit} / {other_ious} {other_hit})")
        cases.append({"name": name, "pred": pred, "truth": truth, "dtype": dtype,
                      "iou_dtype": str(ious.dtype).replace("torch.", ""), "ious": [float(v) for v in ious.tolist()],
                      "hit": hit})
    hits = [c["hit"] for c in cases]
    out = {"source": {name: where for name, (_, _, where) in references.items()}, "threshold": 0.5, "cases": cases,
           "corloc": 100.0 * sum(hits) / len(hits)}
    lines = ",\n  ".join(json.dumps(case) for case in out.pop("cases"))  # one case a line
    args.out.write_text(json.dumps(out, indent=1)[:-2] + f',\n "cases": [\n  {lines}\n ]\n}}\n')
    print(f"{args.out}: {len(cases)} cases, {sum(hits)} hits, " + ", ".join(f"{c['name']}={c['hit']}" for c in cases))


if __name__ == "__main__":
    main()
