"""The released DINOv3 heads (entries of the official ``hubconf.py``) as dinobench heads.

Each entry names the backbone the head was trained on, the tasks it evaluates (the first is the default) and the
``--cfg-options`` that make the task's protocol build exactly the released architecture (from the official hub
builders: ``dinov3/hub/{classifiers,depthers,segmentors,detectors,dinotxt}.py``). ``dinobench run --head NAME
--head-weights FILE --weights BACKBONE`` evaluates it without training; options given on the command line still
apply after these (e.g. a smaller backbone in tests).
"""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadRegistry

#: the SynthMix DPT depther of ViT-7B (``dinov3_vit7b16_dd``): layers [9, 19, 29, 39], 512 channels,
#: post-process channels 2048, BatchNorm, backbone norm, no class token, 256 linear bins over 0.001-100 m
_DD = {"protocol.head.layers": "four_even", "protocol.head.channels": 512,
       "protocol.head.post_process_channels": [2048, 2048, 2048, 2048], "protocol.head.use_batchnorm": True,
       "protocol.head.use_cls_token": False, "protocol.head.use_backbone_norm": True, "protocol.head.n_bins": 256,
       "protocol.head.min_depth": 0.001, "protocol.head.max_depth": 100.0}
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
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The official hub heads."""
    registry.add("dinov3_vit7b16_lc", backbone="vit7b16", tasks=["imagenet-linear"],
                 file="dinov3_vit7b16_imagenet1k_linear_head-90d8ed92.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="ImageNet-1k linear classifier on [CLS, mean patch] of the last block")
    registry.add("dinov3_vit7b16_dd", backbone="vit7b16", tasks=["nyu-dpt"], options=dict(_DD),
                 file="dinov3_vit7b16_synthmix_dpt_head-02040be1.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="SynthMix DPT depth estimator (0.001-100 m, 4 layers, 256 bins)")
    registry.add("dinov3_vitl16_chmv2", backbone="vitl16_sat493m", tasks=["canopy-chm"], options=dict(_CHMV2),
                 file="dinov3_vitl16_chmv2_dpt_head-3703d643.pth",
                 backbone_file="dinov3_vitl16_pretrain_sat493m-*.pth",
                 description="CHMv2 canopy-height DPT head (0-96 m, mixed-log bins) on the SAT-493M ViT-L")
    registry.add("dinov3_vit7b16_ms", backbone="vit7b16", tasks=["ade20k-m2f"],
                 options={"protocol.head.hidden_dim": 2048},
                 file="dinov3_vit7b16_ade20k_m2f_head-bf307cb1.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="ADE20K Mask2Former segmentor with ViT-Adapter (hidden dim 2048)")
    registry.add("dinov3_vit7b16_de", backbone="vit7b16", tasks=["coco-plaindetr"],
                 options={"protocol.head.n_windows_sqrt": 3},
                 file="dinov3_vit7b16_coco2017_detr_head-b0235ff7.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="COCO Plain-DETR detector (1500 + 1500 queries, 3x3 windows)")
    registry.add("dinov3_vitl16_dinotxt_tet1280d20h24l", backbone="vitl16",
                 tasks=["imagenet-zeroshot", "ade20k-zeroshot", "coco-retrieval", "flickr30k-retrieval"],
                 file="dinov3_vitl16_dinotxt_vision_head_and_text_encoder-a442d8f5.pth",
                 backbone_file="dinov3_vitl16_pretrain_lvd1689m-*.pth",
                 description="dino.txt vision head + 1280-d text encoder (zero-shot, retrieval, open-vocab seg)")
