# Foreground segmentation, the official notebook's probe: scikit-learn LogisticRegression on the last block's
# patch tokens against masks pooled to the patch grid (clear patches only), C from logspace(-7, 0, 8) chosen on
# held-out train images; AP and mIoU on val. Defaults live in dinobench.protocols.foreground.ForegroundConfig.
protocol = dict(type="foreground")
# square input (rounded down to whole patches); the notebook uses 768 px high images
transform = dict(size=448)
