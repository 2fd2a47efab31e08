"""``dinobench visualize``: PCA maps of a backbone's patch features for your own images (the paper's rainbow
figures), one PNG per image (image | PCA), the PCA fitted on all the given images together."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinobench.backbones.loading import resolve_source
from dinobench.config import parse_options
from dinobench.data.base import load_rgb
from dinobench.data.folder import IMAGE_EXTENSIONS
from dinobench.errors import ConfigError, DataError
from dinobench.figures import DEFAULT_SIZE, write_pca_figures
from dinobench.plugin_manager import get_registries


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dinobench visualize``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    parser.add_argument("--backbone", required=True, help="registered backbone name (dinobench list backbones)")
    parser.add_argument("--weights", default=None, help="local weights (official .pth, safetensors, HF dir)")
    parser.add_argument("--output", default="pca-maps", help="folder for <image>_pca.png (default: pca-maps)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"shorter image side in pixels (default {DEFAULT_SIZE}); cut to whole patches")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="backbone.KEY=VALUE",
                        help="backbone constructor overrides, e.g. backbone.embed_dim=64 backbone.depth=2")


def _images(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"{path}: no such image file or folder")
    return paths


def run(args: argparse.Namespace) -> int:
    """Write the PCA figures; print their paths."""
    from dinobench import create_backbone

    if args.size < 1:
        raise ConfigError(f"--size {args.size}: give the shorter image side in pixels (e.g. 448)")
    get_registries().backbones.get(args.backbone)  # unknown names: one line with suggestions
    overrides = {}
    for key, value in parse_options(args.cfg_options).items():
        if not key.startswith("backbone."):
            raise ConfigError(f"--cfg-options {key}: visualize takes backbone.* overrides only")
        overrides[key.split(".", 1)[1]] = value
    images, seen = [], set()
    for path in _images(args.images):  # every file readable before any compute
        name = path.stem
        while name in seen:  # same file name in two folders: keep both figures
            name += "_"
        seen.add(name)
        images.append((name, load_rgb(path)))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    weights = None if args.weights is None else str(resolve_source(args.weights))
    model = create_backbone(args.backbone, weights=weights, **overrides)
    for path in write_pca_figures(model, images, output, size=args.size, device=args.device, prefix=""):
        final = path.with_name(f"{path.stem}_pca.png")
        path.replace(final)
        print(final)
    return 0
