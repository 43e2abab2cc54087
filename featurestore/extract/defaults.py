"""Defaults users of the seed know, importable without torch (the CLI builds its parser fast)."""

DEFAULT_ENCODER = "google/gemma-3-4b-it"
POOLINGS = ("mean_soft_tokens", "mean_vision_patches")
PRESET_NAMES = ("tiny-random", "gemma-3-4b-random")
