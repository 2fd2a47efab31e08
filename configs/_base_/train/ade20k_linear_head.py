# Head-training recipe of the official DINOv3 ADE20K linear head (config-ade20k-linear-training.yaml), for
# dinobench.training: batch_size is global (official: 2 per GPU x 8 GPUs); 40k iterations; AdamW lr 1e-3,
# wd 1e-3; WarmupOneCycleLR (1500 warm-up iterations, warmup_ratio 1e-6, cosine to 0); no gradient clipping;
# float32 (official model_dtype FLOAT32). eval_every=5000: the official eval.eval_interval; linear_seg reports
# the best of these evaluations (protocol.report="best", official), so eval_every enters its protocol hash.
# num_workers/checkpoint_every/max_to_keep/log_every/work_dir/resume do not change the result
# (dinobench.training.RUNTIME_TRAIN_KEYS).
# work_dir=None: <output>/.runs/<backbone>/<task>/<run key>.
train = dict(
    max_iters=40000, batch_size=16, num_workers=4, eval_every=5000, checkpoint_every=1000, max_to_keep=1,
    log_every=10, grad_clip=None, amp=None, work_dir=None, resume=True,
    optimizer=dict(lr=1e-3, weight_decay=1e-3, betas=[0.9, 0.999]),
    scheduler=dict(type="warmup_one_cycle", warmup_iters=1500, warmup_ratio=1e-6, div_factor=25.0,
                   final_div_factor=None, anneal_strategy="cos", use_beta1=False),
)
