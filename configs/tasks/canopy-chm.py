_base_ = ["../_base_/train/nyu_depth_head.py"]  # the head-training recipe (train section), if a head is trained here
task = dict(description="canopy height (m) of RGB tiles with the CHMv2 head; --data-root <dir with train/ and val/>")
# The released head: dinobench run --head dinov3_vitl16_chmv2 --head-weights dinov3_vitl16_chmv2_dpt_head-*.pth \
#   --weights dinov3_vitl16_pretrain_sat493m-*.pth --data-root DIR   (backbone vitl16_sat493m, no training)
# Defaults of the head: dinobench.protocols.canopy.CanopyHeadConfig (the release's DecoderConfig).
# CPU smoke run on synthetic tiles (python -m dinobench.synthetic canopy_folder /tmp/chm):
#   dinobench run --backbone vit_tiny --task canopy-chm --data-root /tmp/chm --cfg-options \
#     backbone.embed_dim=64 backbone.depth=4 backbone.num_heads=2 train.max_iters=20 train.batch_size=4 \
#     train.num_workers=0 train.eval_every=0 train.scheduler.warmup_iters=4 transform.train.crop_size=[48,48] \
#     protocol.head.channels=16 protocol.head.post_process_channels=[8,16,16,16] protocol.head.n_hidden_channels=8
dataset = dict(type="canopy_folder", root=None, train_split="train", val_split="val", height_scale=1.0,
               nodata=None, max_height=96.0, image_max=None, max_train_samples=None, max_val_samples=None)
protocol = dict(type="chm")
transform = dict(train=dict(crop_size=(256, 256)), eval=dict())
