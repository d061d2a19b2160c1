"""The trainer's in-place compilation keeps parameters, names and outputs."""

from __future__ import annotations

import pytest
import torch
import torch._functorch.config as functorch_config
from torch import nn

from cvvae.train.optim import compile_in_place


def test_compile_in_place_keeps_state_dict_and_outputs() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 3, 1))
    x = torch.randn(2, 3, 8, 8)
    names, expected = list(net.state_dict()), net(x)
    compile_in_place(net, None, backend="eager")  # eager backend: no C++ toolchain needed on CPU
    assert list(net.state_dict()) == names  # no "_orig_mod." prefixes: checkpoints stay interchangeable
    assert net._compiled_call_impl is not None
    torch.testing.assert_close(net(x), expected)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_compile_in_place_allows_retained_graphs_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functorch_config, "donated_buffer", True)
    net = nn.Conv2d(3, 3, 1)
    compile_in_place(net, backend="eager")
    assert functorch_config.donated_buffer  # left alone unless a graph is differentiated twice
    compile_in_place(net, retain_graph=True, backend="eager")
    assert not functorch_config.donated_buffer


@pytest.mark.gpu
def test_compiled_decoder_takes_two_gradients_before_backward() -> None:
    """The adaptive GAN weight's pattern (two gradients, then the backward pass) through a compiled decoder.

    The trainer's compiled bf16 run failed this way on an H200 before ``retain_graph``; a small fp32
    decoder passed there without it too, so the test shows that the pattern runs, not the failure."""
    from model_tester import tiny_image_vae

    vae = tiny_image_vae().cuda()
    compile_in_place(vae.decoder, retain_graph=True, mode="reduce-overhead")
    x = torch.randn(2, 3, 16, 16, device="cuda")
    recon = vae.decoder(vae.encode(x).latent_dist.sample())
    nll, g_loss = (recon - x).abs().sum(), -recon.mean()
    last = vae.decoder.conv_out.weight
    torch.autograd.grad(nll, last, retain_graph=True)
    torch.autograd.grad(g_loss, last, retain_graph=True)
    (nll + g_loss).backward()
    assert last.grad is not None and torch.isfinite(last.grad).all()
