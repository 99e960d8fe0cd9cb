"""Benchmark `digitnet score` against decoding alone, on generated 28x28 PNGs and 140x140 JPEG scans.

The floor is the faster of the two decoders the project ships (Pillow, OpenCV), each reading the file
and decoding it to greyscale at full size, in as many processes as the job uses.

Run: ./dev run python bench/score_bench.py [--images 10000] [--workers N]
Prints a markdown table (images/s, and peak memory against folder size); docs/benchmarks.md records it.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from digitnet.service.batch.job import LocalBackend, ServerBackend, walk
from digitnet.service.batch.score import ScoreJob, run_job
from digitnet.service.contract.constants import available_cpus
from digitnet.training.data import load_mnist5k

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default.onnx"


def make_images(folder: Path, count: int, kind: str) -> None:
    """Write `count` real MNIST digits as 28x28 PNGs ("png") or 140x140 dark-on-light JPEG scans ("jpeg")."""
    digits = load_mnist5k()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = digits.images[i % len(digits)].reshape(28, 28)
        label = digits.labels[i % len(digits)]
        (folder / str(label)).mkdir(exist_ok=True)
        buffer = io.BytesIO()
        if kind == "png":
            Image.fromarray(pixels).save(buffer, "PNG")
        else:
            scan = Image.fromarray(245 - (pixels * 0.9).astype(np.uint8)).resize((140, 140), Image.Resampling.BICUBIC)
            scan.save(buffer, "JPEG", quality=85)
        (folder / str(label) / f"{i:06d}.{kind}").write_bytes(buffer.getvalue())


def _hold() -> None:
    time.sleep(0.2)


def _decode_pillow(paths: list[str]) -> int:
    for path in paths:
        with Image.open(path) as image:
            image.convert("L").load()
    return len(paths)


def _decode_opencv(paths: list[str]) -> int:
    import cv2

    cv2.setNumThreads(1)
    for path in paths:
        cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return len(paths)


DECODERS = {"Pillow": _decode_pillow, "OpenCV": _decode_opencv}


def decode_only(folder: Path, workers: int, decoder: str, chunk: int = 64) -> float:
    """Images per second for reading and decoding alone (one of DECODERS), in the same number of processes."""
    paths = [str(p) for p in walk([folder]) if isinstance(p, str | Path)]  # Path: the walk of older versions
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_hold) for _ in range(workers)]:  # start every worker before the clock
            future.result()
        pool.submit(DECODERS[decoder], chunks[0]).result()  # imports done, files cached, before the clock
        started = time.perf_counter()
        done = sum(pool.map(DECODERS[decoder], chunks))
    return done / (time.perf_counter() - started)


def score_rate(folder: Path, backend: LocalBackend | ServerBackend) -> float:
    """Images per second for a whole `digitnet score` job (walk, score, write CSV), workers already started."""
    if isinstance(backend, LocalBackend):
        backend.start()  # every worker started and its model loaded before the clock
    with tempfile.TemporaryDirectory() as scratch:
        job = ScoreJob(roots=[folder], out=Path(scratch) / "out.csv", quiet=True)
        summary = run_job(job, backend)
    return summary.scored_now / summary.seconds


def peak_memory_mb(folder: Path, workers: int) -> tuple[float, float]:
    """Peak RSS (MB) of the `digitnet score` process and of its largest worker, for a whole run."""
    probe = (
        "import resource, sys; from digitnet.service.cli.main import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                "score",
                str(folder),
                "--model",
                str(MODEL),
                "--out",
                f"{scratch}/o.csv",
                "--quiet",
                "--workers",
                str(workers),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
    main_kb, child_kb = (int(v) for v in done.stdout.split())
    return main_kb / 1024, child_kb / 1024


def main() -> None:
    """Generate the data, measure every configuration, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=available_cpus())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        print(f"{args.workers} worker processes, {args.images} images per folder\n")
        print(
            "| images | decode only, Pillow (img/s) | decode only, OpenCV (img/s) | digitnet score in-process (img/s) "
            "| ratio to the faster decoder | through a server (img/s) | ratio server / in-process |"
        )
        print("|---|---|---|---|---|---|---|")
        server = subprocess.Popen(
            # As many server processes as scoring processes: both sides get every core.
            [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", "50391", "--workers", str(args.workers)],
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            time.sleep(4)
            for kind, label in (("png", "28x28 PNG"), ("jpeg", "140x140 JPEG")):
                folder = root / kind
                make_images(folder, args.images, kind)
                decode = {name: decode_only(folder, args.workers, name) for name in DECODERS}
                local = LocalBackend(MODEL, args.workers)
                try:
                    ours = score_rate(folder, local)
                finally:
                    local.close()
                remote = ServerBackend("127.0.0.1:50391", args.workers)
                try:
                    through_server = score_rate(folder, remote)
                finally:
                    remote.close()
                floor = max(decode.values())
                print(
                    f"| {label} | {decode['Pillow']:,.0f} | {decode['OpenCV']:,.0f} | {ours:,.0f} | {ours / floor:.2f} "
                    f"| {through_server:,.0f} | {through_server / ours:.2f} |",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait()
        print("\n| files in folder | peak RSS, main process (MB) | peak RSS, largest worker (MB) |")
        print("|---|---|---|")
        small = root / "png-small"
        make_images(small, args.images // 5, "png")
        for folder, count in ((small, args.images // 5), (root / "png", args.images)):
            main_mb, worker_mb = peak_memory_mb(folder, args.workers)
            print(f"| {count:,} | {main_mb:.0f} | {worker_mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
