"""Regenerate tests/fixtures/pck_official.json from a checkout of DIFT (Tsingularity/dift), whose ``eval_spair.py``
is the standard SPair-71k keypoint-transfer evaluation.

    python scripts/correspondence_golden.py --dift /path/to/dift [--out tests/fixtures/pck_official.json]

(``git clone``, or ``git archive HEAD eval_spair.py`` of a bare copy, is enough; the fixture was made from commit
9421eb2034396c5b66f1aff37f03e540c264e52f, whose file's sha256 it records.) ``eval_spair.py`` cannot be
imported here (it imports the diffusion featurizers and needs CUDA) and its keypoint transfer and PCK are inline
in ``main``, so the script executes the ``def main`` node alone (located with :mod:`ast`) on a small SPair-71k tree
written to a temporary folder, with these stand-ins in its globals: ``SDFeaturizer4Eval`` returns the fixed
feature map of each image (``[1, C, gh, gw]``, float32) instead of running Stable Diffusion, ``torch.cuda.set_device``
does nothing, ``np`` and ``json`` are the real modules seen through proxies that record each pair annotation read
and every ``np.unravel_index`` answer (the matched target pixel of each keypoint, in order), and ``print`` is
recorded. Everything else - upsampling to the original image size, per-pixel normalisation, the cosine argmax, the
distance, the bounding-box threshold and its ``<= 0.1``, the per-image / per-point averages - is the reference's.

Pairs (:data:`PAIRS`): random maps at patch-grid sizes upsampled to other image sizes (non-square, source and
target differently sized, 2 x 2 grids with wide border plateaus), target keypoints placed up to 0.15 x the box
size from the match (so that some are correct at 0.1 and some not), and ``boundary``, a full-resolution map (no
interpolation) built so that the matches are known: target keypoints 1 px from them (error / threshold exactly
0.1), sqrt(2) px and 0 px away, with a 10 px box. Random keypoints whose best target pixel is less than
:data:`MARGIN` ahead of the runner-up (cosine; a check computation here, not stored) are not used: their answer
would follow one CPU's float32 rounding. Exact ties (the clamped top / left border pixels) are kept: they resolve
to the first pixel everywhere. Feature values are multiples of 1/64 (exact in float32, short in json). Stored: each image's map and
size, each pair's keypoints and box, the reference's matched pixels, correct counts (from its per-category
print; one pair per category) and printed totals. tests/correspondence/test_correspondence.py compares.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MARGIN = 1e-4
SEED = 20261208
#: category -> (source (w, h), source grid (gh, gw), target (w, h), target grid, channels, keypoints, target box)
PAIRS = {
    "alpha": ((37, 29), (3, 4), (41, 23), (3, 4), 8, 6, [3, 2, 35, 20]),
    "bravo": ((50, 40), (4, 5), (30, 35), (5, 4), 8, 7, [0, 0, 30, 35]),
    "delta": ((30, 20), (2, 2), (33, 26), (2, 3), 8, 5, [5, 4, 28, 24]),
    "echo": ((64, 48), (3, 4), (56, 72), (4, 3), 12, 8, [10, 6, 50, 66]),
}
#: the boundary pair: 16 x 12 images at full resolution; target box 10 px wide -> threshold 10, alpha 0.1 -> 1 px
BOUNDARY_SIZE, BOUNDARY_BOX = (16, 12), [2, 1, 12, 9]
BOUNDARY_SOURCE = [[3, 2], [8, 5], [12, 9], [5, 10]]
BOUNDARY_MATCH = [[4, 3], [10, 6], [6, 8], [13, 2]]  # where the target map holds each source keypoint's vector
BOUNDARY_OFFSET = [[1, 0], [1, 1], [0, 0], [0, 1]]  # target keypoint - match: error 1, sqrt 2, 0, 1


def quantised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal-ish float32 values on a 1/64 grid."""
    return (np.round(rng.normal(size=shape) * 64) / 64).astype(np.float32)


def cosine_map(source: np.ndarray, target: np.ndarray, point: tuple[int, int], src_size, trg_size) -> np.ndarray:
    """Selection only (not stored): the target-pixel cosines of a source pixel, to check the best one's margin."""
    up = [F.interpolate(torch.from_numpy(m)[None], size=(s[1], s[0]), mode="bilinear")[0]
          for m, s in ((source, src_size), (target, trg_size))]
    vector = F.normalize(up[0][:, point[1], point[0]], dim=0)
    return (F.normalize(up[1].flatten(1), dim=0).T @ vector).numpy()


