"""The whole job, offline, on the embedded defaults (what `make demo` runs).

synthesize sign-like clips -> populate a Zarr store (tiny-random Gemma 3 + MediaPipe
Holistic) -> train -> evaluate -> serve on 127.0.0.1 -> predict by id and from an upload
-> summary. Each step reuses what a previous run left, so a rerun finishes quickly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ warnings drown the progress output


#: Where `asl-serve`'s defaults (127.0.0.1:8000) put the web page.
PAGE_URL = "http://127.0.0.1:8000/"


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(*args: str) -> None:
    print("$ " + " ".join(args), flush=True)
    done = subprocess.run(args)
    if done.returncode:
        raise SystemExit(
            f"demo: {Path(args[0]).name} failed (exit {done.returncode}), see above. If the "
            "--out folder holds a run made with other settings or an earlier version, "
            "delete it and run again."
        )


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name) or name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not become ready in time")


def pass_stderr(proc: subprocess.Popen) -> None:
    """The server's log lines, without MediaPipe's per-clip C++ chatter."""
    from featurestore.extract.holistic import MEDIAPIPE_CHATTER

    for line in proc.stderr:
        if not line.startswith(MEDIAPIPE_CHATTER):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def query_server(store: Path, checkpoint: Path, clip: Path, video_id: str) -> dict:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        tool("asl-serve"),
        "--store",
        str(store),
        "--checkpoint",
        str(checkpoint),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    threading.Thread(target=pass_stderr, args=(proc,), daemon=True).start()
    try:
        wait_ready(base, proc)
        by_id = httpx.post(
            f"{base}/v1/predict", json={"video_ids": [video_id], "top_k": 3}, timeout=60
        )
        by_id.raise_for_status()
        with open(clip, "rb") as f:
            upload = httpx.post(
                f"{base}/v1/predict/video",
                files={"file": (clip.name, f, "video/mp4")},
                data={"top_k": "3"},
                timeout=300,
            )
        upload.raise_for_status()
        page = httpx.get(f"{base}/", timeout=30)  # the web page that the summary points to
        page.raise_for_status()
        return {
            "by_id": by_id.json(),
            "upload": upload.json(),
            "url": base,
            "page": "text/html" in page.headers.get("content-type", ""),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> dict:
    """Run every step; return what the summary prints (tests check it)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="demo_out", help="where clips, store and checkpoints go")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--num-frames", type=int, default=8, help="T, frames sampled per clip")
    p.add_argument("--epochs", type=int, default=None, help="default: asl-train's")
    p.add_argument("--workers", type=int, default=2, help="landmark processes")
    p.add_argument("--no-serve", action="store_true", help="skip the HTTP step")
    args = p.parse_args(argv)

    out = Path(args.out)
    clips, store, run_dir = out / "clips", out / "store.zarr", out / "run"
    t0 = time.time()

    step(f"1/5 synthesize {args.classes} classes x {args.per_class} clips -> {clips}")
    manifest = clips / "manifest.csv"
    if manifest.exists():
        print(f"reusing {manifest}")
    else:
        run(
            tool("featurestore"),
            "synth",
            str(clips),
            "--classes",
            str(args.classes),
            "--per-class",
            str(args.per_class),
            "--seed",
            "0",
        )

    step(
        f"2/5 populate {store} (tiny-random Gemma 3 + MediaPipe Holistic; committed videos are skipped)"
    )
    run(
        tool("featurestore"),
        "populate",
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--encoder",
        "tiny-random",
        "--num-frames",
        str(args.num_frames),
        "--device",
        "cpu",
        "--workers",
        str(args.workers),
    )
    run(tool("featurestore"), "verify", str(store), "--quiet")

    step(f"3/5 train -> {run_dir}")
    best = run_dir / "best.pt"
    if best.exists():
        print(f"reusing {best} (delete {run_dir} to retrain)")
    else:
        epochs = [] if args.epochs is None else ["--epochs", str(args.epochs)]
        run(
            tool("asl-train"),
            "--store",
            str(store),
            *epochs,
            "--out",
            str(run_dir),
            "--device",
            "cpu",
            "--workers",
            "0",
        )

    step("4/5 evaluate on the test split")
    eval_dir = run_dir / "eval"
    run(
        tool("asl-eval"),
        "--store",
        str(store),
        "--checkpoint",
        str(best),
        "--split",
        "test",
        "--out",
        str(eval_dir),
    )
    report = json.loads((eval_dir / "report.json").read_text())

    served = None
    if not args.no_serve:
        step("5/5 serve on 127.0.0.1 and query a prediction by id and from an uploaded clip")
        with open(manifest) as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
        row = rows[0]
        clip = Path(row["path"]) if os.path.isabs(row["path"]) else clips / row["path"]
        served = query_server(store, best, clip, row["video_id"])
        top = served["by_id"]["predictions"][0]["top_k"][0]
        print(
            f"by id   {row['video_id']} (true {row['gloss']}): {top['gloss']} p={top['prob']:.2f}"
        )
        top = served["upload"]["predictions"][0]["top_k"][0]
        print(f"upload  {clip.name} (true {row['gloss']}): {top['gloss']} p={top['prob']:.2f}")

    step("summary")
    info = json.loads(
        subprocess.run(
            [tool("featurestore"), "info", str(store), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(
        f"store       {store}  {info['videos']} videos, {size / 1e6:.1f} MB, splits {info['splits']}"
    )
    print(
        f"accuracy    test top-1 {report['top1']:.1%}   top-5 {report['top5']:.1%}   "
        f"(chance {1 / max(1, info['num_classes']):.0%}; tiny-random has random weights, so "
        "this shows the pipeline learns, not how well Gemma 3 recognises real signs)"
    )
    print(f"checkpoint  {best}")
    print(f"plots       {run_dir}/*.png, confusion matrix in {eval_dir}")
    print(f"time        {time.time() - t0:.0f} s")
    print(f"next        source {BIN}/activate")
    print("            featurestore info " + str(store))
    print("            see README.md 'Real use on WLASL' for Gemma 3 on a GPU")
    print(f"web page    {BIN}/asl-serve --store {store} --checkpoint {best}")
    print(
        f"            then open {PAGE_URL} in a browser: try a sign from the webcam, live "
        "recognition, browse the store and the model (API docs at /docs)"
    )
    return {
        "store": str(store),
        "checkpoint": str(best),
        "info": info,
        "report": report,
        "served": served,
        "test_row": row if served else None,
        "page_url": PAGE_URL,
    }


if __name__ == "__main__":
    main()
