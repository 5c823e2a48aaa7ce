"""Deprecations: a public signature that changes keeps its old calls working for one release,
with a FutureWarning that says what to write instead (scikit-learn's way); and keyword-only
options, whose positional form (deprecated in 0.2) is a TypeError since 0.3 that says what to write."""
import functools
import inspect
import warnings

REMOVED_IN = "0.4"  # the release in which what is deprecated now stops working (nothing is, in 0.3)


class _Deprecated:
    """The default of a deprecated parameter, so that any value the caller passes is noticed."""

    def __repr__(self):
        return "<deprecated>"


DEPRECATED = _Deprecated()


def warn_deprecated(message):
    """A FutureWarning pointing at the caller of the public function that calls this."""
    warnings.warn(f"{message}; it will be removed in coreaug {REMOVED_IN}", FutureWarning, stacklevel=3)


def keyword_only(func=None, *, positional=None):
    """Decorator: `func`'s keyword-only options passed by position are a TypeError naming each
    one and saying to pass it by keyword (coreaug 0.2 took them with a FutureWarning).

    On a class it wraps ``__init__``. With ``positional=k`` the parameters after the first k
    (``self`` not counted) are treated, and shown by ``inspect.signature``, as keyword-only: for
    a dataclass, whose fields cannot be declared keyword-only before Python 3.10.
    """
    if func is None:
        return functools.partial(keyword_only, positional=positional)
    if inspect.isclass(func):
        func.__init__ = keyword_only(func.__init__, positional=None if positional is None else positional + 1)
        return func
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if positional is not None:
        params = [p.replace(kind=p.KEYWORD_ONLY) if i >= positional and p.kind is p.POSITIONAL_OR_KEYWORD else p
                  for i, p in enumerate(params)]
        signature = signature.replace(parameters=params)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"keyword_only cannot wrap {func.__qualname__}, which takes *args")
    n_positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    names = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    shown = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        extra = args[n_positional:]
        if extra and len(extra) <= len(names):  # more than that: func raises its own TypeError
            moved = names[:len(extra)]
            raise TypeError(f"{shown}(): pass {', '.join(f'{name}=...' for name in moved)} by keyword (coreaug 0.2 "
                            f"took {'it' if len(moved) == 1 else 'them'} by position with a warning; 0.3 does not)")
        return func(*args, **kwargs)

    wrapper.__signature__ = signature
    return wrapper
