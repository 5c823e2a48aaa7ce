"""Models found by name: ``create_model("resnet20", in_channels=1, num_classes=10)``, or by the
import path of the user's own factory: ``create_model("mypackage.nets:small_net", 3, 10)``."""
import importlib
import inspect
import numbers
import os
import sys
from typing import Callable, Dict, List

from torch import nn

from coreaug.errors import UsageError, one_line
from coreaug.files import in_python_library, where_raised
from coreaug.registering import qualified_name, same_definition

ModelFactory = Callable[[int, int], nn.Module]

_MODELS: Dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that makes ``factory(in_channels, num_classes) -> nn.Module`` available by name.

    Names are lower-case; registering a taken name is an error so that two modules cannot
    silently shadow each other. A name lasts for the process that registered it: a run trained
    with it is rebuilt by ``load_run`` only after registering it again (``coreaug predict`` and
    ``evaluate`` cannot); a ``package.module:function`` path needs no registration.
    """
    if callable(name) and not isinstance(name, str):
        raise UsageError("register_model takes the name first: @register_model(\"mynet\"), "
                         f"not a bare @register_model (got {getattr(name, '__name__', name)!r})")
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise UsageError(f"register_model needs a non-empty name without ':' (a name with ':' is read as an "
                         f"import path, package.module:function), got {name!r}")
    key = name.lower()

    def decorate(factory: ModelFactory) -> ModelFactory:
        if not callable(factory):
            raise UsageError(f"register_model({name!r}) must decorate a function taking in_channels and "
                             f"num_classes, got a {type(factory).__name__}")
        _check_arguments(factory, f"model {name!r}")
        if key in _MODELS and not same_definition(_MODELS[key], factory):  # (a cell run again replaces its own)
            raise UsageError(f"a model named {key!r} is already registered ({qualified_name(_MODELS[key])}); "
                             f"register {qualified_name(factory)} under another name")
        _MODELS[key] = factory
        return factory

    return decorate


def available_models() -> List[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_MODELS)


def is_import_path(name) -> bool:
    """Whether ``name`` is a ``package.module:function`` path rather than a registered name."""
    return isinstance(name, str) and ":" in name


_APPENDED = set()  # folders _import_from_here left last on sys.path (not the caller's own entries)


def _import_from_here(module_name):
    """importlib.import_module(module_name) with the current folder first on the import path, as
    `python -m` has it, for each factory's import, unless the caller put it on the path (its order
    stands); afterwards the folder is last (it stays importable, for a spawned worker unpickling
    the module's classes), so that the caller's own imports resolve as before: first, it shadowed
    a module beside the calling script with one of the same name in the current folder."""
    here = os.getcwd()
    if "" in sys.path or (here in sys.path and here not in _APPENDED):
        return importlib.import_module(module_name)
    if here in sys.path:  # last, where an earlier factory's import left it
        sys.path.remove(here)
    sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    finally:
        if here in sys.path:
            sys.path.remove(here)
        sys.path.append(here)
        _APPENDED.add(here)


def import_factory(path: str) -> ModelFactory:
    """The callable that ``package.module:function`` names, imported (the current folder is on
    the import path, as for ``python -m``). Raises ValueError saying what could not be found."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"model {path!r} must be an import path like mypackage.nets:make_model "
                         "(a module, a colon, a function taking in_channels and num_classes)")
    if module_name.startswith(".") or module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        raise UsageError(f"model {path!r}: give a module name, not a file path or a relative one: "
                         f"{module_of(module_name)}:{attribute} (run from the folder that holds it, or add that "
                         "folder to PYTHONPATH)")
    try:
        module = _import_from_here(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if isinstance(exc, ModuleNotFoundError) and missing and not _names_module(module_name, missing):
            raise UsageError(f"model {path!r}: module {module_name!r} imports {missing!r}, which cannot be found "
                             f"here ({exc}): install it in this environment, or, for a module of yours beside it, "
                             "add its folder to PYTHONPATH") from None
        if not isinstance(exc, ModuleNotFoundError):  # found, but its own import failed
            raise UsageError(f"model {path!r}: module {module_name!r} was found, but importing it failed: "
                             f"{exc}") from None
        raise UsageError(f"model {path!r}: cannot import module {module_name!r} ({exc}); run from the folder "
                         "that holds it, or add its folder to PYTHONPATH") from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            if _pythons_own(module):
                raise UsageError(f"model {path!r}: module {module_name!r} is Python's own "
                                 f"({getattr(module, '__file__', None) or 'built in'}), which has no {attribute!r}; "
                                 "a module of yours needs a name that is not one of Python's")
            raise UsageError(f"model {path!r}: module {module_name!r} has no {attribute!r}; "
                             "name a function that takes in_channels and num_classes")
    if not callable(factory):
        raise UsageError(f"model {path!r}: {attribute!r} is not callable; name a function that takes "
                         "in_channels and num_classes and returns an nn.Module")
    _check_arguments(factory, f"model {path!r}")
    return factory


def _pythons_own(module):
    """Whether `module` is of Python's standard library (built in, or a file under its folders)."""
    file = getattr(module, "__file__", None)
    if module.__name__.partition(".")[0] not in getattr(sys, "stdlib_module_names", ()):
        return False
    return file is None or in_python_library(file)


def _named_arguments(factory):
    """Whether `factory` takes parameters named in_channels and num_classes, by keyword."""
    try:  # a functools.wraps wrapper is called as itself, not as the function it wraps
        parameters = inspect.signature(factory, follow_wrapped=False).parameters
    except (TypeError, ValueError):
        return False
    return all(name in parameters and parameters[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                                   inspect.Parameter.KEYWORD_ONLY)
               for name in ("in_channels", "num_classes"))


def _names_module(module_name, missing):
    """Whether the module `missing` that an import could not find is `module_name` or a package above it."""
    return module_name == missing or module_name.startswith(missing + ".")


def _call(factory, in_channels, num_classes):
    """factory(in_channels, num_classes), by keyword where its parameters have those names (`def net(num_classes,
    in_channels)` would otherwise build the wrong model)."""
    if _named_arguments(factory):
        return factory(in_channels=in_channels, num_classes=num_classes)
    return factory(in_channels, num_classes)


def _check_arguments(factory, what):
    """UsageError unless `factory` can be called as `_call` calls it."""
    try:
        signature = inspect.signature(factory, follow_wrapped=False)
        signature.bind(in_channels=3, num_classes=10) if _named_arguments(factory) else signature.bind(3, 10)
    except TypeError:
        raise UsageError(f"{what} must take two arguments, in_channels and num_classes") from None
    except ValueError:  # a callable without a signature to read: calling it will tell
        pass


def module_of(file_path: str) -> str:
    """The module a file path (or a relative module name) names, imported from the file's folder:
    "./mynets.py", "../nets/mynets.py" and ".mynets" are "mynets"."""
    name = file_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].removesuffix(".py").lstrip(".")
    return name or file_path


