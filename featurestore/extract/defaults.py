"""Defaults users of the seed know, importable without torch (the CLI builds its parser fast)."""

DEFAULT_ENCODER = "google/gemma-3-4b-it"
POOLINGS = ("mean_soft_tokens", "mean_vision_patches")
PRESET_NAMES = ("tiny-random", "gemma-3-4b-random")
FAST_PATHS = ("auto", "on", "off")
"""The encoder's fast path (compiled forward): auto = on for CUDA, eager elsewhere."""
SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
"""Attention kernels PyTorch's SDPA can be held to; auto lets it choose."""
