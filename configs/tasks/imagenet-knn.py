_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/knn.py"]
task = dict(description="kNN on ImageNet-1k (official DINOv3 protocol); --data-root <imagenet>",
            official="dinov3/eval/knn.py")
