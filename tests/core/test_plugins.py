"""Third-party plugins: installed with pip, discovered through the "dinobench" entry point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

HERE = REPO / "tests"


def pip_install_target(package_dir: Path, target: Path) -> None:
    """A real ``pip install`` of ``package_dir`` into an isolated folder (put on PYTHONPATH)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package_dir)], check=True, capture_output=True, text=True)


def dinobench_cli(*argv: str, pythonpath: Path | None = None, cwd: Path | None = None):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "dinobench", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    pip_install_target(HERE / "thirdparty_plugin", target)
    return target


def test_example_plugin_imports_only_the_plugin_api():
    """The third-party example uses dinobench.api and dinobench.hookspecs, nothing else of dinobench."""
    from test_import_layers import import_statements

    package = HERE / "thirdparty_plugin" / "dinobench_example_plugin"
    used = {module for path in package.glob("*.py")
            for _, module, _ in import_statements(path, f"dinobench_example_plugin.{path.stem}")
            if module == "dinobench" or module.startswith("dinobench.")}
    assert used == {"dinobench.api", "dinobench.hookspecs"}


def test_the_plugin_api_resolves_every_name_it_lists():
    import dinobench.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="a plugin uses only"):
        api.HeadRecipe  # noqa: B018 - internal: not part of the plugin API


def test_installed_plugin_adds_a_backbone_and_a_task(example_plugin, tmp_path):
    listed = dinobench_cli("list", "--json", pythonpath=example_plugin)
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    backbone = next(r for r in payload["backbones"] if r["name"] == "patchpool")
    assert backbone["source"] == "example"
    task = next(r for r in payload["tasks"] if r["name"] == "digits16-knn")
    assert task["protocol"] == "knn" and task["source"] == "example"
    plugin = next(r for r in payload["plugins"] if r["plugin"] == "example")
    assert plugin["package"] == "dinobench-example-plugin" and plugin["version"] == "0.1.0"

    ran = dinobench_cli("run", "--backbone", "patchpool", "--task", "digits16-knn", "--output", str(tmp_path),
                        pythonpath=example_plugin)
    assert ran.returncode == 0, ran.stderr
    (path,) = tmp_path.rglob("result.json")
    record = json.loads(path.read_text())
    assert record["backbone"] == "patchpool" and record["task"] == "digits16-knn"
    assert set(record["metrics"]) == {"top1_k1", "top5_k1", "top1_k5", "top5_k5", "top1", "best_k"}
    assert record["main_metric"]["value"] > 50  # pixels-through-a-random-projection on digits


def test_example_plugin_trains_a_neck_and_dict_head_on_three_named_datasets(example_plugin, tmp_path):
    """A third-party neck + head (dict outputs, postprocess) trained on dinobench's engine, on a task with
    three named datasets; with no edit under dinobench/."""
    env_cache = tmp_path / "cache"
    ran = dinobench_cli("run", "--backbone", "patchpool", "--task", "digits16-headprobe", "--output",
                        str(tmp_path / "out"), "--cfg-options", f"features.cache_dir={env_cache}",
                        pythonpath=example_plugin)
    assert ran.returncode == 0, ran.stderr
    (path,) = (tmp_path / "out").rglob("result.json")
    record = json.loads(path.read_text())
    assert record["protocol"] == "example_head_probe" and record["protocol_plugin"] == "example"
    assert set(record["dataset"]["splits"]) == {"train", "val", "holdout"}
    assert record["dataset"]["splits"]["holdout"]["size"] == 179  # 10% of each class of another seeded split
    assert record["metrics"]["train_iterations"] == 60
    # its own schedule, added to the engine through dinobench_register_schedules
    assert record["config"]["train"]["scheduler"] == {"type": "example_step_down", "warmup_iters": 0, "at": 0.75}
    assert record["metrics"]["top1"] > 30 and record["metrics"]["holdout_top1"] > 30  # 10 classes: chance is 10
    assert {row["class"] for row in record["tables"]["holdout_per_class"]} == set(range(10))
    assert record["higher_is_better"]["top1"] is True and "train.checkpoint_every" in record["runtime_keys"]
    (checkpoint,) = (tmp_path / "out" / ".runs").rglob("checkpoint_*.pth")  # trained by the shared engine
    assert checkpoint.stat().st_size > 0
    again = dinobench_cli("run", "--backbone", "patchpool", "--task", "digits16-headprobe", "--output",
                          str(tmp_path / "out"), pythonpath=example_plugin)
    assert again.returncode == 0, again.stderr
    second = max((tmp_path / "out").rglob("result.json"), key=lambda p: p.parent.name)
    assert json.loads(second.read_text())["metrics"] == record["metrics"]  # same run key: resumed, identical


def test_example_plugin_feature_kind_is_cached_as_an_nd_array(example_plugin, tmp_path):
    cache = tmp_path / "cache"
    for attempt in range(2):
        ran = dinobench_cli("run", "--backbone", "patchpool", "--task", "digits16-gridknn", "--output",
                            str(tmp_path / "out"), "--cfg-options", f"features.cache_dir={cache}",
                            pythonpath=example_plugin)
        assert ran.returncode == 0, ran.stderr
    records = sorted((tmp_path / "out").rglob("result.json"), key=lambda p: p.parent.name)
    first, second = (json.loads(p.read_text()) for p in records)
    assert first["timings"]["features_train_pooled_grid_cached"] == 0.0
    assert second["timings"]["features_train_pooled_grid_cached"] == 1.0 and second["metrics"] == first["metrics"]
    assert first["metrics"]["top1"] > 50
    manifests = [json.loads(m.read_text()) for m in cache.rglob("manifest.json")]
    grids = [m for m in manifests if m["payload"]["kind"] == "pooled_grid"]
    assert len(grids) == 2 and {tuple(m["shape"]) for m in grids} == {(1438, 2, 2, 48), (359, 2, 2, 48)}


