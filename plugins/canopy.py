"""Registers the canopy-height protocol and its folder reader (implementation: :mod:`dinobench.protocols.canopy`,
:mod:`dinobench.data.canopy`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, HeadRegistry, ProtocolRegistry, SyntheticWriterRegistry

#: the CHMv2 canopy-height DPT head (``dinov3_vitl16_chmv2``): layers [5, 11, 17, 23], class-token readout, no
#: BatchNorm, no projection after fusion, biased fusion convs, 128 hidden channels, mixed-log bins over 0.001-96 m;
#: channels / post-process channels are the official DPTHead defaults
_CHMV2 = {"protocol.head.layers": [5, 11, 17, 23], "protocol.head.channels": 256,
          "protocol.head.post_process_channels": [128, 256, 512, 1024], "protocol.head.use_batchnorm": False,
          "protocol.head.use_cls_token": True, "protocol.head.use_backbone_norm": True, "protocol.head.n_bins": 256,
          "protocol.head.n_hidden_channels": 128, "protocol.head.use_bias": True,
          "protocol.head.projection_after_fusion": False, "protocol.head.bins_strategy": "chmv2_mixlog",
          "protocol.head.norm_strategy": "chmv2_mixlog", "protocol.head.min_depth": 0.001,
          "protocol.head.max_depth": 96.0}


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The CHMv2 canopy-height protocol."""
    registry.add("chm", "dinobench.protocols.canopy:CanopyHeightProtocol",
                 description="canopy height in metres (CHMv2 DPT head, mixed-log bins): MAE / RMSE / R2 / bias")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Image tiles + height maps."""
    registry.add("canopy_folder", "dinobench.data.canopy:build_canopy_folder",
                 options="dinobench.data.canopy:CanopyFolderOptions",
                 transform="dinobench.data.dense_transforms:CanopyTransformConfig",
                 description="canopy-height tiles: root/{train,val}/images/*.{tif,png,jpg} + heights/<stem>."
                             "{tif,npy,png} (metres; GeoTIFF nodata honoured)")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("canopy_folder", "dinobench.synthetic.canopy:write_synthetic_canopy", size=64)


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released CHMv2 canopy-height head: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vitl16_chmv2", backbone="vitl16_sat493m", tasks=["canopy-chm"], options=dict(_CHMV2),
                 file="dinov3_vitl16_chmv2_dpt_head-3703d643.pth",
                 backbone_file="dinov3_vitl16_pretrain_sat493m-*.pth",
                 description="CHMv2 canopy-height DPT head (0-96 m, mixed-log bins) on the SAT-493M ViT-L")
