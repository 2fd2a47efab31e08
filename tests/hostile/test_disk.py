"""Unwritable outputs and full disks: refused before any compute, or one line with the record kept on a failed
final write; ENOSPC anywhere is one line (exit 2), never a traceback."""

import errno
import json
import os
from pathlib import Path

import pytest

from conftest import TINY_OPTIONS

import dinobench.results as results_mod
import dinobench.runner as runner

RUN = ("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--cfg-options", *TINY_OPTIONS,
       "protocol.nb_knn=[10]")


@pytest.fixture
def no_forward(monkeypatch):
    """Fails the test if a backbone is built: the check must come before any compute."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a backbone was built before the folder check")

    monkeypatch.setattr(runner, "create_backbone", forbidden)


def test_output_that_is_a_file_is_refused_before_compute(run_cli, tmp_path, no_forward):
    out = tmp_path / "file"
    out.write_text("not a folder")
    code, _, err = run_cli(*RUN, "--output", str(out))
    assert code == 2 and f"{out}: the results folder is not writable" in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_cache_is_refused_before_compute_with_the_way_out(run_cli, tmp_path, monkeypatch, no_forward):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DINOBENCH_CACHE", str(blocker))
    code, _, err = run_cli(*RUN, "--output", str(tmp_path / "out"))
    assert code == 2 and "feature cache is not writable" in err and "features.cache=false" in err


def test_full_disk_at_the_final_write_keeps_the_record_and_prints_the_metric(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runner, "write_result", full)
    code, _, err = run_cli(*RUN, "--output", str(tmp_path / "out"))
    assert code == 2 and "No space left on device" in err and "top1 = " in err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1
    (kept,) = (tmp_path / "tmp").glob("dinobench-unsaved-digits-knn-*.json")
    record = json.loads(kept.read_text())
    assert record["task"] == "digits-knn" and f"{record['main_metric']['value']:.4f}" in lines[0]
    results_mod.validate_record(record)
    assert not list((tmp_path / "out").rglob("result.json"))


def test_enospc_anywhere_is_one_line(run_cli, tmp_path, monkeypatch):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.tmp"))

    monkeypatch.setattr("dinobench.commands.report.run", full)  # what the registered command resolves to
    code, _, err = run_cli("report", str(tmp_path))
    assert code == 2 and err.strip() == (f"dinobench report: error: {tmp_path / 'x.tmp'}: No space left on device "
                                         f"(errno {errno.ENOSPC}); free space or choose another folder")
    assert Path(tmp_path).exists()
