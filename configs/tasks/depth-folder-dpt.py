_base_ = ["../_base_/datasets/depth_folder.py", "../_base_/protocols/dpt.py"]
task = dict(description="DPT depth head on your image+depth folders; --data-root <dir with train/ and val/>")
# Same protocol and schedule as nyu-dpt (no Eigen crop; set transform.train.crop_size to your images).
# CPU smoke run on synthetic folders (python -m dinobench.synthetic depth_folder /tmp/depthf, 48x64):
#   dinobench run --backbone vit_tiny --task depth-folder-dpt --data-root /tmp/depthf --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 \
#     train.max_iters=30 train.batch_size=4 train.num_workers=0 train.eval_every=0 train.optimizer.lr=0.03 \
#     train.scheduler.warmup_iters=4 protocol.loss.warm_iter=4 transform.train.crop_size=[32,48] \
#     protocol.head.channels=16 protocol.head.post_process_channels=[8,16,16,16] protocol.head.n_hidden_channels=8 \
#     protocol.head.n_bins=64
