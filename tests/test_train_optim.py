"""The trainer's in-place compilation keeps parameters, names and outputs."""

from __future__ import annotations

import shutil

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


# torch's config modules have their own patch(): pytest's monkeypatch deletes the key on undo.
@functorch_config.patch(donated_buffer=True)
def test_compile_in_place_allows_retained_graphs_when_asked() -> None:
    net = nn.Conv2d(3, 3, 1)
    compile_in_place(net, backend="eager")
    assert functorch_config.donated_buffer  # left alone unless a graph is differentiated twice
    compile_in_place(net, retain_graph=True, backend="eager")
    assert not functorch_config.donated_buffer


def _adaptive_weight_pattern(generator: nn.Sequential, critic: nn.Module, device: str) -> None:
    """The adaptive GAN weight's pattern, at three input sizes: two gradients at the generator's last layer,
    then the backward pass. A new size makes the compiler build a graph with dynamic shapes, whose backward is
    compiled lazily, at the first gradient, and that is where donated buffers refuse a retained graph (the
    trainer's mixture of clip sizes did this on an H200)."""
    last = generator[-1].weight
    for size in (16, 24, 32):
        z = torch.randn(2, 4, size, size, device=device)
        recon = generator(z)
        nll, g_loss = (recon - z[:, :3]).abs().sum(), -critic(recon).mean()
        torch.autograd.grad(nll, last, retain_graph=True)
        torch.autograd.grad(g_loss, last, retain_graph=True)
        (nll + g_loss).backward()
    assert last.grad is not None and torch.isfinite(last.grad).all()


def _generator_and_critic() -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    critic = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1))
    return generator, critic


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor on the CPU needs a C++ compiler")
@functorch_config.patch(donated_buffer=True)  # torch's default
def test_compiled_critic_takes_two_gradients_before_backward_only_with_retain_graph() -> None:
    torch._dynamo.reset()
    generator, critic = _generator_and_critic()
    compile_in_place(critic)
    with pytest.raises(RuntimeError, match="donated buffers"):
        _adaptive_weight_pattern(generator, critic, "cpu")

    torch._dynamo.reset()
    generator, critic = _generator_and_critic()
    compile_in_place(critic, retain_graph=True)
    _adaptive_weight_pattern(generator, critic, "cpu")


@pytest.mark.gpu
@functorch_config.patch(donated_buffer=True)
def test_compiled_generator_and_critic_take_two_gradients_before_backward_on_cuda() -> None:
    torch._dynamo.reset()
    generator, critic = (m.cuda() for m in _generator_and_critic())
    compile_in_place(generator, critic, retain_graph=True, mode="reduce-overhead")
    _adaptive_weight_pattern(generator, critic, "cuda")
