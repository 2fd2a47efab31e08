# Head-training recipe of Plain-DETR on COCO (the Plain-DETR paper's 12-epoch schedule), for dinobench.training:
# global batch 16; 12 epochs of COCO train2017 (7,330 iterations each) = 88k iterations; AdamW lr 2e-4, weight
# decay 0.05 (none on norms, biases, embeddings, position-bias MLPs: the detector's param_groups); linear warm-up
# over 1000 iterations; lr x 0.1 after epoch 11; gradient-norm clipping 0.1; bf16 autocast on CUDA (float32 on CPU).
# The backbone is frozen (the DINOv3 release trains the head only).
train = dict(
    max_iters=88000, batch_size=16, num_workers=4, eval_every=7330, checkpoint_every=1000, max_to_keep=1,
    log_every=20, grad_clip=0.1, amp="bf16", work_dir=None, resume=True,
    optimizer=dict(type="adamw", lr=2e-4, weight_decay=0.05, betas=[0.9, 0.999]),
    scheduler=dict(type="step", milestones=[80630], gamma=0.1, warmup_iters=1000, warmup_ratio=0.0),
)
