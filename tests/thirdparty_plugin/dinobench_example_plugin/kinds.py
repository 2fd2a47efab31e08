"""An example feature kind: the last layer's patch tokens average-pooled to a 2 x 2 grid, ``[2, 2, D]``."""

import torch.nn.functional as F


def pooled_grid(model, images):
    """``[B, 2, 2, D]`` (channels-last), cached by dinobench as an N-D array."""
    (patches,) = model.get_intermediate_layers(images, n=1, reshape=True, norm=True)
    return F.adaptive_avg_pool2d(patches, 2).permute(0, 2, 3, 1).contiguous()
