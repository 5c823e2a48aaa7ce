"""Policies found by name: ``create_policy("randaugment")``, ``"weak+randaugment+cutout"``."""
from __future__ import annotations

import inspect
from typing import Callable

from coreaug.errors import UsageError
from coreaug.registering import qualified_name, same_definition

from .policy import Compose, Policy

_POLICIES: dict = {}


def _key(name: str) -> str:
    """A policy name as registered and looked up: stripped and lower-case (names are case-insensitive)."""
    return name.strip().lower()


def register_policy(name: str) -> Callable:
    """Decorator registering a Policy class (or a factory returning one) under ``name``, stored
    lower-case and stripped as ``create_policy`` and TrainConfig look names up ("MyAug" -> "myaug").

    Its keywords are the settings ``create_policy(name, **settings)`` passes on. The policy is
    called as ``policy(images, generator, **context)`` (see `Policy`): the trainer passes a
    `RandomSource` as ``generator``, so draw through `uniform`, `integers`, `signs` and
    `permutation` (``coreaug.augment``), which take either. A name lasts for the process that
    registered it: register at import (a module's top level, not under ``if __name__ ==
    "__main__":``) for `run_grid` with ``jobs`` >= 2, whose workers import the script again. A
    name taken by another policy (a built-in's: "weak", which the trainer uses, "randaugment")
    is refused; registering the same class or function again (a notebook cell run twice)
    replaces it.
    """
    if not isinstance(name, str) or not name.strip() or "+" in name:
        raise UsageError(f"policy names must be non-empty strings and contain no '+', got {name!r}")
    key = _key(name)

    def register(factory):
        if not callable(factory):
            raise UsageError(f"register_policy({name!r}) takes a Policy class or a function that returns a policy, "
                             f"got {factory!r}")
        taken = _POLICIES.get(key)
        if taken is not None and not same_definition(taken, factory):
            raise UsageError(f"a policy named {key!r} is already registered ({qualified_name(taken)}); register "
                             f"{qualified_name(factory)} under another name")
        _POLICIES[key] = factory
        return factory
    return register


def available_policies() -> list:
    """Names accepted by ``create_policy``, sorted."""
    return sorted(_POLICIES)


def takes_keyword(name: str, keyword: str) -> bool:
    """Whether a policy of ``name`` (registered, or a '+' chain of them) takes ``keyword``, so that
    ``create_policy(name, keyword=...)`` passes it on (the trainer's ``flip`` to a chained "weak")."""
    return any(_key(part) in _POLICIES and _accepts(_POLICIES[_key(part)], keyword) for part in name.split("+"))


def _accepts(factory, keyword: str) -> bool:
    parameters = inspect.signature(factory).parameters.values()
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in parameters)


def _create_one(name: str, kwargs: dict) -> Policy:
    if name not in _POLICIES:
        raise UsageError(f"unknown policy {name!r}; available: {', '.join(available_policies())}")
    factory = _POLICIES[name]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a callable without a signature to read: calling it will tell
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as error:  # a keyword it does not take, or one it needs: say which it takes
            taken = ", ".join(signature.parameters)
            raise UsageError(f"policy {name!r} takes ({taken}); {error}") from None
    policy = factory(**kwargs)  # an error of the policy's own keeps its traceback
    if not callable(policy):
        raise UsageError(f"policy {name!r} was made as a {type(policy).__name__}, not a policy: register a Policy "
                         "class or a function that returns one (called as policy(images, generator))")
    return policy


def _create_member(part: str, name: str, kwargs: dict) -> Policy:
    """`_create_one` for the member ``part`` of the chain ``name``, its errors naming both."""
    try:
        return _create_one(part, kwargs)
    except UsageError as error:
        text, own = str(error), f"policy {part!r} "
        rest = text[len(own) - 1:] if text.startswith(own) else f": {text}"  # " takes (...)" or ": fill must ..."
        raise UsageError(f"policy {part!r} in {name!r}{rest}") from None


def create_policy(name: str, **kwargs) -> Policy:
    """Return the policy registered as ``name``, built with ``kwargs``.

    ``name`` may chain policies with '+', e.g. ``"weak+randaugment+cutout"``, giving a Compose;
    each keyword then goes to every chained policy that accepts it (``flip=False`` to weak).
    Names are case-insensitive here (registered lower-case; TrainConfig and the CLI take them as
    ``available_policies`` lists them). Raises UsageError for an unknown name (listing the
    available ones) or a keyword no chained policy takes.

    A policy is called as ``policy(images, generator)`` on a (B, C, H, W) uint8 (0-255) or
    float batch; float images are taken as [0, 1], and the policies that compute on pixel
    values ("randaugment", "trivialaugment", the autoaugments, "resized-crop") clamp values
    outside it into it (a resize's small overshoot; normalise after augmenting, not before).
    """
    if not isinstance(name, str):
        raise UsageError(f"policy name must be a string, got {type(name).__name__}")
    names = [_key(part) for part in name.split("+")]
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
        _create_member(part, name, {k: v for k, v in kwargs.items() if _accepts(_POLICIES[part], k)})
        for part in names
    ])
