# Official DINOv3 logistic regression (dinov3/eval/log_regression.py) on the LayerNorm-ed CLS
# token (not L2-normalised, as official): scikit-learn LogisticRegression, L2, lbfgs, float64.
protocol = dict(
    type="logreg",
    # C grid 10 ** linspace(c_min_exp, c_max_exp, grid_size): the official 45 values in [1e-6, 1e5]
    c_min_exp=-6.0,
    c_max_exp=5.0,
    grid_size=45,
    max_iter=1000,  # official max_train_iters
    tol=1e-12,  # official: so tight that lbfgs in practice stops at max_iter
    # without a separate val split to select C on, the official code holds out 10% of each class
    # of train (seeded shuffle), selects C there, then refits on the full train
    selection_fraction=0.1,
    n_jobs=-1,  # parallel C fits (joblib processes, 1 BLAS thread each); -1 = all cores
)
features = dict(batch_size=64, num_workers=0)
