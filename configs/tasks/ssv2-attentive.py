_base_ = ["../_base_/datasets/video.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on Something-Something-v2 clips (8 frames, 2 clips x 3 crops at test); --data-root <dir with 20bn-something-something-v2/ and labels/>")
dataset = dict(type="ssv2", root=None, num_frames=8, test_clips=2, test_crops=3)
train = dict(max_iters=8000, batch_size=256, num_workers=8, scheduler=dict(warmup_iters=400))  # ~12 passes over 169k
protocol = dict(feature_dtype="float16")
# CPU smoke run (python -m dinobench.synthetic ssv2 /tmp/ssv2):
#   dinobench run --backbone vit_tiny --task ssv2-attentive --data-root /tmp/ssv2 --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.resize=32 transform.crop=32 \
#     dataset.num_frames=4 dataset.test_clips=2 dataset.test_crops=1 train.max_iters=30 train.batch_size=8 \
#     train.num_workers=0 train.checkpoint_every=0 train.scheduler.warmup_iters=3 protocol.learning_rates=[0.001,0.003] protocol.depth=2
