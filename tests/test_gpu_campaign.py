"""scripts/gpu_campaign.sh pack: what a hold brings back (logs and metadata, no weights; image VAE shards)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_campaign.sh"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_pack_brings_back_logs_and_metadata_but_no_weights(tmp_path: Path) -> None:
    checkout, work, out = tmp_path / "checkout", tmp_path / "work", tmp_path / "out"
    files = {
        "results/gpu/logs/train_dec.log": "step 1",
        "results/gpu/eval/video/cvvae/per_clip.csv": "clip_id,psnr\n",
        "results/gpu/runs/dec/val_metrics.csv": "step,psnr_video\n0,20\n",
        "results/gpu/runs/dec/final/diffusion_pytorch_model.safetensors": "weights",
        "results/gpu/runs/dec/checkpoints/step-1/model.safetensors": "weights",
    }
    for name, text in files.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    (work / "ship").mkdir(parents=True)
    (work / "ship" / "weights-00.safetensors").write_text("fp16 shard")
    (work / "progress.log").write_text("start")
    env = {"WORK": str(work), "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(SCRIPT), "pack", str(out)], cwd=checkout, env=env, check=True)
    with tarfile.open(out / "campaign.tar.gz") as archive:
        names = archive.getnames()
    assert any(n.endswith("results/gpu/logs/train_dec.log") for n in names)
    assert any(n.endswith("runs/dec/val_metrics.csv") for n in names)
    assert any(n.endswith("progress.log") for n in names)
    assert not any(n.endswith(".safetensors") for n in names)  # weights stay behind (size limits)
    assert (out / "weights-00.safetensors").read_text() == "fp16 shard"  # the image VAE's shards travel apart
