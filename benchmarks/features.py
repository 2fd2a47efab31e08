"""Feature extraction end to end (JPEG decode -> transform -> model -> cache write) vs the model alone.

JPEGs of ImageNet's typical size (500 x 375, smooth random content) in an ImageFolder layout, the eval
transform of the shipped ImageNet tasks (resize 256, centre crop 224), a random-init backbone:

    python benchmarks/features.py                              # vits16, 256 images, batch 32
    python benchmarks/features.py --backbone vit_tiny --n 64   # quick try
    python benchmarks/features.py --rss                        # + peak RSS of the end-to-end run at n and 10 n

Printed: the time of each phase measured alone on the main thread (decode, transform, forward, cache write:
per image), the end-to-end ``load_or_extract`` with 0 and ``--workers`` DataLoader workers, and the goal ratio
end-to-end / model-only throughput. With workers the decode and transform overlap the forward; on a 2-core
machine they also take cores from it, which is what this prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import dinobench  # noqa: E402
from dinobench.data.base import load_rgb  # noqa: E402
from dinobench.data.folder import build_folder_splits  # noqa: E402
from dinobench.data.transforms import build_eval_transform  # noqa: E402
from dinobench.features.extract import load_or_extract  # noqa: E402
from dinobench.utils.precision import autocast_for, resolve_precision  # noqa: E402

TRANSFORM = {"resize": 256, "crop": 224}


def write_jpegs(root: Path, n: int, seed: int = 0, classes: int = 8) -> None:
    """``n`` train JPEGs (quality 90) plus one val image per class, ImageFolder layout."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", classes)):
        for i in range(count):
            folder = root / split / f"c{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # upsampled: JPEG-like smooth content
            Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)


def dataset_and_model(root: Path, backbone: str):
    model = dinobench.create_backbone(backbone).eval()
    mean, std = getattr(model, "mean", (0.485, 0.456, 0.406)), getattr(model, "std", (0.229, 0.224, 0.225))
    ds = build_folder_splits({}, str(root))["train"]
    ds.transform = build_eval_transform(TRANSFORM, mean, std)
    return ds, model


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def end_to_end(ds, model, cache_dir: Path, batch_size: int, workers: int, precision: str) -> float:
    payload = {"benchmark": "features", "workers": workers, "precision": precision, "t": time.time_ns()}
    seconds, _ = timed(lambda: load_or_extract(model, ds, payload=payload, cache_dir=cache_dir,
                                               batch_size=batch_size, num_workers=workers, precision=precision))
    return seconds


def rss_child(n: int, backbone: str, batch_size: int, workers: int) -> None:
    """Fresh process: write ``n`` JPEGs, extract them end to end with a cache, print the peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_jpegs(root, n)
        ds, model = dataset_and_model(root, backbone)
        end_to_end(ds, model, Path(tmp) / "cache", batch_size, workers, "float32")
    print(json.dumps({"n": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv: list[str] | None = None) -> None:
    """Time every phase, then the end-to-end extraction, and print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the second end-to-end run")
    parser.add_argument("--precision", default="auto", help="auto | float32 | bfloat16")
    parser.add_argument("--rss", action="store_true", help="also peak RSS at n and 10 n images (fresh processes)")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.rss_child is not None:
        return rss_child(args.rss_child, args.backbone, args.batch_size, args.workers)

    torch.manual_seed(0)
    precision = resolve_precision(args.precision, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_jpegs(root, args.n)
        ds, model = dataset_and_model(root, args.backbone)
        paths = [source for source, _ in ds.samples]
        t_decode, images = timed(lambda: [load_rgb(p) for p in paths])
        t_transform, tensors = timed(lambda: [ds.transform(im) for im in images])
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        with torch.inference_mode(), autocast_for(precision, "cpu"):
            model.forward_features(batches[0][:2])  # warm-up
            t_forward, outputs = timed(lambda: [model.forward_features(b)["x_norm_clstoken"].float() for b in batches])
        features = torch.cat(outputs)
        t_write, _ = timed(lambda: torch.save(features.clone(), Path(tmp) / "features.pt"))
        t_e2e0 = end_to_end(ds, model, Path(tmp) / "cache", args.batch_size, 0, precision)
        t_e2ew = end_to_end(ds, model, Path(tmp) / "cache", args.batch_size, args.workers, precision)

    n = args.n
    print(f"feature extraction: {args.backbone}, {n} JPEGs 500x375 -> resize 256 / crop 224, batch "
          f"{args.batch_size}, {precision}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    rows = [("decode (PIL, main thread)", t_decode), ("transform (resize, crop, normalise)", t_transform),
            ("forward (model only)", t_forward), ("cache write (features, torch.save)", t_write),
            ("end to end, 0 workers", t_e2e0), (f"end to end, {args.workers} workers", t_e2ew)]
    print(f"{'phase':<38}  {'seconds':>8}  {'ms/image':>8}  {'img/s':>7}")
    for name, seconds in rows:
        print(f"{name:<38}  {seconds:8.2f}  {1e3 * seconds / n:8.2f}  {n / seconds:7.1f}")
    best = min(t_e2e0, t_e2ew)
    print(f"ratio: end-to-end throughput is {100 * t_forward / best:.0f}% of model-only "
          f"(0 workers {100 * t_forward / t_e2e0:.0f}%, {args.workers} workers {100 * t_forward / t_e2ew:.0f}%); "
          f"decode + transform are {100 * (t_decode + t_transform) / (t_decode + t_transform + t_forward):.0f}% "
          f"of the serial work")
    if args.rss:
        for count in (n, 10 * n):
            out = subprocess.run([sys.executable, __file__, "--rss-child", str(count), "--backbone", args.backbone,
                                  "--batch-size", str(args.batch_size), "--workers", "0"],
                                 check=True, capture_output=True, text=True).stdout
            print(f"peak RSS, end to end with a cache: {json.loads(out.splitlines()[-1])}")


if __name__ == "__main__":
    main()
