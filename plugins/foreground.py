"""Registers foreground segmentation (:mod:`dinobench.protocols.foreground`) and its image + mask folders
(:mod:`dinobench.data.foreground`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The official notebook's foreground probe."""
    registry.add("foreground", "dinobench.protocols.foreground:ForegroundProtocol",
                 description="foreground segmentation: scikit-learn logistic regression on patch features vs masks "
                             "pooled to the patch grid, C on held-out images, AP / mIoU")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Image + foreground-mask folders."""
    registry.add("foreground_folder", "dinobench.data.foreground:build_foreground_folder",
                 options="dinobench.data.foreground:ForegroundFolderOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="foreground masks: root/{train,val}/images/* + masks/<stem>.png (255 = foreground, "
                             "or the alpha channel)")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("foreground_folder", "dinobench.synthetic.retrieval:write_synthetic_foreground", size=64)