def test_example_plugin_adds_a_cli_subcommand(example_plugin):
    helped = dinobench_cli("--help", pythonpath=example_plugin)
    assert helped.returncode == 0 and "example-datasets" in helped.stdout and "[plugin example]" in helped.stdout
    listed = dinobench_cli("example-datasets", "digits16-headprobe", pythonpath=example_plugin)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [("holdout", "digits", "179"), ("train", "digits", "1438"),
                                                   ("val", "digits", "359")]
    bad = dinobench_cli("example-datasets", "no-such-task", pythonpath=example_plugin)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown task 'no-such-task'" in bad.stderr


def _write_plugin(root: Path, dist: str, module: str, body: str) -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(body))
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.0.1"
        [project.entry-points.dinobench]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
    """))
    return root


@pytest.mark.parametrize("dist,module,body,expected", [
    ("broken-import-plugin", "broken_import", "import does_not_exist_anywhere\n",
     "plugin 'broken_import' (package broken-import-plugin) failed to import"),
    ("typo-hook-plugin", "typo_hook", """
        from dinobench.hookspecs import hookimpl

        @hookimpl
        def dinobench_register_backbonez(registry):
            pass
     """, "plugin 'typo_hook' (package typo-hook-plugin) skipped: unknown hook 'dinobench_register_backbonez'"),
    ("raising-plugin", "raising", """
        from dinobench.hookspecs import hookimpl

        @hookimpl
        def dinobench_register_backbones(registry):
            registry.add("half_registered", "x:y")
            raise RuntimeError("boom")
     """, "plugin 'raising' (package raising-plugin 0.0.1) failed in dinobench_register_backbones"),
])
def test_broken_plugin_is_one_warning_not_a_crash(tmp_path, dist, module, body, expected):
    target = tmp_path / "site"
    pip_install_target(_write_plugin(tmp_path / "src", dist, module, body), target)
    listed = dinobench_cli("list", "backbones", pythonpath=target)
    assert listed.returncode == 0, listed.stderr
    warnings = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and expected in warnings[0], listed.stderr
    assert "vits16" in listed.stdout and "half_registered" not in listed.stdout


def test_result_written_hook_is_called(tmp_path):
    """In-process plugin object: the same hooks, registered on the live manager."""
    from dinobench.hookspecs import hookimpl
    from dinobench.plugin_manager import get_plugin_manager

    seen = []

    class Recorder:
        @hookimpl
        def dinobench_result_written(self, result, path):
            seen.append((result.task, path))

    pm = get_plugin_manager()
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    try:
        import dinobench

        result = dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path),
                               options=["backbone.embed_dim=64", "backbone.depth=2", "backbone.num_heads=2",
                                        "protocol.nb_knn=[10]"])
    finally:
        pm.unregister(recorder)
    assert seen == [("digits-knn", Path(result.path))]


def test_example_plugin_adds_a_whole_trained_head_family(example_plugin, tmp_path):
    """From outside the repository, through dinobench.api and the hooks only: a reader with typed options and its
    own transform section, its synthetic writer, a tv_tensors joint transform, a head on the trained-head template
    with a mergeable metric and its own export layout, its own schedule, a task."""
    made = subprocess.run([sys.executable, "-m", "dinobench.synthetic", "example_blobs", str(tmp_path / "blobs"),
                           "--n-train", "24", "--n-val", "8"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(example_plugin)})
    assert made.returncode == 0, made.stderr
    root = made.stdout.strip()
    tiny = ["backbone.embed_dim=64", "backbone.depth=2", "backbone.num_heads=2"]
    ran = dinobench_cli("run", "--backbone", "vit_tiny", "--task", "blobs-maskhead", "--data-root", root,
                        "--output", str(tmp_path / "out"), "--cfg-options", *tiny, pythonpath=example_plugin)
    assert ran.returncode == 0, ran.stderr
    (path,) = (tmp_path / "out").rglob("result.json")
    record = json.loads(path.read_text())
    assert record["protocol"] == "example_mask_head" and record["protocol_plugin"] == "example"
    assert record["config"]["train"]["scheduler"]["type"] == "example_step_down"
    assert record["metrics"]["fg_iou"] > 60  # a red blob on grey noise: 90.2 measured; a constant guess gets < 25
    exported = dinobench_cli("export", "--run", str(path.parent), "--output", str(tmp_path / "head"),
                             pythonpath=example_plugin)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["mask_head.json", "mask_head.pth"]
    assert json.loads((tmp_path / "head" / "mask_head.json").read_text())["channels"] == 64
    for section, typo, closest in (("dataset", "max_sample", "max_samples"), ("transform", "sise", "size")):
        task = tmp_path / f"typo_{section}.py"
        extra = f"{section} = dict({typo}=3)\n" if section == "transform" else ""
        dataset = 'dict(type="example_blobs", max_sample=3)' if section == "dataset" else 'dict(type="example_blobs")'
        task.write_text(f'dataset = {dataset}\nprotocol = dict(type="example_mask_head")\n{extra}')
        refused = dinobench_cli("run", "--backbone", "vit_tiny", "--task", str(task), "--data-root", root,
                                "--output", str(tmp_path / "typo"), pythonpath=example_plugin)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"{section}.{typo}: unknown key (did you mean {closest}?)" in refused.stderr
