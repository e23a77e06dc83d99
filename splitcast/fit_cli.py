"""`splitcast fit`: your clips in, a deployable checkpoint and a trustworthy report out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from splitcast.arguments import (
    add_device_arguments,
    delay_range,
    int_list,
    number_list,
    positive_int,
    probability,
)
from splitcast.fit_settings import (
    LARGE_DATA_CLIPS,
    LATE_BLURS,
    LATE_MOVED_WEIGHTS,
    LATE_WEIGHTS,
    FitRequest,
)


def _fraction(text: str) -> float:
    value = probability(text)
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 0.5, got {text}")
    return value


def _listed(values: tuple) -> str:
    return ",".join(f"{v:g}" for v in values)


def add_fit_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fit",
        help="clips in, a checkpoint never worse than local-only and a report out",
        description="Split a clip folder (e.g. from `splitcast data import`) by clip into "
        "train, calibration and test parts; train (every stage of the shipped default's recipe "
        f"from {LARGE_DATA_CLIPS} training clips on, the first one below); package in float16; "
        "calibrate each combiner per answer age on the calibration clips with local-only always "
        "a candidate, keep the best combiner; write OUT/checkpoint (serve it with `splitcast "
        "serve --model OUT/checkpoint`) and OUT/report (report.md, .json, .csv, .png: every "
        "baseline and the gain over local-only with a 95% interval over test clips, scored on "
        "the test clips only). Run the same command again to resume a stopped fit.",
    )
    parser.add_argument("--data", type=Path, required=True, help="clip folder to fit on")
    parser.add_argument("--out", type=Path, required=True, help="folder for everything")
    parser.add_argument(
        "--config",
        default="lite",
        help="configuration to train (tiny, lite, paper; default: %(default)s)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="minutes of training over all stages, shared as the recipe shares its time "
        "(default: the recipe's epochs); calibration and the report come on top",
    )
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default: 0)")
    parser.add_argument(
        "--calib-fraction",
        type=_fraction,
        default=0.2,
        help="share of clips for calibration (default: %(default)s)",
    )
    parser.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        help="share of clips for the report (default: %(default)s)",
    )
    parser.add_argument(
        "--calib-data",
        type=Path,
        help="calibration clips in a folder of their own (with --test-data): --data is then "
        "all training clips and nothing is split",
    )
    parser.add_argument("--test-data", type=Path, help="test clips in a folder of their own")
    parser.add_argument(
        "--delays",
        type=delay_range,
        default=FitRequest.delays,
        metavar="MIN-MAX",
        help="answer ages in ticks (frames of the data) trained, calibrated and reported; the "
        "top is the fitted checkpoint's answer horizon (default: 0-30, one second at 30 fps)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="(default: 8)")
    parser.add_argument(
        "--workers", type=int, default=2, help="data loader processes (default: %(default)s)"
    )
    parser.add_argument(
        "--max-steps", type=positive_int, help="stop each training stage after this many steps"
    )
    parser.add_argument(
        "--every",
        type=positive_int,
        default=2,
        help="calibrate on every N-th target frame (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence",
        type=probability,
        default=0.9,
        help="keep a use of the cloud's answer at an age only if it beats local-only in this "
        "fraction of bootstrap resamples of the calibration clips (default: %(default)s)",
    )
    parser.add_argument(
        "--weights",
        type=number_list,
        default=LATE_WEIGHTS,
        help=f"late average: forecast weights tried (default: {_listed(LATE_WEIGHTS)})",
    )
    parser.add_argument(
        "--blurs",
        type=int_list,
        default=LATE_BLURS,
        help=f"late average: odd box sides tried (default: {_listed(LATE_BLURS)})",
    )
    parser.add_argument(
        "--moved-weights",
        type=number_list,
        default=LATE_MOVED_WEIGHTS,
        help="late average: moved on-time answer weights tried (default: "
        f"{_listed(LATE_MOVED_WEIGHTS)})",
    )
    add_device_arguments(parser)
    parser.set_defaults(run=_run_fit)


def _run_fit(args: argparse.Namespace) -> None:
    from splitcast.fit import fit

    if (args.calib_data is None) != (args.test_data is None):
        raise SystemExit("splitcast fit: error: give --calib-data and --test-data together")
    state = fit(
        FitRequest(
            data=args.data,
            out=args.out,
            config=args.config,
            seed=args.seed,
            calib_fraction=args.calib_fraction,
            test_fraction=args.test_fraction,
            calib_data=args.calib_data,
            test_data=args.test_data,
            time_budget_min=args.time_budget,
            delays=args.delays,
            batch_size=args.batch_size,
            workers=args.workers,
            max_steps=args.max_steps,
            every=args.every,
            confidence=args.confidence,
            late_weights=tuple(args.weights),
            late_blurs=tuple(args.blurs),
            late_moved_weights=tuple(args.moved_weights),
            device=args.device,
            precision=args.precision,
        )
    )
    print((args.out / "report" / "report.md").read_text())
    print(json.dumps(state["done"]["checkpoint"]))
