# Official DINOv3 linear probe (dinov3/eval/linear.py) on frozen features: input =
# CLS tokens of the last n blocks + average-pooled last-block patch tokens; one linear head
# per (n, lr), all trained at once with SGD (momentum 0.9, weight decay 0) and a cosine schedule
# to 0; the head with the best val top-1 is reported (on test when the dataset has one).
# Defaults = the official recipe (lr grid, n_last_blocks=[1], batch_size=128, epochs=10, train_augmentation=True):
# dinobench.protocols.linear.LinearConfig; state only what differs.
protocol = dict(type="linear")
