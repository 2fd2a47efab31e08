"""Registers the canopy-height protocol and its folder reader (implementation: :mod:`dinobench.protocols.canopy`,
:mod:`dinobench.data.canopy`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


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
