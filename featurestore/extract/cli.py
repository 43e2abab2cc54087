"""``featurestore synth`` and ``featurestore populate``, registered on the main CLI.

The seed's flag spellings (``--model_name``, ``--num_frames``, ``--use_flash_attention``,
``--data_dir``, ``--skip_existing``) are accepted as aliases.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from .._bulk_cli import add_summary_arguments, report, sigterm_interrupts
from .defaults import DEFAULT_ENCODER, FAST_PATHS, POOLINGS, SDPA_BACKENDS
from .options import DEFAULT_SCHEDULE_TIMEOUT_S, PopulateOptions, RayCluster

if TYPE_CHECKING:
    from ..manifest import ManifestEntry
    from ..summary import PopulateSummary
    from .ray.summary import RayPopulateSummary

__all__ = ["add_subcommands"]


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x96, got {text!r}") from None
    return width, height


def _synth(args: argparse.Namespace) -> int:
    from .synth import synthesize

    manifest = synthesize(
        args.out_dir,
        classes=args.classes,
        per_class=args.per_class,
        seed=args.seed,
        frames=args.frames,
        size=args.size,
    )
    print(f"wrote {args.classes * args.per_class} clips and {manifest}")
    return 0


def _entries(args: argparse.Namespace) -> tuple[list[ManifestEntry], dict[int, str] | None]:
    from ..manifest import read_manifest, read_wlasl, scan_videos

    if args.wlasl:
        return read_wlasl(args.wlasl, args.subset)
    if args.subset:
        raise ValueError("--subset only applies to --wlasl")
    if args.manifest:
        return read_manifest(args.manifest), None
    if args.videos:
        return scan_videos(args.videos), None
    raise ValueError("populate needs --videos, --manifest or --wlasl (or --add-features NAME)")


def _check_add_features(args: argparse.Namespace) -> None:
    """``--add-features NAME`` encodes the videos the store holds: refuse what does not apply."""
    flags = {
        "--videos": args.videos,
        "--manifest": args.manifest,
        "--wlasl": args.wlasl,
        "--subset": args.subset,
        "--no-encoder": args.no_encoder,
        "--face": args.face,
        "--workers": args.workers is not None,
        "--commit-every": args.commit_every is not None,
    }
    if given := [flag for flag, on in flags.items() if on]:
        raise ValueError(
            f"--add-features encodes the videos the store holds, from their recorded "
            f"sources, one stored block at a time: {', '.join(given)} does not apply"
        )


def _options(args: argparse.Namespace, labels: dict[int, str] | None) -> PopulateOptions:
    """The run's options, from the flags."""
    return PopulateOptions(
        encoder=None if args.no_encoder else args.encoder,
        num_frames=args.num_frames,
        device=args.device,
        batch_size=args.batch_size,
        pooling=args.pooling,
        flash_attention=args.flash_attention,
        revision=args.revision,
        fast_path=args.fast_path,
        sdpa_backend=args.sdpa_backend,
        landmarks=not args.no_landmarks,
        face=args.face,
        labels=labels,
        overwrite=args.overwrite,
        limit=args.limit,
        progress=not args.quiet,
        storage_options=getattr(args, "storage_options", None) or None,
        commit_every=args.commit_every,
        workers=args.workers,
        shard_index=args.shard_index or 0,
        num_shards=args.num_shards or 1,
    )


def _cluster(args: argparse.Namespace) -> RayCluster | None:
    """With ``--ray``, the cluster to run on; without, None (this machine)."""
    if not args.ray:
        return None
    return RayCluster(
        address=None if args.ray == "local" else args.ray,
        num_workers=args.num_workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_task=args.cpus_per_task,
        schedule_timeout_s=args.schedule_timeout,
    )


def _populate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="featurestore: %(message)s")
    entries: list[ManifestEntry] = []
    labels = None
    if args.add_features:
        _check_add_features(args)
    elif args.shard_index is not None or args.num_shards is not None:
        raise ValueError("--shard-index and --num-shards only apply to --add-features")
    else:
        entries, labels = _entries(args)
    options, cluster = _options(args, labels), _cluster(args)
    with sigterm_interrupts():
        summary = _run(args.store, args.add_features, entries, options, cluster)
    return report(summary, args.summary_json)


