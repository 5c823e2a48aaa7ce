"""The Policy interface every augmentation policy implements, and Compose to chain them."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from coreaug.errors import UsageError


class Policy:
    """A batched augmentation: ``policy(images, generator, **context) -> images``.

    Takes a (B, C, H, W) uint8 or float [0, 1] batch on any device and returns an augmented batch
    of the same shape, dtype and device, drawing every random choice per example from
    ``generator`` (a CPU generator may drive a CUDA batch). Ordinary policies ignore
    ``context``; policies with ``needs_model`` (max-loss) read ``model``, ``labels`` and
    ``preprocess`` from it.
    """

    needs_model: bool = False

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


class Compose(Policy):
    """Apply ``policies`` in order, each with the same generator and context.

    Needs a model when any member does.
    """

    def __init__(self, policies: Sequence[Policy]):
        policies = list(policies)
        for policy in policies:
            if not callable(policy):
                raise UsageError(f"Compose takes policies (callables), got {type(policy).__name__}")
        self.policies = policies
        self.needs_model = any(getattr(p, "needs_model", False) for p in policies)

    def __call__(self, images, generator=None, **context):
        for policy in self.policies:
            images = policy(images, generator, **context)
        return images


def check_whole(name: str, value, low: int, high: Optional[int] = None) -> int:
    """Return ``value`` if it is an int in [low, high], else raise UsageError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise UsageError(f"{name} must be {'in ' if high is not None else ''}{bounds}, got {value}")
    return value


def check_fill_level(fill) -> float:
    """Return a policy's fill (a Pillow-style fillcolor level in [0, 255]) as a float."""
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not 0 <= fill <= 255:
        raise UsageError(f"fill must be a level in [0, 255] (Pillow's fillcolor), got {fill!r}")
    return float(fill)


def fill_in_image_units(fill_level: float, images: torch.Tensor, bound: float) -> torch.Tensor:
    """The (C,) fill tensor for ``images`` from a 0-255 level (divided by 255 for float images)."""
    return torch.full((images.shape[1],), fill_level * bound / 255.0, device=images.device)
