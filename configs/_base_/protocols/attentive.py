# Attentive probe on frozen patch tokens (images: patch_tokens [h, w, D]; videos: frame_patch_tokens [T, h, w, D]
# with a temporal position embedding): 3 self-attention blocks + 1 cross-attention block from a learnable query,
# one probe per protocol.learning_rates value trained at once, the best on val reported. Defaults
# (learning_rates=[1e-4, 3e-4, 1e-3, 3e-3], depth=4, num_heads=None -> embed_dim // 64, mlp_ratio=4, num_queries=1,
# feature_dtype="float32") live in dinobench.protocols.attentive.AttentiveConfig.
protocol = dict(type="attentive")
# Shared engine: AdamW, cosine to 0 after a linear warm-up; train.optimizer.lr is the reference each probe's lr
# is a multiple of. Tasks set max_iters / batch_size / warmup for their data.
train = dict(
    max_iters=2000, batch_size=256, num_workers=0, eval_every=0, checkpoint_every=1000, log_every=10,
    optimizer=dict(type="adamw", lr=1e-3, weight_decay=0.01),
    scheduler=dict(type="cosine", warmup_iters=100),
)
