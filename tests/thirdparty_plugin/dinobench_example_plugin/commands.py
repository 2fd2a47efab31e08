"""An example CLI subcommand: ``dinobench example-datasets TASK`` lists the named datasets of a task."""

from dinobench.api import build_datasets, resolve_task


def configure(parser):
    parser.add_argument("task", help="task name (dinobench list tasks)")
    parser.add_argument("--data-root", default=None)


def run(args):
    datasets, types = build_datasets(resolve_task(args.task, None), args.data_root)
    for name, dataset in sorted(datasets.items()):
        print(f"{name}\t{types[name]}\t{len(dataset)}\t{dataset.fingerprint}")
    return 0
