# Official DINOv3 linear probe (dinov3/eval/linear.py) on frozen, cached features: input =
# CLS tokens of the last n blocks + average-pooled last-block patch tokens; one linear head
# per (n, lr), all trained at once with SGD (momentum 0.9, weight decay 0) and a cosine schedule
# to 0; the head with the best val top-1 is reported (on test when the dataset has one).
protocol = dict(
    type="linear",
    # official _DEFAULT_LR_LIST; each is scaled by batch_size / 256
    learning_rates=[1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1],
    # DINOv3's default is [1]; the DINOv2 / benchmark grid adds the last-4-blocks input
    n_last_blocks=[1, 4],
    batch_size=128,  # official per-GPU batch size
    epochs=10,  # official
    epoch_length=None,  # iterations per epoch; None = one pass over the train features
    chunk_size=1024,  # rows per evaluation chunk (memory only; not part of the protocol hash)
    # False: heads train on cached eval-transform features (fast, shared with kNN/logreg); True: the
    # official on-the-fly augmentation (RandomResizedCrop 0.08-1 + flip, a new view per epoch)
    train_augmentation=False,
)
features = dict(batch_size=64, num_workers=0)
