# Head-training recipe of Mask2Former on ADE20K (Mask2Former's maskformer2 ADE20K 160k schedule), for
# dinobench.training: global batch 16, 160k iterations, AdamW lr 1e-4, weight decay 0.05 (none on norms,
# nn.Embedding and position-bias tables: the segmentor's param_groups, as Mask2Former's build_optimizer; biases and
# level-embedding parameters decay), poly decay with power 0.9, gradient-norm clipping 0.01,
# bf16 autocast on CUDA (float32 on CPU). The backbone is frozen, so Mask2Former's 0.1 backbone lr multiplier
# does not apply. The DINOv3 paper's multi-stage schedule (COCO-Stuff -> Hypersim -> ADE20K) is not reproduced.
train = dict(
    max_iters=160000, batch_size=16, num_workers=4, eval_every=20000, checkpoint_every=1000, max_to_keep=1,
    log_every=20, grad_clip=0.01, amp="bf16", work_dir=None, resume=True,
    optimizer=dict(type="adamw", lr=1e-4, weight_decay=0.05, betas=[0.9, 0.999]),
    scheduler=dict(type="poly", power=0.9, min_lr=0.0, warmup_iters=0),
)
