# dino.txt on COCO Captions, the official example's recipe (dinov3/eval/text): frozen ViT-L/16 (pass its weights),
# 2 vision head blocks (drop path 0.3), text transformer 1280 wide, 20 heads, 24 layers (the released model's
# sizes), embedding 2048; AdamW lr 7e-4, weight decay 1e-4 (none on gains, biases, logit_scale), global batch
# 256, 50k iterations, linear warm-up then cosine; bf16 autocast on CUDA. Run under torchrun for several GPUs:
#   torchrun --nproc_per_node 8 -m dinobench train --config configs/train/dinotxt_vitl16_coco.py \
#     --data-root /data/coco model.weights=/weights/dinov3_vitl16_pretrain_lvd1689m.pth
# The trained part is exported to <output>/dinotxt_head.pth in the released file's layout.
recipe = "dinotxt"
model = dict(backbone="vitl16", weights=None, embed_dim=2048, text_dim=1280, text_heads=20, text_layers=24,
             context_length=77, vocab_size=49408, vision_head_blocks=2)
data = dict(type="coco_captions", root=None, image_size=224)
train = dict(max_iters=50000, batch_size=256, num_workers=8, eval_every=0, checkpoint_every=1000, log_every=20,
             grad_clip=None, amp="bf16",
             optimizer=dict(type="adamw", lr=7e-4, weight_decay=1e-4, betas=[0.9, 0.98]),
             scheduler=dict(type="cosine", warmup_iters=1000, min_lr=0.0))
seed = 11
