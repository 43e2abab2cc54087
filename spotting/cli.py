"""`asl-spot`: find and name the signs in long recordings; JSON, WebVTT and ELAN out.

Bad input (a video with no frames or no signer, a .npy of unknown width, a recording
shorter than the model's T, a checkpoint that reads streams the input cannot give) gets
one line naming the file; the other INPUTs are still spotted, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model import CheckpointError, load_checkpoint
from spotting.classify import SpotError, WindowClassifier
from spotting.core import DEFAULT_WINDOW_S, SpotConfig, parse_seconds, spot, window_lengths
from spotting.inputs import add_gemma, is_landmarks, read_input
from spotting.writers import to_eaf, to_json, to_vtt


def parser() -> argparse.ArgumentParser:
    d = SpotConfig()
    p = argparse.ArgumentParser(
        prog="asl-spot",
        description="Find and name the signs in videos, .pose files, .npy landmark vectors "
        "(1662, 258, 126 or 162 a frame) or MP_Data sequence folders.",
    )
    p.add_argument("--checkpoint", required=True, help="a model from asl-train (best.pt)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument(
        "--fps",
        type=float,
        help="frames a second to read (video: default its own, at most 30; landmark files: "
        "default their own, else 30)",
    )
    p.add_argument("--json", metavar="OUT", help="write the segments as JSON ('-': stdout)")
    p.add_argument("--vtt", metavar="OUT", help="write WebVTT subtitles, one cue per sign")
    p.add_argument("--eaf", metavar="OUT", help="write an ELAN .eaf with a tier of glosses")
    p.add_argument(
        "--window-s",
        default=",".join(map(str, DEFAULT_WINDOW_S)),
        help="window lengths in seconds, around the training clips' durations (default: %(default)s)",
    )
    p.add_argument("--stride", type=int, default=d.stride, help="frames between windows")
    p.add_argument("--min-score", type=float, default=d.min_score, help="(default: %(default)s)")
    p.add_argument(
        "--min-hands",
        type=float,
        default=d.min_hands,
        help="share of a window's frames with a hand in view for it to hold a sign "
        "(default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="for the model and the Gemma encoder")
    return p


def config_for(args: argparse.Namespace, fps: float, num_frames: int) -> SpotConfig:
    """Window lengths in frames at this input's rate (never shorter than T... halved)."""
    return SpotConfig(
        window_frames=window_lengths(parse_seconds(str(args.window_s)), fps, num_frames),
        stride=args.stride,
        min_score=args.min_score,
        min_hands=args.min_hands,
    )


def output_path(option: str | None, path: Path, suffix: str, many: bool) -> Path | None:
    """OUT itself for one INPUT; for several, OUT is a folder of <input stem><suffix>."""
    if option is None or option == "-":
        return None
    out = Path(option)
    if many:
        out.mkdir(parents=True, exist_ok=True)
        return out / (path.stem + suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def spot_one(path: Path, classify: WindowClassifier, args: argparse.Namespace, many: bool) -> str:
    """Spot one INPUT and write its files; the one-line summary to print."""
    rec = read_input(path, classify, args.fps)
    config = config_for(args, rec.fps, classify.num_frames)
    add_gemma(rec, classify, config, args.device)
    result = spot(classify, rec.arrays, rec.fps, config)
    writes = {
        ".json": (args.json, lambda: to_json(result)),
        ".vtt": (args.vtt, lambda: to_vtt(result)),
        ".eaf": (args.eaf, lambda: to_eaf(result, None if is_landmarks(path) else path)),
    }
    for suffix, (option, text) in writes.items():
        if option == "-":
            sys.stdout.write(text() + "\n")
        out = output_path(option, path, suffix, many)
        if out is not None:
            out.write_text(text())
    glosses = " ".join(s.gloss for s in result.segments) or "(no sign found)"
    return f"{path}: {len(result.segments)} signs in {rec.frames / rec.fps:.1f} s: {glosses}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint, map_location=args.device)
    except CheckpointError as exc:
        print(f"asl-spot: error: {exc}", file=sys.stderr)
        return 2
    classify = WindowClassifier(ckpt, path=args.checkpoint)
    failed = 0
    many = len(args.inputs) > 1
    for name in args.inputs:
        try:
            line = spot_one(Path(name), classify, args, many)
        except (SpotError, ValueError, OSError) as exc:
            print(f"asl-spot: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(line, file=sys.stderr if args.json == "-" else sys.stdout)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
