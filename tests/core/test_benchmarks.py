"""The benchmark scripts run (tiny sizes) and print their comparison: a broken import or flag fails here.

Nothing is timed: the speed targets are the ratios the scripts print on a real machine (benchmarks/README.md).
"""

import importlib.util

import pytest
from conftest import REPO

BENCHMARKS = REPO / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, argv, expected", [
    ("knn", ["--n-train", "300", "--n-query", "50", "--dim", "16", "--classes", "5", "--k", "5"],
     ["ratio: dinobench is", "predictions agree on"]),
    ("logreg", ["--n", "300", "--dim", "8", "--classes", "4", "--grid-step", "9", "--max-iter", "50"],
     ["dinobench torch L-BFGS path", "scikit-learn LogisticRegression per C", "ratio: dinobench torch is"]),
    ("features", ["--backbone", "vit_tiny", "--n", "8", "--batch-size", "4", "--workers", "1",
                  "--precision", "float32"],
     ["decode (PIL, main thread)", "forward (model only)", "ratio: end-to-end throughput is"]),
    ("dense", ["--backbone", "vit_tiny", "--size", "64", "--batch", "1", "--rounds", "1"],
     ["linear seg head", "DPT depther", "dinobench ms_deform_attn"]),
])
def test_benchmark_script_runs_and_prints_its_comparison(name, argv, expected, capsys):
    _script(name).main(argv)
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, out
