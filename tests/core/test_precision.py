"""The precision policy: float32 by default (the official evaluations of released models); auto picks bf16
autocast on CUDA and native-bf16 CPUs, fp32 elsewhere; ``--precision`` / ``$DINOBENCH_PRECISION`` choose one; the
resolved name is recorded and keys the cache."""

import json

import pytest
import torch

from conftest import TINY_OPTIONS

from dinobench.errors import ConfigError
from dinobench.utils import precision as prec


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU reports the given flags; the env default is cleared so that auto is really auto."""
    monkeypatch.delenv(prec.PRECISION_ENV, raising=False)

    def _set(*names: str) -> None:
        monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset(names))

    return _set


def test_auto_follows_the_hardware(flags):
    flags("avx2", "fma")  # e.g. an AMD EPYC without avx512: bf16 would be emulated
    assert prec.resolve_precision("auto", "cpu") == prec.FLOAT32
    assert prec.resolve_precision("auto", "cuda") == prec.BF16_AUTOCAST  # CUDA: bf16 whatever the host CPU
    for native in prec.NATIVE_BF16_CPU_FLAGS:
        flags("avx2", native)
        assert prec.resolve_precision("auto", "cpu") == prec.BF16_AUTOCAST


def test_the_default_is_the_official_float32_whatever_the_hardware(flags):
    """dinov3/eval/setup.py:44: a released (hub) model is evaluated without autocast; auto is opt-in."""
    for names in ((), ("amx_bf16",), ("avx512_bf16",)):
        flags(*names)
        assert prec.resolve_precision(None, "cpu") == prec.FLOAT32
    assert prec.resolve_precision(None, "cuda") == prec.FLOAT32


def test_forcing_and_the_environment_default(flags, monkeypatch):
    flags("amx_bf16")
    assert prec.resolve_precision("float32", "cpu") == prec.FLOAT32
    flags()
    assert prec.resolve_precision("bfloat16", "cpu") == prec.BF16_AUTOCAST
    assert prec.resolve_precision(prec.BF16_AUTOCAST, "cpu") == prec.BF16_AUTOCAST  # a recorded name round-trips
    monkeypatch.setenv(prec.PRECISION_ENV, "bfloat16")
    assert prec.resolve_precision(None, "cpu") == prec.BF16_AUTOCAST
    assert prec.resolve_precision("float32", "cpu") == prec.FLOAT32  # the flag beats the environment


@pytest.mark.parametrize("requested, source", [("fp16", "--precision"), ("half", "--precision")])
def test_unknown_precision_is_one_clear_error(flags, requested, source):
    with pytest.raises(ConfigError, match=rf"{source}='{requested}': expected one of auto, float32, bfloat16"):
        prec.resolve_precision(requested, "cpu")


def test_bad_environment_value_names_the_variable(flags, monkeypatch):
    monkeypatch.setenv(prec.PRECISION_ENV, "bf32")
    with pytest.raises(ConfigError, match=r"\$DINOBENCH_PRECISION='bf32'"):
        prec.resolve_precision(None, "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n\n")
    assert prec.cpu_flags(str(info)) == frozenset({"fpu", "sse2", "avx512_bf16", "amx_tile"})
    assert prec.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_autocast_contexts():
    assert not isinstance(prec.autocast_for(prec.FLOAT32, "cpu"), torch.autocast)
    with prec.autocast_for(prec.BF16_AUTOCAST, "cpu"):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="precision 'float16'"):
        prec.autocast_for("float16", "cpu")


def test_run_records_the_precision_and_keys_the_cache_on_it(run_cli, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DINOBENCH_CACHE", str(cache))
    common = ("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--seed", "0", "--cfg-options", *TINY_OPTIONS)
    records, entries = {}, {}
    for requested in ("float32", "bfloat16", "float32"):
        out = tmp_path / f"out-{requested}-{len(entries)}"
        code, _, err = run_cli(*common, "--output", str(out), "--precision", requested)
        assert code == 0, err
        (path,) = out.rglob("result.json")
        records[requested] = json.loads(path.read_text())
        entries[len(entries)] = {p.name for p in cache.rglob("*") if p.is_dir() and p.parent == cache}
    assert records["float32"]["environment"]["dtype"] == "float32"
    assert records["bfloat16"]["environment"]["dtype"] == "bfloat16-autocast"
    # bf16 computed its own features (a new cache entry); the second fp32 run found the first one's
    assert len(entries[1]) > len(entries[0]) and entries[2] == entries[1]
    # bf16 autocast moves a few of the 360 held-out digits at most
    top1 = {k: r["main_metric"]["value"] for k, r in records.items()}
    assert abs(top1["float32"] - top1["bfloat16"]) < 3.0, top1


def test_cli_refuses_an_unknown_precision(run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--output", str(tmp_path),
                           "--precision", "fp8")
    assert code == 2 and "invalid choice: 'fp8'" in err
    assert not list(tmp_path.rglob("result.json"))