def robust(values: np.ndarray) -> bool:
    """Whether the best value leads every smaller one by MARGIN (exact ties resolve the same on every CPU)."""
    best = values.max()
    below = values[values < best]
    return not len(below) or best - below.max() > MARGIN


def build_pairs() -> tuple[dict, list]:
    """Images ``{name: {"size", "features"}}`` and pairs (category, names, keypoints, box)."""
    rng = np.random.default_rng(SEED)
    images, pairs = {}, []
    for category, (src_size, src_grid, trg_size, trg_grid, dim, count, box) in PAIRS.items():
        source, target = quantised(rng, (dim, *src_grid)), quantised(rng, (dim, *trg_grid))
        src_kps, trg_kps = [], []
        reach = int(np.ceil(0.15 * max(box[2] - box[0], box[3] - box[1])))
        corners = [[0, 0], [src_size[0] - 1, src_size[1] - 1]]
        while len(src_kps) < count:
            point = corners.pop() if corners else [int(rng.integers(src_size[0])), int(rng.integers(src_size[1]))]
            cosines = cosine_map(source, target, tuple(point), src_size, trg_size)
            if point in src_kps or not robust(cosines):
                continue
            src_kps.append(point)
            # the target keypoint a few pixels from the match, inside or outside the 0.1 x box radius
            row, col = np.unravel_index(int(cosines.argmax()), (trg_size[1], trg_size[0]))
            dx, dy = rng.integers(-reach, reach + 1, size=2)
            trg_kps.append([int(np.clip(col + dx, 0, trg_size[0] - 1)), int(np.clip(row + dy, 0, trg_size[1] - 1))])
        images[f"{category}_src"] = {"size": list(src_size), "features": source.tolist()}
        images[f"{category}_trg"] = {"size": list(trg_size), "features": target.tolist()}
        pairs.append((category, f"{category}_src", f"{category}_trg", src_kps, trg_kps, box))
    width, height = BOUNDARY_SIZE
    dim = len(BOUNDARY_SOURCE) + 2  # a one-hot channel per keypoint, two background channels
    source, target = np.zeros((dim, height, width), np.float32), np.zeros((dim, height, width), np.float32)
    source[-2:], target[-2:] = quantised(rng, (2, height, width)), quantised(rng, (2, height, width))
    for k, ((sx, sy), (tx, ty)) in enumerate(zip(BOUNDARY_SOURCE, BOUNDARY_MATCH)):
        source[:, sy, sx], target[:, ty, tx] = 0.0, 0.0
        source[k, sy, sx] = target[k, ty, tx] = 2.0
    trg_kps = [[tx + dx, ty + dy] for (tx, ty), (dx, dy) in zip(BOUNDARY_MATCH, BOUNDARY_OFFSET)]
    images["boundary_src"] = {"size": [width, height], "features": source.tolist()}
    images["boundary_trg"] = {"size": [width, height], "features": target.tolist()}
    pairs.append(("boundary", "boundary_src", "boundary_trg", BOUNDARY_SOURCE, trg_kps, BOUNDARY_BOX))
    return images, pairs


def write_spair(root: Path, images: dict, pairs: list) -> None:
    """The SPair-71k layout eval_spair.py reads (JPEGImages/<category>/, PairAnnotation/test/*.json)."""
    from PIL import Image

    (root / "PairAnnotation" / "test").mkdir(parents=True)
    for n, (category, src, trg, src_kps, trg_kps, box) in enumerate(pairs):
        folder = root / "JPEGImages" / category
        folder.mkdir(parents=True)
        for name in (src, trg):
            Image.new("RGB", tuple(images[name]["size"])).save(folder / f"{name}.jpg")
        record = {"src_imname": f"{src}.jpg", "trg_imname": f"{trg}.jpg", "category": category,
                  "src_imsize": images[src]["size"] + [3], "trg_imsize": images[trg]["size"] + [3],
                  "src_kps": src_kps, "trg_kps": trg_kps, "trg_bndbox": box}
        (root / "PairAnnotation" / "test" / f"{n:06d}-{src}-{trg}:{category}.json").write_text(json.dumps(record))


