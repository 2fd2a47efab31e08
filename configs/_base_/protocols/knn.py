# Official DINOv3 kNN: L2-normalised CLS features, cosine top-k, softmax(sim / T) weighted vote.
protocol = dict(type="knn", nb_knn=[10, 20, 100, 200], temperature=0.07, chunk_size=1024)
# feature extraction (batch size and workers do not enter the protocol hash)
features = dict(batch_size=64, num_workers=0)
