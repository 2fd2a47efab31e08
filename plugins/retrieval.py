"""Registers image retrieval: the revisited Oxford/Paris protocol (:mod:`dinobench.protocols.revisited_retrieval`),
label retrieval over folders (:mod:`dinobench.protocols.retrieval`) and their datasets (:mod:`dinobench.data.retrieval`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Instance retrieval (revisited ground truth) and label retrieval."""
    registry.add("revisited_retrieval", "dinobench.protocols.revisited_retrieval:RevisitedRetrievalProtocol",
                 description="revisited Oxford/Paris instance retrieval: CLS descriptors (optionally multi-scale), "
                             "cosine ranking, mAP / mP@k for Easy, Medium, Hard")
    registry.add("retrieval", "dinobench.protocols.retrieval:RetrievalProtocol",
                 description="label retrieval query -> database: CLS descriptors, cosine ranking, mAP, mAP@R, R@k")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Revisited Oxford 5k / Paris 6k and the generic query/database folders."""
    registry.add("roxford5k", "dinobench.data.retrieval:build_roxford5k",
                 options="dinobench.data.retrieval:RevisitedOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="revisited Oxford 5k: --data-root <dir with jpg/ and gnd_roxford5k.pkl>")
    registry.add("rparis6k", "dinobench.data.retrieval:build_rparis6k",
                 options="dinobench.data.retrieval:RevisitedOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="revisited Paris 6k: --data-root <dir with jpg/ and gnd_rparis6k.pkl>")
    registry.add("retrieval_folder", "dinobench.data.retrieval:build_retrieval_folder",
                 options="dinobench.data.retrieval:RetrievalFolderOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="your retrieval set: root/{query,database}/<label>/<images>")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("roxford5k", "dinobench.synthetic.retrieval:write_synthetic_revisited", size=(48, 64), fixed={"name": "roxford5k"})
    registry.add("rparis6k", "dinobench.synthetic.retrieval:write_synthetic_revisited", size=(48, 64), fixed={"name": "rparis6k"})
    registry.add("retrieval_folder", "dinobench.synthetic.retrieval:write_synthetic_retrieval_folder", size=48)
