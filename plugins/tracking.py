"""Registers video object segmentation tracking (:mod:`dinobench.protocols.tracking`) and the DAVIS-2017 layout
(:mod:`dinobench.data.davis`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Label propagation (the official tracking notebook) scored with DAVIS J / F."""
    registry.add("tracking", "dinobench.protocols.tracking:TrackingProtocol",
                 description="semi-supervised VOS by label propagation on patch features (first + 7 recent frames, "
                             "radius 12, top-5, T=0.2); DAVIS J / F / J&F")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """DAVIS-2017."""
    registry.add("davis2017", "dinobench.data.davis:build_davis2017",
                 options="dinobench.data.davis:DavisOptions",
                 transform="dinobench.data.transforms:FrameTransformConfig",
                 description="DAVIS-2017 semi-supervised: JPEGImages/480p/<seq>/ + Annotations/480p/<seq>/ + "
                             "ImageSets/2017/val.txt")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("davis2017", "dinobench.synthetic.video:write_synthetic_davis", size=(64, 96))
