_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on patch tokens of scikit-learn's real digits; lr selected on val")
# 1,437 train images: batch 64, 300 iterations (~13 passes) run in seconds on a CPU
train = dict(max_iters=300, batch_size=64, checkpoint_every=0, scheduler=dict(warmup_iters=20))