def _run(
    store: str,
    add_features: str | None,
    entries: list[ManifestEntry],
    options: PopulateOptions,
    cluster: RayCluster | None,
) -> PopulateSummary | RayPopulateSummary:
    """Populate (or add feature set ``add_features``) on this machine or on the cluster."""
    if cluster is not None:
        from .ray.run import add_on_ray, run_on_ray

        if add_features:
            return add_on_ray(store, add_features, options, cluster)
        return run_on_ray(store, entries, options, cluster)
    from .local import add_local, run_local

    if add_features:
        return add_local(store, add_features, options)
    return run_local(store, entries, options)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``synth`` and ``populate`` on the ``featurestore`` subparsers."""
    p = sub.add_parser("synth", help="write synthetic sign-like clips and a manifest")
    p.add_argument("out_dir")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument(
        "--per-class",
        type=int,
        default=8,
        help="clips per class (default 8, a quick try; with 40 and T = 8, training from the "
        "populated store reached 95-97%% val top-1: README, The model)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=24, help="frames per clip")
    p.add_argument("--size", type=_size, default=(96, 96), help="WxH, even (default 96x96)")
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "populate",
        help="extract Gemma features and landmarks of many videos into a store",
        description="Bulk-populate a store. Videos already in it are skipped, so rerunning "
        "after an interruption does only the rest.",
    )
    p.add_argument(
        "--store", required=True, help="store URL (x.zarr, x.h5, s3://..., memory://...)"
    )
    src = p.add_mutually_exclusive_group()  # or none, with --add-features
    src.add_argument("--videos", metavar="DIR", help="a folder of videos (DIR/gloss/*.mp4 labeled)")
    src.add_argument(
        "--manifest",
        metavar="FILE",
        help="CSV/JSONL: video_id,path,gloss,split[,start_frame,end_frame]",
    )
    src.add_argument("--wlasl", "--data-dir", "--data_dir", metavar="DIR", help="a WLASL download")
    p.add_argument("--subset", help="WLASL subset file, e.g. nslt_100.json")
    p.add_argument(
        "--encoder",
        "--model-name",
        "--model_name",
        default=DEFAULT_ENCODER,
        help=f"Hugging Face id, local folder, tiny-random or gemma-3-4b-random (default {DEFAULT_ENCODER})",
    )
    p.add_argument(
        "--revision", help="model revision (branch, tag or commit) for a Hugging Face id"
    )
    p.add_argument(
        "--num-frames",
        "--num_frames",
        type=int,
        help="T, frames sampled per video (default 16; with --add-features, the store's)",
    )
    p.add_argument(
        "--device", help="cpu, cuda, cuda:1, mps (default cpu; with --ray, cuda on GPU workers)"
    )
    p.add_argument(
        "--batch-size", "--batch_size", type=int, default=64, help="frames per encoder forward"
    )
    p.add_argument("--workers", type=int, help="landmark processes (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="redo videos already in the store")
    p.add_argument(
        "--skip-existing",
        "--skip_existing",
        action="store_true",
        help="the default; accepted for the seed's scripts",
    )
    p.add_argument("--limit", type=int, help="only the first N entries")
    p.add_argument("--no-landmarks", action="store_true", help="encoder features only")
    p.add_argument("--no-encoder", action="store_true", help="landmarks only")
    p.add_argument("--face", action="store_true", help="add a face subset to the landmarks")
    p.add_argument("--pooling", choices=POOLINGS, default="mean_soft_tokens")
    p.add_argument(
        "--flash-attention",
        "--use-flash-attention",
        "--use_flash_attention",
        action="store_true",
        help="flash_attention_2 when installed (CUDA), else SDPA",
    )
    p.add_argument(
        "--fast-path",
        choices=FAST_PATHS,
        default="auto",
        help="compile the encoder's forward (torch.compile, cached in ~/.cache/signstore/"
        "inductor or $TORCHINDUCTOR_CACHE_DIR; the first run per batch size compiles, "
        "about 40 s on an H200); auto: on for CUDA, off elsewhere; same features either way",
    )
    p.add_argument(
        "--sdpa-backend",
        choices=SDPA_BACKENDS,
        default="auto",
        help="attention kernel of the encoder (default auto: PyTorch's choice, cuDNN on an H200)",
    )
    p.add_argument("--commit-every", type=int, help="commit every N videos (default: every block)")
    add = p.add_argument_group(
        "adding a feature set to a populated store (no manifest: the store's videos)"
    )
    add.add_argument(
        "--add-features",
        metavar="NAME",
        help="encode the stored videos again with --encoder (and --pooling...) from their "
        "recorded sources and frame ranges, into feature set NAME; landmarks are kept, "
        "MediaPipe never runs; rerun to resume; train with asl-train --features NAME",
    )
    add.add_argument(
        "--shard-index",
        type=int,
        metavar="I",
        help="with --num-shards N: this process adds every N-th stored block, from the I-th "
        "(0-based), so N processes can add one set at once",
    )
    add.add_argument("--num-shards", type=int, metavar="N", help="processes sharing the add")
    add_summary_arguments(p)
    ray = p.add_argument_group("Ray (pip install '.[ray]'; see docs/scale-out.md)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: a cluster address (auto, ray://host:10001) or, bare, a local Ray",
    )
    ray.add_argument(
        "--num-workers",
        type=int,
        help="encoder actors (default: one per GPU in the cluster, else one per 4 CPUs)",
    )
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per encoder actor (default: 1 when the cluster has GPUs, else 0)",
    )
    ray.add_argument(
        "--cpus-per-task", type=float, default=1, help="CPUs per decode+landmarks task"
    )
    ray.add_argument(
        "--schedule-timeout",
        type=float,
        default=DEFAULT_SCHEDULE_TIMEOUT_S,
        metavar="SECONDS",
        help="stop when Ray leaves a worker or the decode tasks unscheduled this long "
        f"(default {DEFAULT_SCHEDULE_TIMEOUT_S:g}); committed videos stay, a rerun resumes",
    )
    p.set_defaults(func=_populate)
