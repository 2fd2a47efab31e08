_base_ = ["../_base_/datasets/coco.py", "../_base_/protocols/plaindetr.py"]
task = dict(description="Plain-DETR detection on COCO 2017 (DINOv3's detector); --data-root <coco folder>",
            official="dinov3/hub/detectors.py")
# The release's detector: 1500 + 1500 queries, hidden dim 768, top-1500 detections. A released head:
# protocol.head_weights=<dinov3_*_coco2017_detr_head-*.pth>.
# official: dinov3/hub/detectors.py:84 builds the backbone's windowed attention per backbone: 3x3 windows for
# ViT-7B, 2x2 for ViT-L+; other backbones have no official detector (no windows, the protocol default 0). The
# evaluation resolution of the released detector is not in the release (its config sets no test-time size).
by_backbone = {"vit7b16": {"protocol.head.n_windows_sqrt": 3}, "vitl16plus": {"protocol.head.n_windows_sqrt": 2}}
# CPU smoke run on the synthetic COCO set (python -m dinobench.synthetic coco /tmp/coco) with a tiny backbone:
#   dinobench run --backbone vit_tiny --task coco-plaindetr --data-root /tmp/coco --cfg-options \
#     backbone.embed_dim=64 backbone.depth=4 backbone.num_heads=2 \
#     protocol.head.hidden_dim=64 protocol.head.nheads=2 protocol.head.dec_layers=2 protocol.head.dim_feedforward=64 \
#     protocol.head.num_encoder_layers=1 protocol.head.num_queries_one2one=20 protocol.head.num_queries_one2many=40 \
#     protocol.head.decoder_rpe_hidden_dim=32 protocol.head.proposal_min_size=16 protocol.inference.topk=50 \
#     train.max_iters=30 train.batch_size=2 train.num_workers=0 train.eval_every=0 train.optimizer.lr=1e-3 \
#     train.scheduler.milestones=[25] train.scheduler.warmup_iters=0 train.grad_clip=1.0 \
#     transform.train.scales=[64] transform.train.max_size=128 transform.train.crop=None \
#     transform.eval.scale=64 transform.eval.max_size=128
