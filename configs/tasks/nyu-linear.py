_base_ = ["../_base_/datasets/nyu.py", "../_base_/protocols/linear_depth.py"]
task = dict(description="linear depth on NYU-Depth v2 (official DINOv3 protocol); --data-root <BTS-layout NYU dir>",
            official="dinov3/eval/depth/configs/config-nyu.yaml")
# The defaults are the paper's GPU schedule (38.4k iterations, batch 16, crop 416x544). CPU smoke run on
# the synthetic NYU (python -m dinobench.synthetic nyu /tmp/nyu, 48x64 images) with a tiny backbone:
#   dinobench run --backbone vit_tiny --task nyu-linear --data-root /tmp/nyu --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 \
#     train.max_iters=40 train.batch_size=4 train.num_workers=0 train.eval_every=0 train.optimizer.lr=0.01 \
#     train.scheduler.warmup_iters=4 protocol.loss.warm_iter=4 transform.train.crop_size=[32,48]
