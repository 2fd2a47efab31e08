"""Registers the dense dataset readers (segmentation and depth)."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """ADE20K, NYU-Depth v2 (BTS layout) and the generic image+mask / image+depth folders."""
    registry.add("ade20k", "dinobench.data.dense:build_ade20k",
                 options="dinobench.data.dense:ADE20KOptions",
                 transform="dinobench.data.dense_transforms:SegTransformConfig",
                 description="ADE20K SceneParsing (150 classes): ADEChallengeData2016/{images,annotations}/"
                             "{training,validation}; label 0 ignored (reduce-zero-label)")
    registry.add("nyu", "dinobench.data.dense:build_nyu",
                 options="dinobench.data.dense:NYUOptions",
                 transform="dinobench.data.dense_transforms:DepthTransformConfig",
                 description="NYU-Depth v2, BTS layout: sync/, official_splits/test/, "
                             "nyudepthv2_{train,test}_files_with_gt.txt; depth png mm; Eigen crop for eval")
    registry.add("seg_folder", "dinobench.data.dense:build_seg_folder",
                 options="dinobench.data.dense:SegFolderOptions",
                 transform="dinobench.data.dense_transforms:SegTransformConfig",
                 description="your segmentation data: root/{train,val}/images/* + masks/<stem>.png + classes.txt")
    registry.add("depth_folder", "dinobench.data.dense:build_depth_folder",
                 options="dinobench.data.dense:DepthFolderOptions",
                 transform="dinobench.data.dense_transforms:DepthTransformConfig",
                 description="your depth data: root/{train,val}/images/* + depth/<stem>.png (uint16 mm)")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("ade20k", "dinobench.synthetic.dense:write_synthetic_ade20k", size=64)
    registry.add("nyu", "dinobench.synthetic.dense:write_synthetic_nyu", size=(48, 64))
    registry.add("seg_folder", "dinobench.synthetic.dense:write_synthetic_seg_folder", size=64)
    registry.add("depth_folder", "dinobench.synthetic.dense:write_synthetic_depth_folder", size=(48, 64))
