"""Training against the feature store: streaming loader, training loop, evaluation."""

from training.augment import AugmentConfig, Augmenter
from training.data import DataError
from training.loader import StoreLoader
from training.trainer import TrainConfig, Trainer, train

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "DataError",
    "StoreLoader",
    "TrainConfig",
    "Trainer",
    "train",
]
