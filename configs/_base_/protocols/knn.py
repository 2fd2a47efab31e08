# Official DINOv3 kNN: L2-normalised CLS features, cosine top-k, softmax(sim / T) weighted vote.
# Defaults (nb_knn=[10, 20, 100, 200], temperature=0.07, few_shot=dict(n_per_class=[], seeds=[0, 1, 2]),
# main_metric="top1", chunk_size=1024) live in dinobench.protocols.knn.KNNConfig; state only what differs.
protocol = dict(type="knn")
