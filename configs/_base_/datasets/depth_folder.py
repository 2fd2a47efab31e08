# Your depth data: <data-root>/{train,val}/images/*.{jpg,png} + <data-root>/{train,val}/depth/<stem>.png
# (16-bit; stored value / depth_scale = metres, so 1000.0 = millimetres; 0 = no reading).
dataset = dict(type="depth_folder", root=None, train_split="train", val_split="val", depth_scale=1000.0,
               min_depth=1e-3, max_depth=10.0, eigen_crop=False, max_train_samples=None, max_val_samples=None)
# Joint transforms (dinobench.data.dense_transforms): no fixed crop; set crop_size to your images.
transform = dict(
    train=dict(fixed_crop=None, crop_size=(416, 544), rotation_deg=2.5, rotation_prob=0.5, flip_prob=0.5,
               color_aug=dict(prob=0.5)),
    eval=dict(fixed_crop=None, scale=None),
)
