_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on ImageNet-1k patch tokens; lr selected on val; --data-root <imagenet>")
# 20 epochs of 1.28M images at batch 1024; patch tokens of the train set are large: protocol.feature_dtype=float16
# halves the cache (ViT-L: 1.28M x 196 x 1024 x 2 bytes = 514 GB)
train = dict(max_iters=25000, batch_size=1024, num_workers=8, scheduler=dict(warmup_iters=1250))
protocol = dict(feature_dtype="float16")
