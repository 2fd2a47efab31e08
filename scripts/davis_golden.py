"""Regenerate tests/fixtures/davis_official.json from an official davis2017-evaluation checkout
(davisvideochallenge/davis2017-evaluation).

    python scripts/davis_golden.py --official /path/to/davis2017-evaluation [--out tests/fixtures/davis_official.json]

Writes a tiny fake DAVIS-2017 folder (two ``val`` sequences of 24 x 32 frames: JPEG frames, annotations with
objects 1 and 2 and void (255) regions, one sequence as palette PNGs, one as L-mode PNGs) and fixed
predictions (shifted and lagging masks, objects predicted on void pixels, a lost object, an object never
predicted, salt noise from a fixed seed), runs the official
``DAVISEvaluation(root, "semi-supervised", "val").evaluate(results)`` on them and stores the id arrays and the
official per-object J / F mean, recall and decay (and the dataset means, as ``evaluation_method.py`` forms them)
in the official units (fractions, not %). tests/tracking/test_tracking.py scores the stored arrays with
dinobench and compares, without the checkout.

Needs what the official package imports: ``opencv-python`` and ``scikit-image`` (for example
``pip install --target /tmp/skimage --no-deps scikit-image lazy_loader imageio`` and ``PYTHONPATH=/tmp/skimage``
keeps them out of the environment). Runs unpatched on numpy 2 (checked with numpy 2.4, scikit-image 0.26).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

H, W = 24, 32
SEED = 20170601
VOID = 255
STATS = ("mean", "recall", "decay")


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Boolean ``[H, W]`` rectangle of rows ``y0..y1 - 1`` and columns ``x0..x1 - 1`` (clipped)."""
    out = np.zeros((H, W), dtype=bool)
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return out


def _disk(cy: int, cx: int, r: int) -> np.ndarray:
    """Boolean ``[H, W]`` disk of radius ``r`` around ``(cy, cx)``."""
    y, x = np.ogrid[:H, :W]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _noise(rng: np.random.Generator, ids: np.ndarray, n: int, labels: tuple[int, ...]) -> None:
    """Set ``n`` random pixels of ``ids`` to random ``labels`` (in place)."""
    ys, xs = rng.integers(0, H, n), rng.integers(0, W, n)
    ids[ys, xs] = rng.choice(labels, n)


