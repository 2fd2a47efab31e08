_base_ = ["../_base_/datasets/nyu.py", "../_base_/protocols/dpt.py"]
task = dict(description="DPT depth head on NYU-Depth v2 (DINOv3 depther, official NYU recipe); --data-root <BTS NYU dir>")
# The defaults are the paper's GPU schedule. CPU smoke run on the synthetic NYU
# (python -m dinobench.synthetic nyu /tmp/nyu, 48x64 images) with a tiny backbone and DPT:
#   dinobench run --backbone vit_tiny --task nyu-dpt --data-root /tmp/nyu --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 \
#     train.max_iters=60 train.batch_size=4 train.num_workers=0 train.eval_every=0 train.optimizer.lr=0.01 \
#     train.scheduler.warmup_iters=4 protocol.loss.warm_iter=4 transform.train.crop_size=[32,48] \
#     protocol.head.channels=16 protocol.head.post_process_channels=[8,16,16,16] protocol.head.n_hidden_channels=8 \
#     protocol.head.n_bins=64
