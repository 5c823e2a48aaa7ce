"""coreaug: strong data augmentation on a re-selected subset (random by default, or the paper's
weighted coreset) instead of every example.

The public API is re-exported here, each name with its docstring (help(coreaug.train),
help(coreaug.TrainConfig)); `coreaug --help` and `coreaug COMMAND --help` describe the command line.
The manual is docs/ (and README.md) in the source distribution or a checkout.
"""
import os as _os
import sys as _sys
import warnings as _warnings

# Between releases, the next release with .dev0 (CHANGELOG.md's [Unreleased]); setup.cfg reads it from here.
__version__ = "0.3.0.dev0"

# torch and faiss each bring an OpenMP runtime whose idle threads spin by default; on a
# shared or small machine the spinning threads starve each other (a CPU epoch ran 7x
# slower under load). Passive waiting must be chosen before the runtime loads, so it is
# set here, before torch is imported; export OMP_WAIT_POLICY=ACTIVE to override.
# Imported after torch or faiss, the setting comes too late: say so instead of having it look set.
_loaded = [name for name in ("torch", "faiss") if name in _sys.modules]
if _loaded and "OMP_WAIT_POLICY" not in _os.environ:
    _warnings.warn(f"coreaug was imported after {' and '.join(_loaded)}, whose OpenMP threads now spin while idle "
                  "(a CPU epoch ran 7x slower under load): import coreaug first, or set OMP_WAIT_POLICY=PASSIVE "
                  "(ACTIVE to keep spinning) in the environment before starting Python", stacklevel=2)
del _loaded
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .augment import RandomSource, available_policies, create_policy
from .bench import BenchResult, run_grid
from .data import DatasetNotFoundError, ImageDataset, apply_label_noise, available_datasets, load_dataset
from .data.locate import DataDirLacksDataset
from .errors import CallerWarning, TrainingDiverged, UnreadableImage, UsageError
from .models import available_models, create_model
from .selection import (
    Selection,
    estimate_gradients,
    last_layer_gradients,
    logit_gradients,
    select_coreset,
    select_maxloss,
    select_random,
)
from .training import CoresetAugmentation, TrainConfig, TrainedModel, TrainResult, load_run, train
from .training.trained import UntrustedModel

__all__ = [
    "Selection", "select_coreset", "select_random", "select_maxloss",
    "logit_gradients", "last_layer_gradients", "estimate_gradients",
    "TrainConfig", "TrainResult", "train", "CoresetAugmentation", "load_run", "TrainedModel",
    "load_dataset", "available_datasets", "ImageDataset", "DatasetNotFoundError", "apply_label_noise",
    "create_model", "available_models", "create_policy", "available_policies", "RandomSource",
    "run_grid", "BenchResult", "UsageError", "TrainingDiverged", "UnreadableImage", "UntrustedModel",
    "DataDirLacksDataset", "CallerWarning",
]
