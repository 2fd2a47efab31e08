_base_ = ["../_base_/datasets/seg_folder.py", "../_base_/protocols/linear_seg.py"]
task = dict(description="linear segmentation on your image+mask folders; --data-root <dir with train/ and val/>")
# Same protocol and schedule as ade20k-linear. CPU smoke run on synthetic folders
# (python -m dinobench.synthetic seg_folder /tmp/segf):
#   dinobench run --backbone vit_tiny --task seg-folder-linear --data-root /tmp/segf --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 \
#     train.max_iters=40 train.batch_size=4 train.num_workers=0 train.eval_every=0 train.optimizer.lr=0.01 \
#     train.scheduler.warmup_iters=4 transform.train.scale=64 transform.train.crop_size=[32,32] \
#     transform.eval.scale=64 protocol.inference.crop_size=48 protocol.inference.stride=32
