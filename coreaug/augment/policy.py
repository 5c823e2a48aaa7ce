"""The Policy interface every augmentation policy implements, and Compose to chain them."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from coreaug.errors import UsageError

from .sampling import Randomness


class Policy:
    """A batched augmentation: ``policy(images, generator, **context) -> images``.

    Takes a (B, C, H, W) uint8 or float [0, 1] batch on any device and returns an augmented batch
    of the same shape, dtype and device, drawing every random choice per example from
    ``generator``: a torch.Generator (a CPU generator may drive a CUDA batch), None (torch's
    global one) or a `RandomSource`, which the trainer always passes (with a key per image: one
    key per image of the batch). A policy of one's own therefore draws with
    ``coreaug.augment.uniform``, ``integers``, ``signs`` and ``permutation`` (``n`` values, the
    generator, the batch's device), which take all three, not with ``torch.rand(generator=...)``;
    drawing ``k * B`` values, value ``j`` of image ``r`` is at ``j * B + r`` (view them ``(k, B)``).
    In training its first output is checked (a one-line UsageError names the policy).
    Policies that compute on the pixel values (RandAugment, TrivialAugment, AutoAugment,
    resized-crop) clamp float values outside [0, 1] into it and make NaN 0; the weak and cutout
    policies move or blank pixels and leave values as they are.
    Ordinary policies ignore ``context``; policies with ``needs_model`` (max-loss) read
    ``model``, ``labels`` and ``preprocess`` from it.
    """

    needs_model: bool = False

    def __call__(self, images: torch.Tensor, generator: Randomness = None, **context) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


class Compose(Policy):
    """Apply ``policies`` in order, each with the same generator and context.

    Needs a model when any member does.
    """

    def __init__(self, policies: Sequence[Policy]):
        if isinstance(policies, str) or not isinstance(policies, Iterable):  # (an nn.ModuleList is a list)
            if callable(policies):
                raise UsageError(f"Compose takes a list of policies, got one policy ({type(policies).__name__}); "
                                 "put it in a list: Compose([policy, ...])")
            raise UsageError(f"Compose takes a list of policies, got {policies!r}; a chain by names is "
                             "create_policy('weak+randaugment')")
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
