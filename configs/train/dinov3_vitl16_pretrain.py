# GPU-scale DINOv3 ViT-L/16 pretraining on an ImageNet-layout folder (--data-root or train.data_root).
# Launch: torchrun --nproc_per_node 8 -m dinobench train --config configs/train/dinov3_vitl16_pretrain.py
_base_ = ["../_base_/train/ssl_default.py"]
train = dict(dataset=dict(type="imagenet"), batch_size_per_gpu=64)
