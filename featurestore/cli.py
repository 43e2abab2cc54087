"""``featurestore`` command line: inspect, read, verify and compact stores (and, from
``featurestore.extract``, synthesize clips and populate stores)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable

import numpy as np

from ._version import __version__
from .compact import DEFAULT_GRACE_S
from .errors import StoreError
from .store import open_store


def _info(args: argparse.Namespace) -> int:
    info = open_store(args.store, storage_options=args.storage_options).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store      {info['url']}  ({info['backend']}, schema v{info['schema_version']})")
    print(
        f"videos     {info['videos']}  " + "  ".join(f"{k}={v}" for k, v in info["splits"].items())
    )
    print(f"frames     T={info['num_frames']}   block size {info['block_size']}")
    for name, s in info["streams"].items():
        print(f"stream     {name:<14} {tuple(s['shape'])} {s['dtype']}")
    enc = info["encoder"]
    print(
        f"encoder    {enc.get('model_id', '-')}  dim={enc.get('feature_dim', '-')}  pooling={enc.get('pooling', '-')}"
    )
    for name, f in info["feature_sets"].items():
        print(
            f"features   {name:<14} {f['encoder']}  fingerprint {f['fingerprint']}  width {f['width']}"
            f"  videos {f['videos']}  failures {f['failures']}  ({f['stored']})"
        )
    print(
        f"classes    {info['num_classes']}   failures {info['failures']}   segments {info['segments']}"
    )
    return 0


def _drop_features(args: argparse.Namespace) -> int:
    store = open_store(args.store, "r+", storage_options=args.storage_options)
    result = store.drop_feature_set(args.name)
    print(
        f"dropped feature set {args.name!r} ({result['rows']} rows; "
        f"removed {result['segments_removed']} segment(s))"
    )
    return 0


def _ls(args: argparse.Namespace) -> int:
    store = open_store(args.store, storage_options=args.storage_options)
    ids = store.ids(args.split)
    if args.json:
        rows = []
        for vid in ids:
            e = store.entry(vid)
            rows.append({"video_id": vid, "label": e.label, "gloss": e.gloss, "split": e.split})
        print(json.dumps(rows, indent=1))
    else:
        for vid in ids:
            e = store.entry(vid)
            print(f"{vid}\t{e.split}\t{e.label}\t{e.gloss}")
    return 0


def _get(args: argparse.Namespace) -> int:
    store = open_store(args.store, storage_options=args.storage_options)
    video = store.get(args.video_id, [args.stream] if args.stream else None)
    if args.out:
        if not args.stream and len(video.arrays) > 1:
            np.savez(args.out, **video.arrays)
        else:
            np.save(args.out, next(iter(video.arrays.values())))
        print(f"wrote {args.out}")
        return 0
    if args.stream and not sys.stdout.isatty():
        buf = io.BytesIO()
        np.save(buf, video.arrays[args.stream])
        sys.stdout.buffer.write(buf.getvalue())
        return 0
    meta = {
        "video_id": video.video_id,
        "label": video.label,
        "gloss": video.gloss,
        "split": video.split,
        "source": video.source,
        "arrays": {
            k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in video.arrays.items()
        },
    }
    print(json.dumps(meta, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    store = open_store(args.store, storage_options=args.storage_options)
    problems = store.verify(progress=not args.quiet)
    for p in problems:
        print(f"PROBLEM {p}")
    print(f"{len(store)} videos checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def _compact(args: argparse.Namespace) -> int:
    store = open_store(args.store, "r+", storage_options=args.storage_options)
    result = store.compact(progress=not args.quiet, grace_s=args.grace, force=args.force)
    kept = f" (their bytes go after {args.grace:g} s, at a later compact)" if args.grace > 0 else ""
    print(
        f"compacted {result['videos']} videos; removed {result['segments_removed']} "
        f"segment(s){kept}; purged {result['segments_purged']} from earlier compacts"
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    store = open_store(args.store, "r+", storage_options=args.storage_options)
    count = store.delete(args.video_ids)
    print(f"deleted {count} video(s); `featurestore compact` reclaims their bytes")
    return 0


def _repair_labels(args: argparse.Namespace) -> int:
    store = open_store(args.store, "r+", storage_options=args.storage_options)
    fixed = store.repair_labels(dry_run=args.dry_run)
    for line in fixed:
        print(line)
    verb = "would fix" if args.dry_run else "fixed"
    print(f"{verb} the label of {len(fixed)} video(s)")
    return 0


def _storage_options(pairs: list[str]) -> dict:
    opts = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"featurestore: --storage-option expects key=value, got {pair!r}")
        opts[key] = _option_value(value)
    return opts


def _option_value(text: str):
    """``true``/``false``/numbers become JSON values so ``anon=false`` means False."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _store_command(
    sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    """``featurestore NAME STORE ...``: a subcommand on one store, run by ``func``."""
    p = sub.add_parser(name, help=help)
    p.add_argument("store")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featurestore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"featurestore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="fsspec storage option for remote stores (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = _store_command(sub, "info", _info, "summary of a store")
    p.add_argument("--json", action="store_true")

    p = _store_command(sub, "ls", _ls, "list video ids (and split, label, gloss)")
    p.add_argument("--split")
    p.add_argument("--json", action="store_true")

    p = _store_command(sub, "get", _get, "one video's metadata, or a stream as .npy")
    p.add_argument("video_id")
    p.add_argument("--stream", help="only this stream (written as .npy to --out or a piped stdout)")
    p.add_argument("--out", help="write .npy (one stream) or .npz (all streams)")

    p = _store_command(sub, "verify", _verify, "read back every video; exit 1 on any problem")
    p.add_argument("--quiet", action="store_true")

    p = _store_command(
        sub, "compact", _compact, "merge segments (refused while a writer runs; readers go on)"
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help="keep the old segments this long for readers still on the old index; a later "
        "compact deletes them (0: delete now; readers then re-read the index)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run even though writers are registered (only when they are known to be gone)",
    )

    p = _store_command(sub, "delete", _delete, "remove videos (compact reclaims their bytes)")
    p.add_argument("video_ids", nargs="+", metavar="VIDEO_ID")

    p = _store_command(
        sub, "repair-labels", _repair_labels, "give videos whose label names another gloss theirs"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would change")

    p = _store_command(
        sub,
        "drop-features",
        _drop_features,
        "remove a feature set (an added one; base gemma's bytes go at the next compact)",
    )
    p.add_argument("name", help="the feature set's name (featurestore info lists them)")

    from .extract.cli import add_subcommands  # a broken install must fail here, not hide populate

    add_subcommands(sub)
    from .importers.cli import add_subcommands as add_import

    add_import(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.storage_options = _storage_options(args.storage_option)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("featurestore: interrupted", file=sys.stderr)
        return 130
    except (StoreError, OSError, ValueError, PermissionError) as e:
        if args.debug:
            raise
        print(f"featurestore: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
