"""What the registries (policies, selection rules) share: whether a definition registered again
under a taken name is the one that holds it."""
import inspect
import os


def qualified_name(factory) -> str:
    """A factory's module.qualname (a class's, a function's; an instance's class's)."""
    named = factory if hasattr(factory, "__qualname__") else type(factory)
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}"


def same_definition(taken, factory) -> bool:
    """Whether ``factory`` is ``taken`` made again: the same module.qualname (a notebook cell run
    twice, a module reloaded), or the same qualname defined in the same file (a script run as
    __main__ and imported by its name too, or a module reached under two names)."""
    if qualified_name(taken) == qualified_name(factory):
        return True
    named = [f if hasattr(f, "__qualname__") else type(f) for f in (taken, factory)]
    if named[0].__qualname__ != named[1].__qualname__:
        return False
    try:
        files = [inspect.getsourcefile(f) for f in named]
    except TypeError:  # a built-in: no file
        return False
    return files[0] is not None and os.path.realpath(files[0]) == os.path.realpath(files[1] or "")
