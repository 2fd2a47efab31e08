_base_ = ["../_base_/datasets/video.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on UCF-101 clips (8 frames, 2 clips x 3 crops at test); --data-root <dir with UCF-101/ and ucfTrainTestlist/>")
dataset = dict(type="ucf101", root=None, split=1, num_frames=8, test_clips=2, test_crops=3)
train = dict(max_iters=3000, batch_size=64, scheduler=dict(warmup_iters=150))  # ~20 passes over 9.5k clips
# CPU smoke run (python -m dinobench.synthetic ucf101 /tmp/ucf):
#   dinobench run --backbone vit_tiny --task ucf101-attentive --data-root /tmp/ucf --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.resize=32 transform.crop=32 \
#     dataset.num_frames=4 dataset.test_clips=2 dataset.test_crops=1 train.max_iters=30 train.batch_size=8 \
#     train.checkpoint_every=0 train.scheduler.warmup_iters=3 protocol.learning_rates=[0.001,0.003] protocol.depth=2
