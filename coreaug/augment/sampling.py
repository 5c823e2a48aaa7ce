"""Random draws for batched augmentation that work with any generator/device pairing.

Numbers are drawn on the generator's device (CPU when there is none for a CPU batch) and moved
to the batch's device, so a CPU generator can drive a CUDA batch and results are reproducible.
"""
from __future__ import annotations

from typing import Optional

import torch


def _draw_device(generator: Optional[torch.Generator], device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def uniform(n: int, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """Return n float32 draws from U[0, 1) on ``device``."""
    draws = torch.rand(n, generator=generator, device=_draw_device(generator, device))
    return draws.to(device)


def integers(
    high: int, n: int, generator: Optional[torch.Generator], device: torch.device, low: int = 0
) -> torch.Tensor:
    """Return n int64 draws uniform on [low, high) on ``device``."""
    draws = torch.randint(
        low, high, (n,), generator=generator, device=_draw_device(generator, device)
    )
    return draws.to(device)


def signs(n: int, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """Return n float32 draws of -1 or +1 with equal probability on ``device``."""
    return integers(2, n, generator, device).to(torch.float32).mul_(2.0).sub_(1.0)


def permutation(n: int, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """Return a uniformly random permutation of 0..n-1 (int64) on ``device``."""
    draws = torch.randperm(n, generator=generator, device=_draw_device(generator, device))
    return draws.to(device)
