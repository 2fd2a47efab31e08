# Head-training recipe of the official DINOv3 NYU depth heads (config-nyu.yaml; linear and DPT), for
# dinobench.training: 38.4k iterations, global batch 16 (2 x 8 GPUs), AdamW lr 3e-4, wd 1e-4, betas
# (0.9, 0.99), gradient clip 35; WarmupOneCycleLR with 12.8k warm-up iterations, final_div_factor 1000 and
# beta1 driven by the schedule (0 in warm-up, then 0.85 -> 0.95); bf16 autocast on GPU.
# num_workers/eval_every/checkpoint_every/max_to_keep/log_every/work_dir/resume do not change the result.
train = dict(
    max_iters=38400, batch_size=16, num_workers=4, eval_every=1600, checkpoint_every=1000, max_to_keep=1,
    log_every=10, grad_clip=35.0, amp="bf16", work_dir=None, resume=True,
    optimizer=dict(lr=3e-4, weight_decay=1e-4, betas=[0.9, 0.99]),
    scheduler=dict(type="warmup_one_cycle", warmup_iters=12800, warmup_ratio=0.0, div_factor=25.0,
                   final_div_factor=1000.0, anneal_strategy="cos", use_beta1=True, base_momentum=0.85,
                   max_momentum=0.95),
)
