"""Max-loss transforms (Wu et al., ICML 2020): of K candidate augmentations per example, keep the
one on which the current model's loss is highest."""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from coreaug.errors import UsageError
from coreaug.selection.gradients import check_model_logits, check_module, eval_modes, model_on, restore_modes

from .policy import Policy
from .registry import create_policy, register_policy
from .sampling import RandomSource, check_randomness
from .validation import check_images, check_whole

# Candidates of at most this many values in all are scored in one forward pass (one launch per
# layer for all K); larger ones (big images) one candidate set at a time, which bounds the
# memory of the activations.
ONE_PASS_MAX_VALUES = 2 ** 24
NO_LABEL = -2 ** 63  # cross_entropy's ignore_index: a label no batch holds (torch's default is -100)


def default_preprocess(images: torch.Tensor) -> torch.Tensor:
    """Scale a uint8 batch to float in [0, 1]; pass float batches through."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


class MaxLossAugment(Policy):
    """Draw ``candidates`` augmentations of each example with ``base_policy`` (one batched call
    on the batch repeated K times) and keep, per example, the candidate with the highest
    cross-entropy under the model. Cost grows with K: a forward pass over the K candidates of
    every example (one pass for small images, one per candidate set above
    ``ONE_PASS_MAX_VALUES`` values).

    Call as ``policy(images, generator, model=model, labels=labels, preprocess=fn)``, with
    ``labels`` the (B,) class indices in any integer dtype:
    ``preprocess`` maps an augmented batch (the images' dtype) to the model's input
    (default: uint8 / 255); ``autocast``, a zero-argument factory of a context such as
    ``lambda: torch.autocast("cuda", dtype=torch.bfloat16)``, scores the candidates under the
    same precision as training. The model, a torch.nn.Module, runs under ``torch.no_grad()`` in
    eval mode; each of its submodules gets its own train/eval mode back afterwards (a BatchNorm
    frozen in eval mode stays frozen). The losses are compared in float32. A model whose output
    is not floating (rows, n_classes) logits (a tuple, a dict, integers) is a UsageError.
    """

    needs_model = True

    def __init__(self, base_policy: Union[Policy, str], candidates: int = 4):
        if isinstance(base_policy, str):
            base_policy = create_policy(base_policy)
        if not callable(base_policy) or getattr(base_policy, "needs_model", False):
            raise UsageError("base_policy must be an ordinary policy (one without needs_model), "
                             f"got {base_policy!r}")
        self.base_policy = base_policy
        self.candidates = check_whole("candidates", candidates, 1)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None, *,
                 model: Optional[torch.nn.Module] = None, labels: Optional[torch.Tensor] = None,
                 preprocess: Optional[Callable] = None, autocast: Optional[Callable] = None,
                 **context) -> torch.Tensor:
        check_images(images)
        batch = images.shape[0]
        check_randomness(generator, batch)
        if model is None or labels is None:
            raise UsageError("max-loss augmentation needs the model and labels: call "
                             "policy(images, generator, model=model, labels=labels)")
        if not isinstance(labels, torch.Tensor) or labels.shape != (batch,) or labels.is_floating_point() \
                or labels.is_complex() or labels.dtype == torch.bool:
            shown = (f"a {labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                     else type(labels).__name__)
            raise UsageError(f"labels must be an integer tensor of shape ({batch},) (class indices), got {shown}")
        check_module(model)
        _check_factories(preprocess, autocast)
        if images.numel() == 0:  # no examples, or images of no pixels: nothing to score
            return images
        candidates = self._candidates(images, generator)
        losses = self._losses(candidates, labels.to(images.device, torch.long), model,
                              preprocess or default_preprocess, autocast or contextlib.nullcontext)
        best = losses.argmax(dim=0)
        return candidates[best * batch + torch.arange(batch, device=images.device)]

    def _candidates(self, images, generator):
        """The base policy's candidates: row k * batch + i holds candidate k of example i. With a
        key per image, example i's K candidates take the next numbers of its own stream."""
        repeated = images.repeat(self.candidates, 1, 1, 1)
        keyed = isinstance(generator, RandomSource)
        if keyed:
            generator.copies = self.candidates  # the K copies of each keyed image are one call's batch
        try:
            return self.base_policy(repeated, generator)
        except UsageError as exc:  # its message shows the repeated batch, not the one the caller passed
            raise UsageError(f"{exc} (max-loss's base policy is given the {images.shape[0]} images "
                             f"{self.candidates} times over, one copy per candidate)") from None
        finally:
            if keyed:
                generator.copies = 1

    def _losses(self, candidates, labels, model, preprocess, autocast) -> torch.Tensor:
        """Cross-entropy of every candidate, (K, batch) float32."""
        batch = labels.shape[0]
        one_pass = candidates.numel() <= ONE_PASS_MAX_VALUES
        chunks = [candidates] if one_pass else candidates.split(batch)
        targets = labels.repeat(self.candidates) if one_pass else labels
        modes = eval_modes(model)
        try:
            with torch.no_grad(), autocast():
                losses = [self._loss(model_on(model, preprocess(chunk)), len(chunk), targets) for chunk in chunks]
        finally:
            restore_modes(modes)
        return losses[0].view(self.candidates, batch) if one_pass else torch.stack(losses)

    @staticmethod
    def _loss(out, rows, targets):
        """Cross-entropy of the model's output `out` for `rows` candidates, after a check of its
        type, shape and dtype (shape reads only: no sync, no extra kernel). Labels past the
        logits' width or negative, torch's IndexError on the CPU, are a UsageError (a GPU cannot
        say so without a sync: a device-side assert there)."""
        logits = check_model_logits(out, rows, "the model given to max-loss augmentation").float()
        if torch.compiler.is_compiling():  # the trainer has checked the labels
            return F.cross_entropy(logits, targets, reduction="none")
        try:  # no label is ignored: torch's default ignore_index, -100, would keep that example's first candidate
            return F.cross_entropy(logits, targets, reduction="none", ignore_index=NO_LABEL)
        except IndexError:
            if int(targets.min()) < 0:
                raise UsageError(f"labels must be non-negative class ids, got {int(targets.min())}") from None
            raise UsageError(f"labels must be < n_classes={logits.shape[1]} (the model's outputs), got "
                             f"{int(targets.max())}") from None


def _check_factories(preprocess, autocast):
    """UsageError for a `preprocess` that is no function, or an `autocast` given as a context
    (``torch.autocast(...)``, itself callable as a decorator) instead of a factory of one."""
    if preprocess is not None and not callable(preprocess):
        raise UsageError(f"preprocess must be a function from an augmented batch to the model's input "
                         f"(e.g. lambda x: x.float() / 255), got a {type(preprocess).__name__}")
    context = hasattr(autocast, "__enter__") and not isinstance(autocast, type)
    if autocast is not None and (context or not callable(autocast)):
        got = f"{type(autocast).__name__}(...), a context itself" if context else f"a {type(autocast).__name__}"
        raise UsageError(f"autocast must be a zero-argument factory of a context, such as lambda: "
                         f"torch.autocast('cuda', dtype=torch.bfloat16), got {got}; wrap it in lambda: ...")


@register_policy("maxloss")
def max_loss(base: Union[Policy, str] = "randaugment", candidates: int = 4) -> MaxLossAugment:
    """A MaxLossAugment with ``candidates`` candidates per example drawn by ``base``: a policy,
    or a registered name such as "randaugment" or "randaugment+cutout" (settings at their
    defaults; pass ``create_policy(name, **settings)`` to change them)."""
    return MaxLossAugment(base, candidates)
