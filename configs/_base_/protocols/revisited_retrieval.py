# Revisited Oxford/Paris instance retrieval: L2-normalised CLS descriptors of whole images (longer side
# max_size, aspect kept; queries cropped to their boxes), cosine ranking, mAP / mP@k for Easy, Medium, Hard.
# Defaults (multiscale=False, kappas=[1, 5, 10], backend="torch", chunk_size=256, main_metric="mAP_hard") live
# in dinobench.protocols.revisited_retrieval.RevisitedConfig. Images differ in size: one image per forward.
protocol = dict(type="revisited_retrieval")
transform = dict(resize=None, crop=None, max_size=1024, interpolation="bicubic")
features = dict(batch_size=1)
