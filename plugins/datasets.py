"""Registers the first-party dataset readers."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """digits (bundled, real), ImageNet-1k layout, generic ImageFolder, Fashion-MNIST, CSV manifests."""
    registry.add("digits", "dinobench.data.digits:build_digits",
                 options="dinobench.data.digits:DigitsOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="scikit-learn's 1,797 real 8x8 handwritten digits; seeded 80/20 split; no download")
    registry.add("imagenet", "dinobench.data.folder:build_imagenet",
                 options="dinobench.data.folder:FolderOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="ImageNet-1k layout: root/{train,val}/<wnid>/*.JPEG (+ labels.txt)")
    registry.add("folder", "dinobench.data.folder:build_folder",
                 options="dinobench.data.folder:FolderOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="any ImageFolder: root/{train,val}/<class>/<images>")
    registry.add("fashion_mnist", "dinobench.data.fashion_mnist:build_fashion_mnist",
                 options="dinobench.data.fashion_mnist:FashionMNISTOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="Fashion-MNIST idx files (Debian package dataset-fashion-mnist or --data-root); "
                             "60k train / official 10k test as val")
    registry.add("csv", "dinobench.data.csv_manifest:build_csv",
                 options="dinobench.data.csv_manifest:CSVOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="CSV manifests path,label: --data-root DIR with train.csv and val.csv")
