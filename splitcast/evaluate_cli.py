"""`splitcast evaluate` (offline mIoU versus delay, or a live run through the real transport) and
`splitcast calibrate` (how the edge combines answers per age, chosen on held-out clips)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitcast.arguments import (
    add_device_arguments,
    int_list,
    non_negative_float,
    non_negative_int,
    number_list,
    positive_int,
    probability,
)
from splitcast.models.codec_names import CODEC_NAMES, COMBINER_NAMES
from splitcast.signals import stopped_status


def _text_list(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def _add_checkpoint_and_data(
    parser: argparse.ArgumentParser, data: Path, data_help: str, configurations: bool = True
) -> None:
    """--checkpoint (a configuration name too when `configurations`) and --data."""
    kinds = (
        "packaged checkpoint name, checkpoint folder or configuration name"
        if configurations
        else "packaged checkpoint name or checkpoint folder"
    )
    parser.add_argument("--checkpoint", default="default", help=f"{kinds} (default: %(default)s)")
    parser.add_argument(
        "--data", type=Path, default=data, help=f"{data_help} (default: %(default)s)"
    )


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="mIoU versus delay for Dedelayed and every baseline (offline or live)",
        description="Offline: score local_only, remote_stale_image, remote_stale_video, "
        "remote_predictive, dedelayed and oracle at each delay over a whole split and write "
        "results.json, results.csv and miou_vs_delay.png. --live: play the split through a real "
        "server, delay link and edge in real time and score the edge's actual outputs.",
    )
    _add_checkpoint_and_data(parser, Path("out/data/val"), "clip directory")
    parser.add_argument(
        "--delays",
        type=number_list,
        help="delays in ticks, e.g. 0-10 or 0,3,5 (default: 0 to the checkpoint's answer "
        "horizon, 0-30 for the shipped one)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: out/eval, or out/eval-live with --live)"
    )
    parser.add_argument(
        "--every",
        type=positive_int,
        default=1,
        help="score every N-th target frame (default: %(default)s)",
    )
    parser.add_argument(
        "--mismatch",
        action="store_true",
        help="also score every (true D_o, assumed D_i) pair: mismatch.png",
    )
    parser.add_argument(
        "--mismatch-every",
        type=positive_int,
        default=4,
        help="with --mismatch: score every N-th target frame; the grid costs one remote "
        "prediction per (D_o, D_i) pair (default: %(default)s)",
    )
    parser.add_argument(
        "--strides",
        type=int_list,
        default=[1],
        help="motion strata: frame strides, e.g. 1,2,3 (by_stride in the JSON)",
    )
    parser.add_argument(
        "--local-heights",
        type=int_list,
        default=[],
        help="resolution study: local input heights, e.g. 96,128,160",
    )
    parser.add_argument(
        "--live", action="store_true", help="run the real edge -> link -> server path instead"
    )
    parser.add_argument(
        "--rtt-ms",
        type=non_negative_float,
        default=100.0,
        help="with --live: link round trip (default: %(default)s)",
    )
    parser.add_argument("--clips", type=positive_int, help="with --live: only the first N clips")
    parser.add_argument(
        "--codec",
        choices=CODEC_NAMES,
        help="downlink codec the answers pass through (default: the checkpoint's)",
    )
    parser.add_argument(
        "--combiner",
        choices=COMBINER_NAMES,
        help="score this combiner on the checkpoint's networks, with its calibrated per-age "
        "policy if the checkpoint has one (default: the checkpoint's combiner)",
    )
    parser.add_argument(
        "--rate-sweep",
        type=_text_list,
        default=[],
        metavar="CHECKPOINT,...",
        help="learned-codec checkpoints (e.g. trained with different --rate-lambda or "
        "--codec-width) to score at d = 3 next to raw-fp16 and int8-zstd: rate_accuracy.png "
        "and a 'rate' section in results.json",
    )
    add_device_arguments(parser)
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    offline_only = {
        "--codec": args.codec,
        "--combiner": args.combiner,
        "--local-heights": args.local_heights,
        "--rate-sweep": args.rate_sweep,
        "--mismatch": args.mismatch,
        "--strides": args.strides != [1],
    }
    given = [flag for flag, value in offline_only.items() if value]
    if args.live and given:
        raise SystemExit(
            f"splitcast evaluate --live: {', '.join(given)} only change offline scoring "
            "(a live run uses the checkpoint's own combiner and codec)"
        )
    if args.live:
        from splitcast.live_eval import LiveRequest, evaluate_live, gain_line

        out = args.out or Path("out/eval-live")
        result = evaluate_live(
            LiveRequest(
                args.checkpoint,
                args.data,
                out,
                args.rtt_ms,
                max(args.delays) if args.delays else LiveRequest.max_delay,
                args.clips,
                device=args.device,
                precision=args.precision,
            )
        )
        latency = result["latency_ms"]
        print(
            f"live at {args.rtt_ms:g} ms RTT: dedelayed mIoU {result['live_miou']:.2f} "
            f"(offline replay of the same decisions {result['offline_replay_miou']:.2f}, "
            f"pixel agreement {_number(result['replay_pixel_agreement'], '.4f')}; local-only on "
            f"the same frames {result['offline_local_only_miou']:.2f}), "
            f"answers used {result['combined_fraction']:.0%}, median D_o {result['d_o_median']}, "
            f"edge p50 with an answer {_number(latency['combined_p50'], '.1f')} ms / "
            f"local-only {_number(latency['local_only_p50'], '.1f')} ms"
        )
        print(gain_line(result))
        print(f"wrote {out / 'live.json'}")
        return 0
    from splitcast.evaluate import EvaluationRequest, evaluate_offline, format_table

    out = args.out or Path("out/eval")
    request = EvaluationRequest(
        checkpoint=args.checkpoint,
        data=args.data,
        out=out,
        delays=args.delays,
        every=args.every,
        mismatch=args.mismatch,
        mismatch_every=args.mismatch_every,
        strides=args.strides,
        local_heights=args.local_heights,
        codec=args.codec,
        combiner=args.combiner,
        rate_sweep=args.rate_sweep,
        device=args.device,
        precision=args.precision,
    )
    results = evaluate_offline(request)
    print(format_table(results))
    down, up = results["downlink_bytes_per_frame"], results["uplink_bytes_per_frame"]
    print(
        f"downlink {results['codec']}: {down['mean']:.0f} B/frame (p95 {down['p95']:.0f}), "
        f"{results['downlink_kbps']:.1f} kbit/s; uplink {results['config']['uplink_format']}: "
        f"{up['mean']:.0f} B/frame, {results['uplink_kbps']:.1f} kbit/s"
    )
    print(f"wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'miou_vs_delay.png'}")
    kept = f"the results cover {results.get('clips_scored')} clips"
    return stopped_status("evaluate", results.get("stopped_by"), kept)


def add_sweep_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="live evaluation through server, relay and edge at several round trips",
        description="For each RTT, run the split's clips in real time through `splitcast serve`, "
        "`splitcast link` and the edge; write sweep.json, sweep.csv and sweep.png: mIoU of "
        "Dedelayed (the edge's actual outputs), local-only and the stale remote answer (same "
        "frames, replayed offline) versus the measured delay, edge latency and downlink kbit/s.",
    )
    parser.add_argument(
        "--rtt-ms",
        type=number_list,
        default=[0.0, 33.0, 67.0, 100.0, 167.0, 333.0],
        help="round trips to run, e.g. 0,33,100 (default: 0,33,67,100,167,333)",
    )
    parser.add_argument(
        "--profile", help="link profile for jitter, bandwidth and loss (see `splitcast link`)"
    )
    _add_checkpoint_and_data(parser, Path("out/data/val"), "clip directory")
    parser.add_argument("--clips", type=positive_int, help="only the first N clips")
    parser.add_argument(
        "--out", type=Path, default=Path("out/sweep"), help="(default: %(default)s)"
    )
    add_device_arguments(parser)
    parser.set_defaults(run=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    from splitcast.live_eval import LiveRequest
    from splitcast.sweep import SweepRequest, format_rows, run_sweep

    live = LiveRequest(
        args.checkpoint,
        args.data,
        args.out,
        clips=args.clips,
        device=args.device,
        precision=args.precision,
    )
    rows = run_sweep(SweepRequest(args.rtt_ms, live, args.profile))
    print(format_rows(rows))
    print(f"wrote {args.out / 'sweep.json'}, {args.out / 'sweep.csv'}, {args.out / 'sweep.png'}")


def add_calibrate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="choose per age how the edge combines answers, on held-out clips",
        description="Score Dedelayed on held-out clips at each delay 0..--max-delay with each "
        "candidate record of the combiner (a gain for feature fusion; a forecast weight, blur and "
        "moved-answer weight for the late average) and local-only, keep the best per delay and "
        "write a copy of the checkpoint carrying them as its per-age policy (OUT/checkpoint), "
        "calibration.json and gain_calibration.png. Refuses the checkpoint's own training clips.",
    )
    _add_checkpoint_and_data(
        parser,
        Path("out/data/calib"),
        "held-out clips, from `splitcast data build --split calib`",
        configurations=False,
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/calib"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--max-delay",
        type=positive_int,
        help="calibrate ages up to N ticks, which becomes the copy's answer horizon: older "
        "answers are not used (default: the checkpoint's horizon)",
    )
    parser.add_argument(
        "--from-age",
        type=non_negative_int,
        default=0,
        metavar="TICKS",
        help="choose records from this age on and keep the checkpoint's own for younger ages "
        "(to lengthen a calibrated checkpoint's horizon; default: %(default)s)",
    )
    parser.add_argument(
        "--combiner",
        choices=COMBINER_NAMES,
        help="calibrate this combiner and switch the copy to it (default: the checkpoint's)",
    )
    parser.add_argument(
        "--weights",
        type=number_list,
        help="gains (feature fusion) or forecast weights (late average) tried per age, e.g. "
        "0,0.5,1 (default: the combiner's); local-only is always tried too",
    )
    parser.add_argument(
        "--blurs",
        type=int_list,
        help="late average: box sides, in cells of the remote's grid, the forecast's "
        "probabilities may be averaged over, each tried with every weight; odd (default: the "
        "combiner's)",
    )
    parser.add_argument(
        "--moved-weights",
        type=number_list,
        help="late average: weights of the on-time answer moved to the current frame along the "
        "edge's optical flow, each tried with every weight and blur (default: the combiner's)",
    )
    parser.add_argument(
        "--every",
        type=positive_int,
        default=3,
        help="score every N-th target frame (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence",
        type=probability,
        default=0.9,
        help="keep a candidate other than local-only at an age only if it beats local-only in "
        "at least this fraction of bootstrap resamples of the clips; 0 keeps the best score "
        "(default: %(default)s)",
    )
    add_device_arguments(parser)
    parser.set_defaults(run=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> None:
    from splitcast.calibrate import (
        CalibrationRequest,
        calibrate,
        candidate_label,
        plotted_lines,
    )
    from splitcast.models.answers import AnswerUse

    request = CalibrationRequest(
        args.checkpoint,
        args.data,
        args.out,
        args.max_delay,
        args.from_age,
        combiner=args.combiner,
        weights=args.weights,
        blurs=args.blurs,
        moved_weights=args.moved_weights,
        every=args.every,
        confidence=args.confidence,
        device=args.device,
        precision=args.precision,
    )
    result = calibrate(request)
    candidates = [AnswerUse(**record) for record in result["candidates"]]
    lines = plotted_lines(candidates, result["gain_grid"])
    print("| age (ticks) | " + " | ".join(lines) + " | chosen |")
    print("|---" * (len(lines) + 2) + "|")
    chosen_now = result["chosen"][len(result["kept_from_checkpoint"]) :]
    for number, (delay, record) in enumerate(zip(result["delays"], chosen_now, strict=True)):
        chosen = candidate_label(AnswerUse(**record))
        values = " | ".join(f"{column[number]:.2f}" for column in lines.values())
        print(f"| {delay:g} | {values} | {chosen} |")
    print(f"local-only {result['local_only']:.2f} on {result['targets']} target frames")
    print(
        f"wrote {args.out / 'calibration.json'}, {args.out / 'gain_calibration.png'} and "
        f"{result['calibrated_checkpoint']['path']}"
    )


def _number(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or "-" when there is none (e.g. no frame used an answer)."""
    return "-" if value is None else format(value, spec)
