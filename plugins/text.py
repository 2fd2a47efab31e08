"""Registers dino.txt evaluation: zero-shot classification (:mod:`dinobench.protocols.zeroshot`) and segmentation
(:mod:`dinobench.protocols.zeroshot_seg`), image <-> text retrieval (:mod:`dinobench.protocols.retrieval_text`)
and the caption datasets (:mod:`dinobench.text.captions`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import DatasetRegistry, HeadRegistry, ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Zero-shot classification / segmentation and image-text retrieval with a dino.txt head."""
    registry.add("zeroshot", "dinobench.protocols.zeroshot:ZeroShotProtocol",
                 description="dino.txt zero-shot classification: prompt-ensemble class embeddings (80 OpenAI "
                             "templates), cosine scores, top-1/top-5")
    registry.add("text_retrieval", "dinobench.protocols.retrieval_text:TextRetrievalProtocol",
                 description="dino.txt image<->text retrieval: R@1/5/10 both directions")
    registry.add("zeroshot_seg", "dinobench.protocols.zeroshot_seg:ZeroShotSegProtocol",
                 description="dino.txt zero-shot segmentation (the official notebook): patch-text cosine, sliding "
                             "windows, mmseg mIoU")


@hookimpl
def dinobench_register_datasets(registry: DatasetRegistry) -> None:
    """Image-caption datasets."""
    registry.add("coco_captions", "dinobench.text.captions:build_coco_captions",
                 options="dinobench.text.captions:COCOCaptionsOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="COCO Captions: annotations/captions_{train,val}2017.json + train2017/ + val2017/")
    registry.add("karpathy_captions", "dinobench.text.captions:build_karpathy_captions",
                 options="dinobench.text.captions:KarpathyCaptionsOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="Karpathy splits: dataset_flickr30k.json + flickr30k-images/ (or dataset_coco.json, "
                             "COCO 5k); val = the test split")
    registry.add("caption_csv", "dinobench.text.captions:build_caption_csv",
                 options="dinobench.text.captions:CaptionCSVOptions",
                 transform="dinobench.data.transforms:ImageTransformConfig",
                 description="your captions: root/{train,val}.csv with image_path,caption")


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released dino.txt vision head and text encoder: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vitl16_dinotxt_tet1280d20h24l", backbone="vitl16",
                 tasks=["imagenet-zeroshot", "ade20k-zeroshot", "coco-retrieval", "flickr30k-retrieval"],
                 file="dinov3_vitl16_dinotxt_vision_head_and_text_encoder-a442d8f5.pth",
                 backbone_file="dinov3_vitl16_pretrain_lvd1689m-*.pth",
                 description="dino.txt vision head + 1280-d text encoder (zero-shot, retrieval, open-vocab seg)")
