_base_ = ["../_base_/protocols/text_retrieval.py"]
task = dict(description="dino.txt image-text retrieval on COCO val2017 captions (5k images); --data-root <coco>")
dataset = dict(type="coco_captions", root=None)
transform = dict(resize=224, crop=224, interpolation="bicubic")
