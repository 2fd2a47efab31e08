"""features.compile: the backbone's feature methods go through torch.compile, and a failing compile falls back to
eager with one warning (the run finishes with the eager numbers). torch.compile itself is stubbed here: a real
CPU compile costs ~45 s (benchmarks/backbone.py --compile exercises it)."""

import json
import logging

import torch

from conftest import TINY, TINY_OPTIONS

import dinobench
from dinobench.utils import compile as compile_mod


def test_failing_compile_warns_once_and_runs_eagerly(monkeypatch, caplog):
    calls = []

    def broken_compile(fn):
        def compiled(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("inductor: no working C++ compiler\nmore detail")
        return compiled

    monkeypatch.setattr(compile_mod.torch, "compile", broken_compile)
    model = dinobench.create_backbone("vit_tiny", **TINY).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        want = model.forward_features(images)["x_norm_clstoken"]
        compile_mod.compile_backbone(model)
        compile_mod.compile_backbone(model)  # idempotent: not wrapped twice
        with caplog.at_level(logging.WARNING, logger="dinobench"):
            got = [model.forward_features(images)["x_norm_clstoken"] for _ in range(3)]
    assert len(calls) == 1  # the compiled path is tried once, then eager
    warnings = [r.getMessage() for r in caplog.records if "features.compile" in r.getMessage()]
    assert len(warnings) == 1 and "forward_features" in warnings[0] and "no working C++ compiler" in warnings[0]
    assert "more detail" not in warnings[0]  # one line
    for out in got:
        assert torch.equal(out, want)


def test_run_with_features_compile_uses_the_compiled_methods(run_cli, tmp_path, monkeypatch):
    compiled = []

    def recording_compile(fn):
        compiled.append(getattr(fn, "__name__", repr(fn)))
        return fn  # stands in for the compiled function: same numbers

    monkeypatch.setattr(compile_mod.torch, "compile", recording_compile)
    common = ("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--cfg-options", *TINY_OPTIONS)
    code, _, err = run_cli(*common, "features.compile=true", "features.cache=false", "--output", str(tmp_path / "a"))
    assert code == 0, err
    assert set(compiled) == {"forward_features", "get_intermediate_layers"}
    code, _, err = run_cli(*common, "features.cache=false", "--output", str(tmp_path / "b"))
    assert code == 0, err
    (a,), (b,) = (list((tmp_path / x).rglob("result.json")) for x in "ab")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["metrics"] == rb["metrics"] and ra["protocol_hash"] == rb["protocol_hash"]  # a runtime key