def sequence_a(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """8 frames: a box moving right with a one-pixel void band around it, a disk, a void block in a corner;
    the prediction lags the box by a column, covers the void band in two frames, puts object 2 on the void
    block in three, loses object 2 in one."""
    truth, pred = np.zeros((8, H, W), np.uint8), np.zeros((8, H, W), np.uint8)
    for t in range(8):
        box, disk = _box(3, 12, 2 + t, 12 + t), _disk(17, 24 - t // 2, 4)
        band = ndimage.binary_dilation(box, np.ones((3, 3), bool)) & ~box & ~disk
        truth[t][box], truth[t][disk] = 1, 2
        truth[t][band | _box(19, 24, 0, 6)] = VOID
        pred_box = _box(3, 12, 1 + t, 12 + t) if t else box
        if t in (2, 3):
            pred_box = pred_box | band
        pred[t][pred_box] = 1
        if t != 6:
            pred[t][_disk(17, 24 - t // 2 + (t >= 4), 4)] = 2
        if t in (3, 4, 5):
            pred[t][_box(19, 23, 1, 5)] = 2
        _noise(rng, pred[t], 12, (0, 1, 2))
    return truth, pred


def sequence_b(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """6 frames: a box moving right through a void column (frames 2-4), a small object absent in frames 3-4,
    the two top rows void; the prediction keeps the box on the void column and on the top rows, shifts it a
    row in frame 3, never predicts object 2 (the official zero-padding path)."""
    truth, pred = np.zeros((6, H, W), np.uint8), np.zeros((6, H, W), np.uint8)
    for t in range(6):
        box = _box(12, 21, 4 + 2 * t, 13 + 2 * t)
        truth[t][box] = 1
        if t not in (3, 4):
            truth[t][_box(2, 7, 20, 27)] = 2
        column = _box(0, H, 14, 16) if t in (2, 3, 4) else np.zeros((H, W), bool)
        truth[t][_box(0, 2, 0, W) | column] = VOID
        pred[t][np.roll(box, 1, axis=0) if t == 3 else box] = 1
        pred[t][_box(0, 2, 8 + t, 14 + t)] = 1
        _noise(rng, pred[t], 10, (0, 1))
    return truth, pred


def fake_sequences() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (truth ids [T, H, W], predicted ids [T, H, W])}`` (uint8), deterministic."""
    rng = np.random.default_rng(SEED)
    return {"golden-a": sequence_a(rng), "golden-b": sequence_b(rng)}


def _palette() -> list[int]:
    """A fixed 256-colour palette (the colours do not matter: the evaluation reads indices)."""
    return [(i * k) % 256 for i in range(256) for k in (37, 91, 151)]


def write_davis(root: Path, sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A DAVIS-2017 folder (480p) whose ``val`` split holds ``sequences``; the first one's annotations as
    palette PNGs, the others as L-mode PNGs."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{name}\n" for name in sequences))
    for index, (name, (truth, _)) in enumerate(sequences.items()):
        frames, annotations = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        frames.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for t, ids in enumerate(truth):
            Image.fromarray(np.stack([ids * 3, ids * 5, ids * 7], -1).astype(np.uint8)).save(frames / f"{t:05d}.jpg")
            image = Image.fromarray(ids)
            if index == 0:
                image = image.convert("P")
                image.putpalette(_palette())
            image.save(annotations / f"{t:05d}.png")


def write_results(folder: Path, sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One palette PNG of predicted ids per frame, as the official evaluation reads results."""
    for name, (_, pred) in sequences.items():
        (folder / name).mkdir(parents=True)
        for t, ids in enumerate(pred):
            image = Image.fromarray(ids).convert("P")
            image.putpalette(_palette())
            image.save(folder / name / f"{t:05d}.png")


def official_scores(checkout: Path, sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per-object and dataset statistics of the official semi-supervised evaluation of ``sequences``."""
    sys.path.insert(0, str(checkout.resolve()))
    from davis2017.evaluation import DAVISEvaluation

    with tempfile.TemporaryDirectory() as tmp:
        root, results = Path(tmp) / "DAVIS", Path(tmp) / "results"
        write_davis(root, sequences)
        write_results(results, sequences)
        for name, (truth, pred) in sequences.items():  # the PNGs hold exactly the arrays
            stored = np.stack([np.array(Image.open(p)) for p in sorted((root / "Annotations/480p" / name).iterdir())])
            np.testing.assert_array_equal(stored, truth)
            stored = np.stack([np.array(Image.open(p)) for p in sorted((results / name).iterdir())])
            np.testing.assert_array_equal(stored, pred)
        res = DAVISEvaluation(str(root), "semi-supervised", "val").evaluate(str(results))
    names = list(res["J"]["M_per_object"])
    per_object = {name: {f"{m}_{stat}": float(res[m][key][i]) for m in ("J", "F") for stat, key in zip(STATS, "MRD")}
                  for i, name in enumerate(names)}
    means = {f"{m}_{stat}": float(np.mean(res[m][key])) for m in ("J", "F") for stat, key in zip(STATS, "MRD")}
    return {"per_object": per_object, "global": {"J&F": (means["J_mean"] + means["F_mean"]) / 2, **means}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a davisvideochallenge/davis2017-evaluation checkout")
    parser.add_argument("--out", default="tests/fixtures/davis_official.json")
    args = parser.parse_args()
    checkout = Path(args.official)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    sequences = fake_sequences()
    fixture = {
        "reference": {"repo": "davisvideochallenge/davis2017-evaluation",
                      "commit": commit.stdout.strip() if commit.returncode == 0 else None,
                      "call": "DAVISEvaluation(root, 'semi-supervised', 'val').evaluate(results)",
                      "units": "fractions (dinobench reports %)"},
        "sequences": {name: {"truth": truth.tolist(), "prediction": pred.tolist()}
                      for name, (truth, pred) in sequences.items()},
        **official_scores(checkout, sequences),
    }
    Path(args.out).write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: official J&F {100 * fixture['global']['J&F']:.4f} "
          f"(J {100 * fixture['global']['J_mean']:.4f}, F {100 * fixture['global']['F_mean']:.4f})")


if __name__ == "__main__":
    main()
