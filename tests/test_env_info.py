"""`cvvae env`: the facts a bug report needs."""

from __future__ import annotations

import argparse
import json

import torch

from cvvae import env_info


def test_collect_reports_versions_devices_cpu_and_blas():
    info = env_info.collect()
    assert info["packages"]["torch"] == torch.__version__.split("+")[0] or info["packages"][
        "torch"
    ].startswith(torch.__version__.split("+")[0])
    assert info["cuda_available"] == torch.cuda.is_available()
    assert len(info["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["cpu_count"] >= 1 and info["torch_threads"] >= 1
    assert info["torch_blas"] and info["video_backend"] in ("decord", "opencv")


def test_text_names_every_fact_and_lists_gpus():
    info = env_info.collect()
    info["gpus"] = [{"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0"}]
    text = env_info.format_text(info)
    for key in (
        "python:",
        "torch:",
        "diffusers:",
        "torch CUDA build:",
        "CPU:",
        "BLAS (torch):",
        "video backend:",
    ):
        assert key in text
    assert "GPU 0: NVIDIA H200, 139.8 GiB, compute capability 9.0" in " ".join(text.split())


def test_json_output_parses(capsys):
    assert env_info.run(argparse.Namespace(json=True)) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["packages"]["cvvae"] != "not installed"


def test_cli_version_and_env_command(capsys):
    from cvvae import __version__
    from cvvae.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cvvae {__version__}"
    assert main(["env", "--json"]) == 0
    assert "torch_blas" in json.loads(capsys.readouterr().out)


def test_cli_help_has_examples_and_command_help_shows_defaults(capsys):
    import pytest

    from cvvae.cli import build_parser, main

    top = build_parser().format_help()
    assert "examples:" in top and "cvvae train --config config/default.yaml" in top and "cvvae env" in top
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 17x256x256)" in text and "(default: None)" not in text
