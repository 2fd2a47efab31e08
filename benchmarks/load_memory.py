"""Peak memory of loading a checkpoint: dinobench vs a naive load and vs transformers / timm.

Writes random weights of ``--backbone`` (default vitl16, ~1.2 GB fp32) in the official .pth
format, as an HF directory and as a timm state dict, then loads each in a fresh process and
prints the peak-RSS increase as a multiple of the weights' size (1.0x = one copy).

    python benchmarks/load_memory.py [--backbone vitl16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import dinobench
from dinobench.backbones.export import export_hf

PROBE = Path(__file__).with_name("_rss.py")
TIMM_NAMES = {"vits16": "vit_small_patch16_dinov3_qkvb", "vitb16": "vit_base_patch16_dinov3_qkvb",
              "vitl16": "vit_large_patch16_dinov3_qkvb"}


def probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vitl16", choices=sorted(TIMM_NAMES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = dinobench.create_backbone(args.backbone)
        torch.save(model.state_dict(), tmp / "official.pth")
        export_hf(model, tmp / "hf")
        import timm

        peer = timm.create_model(TIMM_NAMES[args.backbone], pretrained=False)
        torch.save(peer.state_dict(), tmp / "timm.pth")
        del model, peer
        rows = [
            probe("dinobench", str(tmp / "official.pth"), args.backbone),
            probe("dinobench-hf", str(tmp / "hf")),
            probe("dinobench", str(tmp / "timm.pth"), args.backbone),
            probe("torch-naive", str(tmp / "official.pth"), args.backbone),
            probe("transformers", str(tmp / "hf")),
            probe("timm", str(tmp / "timm.pth"), TIMM_NAMES[args.backbone]),
        ]
    labels = ["dinobench .pth (mmap+assign)", "dinobench HF dir", "dinobench timm .pth",
              "naive init + torch.load", "transformers from_pretrained", "timm load_state_dict"]
    print(f"{args.backbone}: weights {rows[0]['weights_mib']:.0f} MiB")
    print(f"{'loader':32s} {'peak RSS increase':>18s} {'x weights':>10s}")
    for label, row in zip(labels, rows):
        print(f"{label:32s} {row['delta_mib']:15.0f} MiB {row['delta_mib'] / row['weights_mib']:9.2f}x")


if __name__ == "__main__":
    main()
