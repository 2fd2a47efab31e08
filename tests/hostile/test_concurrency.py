"""Real processes racing for one output folder, one feature cache and one head-training folder, and a run
killed with SIGKILL mid-extraction: every run that finishes records the uninterrupted numbers, nothing is
computed twice, nothing half-written is ever used."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import TINY_OPTIONS
from helpers import smoke_options

from dinobench.synthetic.dense import write_synthetic_ade20k

#: ~8 s of extraction at 96 px in 28 chunks of 64 rows: long enough to be killed in the middle
KNN = ["run", "--backbone", "vit_tiny", "--task", "digits-knn", "--cfg-options", *TINY_OPTIONS,
       "features.chunk_size=64", "features.batch_size=16", "transform.resize=96", "transform.crop=96",
       "protocol.nb_knn=[10]"]


def dinobench(args: list[str], cache: Path, wait: bool = True, stderr=subprocess.PIPE):
    env = {**os.environ, "TQDM_DISABLE": "1", "DINOBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dinobench", *args]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("result.json"))]


def entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.glob("*/manifest.json"))


def test_concurrent_runs_share_one_cache_and_a_killed_extraction_resumes_to_the_same_numbers(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    racers = [dinobench([*KNN[:1], "--output", str(out), *KNN[1:]], cache, wait=False) for _ in range(2)]
    errors = [proc.communicate(timeout=600)[1] for proc in racers]
    assert [proc.returncode for proc in racers] == [0, 0], errors
    first, second = records(out)
    assert first["metrics"] == second["metrics"] and first["protocol_hash"] == second["protocol_hash"]
    # one process extracted each split; the other waited on the entry's lock and read it (which process extracts
    # which split is a race: a loaded machine sees either one process extract both or each extract one)
    for split in ("train", "val"):
        cached = sorted(r["timings"][f"features_{split}_cached"] for r in (first, second))
        assert cached == [0.0, 1.0], (split, cached)
    assert len(entries(cache)) == 2  # train and val, no duplicate, no leftover chunks
    assert not list(cache.glob("*/chunks/*"))

    killed_cache = tmp_path / "killed-cache"
    proc = dinobench([*KNN[:1], "--output", str(tmp_path / "killed"), *KNN[1:]], killed_cache, wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(killed_cache.glob("*/chunks/*.npz"))) < 3:
        time.sleep(0.01)
    assert proc.poll() is None, "extraction finished before it could be killed: raise transform.resize"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not records(tmp_path / "killed") and not entries(killed_cache)  # nothing half-written is visible
    done_chunks = len(list(killed_cache.glob("*/chunks/*.npz")))
    again = dinobench([*KNN[:1], "--output", str(tmp_path / "killed"), *KNN[1:]], killed_cache)
    assert again.returncode == 0, again.stderr
    (resumed,) = records(tmp_path / "killed")
    assert resumed["metrics"] == first["metrics"] and done_chunks >= 3
    for a, b in zip(entries(cache), entries(killed_cache)):  # same key, bit-identical arrays
        assert a.name == b.name
        assert np.array_equal(np.load(a / "features.npy"), np.load(b / "features.npy"))


def test_concurrent_head_trainings_of_one_run_folder_take_turns_and_agree(tmp_path):
    root = write_synthetic_ade20k(tmp_path / "ade", n_train=4, n_val=2, size=32)
    work = tmp_path / "work"
    args = ["run", "--backbone", "vit_tiny", "--task", "ade20k-linear", "--data-root", str(root), "--output",
            str(tmp_path / "out"), "--cfg-options", *smoke_options("ade20k-linear"), "train.max_iters=30",
            f"train.work_dir={work}"]
    logs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
    work.mkdir()
    with open(work / ".lock", "a+") as lock:  # the test owns the folder until both runs wait for it
        fcntl.flock(lock, fcntl.LOCK_EX)
        racers = [dinobench(args, tmp_path / "cache", wait=False, stderr=open(log, "w")) for log in logs]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                "waiting for another process training in" in log.read_text() for log in logs):
            assert all(proc.poll() is None for proc in racers), [log.read_text() for log in logs]
            time.sleep(0.05)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert [proc.wait(timeout=600) for proc in racers] == [0, 0], [log.read_text() for log in logs]
    first, second = records(tmp_path / "out")
    assert first["metrics"] == second["metrics"]
    # one trained, then the other resumed from its final checkpoint: each iteration was trained once
    iterations = [json.loads(line)["iteration"] for line in (work / "metrics.jsonl").read_text().splitlines()
                  if '"loss"' in line]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 29, iterations
    assert sum("head training resumed after iteration 29" in log.read_text() for log in logs) == 1