def create_model(name: str, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """Build a freshly initialised model by name, or by the import path of a factory.

    Args:
        name: one of `available_models` (case-insensitive), e.g. ``"resnet20"``, or
            ``"package.module:function"``, a function called as ``function(in_channels,
            num_classes)`` that returns an ``nn.Module`` (see `import_factory`).
        in_channels: image channels (1 for MNIST-like data, 3 for CIFAR/SVHN).
        num_classes: outputs of the final ``nn.Linear``.

    Returns:
        An ``nn.Module`` mapping ``(B, in_channels, H, W)`` float images (any ``H, W >= 8``) to
        ``(B, num_classes)`` logits. Its last ``nn.Linear`` is the classifier and its input is
        the globally average-pooled feature vector, which the selection engine hooks.
    """
    key = str(name).lower()
    if not is_import_path(name) and key not in _MODELS:
        raise UsageError(
            f"unknown model {name!r}; choose one of: {', '.join(available_models())}, "
            "or give your own as package.module:function"
        )
    for arg_name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise UsageError(f"{arg_name} must be a positive integer, got {value!r}")
    in_channels, num_classes = int(in_channels), int(num_classes)  # a NumPy integer (labels.max() + 1) too
    factory = _MODELS[key] if not is_import_path(name) else import_factory(name)
    by_name = _named_arguments(factory)
    arguments = f"in_channels={in_channels}, num_classes={num_classes}" if by_name else f"{in_channels}, {num_classes}"
    function = name.partition(":")[2] if is_import_path(name) else getattr(factory, "__name__", key)
    called = f"model {name!r}, called as {function}({arguments}),"
    try:
        model = _call(factory, in_channels, num_classes)
    except UsageError as error:  # coreaug's own refusal, of a function that is no model factory (coreaug:train)
        if not is_import_path(name):
            raise
        raise UsageError(f"{called} refused: {error} (a model's function takes in_channels and num_classes and "
                         "returns an nn.Module)") from None
    except Exception as error:  # noqa: BLE001 - the user's function failing: one line naming its line
        where = where_raised(error)
        if not where:  # raised in coreaug's own models (a defect: its traceback) or before the user's code ran
            raise
        raise UsageError(f"{called} raised {one_line(error)}{where}") from error
    if not isinstance(model, nn.Module):
        raise UsageError(f"model {name!r} returned a {type(model).__name__}, not an nn.Module; "
                         "the function must return the model")
    return model
