_base_ = ["../_base_/datasets/ade20k.py", "../_base_/protocols/m2f_seg.py"]
task = dict(description="Mask2Former segmentation on ADE20K (DINOv3's segmentor); --data-root <ADEChallengeData2016>",
            official="dinov3/eval/segmentation/configs/config-ade20k-m2f-inference.yaml")
# Evaluation of the released segmentor (dinov3/eval/segmentation/configs/config-ade20k-m2f-inference.yaml): short
# side 896 (line 13), windows of 896 every 596 px (lines 18-20), test-time augmentation (line 21) over the scale
# ratios of line 14, each view also mirrored: 10 views. One view instead: protocol.inference.scales=[1.0]
# protocol.inference.flip=false. A released head: protocol.head_weights=<segmentor .pth>.
protocol = dict(inference=dict(scales=[0.9, 0.95, 1.0, 1.05, 1.1], flip=True))
# CPU smoke run on the synthetic ADE20K (python -m dinobench.synthetic ade20k /tmp/ade) with a tiny backbone:
#   dinobench run --backbone vit_tiny --task ade20k-m2f --data-root /tmp/ade/ADEChallengeData2016 --cfg-options \
#     backbone.embed_dim=64 backbone.depth=4 backbone.num_heads=2 \
#     protocol.head.hidden_dim=32 protocol.head.num_queries=8 protocol.head.nheads=2 \
#     protocol.head.dim_feedforward=64 protocol.head.dec_layers=2 protocol.head.enc_layers=1 \
#     protocol.loss.num_points=256 train.max_iters=30 train.batch_size=2 train.num_workers=0 train.eval_every=0 \
#     train.optimizer.lr=1e-3 train.grad_clip=1.0 transform.train.scale=64 transform.train.crop_size=[64,64] \
#     transform.eval.scale=64 protocol.inference.crop_size=64 protocol.inference.stride=48 \
#     protocol.inference.scales=[1.0] protocol.inference.flip=false
transform = dict(
    train=dict(scale=896, crop_size=(896, 896)),
    eval=dict(scale=896),
)
