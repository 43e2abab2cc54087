"""``featurestore import FORMAT SOURCE [SOURCE ...] --store STORE``, registered on the main CLI.

For ``seed-npy`` the seed's ``train_simple.py`` spellings (``--gemma_features_dir``,
``--landmarks_dir``, ``--data_dir``, ``--num_frames``) are accepted too.
"""

from __future__ import annotations

import argparse

from .._bulk_cli import add_summary_arguments, report, sigterm_interrupts
from . import FORMATS, import_dataset

__all__ = ["add_subcommands"]


def _format_options(args: argparse.Namespace) -> dict:
    if args.format != "seed-npy":
        for flag in ("landmarks_dir", "wlasl", "subset"):
            if getattr(args, flag):
                raise ValueError(f"--{flag.replace('_', '-')} only applies to seed-npy")
        return {}
    return {"landmarks_dir": args.landmarks_dir, "wlasl": args.wlasl, "subset": args.subset}


def _import(args: argparse.Namespace) -> int:
    sources = list(args.sources) + ([args.gemma_features_dir] if args.gemma_features_dir else [])
    with sigterm_interrupts():
        summary = import_dataset(
            args.format,
            sources,
            args.store,
            num_frames=args.num_frames,
            split=args.split,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            split_by=args.split_by,
            signers=args.signers,
            test_signers=args.test_signers.split(",") if args.test_signers else None,
            face=args.face,
            overwrite=args.overwrite,
            progress=not args.quiet,
            storage_options=getattr(args, "storage_options", None) or None,
            **_format_options(args),
        )
    return report(summary, args.summary_json)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``import`` on the ``featurestore`` subparsers."""
    p = sub.add_parser(
        "import",
        help="import existing landmarks/features (MP_Data trees, Kaggle ISLR, .pose, the seed's .npy)",
        description="Import landmark datasets or the seed's .npy features into a store, in the "
        "streams and layout populate writes. Rerunning skips what the same source committed.",
    )
    p.add_argument("format", choices=list(FORMATS))
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="mpdata: folders or zips of <gloss>/<sequence>/<frame>.npy; kaggle-islr: train.csv "
        "or its folder; pose: .pose files or folders (<gloss>/<name>.pose); seed-npy: the "
        "folder of {video_id}_gemma.npy",
    )
    p.add_argument("--store", required=True, help="store URL (x.zarr, x.h5, s3://...)")
    p.add_argument(
        "--num-frames",
        "--num_frames",
        type=int,
        help="T (default: the store's, else the sources' own length when all agree, else 16)",
    )
    p.add_argument("--split", help="put every imported sequence into this split")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument(
        "--split-by",
        choices=["sequence", "signer"],
        default="sequence",
        help="signer: whole signers to train/val/test, so no signer is in two splits",
    )
    p.add_argument(
        "--signers",
        metavar="CSV",
        help="gloss,sequence,recorded_by|signer|participant_id: each sequence's signer",
    )
    p.add_argument(
        "--test-signers", metavar="A,B", help="these signers' sequences make the test split"
    )
    p.add_argument(
        "--face",
        action="store_true",
        help="keep the face subset (as populate --face); a store that has one keeps it",
    )
    p.add_argument("--overwrite", action="store_true", help="redo sequences already in the store")
    add_summary_arguments(p)
    seed = p.add_argument_group("seed-npy")
    seed.add_argument(
        "--gemma-features-dir", "--gemma_features_dir", metavar="DIR", help="same as SOURCE"
    )
    seed.add_argument(
        "--landmarks-dir", "--landmarks_dir", metavar="DIR", help="{video_id}_landmarks.npy"
    )
    seed.add_argument(
        "--wlasl", "--data-dir", "--data_dir", metavar="DIR", help="WLASL folder (labels, splits)"
    )
    seed.add_argument("--subset", help="WLASL subset file, e.g. nslt_100.json")
    p.set_defaults(func=_import)
