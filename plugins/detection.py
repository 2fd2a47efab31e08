"""Registers object detection: the Plain-DETR protocol (:mod:`dinobench.protocols.plaindetr`) and the COCO-format
dataset reader (:mod:`dinobench.data.detection`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, HeadLayoutRegistry, HeadRegistry, ProtocolRegistry, SyntheticWriterRegistry


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
    registry.add("detection", "dinobench.heads.plain_detr.export:detector_files",
                 description="Plain-DETR without its backbone: model_final.pth")


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released COCO Plain-DETR detector: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vit7b16_de", backbone="vit7b16", tasks=["coco-plaindetr"],
                 options={"protocol.head.n_windows_sqrt": 3},
                 file="dinov3_vit7b16_coco2017_detr_head-b0235ff7.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="COCO Plain-DETR detector (1500 + 1500 queries, 3x3 windows)")
