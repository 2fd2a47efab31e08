"""Registers the attentive probe (:mod:`dinobench.protocols.attentive`) and the video datasets
(:mod:`dinobench.data.video`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, ProtocolRegistry, SyntheticWriterRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The attentive probe (images and videos)."""
    registry.add("attentive", "dinobench.protocols.attentive:AttentiveProtocol",
                 description="attentive probe: self/cross-attention blocks + learnable query over frozen patch tokens "
                             "(per-frame for video), lr grid selected on val, top-1/top-5")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Video classification layouts (PyAV-decoded files or frame folders)."""
    registry.add("ucf101", "dinobench.data.video:build_ucf101",
                 options="dinobench.data.video:UCF101Options",
                 transform="dinobench.data.transforms:ClipTransformConfig",
                 description="UCF-101: UCF-101/<Class>/*.avi + ucfTrainTestlist/ (split 1..3; test list = val)")
    registry.add("kinetics400", "dinobench.data.video:build_kinetics400",
                 options="dinobench.data.video:VideoFolderOptions",
                 transform="dinobench.data.transforms:ClipTransformConfig",
                 description="Kinetics-400 class folders: {train,val}/<class>/<video>")
    registry.add("ssv2", "dinobench.data.video:build_ssv2",
                 options="dinobench.data.video:SSv2Options",
                 transform="dinobench.data.transforms:ClipTransformConfig",
                 description="Something-Something-v2: 20bn-something-something-v2/<id>.webm + labels/*.json")
    registry.add("video_folder", "dinobench.data.video:build_video_folder",
                 options="dinobench.data.video:VideoFolderOptions",
                 transform="dinobench.data.transforms:ClipTransformConfig",
                 description="your videos: {train,val}/<class>/<video file or frame folder>")


@hookimpl
def dinobench_register_synthetic_writers(registry: SyntheticWriterRegistry) -> None:
    """Procedural datasets in the layouts of this family's readers (``python -m dinobench.synthetic KIND DIR``)."""
    registry.add("ucf101", "dinobench.synthetic.video:write_synthetic_ucf101", size=(32, 40))
    registry.add("kinetics400", "dinobench.synthetic.video:write_synthetic_kinetics400", size=(32, 40))
    registry.add("ssv2", "dinobench.synthetic.video:write_synthetic_ssv2", size=(32, 40))
