"""Registers the first-party dataset readers."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """digits (bundled, real), ImageNet-1k layout, generic ImageFolder."""
    registry.add("digits", "dinobench.data.digits:build_digits",
                 description="scikit-learn's 1,797 real 8x8 handwritten digits; seeded 80/20 split; no download")
    registry.add("imagenet", "dinobench.data.folder:build_imagenet",
                 description="ImageNet-1k layout: root/{train,val}/<wnid>/*.JPEG (+ labels.txt)")
    registry.add("folder", "dinobench.data.folder:build_folder",
                 description="any ImageFolder: root/{train,val}/<class>/<images>")
