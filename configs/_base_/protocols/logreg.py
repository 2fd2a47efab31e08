# Official DINOv3 logistic regression (dinov3/eval/log_regression.py) on the LayerNorm-ed CLS
# token (not L2-normalised, as official): scikit-learn LogisticRegression, L2, lbfgs, float64; C grid
# 10 ** linspace(-6, 5, 45), max_iter 1000, tol 1e-12, 10% of train held out for selection when there is
# no separate val split. protocol.solver=torch: the same objective by torch L-BFGS warm-started along the C
# path on the run's device (fast on GPU). Defaults: dinobench.protocols.logreg.LogRegConfig.
protocol = dict(type="logreg")
