_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/logreg.py"]
# official: dinov3/eval/log_regression.py TransformConfig is resize_size = crop_size = CROP_DEFAULT_SIZE (224),
# resize / crop ratio 1 (it warns otherwise), whereas knn.py and linear.py use 256 -> 224. So on ImageNet the
# logreg features are a cache entry of their own; imagenet-knn and imagenet-linear share theirs.
transform = dict(resize=224, crop=224)
task = dict(description="logistic regression on ImageNet-1k (official DINOv3 protocol); --data-root <imagenet>",
            official="dinov3/eval/log_regression.py")
