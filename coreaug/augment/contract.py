"""Policies of one's own (registered outside coreaug), held to the Policy contract in training:
a policy that cannot draw from the trainer's `RandomSource`, or whose first output changes the
batch's shape, dtype or device, is a one-line UsageError naming it, not a torch error deep in a step.

Built-in policies are not wrapped: their calls in the trainer stay as they are (no op, no wait).
"""
from __future__ import annotations

import torch

from coreaug.errors import UsageError

from .policy import Compose, Policy
from .registry import _POLICIES, _key
from .sampling import RandomSource

HELPERS = "coreaug.augment.uniform, integers, signs or permutation (n, generator, device)"


def checked_policy(policy, name: str):
    """``policy`` (``create_policy(name)``) with each member registered outside coreaug wrapped in a
    `CheckedPolicy` (the whole policy, or the members of a '+' chain); built-in policies as they are."""
    parts = [_key(part) for part in name.split("+")]
    if len(parts) == 1:
        return policy if _builtin(parts[0]) else CheckedPolicy(policy, repr(parts[0]))
    if not isinstance(policy, Compose) or len(policy.policies) != len(parts) or all(map(_builtin, parts)):
        return policy
    return Compose([member if _builtin(part) else CheckedPolicy(member, f"{part!r} in {name!r}")
                    for part, member in zip(parts, policy.policies)])


def _builtin(part: str) -> bool:
    return getattr(_POLICIES.get(part), "__module__", "").startswith("coreaug.")


class CheckedPolicy(Policy):
    """Calls ``policy``; turns its failure on a `RandomSource` into a UsageError saying what to draw
    with, and checks its first output (shapes and dtypes only: nothing waits on the device). Compiled
    code calls the policy bare."""

    def __init__(self, policy, label: str):
        self.policy, self.label = policy, label
        self.needs_model = bool(getattr(policy, "needs_model", False))  # a plain callable's is False, as Compose's
        self._checked = False

    def __call__(self, images, generator=None, **context):
        if torch.compiler.is_compiling():
            return self.policy(images, generator, **context)
        try:
            augmented = self.policy(images, generator, **context)
        except (TypeError, AttributeError) as error:
            if not isinstance(generator, RandomSource) or "RandomSource" not in str(error):
                raise
            first = (str(error).splitlines() or [type(error).__name__])[0].split(", but expected")[0]  # torch's list
            raise UsageError(f"policy {self.label} failed on the coreaug.augment.RandomSource that training passes "
                             f"as its generator ({first}); draw random numbers with {HELPERS}, which take a "
                             "torch.Generator or a RandomSource") from None
        if not self._checked:
            check_output(self.label, images, augmented)
            self._checked = True
        return augmented


def check_output(label: str, images: torch.Tensor, augmented) -> None:
    """Raise UsageError unless ``augmented`` is a tensor of ``images``' shape, dtype and device."""
    if not isinstance(augmented, torch.Tensor):
        raise UsageError(f"policy {label} returned a {type(augmented).__name__}; a policy returns the augmented "
                         "batch, a tensor of the input's shape, dtype and device")
    if (augmented.shape, augmented.dtype, augmented.device) != (images.shape, images.dtype, images.device):
        raise UsageError(f"policy {label} returned {_described(augmented)} for {_described(images)}; a policy "
                         "must keep the batch's shape, dtype and device (uint8 in 0-255 stays uint8)")


def _described(images: torch.Tensor) -> str:
    return f"{str(images.dtype).removeprefix('torch.')} images of shape {tuple(images.shape)} on {images.device}"
