# Official DINOv3 kNN: L2-normalised CLS features, cosine top-k, softmax(sim / T) weighted vote.
protocol = dict(
    type="knn",
    nb_knn=[10, 20, 100, 200],
    temperature=0.07,
    chunk_size=1024,  # queries per similarity chunk (memory only; not part of the protocol hash)
    # Few-shot kNN (official few_shot.k_or_percent / n_tries): for each n, for each seed, n train
    # samples per class (n < 1: that fraction of each class); mean/std over seeds. [] = off.
    few_shot=dict(n_per_class=[], seeds=[0, 1, 2]),
    # "top1" = best-k top-1 of the full-train kNN; or a few-shot one, e.g. "fewshot_n5_top1_mean"
    main_metric="top1",
)
# feature extraction (batch size and workers do not enter the protocol hash)
features = dict(batch_size=64, num_workers=0)
