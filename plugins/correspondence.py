"""Registers keypoint correspondence (:mod:`dinobench.protocols.correspondence`) and its pair datasets
(:mod:`dinobench.data.correspondence`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Nearest-neighbour keypoint transfer on patch features."""
    registry.add("correspondence", "dinobench.protocols.correspondence:CorrespondenceProtocol",
                 description="keypoint correspondence: nearest-neighbour transfer on patch features (optional "
                             "upsampling, soft-argmax), PCK@alpha of the target box, recall at pixels")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """SPair-71k and generic pairs."""
    registry.add("spair", "dinobench.data.correspondence:build_spair",
                 options="dinobench.data.correspondence:SPairOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="SPair-71k: JPEGImages/<category>/ + PairAnnotation/{trn,val,test}/*.json")
    registry.add("pairs", "dinobench.data.correspondence:build_pairs",
                 options="dinobench.data.correspondence:PairsOptions",
                 transform="dinobench.data.transforms:SquareTransformConfig",
                 description="your image pairs: pairs.json with source/target images and corresponding keypoints")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("pairs", "dinobench.synthetic.retrieval:write_synthetic_pairs", size=(48, 64), fixed={"layout": "pairs"})
    registry.add("spair", "dinobench.synthetic.retrieval:write_synthetic_pairs", size=(48, 64), fixed={"layout": "spair"})