def run_reference(eval_spair: Path, root: Path, images: dict) -> tuple[list, list]:
    """Execute ``main`` of eval_spair.py on ``root``; (events ``("pair", file stem)`` / ``("match", (row, col))``,
    printed lines)."""
    tree = ast.parse(eval_spair.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    events, printed = [], []

    class Featurizer:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def forward(self, img, **kwargs) -> torch.Tensor:
            return torch.tensor(images[Path(img.filename).stem]["features"], dtype=torch.float32)[None]

    def load(handle, *args, **kwargs):
        events.append(("pair", Path(handle.name).stem))
        return json.load(handle, *args, **kwargs)

    def unravel_index(*args, **kwargs):
        answer = np.unravel_index(*args, **kwargs)
        events.append(("match", tuple(int(v) for v in answer)))
        return answer

    numpy_proxy = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    numpy_proxy.unravel_index = unravel_index
    json_proxy = types.SimpleNamespace(load=load, dumps=json.dumps, loads=json.loads)
    from PIL import Image
    from tqdm import tqdm
    namespace = {"torch": torch, "F": F, "nn": torch.nn, "np": numpy_proxy, "json": json_proxy, "os": __import__("os"),
                 "Image": Image, "tqdm": tqdm, "SDFeaturizer4Eval": Featurizer, "ADMFeaturizer4Eval": Featurizer,
                 "print": lambda *a, **k: printed.append(" ".join(str(v) for v in a))}
    exec(compile(ast.Module([node], []), str(eval_spair), "exec"), namespace)
    args = argparse.Namespace(dataset_path=str(root), save_path=str(root / "features"), dift_model="sd",
                              img_size=[768, 768], t=261, up_ft_index=1, ensemble_size=8)
    set_device, torch.cuda.set_device = torch.cuda.set_device, lambda *a, **k: None
    try:
        namespace["main"](args)
    finally:
        torch.cuda.set_device = set_device
    return events, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dift", type=Path, required=True, help="a Tsingularity/dift checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures"
                        / "pck_official.json")
    args = parser.parse_args()
    eval_spair = args.dift / "eval_spair.py"
    images, pairs = build_pairs()
    with tempfile.TemporaryDirectory() as tmp:
        write_spair(Path(tmp), images, pairs)
        events, printed = run_reference(eval_spair, Path(tmp), images)
    matches: dict[str, list] = {}
    current = None
    for kind, value in events:
        if kind == "pair":
            current = value.split(":")[-1]  # the category (one pair each)
        else:
            matches.setdefault(current, []).append([value[1], value[0]])  # (row, col) -> (x, y)
    per_point = {m.group(1): float(m.group(2)) for m in map(re.compile(r"^(\w+) per point PCK@0.1: ([\d.]+)$").match,
                                                              printed) if m}
    totals = {key: float(re.search(r"([\d.]+)$", line).group(1)) for line in printed
              for key, text in (("per_image", "All per image"), ("per_point", "All per point")) if line.startswith(text)}
    out_pairs = []
    for category, src, trg, src_kps, trg_kps, box in pairs:
        if len(matches.get(category, [])) != len(src_kps):
            sys.exit(f"{category}: {len(matches.get(category, []))} recorded matches for {len(src_kps)} keypoints")
        correct = round(per_point[category] * len(src_kps) / 100)
        out_pairs.append({"category": category, "source": src, "target": trg, "source_keypoints": src_kps,
                          "target_keypoints": trg_kps, "target_bbox": box, "predicted": matches[category],
                          "correct_at_0.1": correct, "printed_per_point": per_point[category]})
    out = {"source": {"file": "eval_spair.py", "sha256": hashlib.sha256(eval_spair.read_bytes()).hexdigest(),
                      "main_line": next(n.lineno for n in ast.parse(eval_spair.read_text()).body
                                        if isinstance(n, ast.FunctionDef) and n.name == "main")},
           "alpha": 0.1, "printed": [line for line in printed if "PCK@" in line], "printed_totals": totals, "pairs": out_pairs,
           "images": {name: {"size": v["size"], "features": v["features"]} for name, v in images.items()}}
    text = json.dumps(out, separators=(",", ":"))
    args.out.write_text(text + "\n")
    print(f"{args.out}: {len(out_pairs)} pairs, {sum(len(p['source_keypoints']) for p in out_pairs)} keypoints, "
          f"{len(text) // 1024} KiB; " + "; ".join(printed[-2:]))


if __name__ == "__main__":
    main()
