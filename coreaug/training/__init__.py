"""The trainer: epochs, selection cadence, weighted loss, checkpoints, logs."""
from .compiled_step import compile_supported
from .config import DATASET_DEFAULTS, TrainConfig
from .dataset_face import PlanDataset, PlanSampler
from .method import CoresetAugmentation
from .plan import DevicePlan, EpochPlan, epoch_plan
from .trained import Evaluation, Prediction, TrainedModel, load_run
from .trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train", "EpochPlan", "DevicePlan", "epoch_plan", "DATASET_DEFAULTS",
           "CoresetAugmentation", "PlanDataset", "PlanSampler", "load_run", "TrainedModel", "Prediction", "Evaluation",
           "compile_supported"]
