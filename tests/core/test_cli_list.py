"""`dinobench list`, --version, --help, and the lazy-import budget of listing."""

import json
import subprocess
import sys

import pytest

import dinobench


def test_list_tasks_and_backbones(run_cli):
    code, out, _ = run_cli("list", "tasks")
    assert code == 0
    assert "digits-knn" in out and "imagenet-knn" in out
    code, out, _ = run_cli("list", "tasks", "--json")
    recipes = {r["name"]: r["recipe"] for r in json.loads(out)}  # the official recipe each task's defaults equal
    assert recipes["imagenet-linear"] == "dinov3/eval/linear.py" and recipes["digits-knn"] == "-"
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


@pytest.mark.parametrize("what", ["tasks", "all"])
def test_listing_imports_no_torch_mmengine_or_pandas(what):
    """``dinobench list`` stays well under a second: parameter counts are registered with the variants and task
    configs of literal assignments are summarised with ``ast`` (0.35-0.45 s measured on the CI machine)."""
    code = (f"import sys; from dinobench.cli import main; main(['list', '{what}']); "
            "heavy = sorted(m for m in ('torch', 'mmengine', 'pandas') if m in sys.modules); "
            "assert not heavy, f'list imported {heavy}'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_listing_summary_of_every_task_equals_its_loaded_config():
    """The ``ast`` reader of ``dinobench list`` agrees with mmengine on every registered task (whole config)."""
    from pathlib import Path

    from dinobench.config import _plain
    from dinobench.plugin_manager import get_registries
    from dinobench.tasks import _literal_config, load_task_config, task_summary

    for spec in get_registries().tasks:
        if isinstance(spec.config, dict):
            continue
        loaded = load_task_config(spec.config)
        assert _plain(_literal_config(Path(spec.config))) == loaded, spec.name
        summary = task_summary(spec.config)
        assert summary["protocol"] == loaded["protocol"]["type"]
        assert summary["description"] == loaded.get("task", {}).get("description", "")


def test_a_task_file_with_code_is_listed_through_mmengine(tmp_path):
    from dinobench.tasks import task_summary

    path = tmp_path / "computed.py"
    path.write_text('_base_ = ["dinobench::tasks/digits-knn.py"]\nk = [1, 2]\nprotocol = dict(nb_knn=[x * 10 for x in k])\n'
                    'task = dict(description="k " + str(len(k)))\n')
    assert task_summary(path) == {"protocol": "knn", "datasets": ["digits"], "description": "k 2", "official": ""}
