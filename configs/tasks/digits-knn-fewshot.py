_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/knn.py"]
# few-shot kNN: 1 / 5 / 10 train images per class, 3 seeded draws each; main metric: 5-shot mean
protocol = dict(few_shot=dict(n_per_class=[1, 5, 10], seeds=[0, 1, 2]), main_metric="fewshot_n5_top1_mean")
task = dict(description="few-shot kNN (1/5/10 per class, 3 seeds, mean +- std) on scikit-learn's real digits")
