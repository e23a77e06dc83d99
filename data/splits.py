"""Default sizes and seeds of the synthetic benchmark's splits (disjoint seeds per split)."""

SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000}
DEFAULT_CLIPS = {"train": 120, "val": 30, "test": 30}
DEFAULT_FRAMES = 48
