"""Registers object detection: the Plain-DETR protocol (:mod:`dinobench.protocols.plaindetr`) and the COCO-format
dataset reader (:mod:`dinobench.data.detection`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, HeadLayoutRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Plain-DETR detection."""
    registry.add("plaindetr", "dinobench.protocols.plaindetr:PlainDetrProtocol",
                 description="DINOv3's detector: frozen backbone, Plain-DETR (two-stage, box-RPE global decoder, "
                             "hybrid matching), pycocotools COCOeval AP")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """COCO-format detection data."""
    registry.add("coco", "dinobench.data.detection:build_coco",
                 options="dinobench.data.detection:COCOOptions",
                 transform="dinobench.data.detection_transforms:DetTransformConfig",
                 description="COCO 2017 detection: annotations/instances_{train,val}2017.json + train2017/ + "
                             "val2017/ (pycocotools); labels = category ids (or contiguous)")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("coco", "dinobench.synthetic.coco:write_synthetic_coco", size=(64, 96))


@hookimpl
def dinobench_register_head_layouts(registry: HeadLayoutRegistry) -> None:
    """The official files of the heads this family trains (``dinobench export --run``)."""
    registry.add("detection", "dinobench.heads.export_layouts:detector_files",
                 description="Plain-DETR without its backbone: model_final.pth")
