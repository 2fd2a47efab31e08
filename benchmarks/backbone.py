"""Backbone throughput side by side: dinobench vs timm vs transformers (vs the official code), same weights.

    python benchmarks/backbone.py                                   # vits16 vitb16 convnext_tiny dinov2_vits14, 224 px
    python benchmarks/backbone.py --models vits16 --sizes 224 512 --batches 1 32 --rounds 5 [--compile]
    python benchmarks/backbone.py --official /path/to/dinov3        # adds the official ViT (vits16 / vitb16)

For each model the peers are built with the same weights (transformers' model saved and loaded into dinobench;
timm's state dict loaded into dinobench; ConvNeXt: timm's architecture at its own seeded weights), put in eval
mode, warmed up, then timed **interleaved** (one forward of each peer per round, best of ``--rounds``) under
``torch.inference_mode``, fp32 (bf16 autocast on CUDA). Prints images/s, the ratio to the fastest peer, the
achieved GFLOP/s (``torch.utils.flop_counter``) against a large ``torch.mm`` timed in the same run, and the peak
memory of the first forward (CUDA: ``max_memory_allocated``; CPU: the process's peak-RSS rise, Linux only, approximate:
memory an earlier peer freed is reused).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dinobench  # noqa: E402

Forward = Callable[[torch.Tensor], object]


def _seeded(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return module.eval()


def peers(name: str, official: str | None, workdir: Path) -> dict[str, Forward]:
    """``peer name -> forward`` of ``name`` for every available peer, all on the same weights where possible."""
    import timm
    from transformers import Dinov2Config, Dinov2Model, DINOv3ConvNextConfig, DINOv3ConvNextModel, DINOv3ViTConfig
    from transformers import DINOv3ViTModel

    out: dict[str, Forward] = {}
    if name in ("vits16", "vitb16"):
        sizes = {} if name == "vits16" else dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072)
        hf = _seeded(DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4, layerscale_value=1e-5, key_bias=False,
                                                    **sizes)))
        hf.save_pretrained(workdir / name)
        ours = dinobench.create_backbone(name, weights=str(workdir / name)).eval()
        tm = _seeded(timm.create_model(f"vit_{'small' if name == 'vits16' else 'base'}_patch16_dinov3",
                                       pretrained=False, num_classes=0))
        out = {"dinobench": ours.forward_features, "timm": tm.forward_features, "transformers": hf}
        if official:
            sys.path.insert(0, official)
            from dinov3.hub import backbones as hub

            from dinobench.backbones.export import export_pth

            model = getattr(hub, f"dinov3_{name}")(pretrained=False).eval()
            export_pth(ours, workdir / f"{name}.pth")
            model.load_state_dict(torch.load(workdir / f"{name}.pth", weights_only=True), strict=True)
            out["official"] = model.forward_features
    elif name == "convnext_tiny":
        hf = _seeded(DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768])))
        hf.save_pretrained(workdir / name)
        ours = dinobench.create_backbone(name, weights=str(workdir / name)).eval()
        out = {"dinobench": ours.forward_features, "timm": _seeded(timm.create_model("convnext_tiny", num_classes=0)
                                                                   ).forward_features, "transformers": hf}
    elif name == "dinov2_vits14":
        from dinobench.backbones import dinov2_vit

        hf = _seeded(Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                              image_size=224, patch_size=14, layerscale_value=1e-5)))
        ours = dinov2_vit.dinov2_vits14(img_size=224).eval()
        ours.load_state_dict(dinov2_vit.convert_state_dict(hf.state_dict(), "hf"), strict=True)
        tm = _seeded(timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0,
                                       dynamic_img_size=True))
        out = {"dinobench": ours.forward_features, "timm": tm.forward_features,
               "transformers": lambda x: hf(pixel_values=x)}
    else:
        raise SystemExit(f"unknown model {name!r}")
    return out


def matmul_gflops(device: str, n: int = 2048, rounds: int = 3) -> float:
    """The best GFLOP/s of an ``n x n`` fp32 ``torch.mm`` (the machine's reference rate)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_rss_mib() -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def flops_of(forward: Forward, x: torch.Tensor) -> float:
    """Forward FLOPs counted by ``torch.utils.flop_counter`` (matmuls / convs / attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        forward(x)
    return float(counter.get_total_flops())


def bench(name: str, forwards: dict[str, Forward], batch: int, size: int, rounds: int, device: str,
          reference: float) -> None:
    x = torch.randn(batch, 3, size, size, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast(
        "cpu", enabled=False)
    memory = {}
    with torch.inference_mode(), autocast:
        for peer, forward in forwards.items():  # warm-up and peak memory of the first forward
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                forward(x)
                memory[peer] = torch.cuda.max_memory_allocated() / 2**20
            else:  # the peak-RSS rise of the first forward: approximate (memory freed by earlier peers is reused)
                _reset_peak()
                before = _peak_rss_mib()
                forward(x)
                after = _peak_rss_mib()
                memory[peer] = None if before is None or after is None else after - before
            forward(x)
        best = {peer: float("inf") for peer in forwards}
        for _ in range(rounds):  # interleaved: every peer once per round
            for peer, forward in forwards.items():
                _sync(device)
                start = time.perf_counter()
                forward(x)
                _sync(device)
                best[peer] = min(best[peer], time.perf_counter() - start)
    flops = flops_of(forwards["dinobench"], x)
    fastest_other = min((t for p, t in best.items() if p != "dinobench"), default=None)
    print(f"\n{name} batch {batch} {size}px ({flops / batch / 1e9:.2f} GFLOP/image)")
    for peer, seconds in sorted(best.items(), key=lambda kv: kv[1]):
        ratio = f"{fastest_other / seconds:5.2f}x" if peer == "dinobench" and fastest_other else ""
        mem = f"{memory[peer]:7.0f} MiB" if memory.get(peer) is not None else "      -"
        print(f"  {peer:<13} {batch / seconds:9.2f} img/s  {flops / seconds / 1e9:7.1f} GFLOP/s "
              f"({100 * flops / seconds / 1e9 / reference:4.0f} % of mm)  peak {mem}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vits16", "vitb16", "convnext_tiny", "dinov2_vits14"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile every peer (same mode for all)")
    parser.add_argument("--official", default=None, help="a facebookresearch/dinov3 checkout (adds its ViTs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = matmul_gflops(args.device)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, fp32 mm {reference:.1f} GFLOP/s"
          + (", torch.compile" if args.compile else ", eager"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            forwards = peers(name, args.official, Path(tmp))
            if args.device != "cpu":
                for fn in forwards.values():
                    getattr(fn, "__self__", fn).to(args.device)
            if args.compile:
                forwards = {peer: torch.compile(fn) for peer, fn in forwards.items()}
            for size in args.sizes:
                for batch in args.batches:
                    bench(name, forwards, batch, size, args.rounds, args.device, reference)


if __name__ == "__main__":
    main()
