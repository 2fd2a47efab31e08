_base_ = ["../_base_/datasets/video.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on Kinetics-400 clips (8 frames, 2 clips x 3 crops at test); --data-root <dir with train/<class>/ and val/<class>/>")
dataset = dict(type="kinetics400", root=None, num_frames=8, test_clips=2, test_crops=3)
train = dict(max_iters=12000, batch_size=256, num_workers=8, scheduler=dict(warmup_iters=600))  # ~13 passes over 240k
protocol = dict(feature_dtype="float16")
# CPU smoke run (python -m dinobench.synthetic kinetics400 /tmp/k400):
#   dinobench run --backbone vit_tiny --task kinetics400-attentive --data-root /tmp/k400 --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.resize=32 transform.crop=32 \
#     dataset.num_frames=4 dataset.test_clips=2 dataset.test_crops=1 train.max_iters=30 train.batch_size=8 \
#     train.num_workers=0 train.checkpoint_every=0 train.scheduler.warmup_iters=3 protocol.learning_rates=[0.001,0.003] protocol.depth=2
