_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/logreg.py"]
# official: the resize / crop ratio of the logreg transform is 1 (dinov3 TransformConfig 224 / 224)
transform = dict(resize=224, crop=224)
task = dict(description="logistic regression on ImageNet-1k (official DINOv3 protocol); --data-root <imagenet>")
