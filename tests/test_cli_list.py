"""`dinobench list`, --version, --help, and the lazy-import budget of listing."""

import json
import subprocess
import sys

import dinobench


def test_list_tasks_and_backbones(run_cli):
    code, out, _ = run_cli("list", "tasks")
    assert code == 0
    assert "digits-knn" in out and "imagenet-knn" in out
    code, out, _ = run_cli("list", "backbones", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["vitl16"]["params"] == "303.2M" and rows["vitl16"]["patch"] == 16 and rows["vitl16"]["dim"] == 1024
    code, out, _ = run_cli("list", "plugins")
    assert "dinobench.plugins.knn" in out


def test_version_and_help(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"dinobench {dinobench.__version__}"
    code, out, _ = run_cli("run", "--help")
    assert code == 0 and "--cfg-options" in out and "examples:" in out


def test_listing_tasks_does_not_import_torch():
    code = ("import sys; from dinobench.cli import main; main(['list', 'tasks']); "
            "assert 'torch' not in sys.modules, 'list tasks imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
