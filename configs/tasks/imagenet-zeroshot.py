_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/zeroshot.py"]
task = dict(description="dino.txt zero-shot classification on ImageNet-1k (80 templates, CLIP's class names); "
                        "--data-root <imagenet>",
            official="notebooks/dinotxt_inference.ipynb")
# The released head: protocol.head_weights=<dinov3_vitl16_dinotxt_vision_head_and_text_encoder-*.pth> with
# --backbone vitl16 --weights <dinov3_vitl16 pretrain>; the folders are wnids, so CLIP's names are used.
protocol = dict(class_names="openai_imagenet")
# official: notebooks/dinotxt_inference.ipynb (cell "image_preprocess"): make_classification_eval_transform(
# resize_size=512, crop_size=512), bicubic
transform = dict(resize=512, crop=512, interpolation="bicubic")
