# Official DINOv3 linear segmentation (dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml):
# frozen backbone, LAST layer with the backbone norm, no class token -> Dropout2d(0.1) -> BatchNorm -> 1x1 conv;
# per-pixel cross-entropy; sliding-window evaluation (crop 512, stride 341); mIoU from mmseg's IoUMetric.
# num_visualizations: predictions drawn by --save-predictions.
protocol = dict(
    type="linear_seg",
    head=dict(layers="last", use_cls_token=False, use_batchnorm=True, use_backbone_norm=True, dropout=0.1),
    inference=dict(mode="slide", crop_size=512, stride=341),
    num_visualizations=4,
)
# Head training (dinobench.engine). batch_size is global (official: 2 per GPU x 8 GPUs); 40k iterations;
# AdamW lr 1e-3, wd 1e-3; WarmupOneCycleLR (1500 warm-up iterations, warmup_ratio 1e-6, cosine to 0);
# no gradient clipping; float32 (official model_dtype FLOAT32). eval_every/checkpoint_every/num_workers/
# work_dir/resume do not change the result. work_dir=None: <output>/.runs/<backbone>/<task>/<run key>.
train = dict(
    max_iters=40000, batch_size=16, num_workers=4, eval_every=5000, checkpoint_every=1000, max_to_keep=1,
    log_every=10, grad_clip=None, amp=None, work_dir=None, resume=True,
    optimizer=dict(lr=1e-3, weight_decay=1e-3, betas=[0.9, 0.999]),
    scheduler=dict(type="warmup_one_cycle", warmup_iters=1500, warmup_ratio=1e-6, div_factor=25.0,
                   final_div_factor=None, anneal_strategy="cos", use_beta1=False),
)
