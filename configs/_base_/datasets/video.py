# Video clips: num_frames frames sampled uniformly; train = 1 view per video (centre clip and crop), val/test =
# test_clips x test_crops views averaged per video. Frames: shorter side resized to transform.resize, crop
# transform.crop (bicubic). Decoding: PyAV (pip install av) or frame folders next to the file names.
transform = dict(resize=256, crop=224)
features = dict(batch_size=8)
