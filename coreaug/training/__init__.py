"""The trainer: epochs, selection cadence, weighted loss, checkpoints, logs."""
from .config import DATASET_DEFAULTS, TrainConfig
from .plan import EpochPlan, epoch_plan
from .trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train", "EpochPlan", "epoch_plan", "DATASET_DEFAULTS"]
