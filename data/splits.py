"""Default sizes and seeds of the synthetic benchmark's splits (disjoint seeds per split).

`calib` is held out from training and from the reported splits: it is where a trained model's
edge-side settings (the downlink gain by age, `splitcast calibrate`) are chosen.
"""

SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000, "calib": 4000}
DEFAULT_CLIPS = {"train": 120, "val": 30, "test": 30, "calib": 30}
DEFAULT_FRAMES = 48
