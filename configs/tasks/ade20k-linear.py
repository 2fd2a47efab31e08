_base_ = ["../_base_/datasets/ade20k.py", "../_base_/protocols/linear_seg.py"]
task = dict(description="linear segmentation on ADE20K (official DINOv3 protocol); --data-root <ADEChallengeData2016>",
            official="dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml")
# The defaults are the paper's GPU schedule (40k iterations, batch 16, crop 512). CPU smoke run on the
# synthetic ADE20K (python -m dinobench.synthetic ade20k /tmp/ade) with a tiny backbone:
#   dinobench run --backbone vit_tiny --task ade20k-linear --data-root /tmp/ade/ADEChallengeData2016 --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 \
#     train.max_iters=40 train.batch_size=4 train.num_workers=0 train.eval_every=0 train.optimizer.lr=0.01 \
#     train.scheduler.warmup_iters=4 transform.train.scale=64 transform.train.crop_size=[32,32] \
#     transform.eval.scale=64 protocol.inference.crop_size=48 protocol.inference.stride=32
