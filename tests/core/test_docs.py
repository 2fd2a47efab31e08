"""docs/reference.md is generated from the registries and the dataclasses holding every default: a test fails when
the committed file is stale (regenerate with ``python -m dinobench.reference docs/reference.md``)."""

from __future__ import annotations

import os
import subprocess
import sys
from conftest import REPO



def test_the_generated_reference_is_up_to_date(tmp_path):
    env = {**os.environ, "DINOBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "TQDM_DISABLE": "1"}
    subprocess.run([sys.executable, "-m", "dinobench.reference", str(tmp_path / "reference.md")], check=True,
                   capture_output=True, text=True, env=env, cwd=REPO)
    fresh = (tmp_path / "reference.md").read_text()
    committed = (REPO / "docs" / "reference.md").read_text()
    assert fresh == committed, "docs/reference.md is stale: run python -m dinobench.reference docs/reference.md"


def test_the_reference_names_every_first_party_task_reader_and_protocol():
    from dinobench.plugin_manager import get_registries

    text = (REPO / "docs" / "reference.md").read_text()
    registries = get_registries()
    for registry, heading in ((registries.tasks, "| `{}` |"), (registries.datasets, "### `{}`"),
                              (registries.protocols, "### `{}` (version")):
        for spec in registry:
            if spec.source.startswith("dinobench."):
                assert heading.format(spec.name) in text, spec.name
