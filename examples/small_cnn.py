"""A small CNN for the README's examples: `mlfootprint count examples/small_cnn.py:make --input 32x3x64x64`.

Any ``path/to/file.py:callable`` (or ``package.module:callable``) that returns an ``nn.Module`` works the same way.
"""
from __future__ import annotations

import torch
from torch import nn


def make(num_classes: int = 10) -> nn.Module:
    """Three conv-BN-ReLU stages and a linear classifier (about 0.1 M parameters)."""
    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(stage(3, 32), stage(32, 64), stage(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, num_classes))


def inputs(batch: int) -> torch.Tensor:
    """Inputs for ``--inputs examples/small_cnn.py:inputs``: a batch of 64×64 RGB images."""
    return torch.randn(batch, 3, 64, 64)
