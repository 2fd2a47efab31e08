"""Registers unsupervised object discovery (:mod:`dinobench.protocols.discovery`) and its datasets
(:mod:`dinobench.data.discovery`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """TokenCut and LOST."""
    registry.add("discovery", "dinobench.protocols.discovery:DiscoveryProtocol",
                 description="unsupervised object discovery: TokenCut (normalised cut) and LOST (seed + expansion) "
                             "on patch features, CorLoc")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Pascal VOC 2007 / 2012 trainval and COCO20k."""
    registry.add("voc07", "dinobench.data.discovery:build_voc07",
                 options="dinobench.data.discovery:VOCOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="Pascal VOC 2007: --data-root <VOC2007> (JPEGImages/, Annotations/, ImageSets/Main/)")
    registry.add("voc12", "dinobench.data.discovery:build_voc12",
                 options="dinobench.data.discovery:VOCOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="Pascal VOC 2012: --data-root <VOC2012> (JPEGImages/, Annotations/, ImageSets/Main/)")
    registry.add("coco20k", "dinobench.data.discovery:build_coco20k",
                 options="dinobench.data.discovery:COCO20kOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="COCO20k: annotations/instances_train2014.json + train2014/ + coco_20k_filenames.txt")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("voc", "dinobench.synthetic.retrieval:write_synthetic_discovery", size=(64, 80), fixed={"layout": "voc"})
    registry.add("coco20k", "dinobench.synthetic.retrieval:write_synthetic_discovery", size=(64, 80), fixed={"layout": "coco20k"})
