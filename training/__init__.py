"""Training against the feature store: streaming loader, training loop, evaluation."""

from training.augment import AugmentConfig, Augmenter
from training.config import TrainConfig
from training.loader import StoreLoader
from training.store_checks import DataError
from training.trainer import Trainer, train

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "DataError",
    "StoreLoader",
    "TrainConfig",
    "Trainer",
    "train",
]
