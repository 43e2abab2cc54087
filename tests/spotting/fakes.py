"""A stand-in classifier whose answer is written in the frames, and streams built for it.

Frame t's first landmark x holds the class signed there (0: no sign), so a window's
probabilities are the share of its frames of each class: the core can be tested on exact
expectations without a trained model.
"""

from __future__ import annotations

import numpy as np

GLOSSES = ["-", "hello", "thanks", "yes"]


class FrameVote:
    num_frames = 8
    num_classes = len(GLOSSES)
    rest_ids = [0]
    hand_columns = [1, 2]
    streams = ["landmarks", "landmark_mask"]

    def gloss(self, label: int) -> str:
        return GLOSSES[label]

    def __call__(self, windows: dict[str, np.ndarray]) -> np.ndarray:
        votes = windows["landmarks"][:, :, 0, 0]
        p = np.stack([(votes == k).mean(axis=1) for k in range(self.num_classes)], axis=1)
        p += 1e-3
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def stream(
    seed: int, signs: int = 10, hands_in_rest: bool = True
) -> tuple[dict[str, np.ndarray], list[tuple[int, int, str]]]:
    """Rests of 10-20 frames around signs of 14-22 frames; the truth as (start, end, gloss)."""
    rng = np.random.default_rng(seed)
    labels, truth = [], []
    for _ in range(signs):
        labels += [0] * int(rng.integers(10, 21))
        g, n = int(rng.integers(1, len(GLOSSES))), int(rng.integers(14, 23))
        truth.append((len(labels), len(labels) + n, GLOSSES[g]))
        labels += [g] * n
    labels += [0] * 12
    frames = len(labels)
    landmarks = np.zeros((frames, 75, 3), np.float32)
    landmarks[:, 0, 0] = labels
    mask = np.ones((frames, 3), bool)
    if not hands_in_rest:
        mask[np.asarray(labels) == 0, 1:] = False
    return {"landmarks": landmarks, "landmark_mask": mask}, truth
