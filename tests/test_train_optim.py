"""The trainer's in-place compilation keeps parameters, names and outputs."""

from __future__ import annotations

import torch
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
