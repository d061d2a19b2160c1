"""Distributed training on the CPU: two processes (gloo, through torch.distributed.run and accelerate) train a
few steps, stop with a checkpoint of both ranks, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _launch(tmp_path: Path, image_vae: Path, extra: list[str], env: dict[str, str], port: int):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
        "-m", "cvvae.cli", "train", "--config", str(ROOT / "config" / "ci.yaml"), "--variant", "dec",
        "--out", str(tmp_path / "run"), "--set", f"cvvae.image_vae_path={image_vae}",
        "--set", "cvvae.train.synthetic_data=true", "--set", "cvvae.train.steps=4",
        "--set", "cvvae.train.ckpt_every=100", "--set", "cvvae.train.val_clips=1", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_two_cpu_processes_train_stop_with_a_checkpoint_and_resume(
    tmp_path: Path, image_vae_dir: str
) -> None:
    image_vae = Path(image_vae_dir)
    gloo = {"ACCELERATE_USE_CPU": "true"}
    first = _launch(tmp_path, image_vae, ["--stop-after", "2"], gloo, 29631)
    # each rank stops with a checkpoint and exit status 143, as after SIGTERM (the launcher then reports 1)
    stopped = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert len(stopped) == 2, first.stderr[-3000:]
    assert all(s["interrupted"] and s["step"] == 2 for s in stopped)
    assert first.returncode != 0 and "exitcode  : 143" in first.stderr
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    assert {p.name for p in checkpoint.iterdir()} == {"state.pt", "rng-rank0.pt", "rng-rank1.pt"}
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["num_processes"] == 2

    second = _launch(tmp_path, image_vae, [], gloo, 29632)
    assert second.returncode == 0, second.stderr[-3000:]
    summaries = [json.loads(line) for line in second.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["resumed"] and s["step"] == 4 for s in summaries)
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_a_launch_that_accelerate_would_run_as_separate_processes_is_refused(
    tmp_path: Path, image_vae_dir: str
):
    image_vae = Path(image_vae_dir)
    # Without ACCELERATE_USE_CPU, accelerate forms no process group on a CPU: two unrelated runs would write
    # one folder at once.
    result = _launch(tmp_path, image_vae, [], {"ACCELERATE_USE_CPU": "false"}, 29633)
    assert result.returncode != 0
    assert "ACCELERATE_USE_CPU=true" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_rank_prints_its_summary_line_in_one_write(record_stdout_writes) -> None:
    from cvvae.train.cli import INTERRUPTED_EXIT, finish

    stdout_writes = record_stdout_writes()
    assert finish({"step": 2, "interrupted": True}) == INTERRUPTED_EXIT
    assert finish({"step": 4, "interrupted": False}) == 0
    assert [json.loads(w) for w in stdout_writes] == [
        {"step": 2, "interrupted": True},
        {"step": 4, "interrupted": False},
    ]
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stdout_writes)
