"""Loading never holds two full copies of the weights (peak RSS measured in a fresh process)."""

import json
import subprocess
import sys

import pytest
import torch

import dinobench
from dinobench.backbones.export import export_hf
from conftest import REPO

PROBE = REPO / "benchmarks" / "_rss.py"


def _probe(*args):
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mem")
    model = dinobench.create_backbone("vitb16")  # 86M params, 343 MiB fp32
    torch.save(model.state_dict(), tmp / "official.pth")
    export_hf(model, tmp / "hf")
    return tmp


def test_official_pth_loads_with_one_copy(checkpoints):
    row = _probe("dinobench", str(checkpoints / "official.pth"), "vitb16")
    print(f"vitb16 .pth: peak RSS +{row['delta_mib']:.0f} MiB for {row['weights_mib']:.0f} MiB of weights")
    assert row["delta_mib"] < 1.4 * row["weights_mib"], row
    naive = _probe("torch-naive", str(checkpoints / "official.pth"), "vitb16")
    assert naive["delta_mib"] > 1.6 * naive["weights_mib"], naive  # the probe can tell one copy from two


def test_hf_directory_loads_with_one_copy(checkpoints):
    row = _probe("dinobench-hf", str(checkpoints / "hf"))
    print(f"vitb16 HF dir: peak RSS +{row['delta_mib']:.0f} MiB for {row['weights_mib']:.0f} MiB of weights")
    assert row["delta_mib"] < 1.5 * row["weights_mib"], row  # one copy + per-layer qkv concatenation
