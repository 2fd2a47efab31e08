_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/zeroshot.py"]
task = dict(description="dino.txt zero-shot classification on ImageNet-1k (80 templates, CLIP's class names); "
                        "--data-root <imagenet>")
# The released head: protocol.head_weights=<dinov3_vitl16_dinotxt_vision_head_and_text_encoder-*.pth> with
# --backbone vitl16 --weights <dinov3_vitl16 pretrain>; the folders are wnids, so CLIP's names are used.
protocol = dict(class_names="openai_imagenet")
