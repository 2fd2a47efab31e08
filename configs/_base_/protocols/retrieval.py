# Label retrieval query -> database: L2-normalised CLS descriptors, cosine ranking, mAP, mAP@R, R@1/5/10.
# Defaults (multiscale=False, recall_at=[1, 5, 10], backend="torch", chunk_size=256, main_metric="mAP") live in
# dinobench.protocols.retrieval.RetrievalConfig.
protocol = dict(type="retrieval")
transform = dict(resize=256, crop=224, interpolation="bicubic")
