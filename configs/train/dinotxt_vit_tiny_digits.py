# Offline dino.txt demo: align a tiny text tower to a tiny random-init backbone on scikit-learn's real 8x8
# digits with class-name captions ("a photo of the digit seven."); a couple of CPU minutes. Zero-shot top-1 of
# the exported head on the held-out digits: `dinobench run --backbone vit_tiny --task digits-zeroshot
# --cfg-options protocol.head_weights=<output>/dinotxt_head.pth ...` (see configs/tasks/digits-zeroshot.py).
recipe = "dinotxt"
model = dict(backbone="vit_tiny", backbone_kwargs=dict(embed_dim=64, depth=2, num_heads=2), embed_dim=128,
             text_dim=64, text_heads=2, text_layers=1, context_length=16, vision_head_blocks=1)
data = dict(type="class_prompts", dataset=dict(type="digits"), prompt="a photo of the digit {}.", image_size=32)
train = dict(max_iters=300, batch_size=64, num_workers=0, eval_every=0, checkpoint_every=100, log_every=20,
             optimizer=dict(type="adamw", lr=2e-3, weight_decay=1e-4, betas=[0.9, 0.98]),
             scheduler=dict(type="cosine", warmup_iters=20, min_lr=0.0))
seed = 0
