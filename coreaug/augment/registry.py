"""Policies found by name: ``create_policy("randaugment")``, ``"weak+randaugment+cutout"``."""
from __future__ import annotations

import inspect
from typing import Callable

from coreaug.errors import UsageError

from .policy import Compose, Policy

_POLICIES: dict = {}


def register_policy(name: str) -> Callable:
    """Decorator registering a Policy class (or a factory returning one) under ``name``."""
    if not name or "+" in name:
        raise UsageError(f"policy names must be non-empty and contain no '+', got {name!r}")

    def register(factory):
        _POLICIES[name] = factory
        return factory
    return register


def available_policies() -> list:
    """Names accepted by ``create_policy``, sorted."""
    return sorted(_POLICIES)


def _accepts(factory, keyword: str) -> bool:
    parameters = inspect.signature(factory).parameters.values()
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in parameters)


def _create_one(name: str, kwargs: dict) -> Policy:
    if name not in _POLICIES:
        raise UsageError(f"unknown policy {name!r}; available: {', '.join(available_policies())}")
    factory = _POLICIES[name]
    try:
        return factory(**kwargs)
    except TypeError as error:  # an unexpected keyword: say which the policy takes
        taken = ", ".join(inspect.signature(factory).parameters)
        raise UsageError(f"policy {name!r} takes ({taken}); {error}") from None


def create_policy(name: str, **kwargs) -> Policy:
    """Return the policy registered as ``name``, built with ``kwargs``.

    ``name`` may chain policies with '+', e.g. ``"weak+randaugment+cutout"``, giving a Compose;
    each keyword then goes to every chained policy that accepts it (``flip=False`` to weak).
    Raises UsageError for an unknown name (listing the available ones) or a keyword no chained
    policy takes.

    A policy is called as ``policy(images, generator)`` on a (B, C, H, W) uint8 (0-255) or
    float batch; float images are taken as [0, 1], and the policies that compute on pixel
    values ("randaugment", "trivialaugment", the autoaugments, "resized-crop") clamp values
    outside it into it (a resize's small overshoot; normalise after augmenting, not before).
    """
    if not isinstance(name, str):
        raise UsageError(f"policy name must be a string, got {type(name).__name__}")
    names = [part.strip().lower() for part in name.split("+")]
    if len(names) == 1:
        return _create_one(names[0], kwargs)
    for part in names:
        if part not in _POLICIES:
            raise UsageError(f"unknown policy {part!r} in {name!r}; "
                             f"available: {', '.join(available_policies())}")
    for keyword in kwargs:
        if not any(_accepts(_POLICIES[part], keyword) for part in names):
            raise UsageError(f"no policy in {name!r} takes the keyword {keyword!r}")
    return Compose([
        _create_one(part, {k: v for k, v in kwargs.items() if _accepts(_POLICIES[part], k)})
        for part in names
    ])
