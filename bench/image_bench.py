"""What each Docker image weighs, and what in its venv weighs it: the server (the default target), viz and train.

Builds the three targets with the Dockerfile as it is, in the running Docker daemon or one of its own (as the
deployment tests do: tests/docker_daemon.py), on python:3.11-slim or, where that cannot be pulled, a Debian
stand-in made with debootstrap; prints each image's size as `docker image inspect` reports it and the largest
packages of its venv; removes what it built.

Usage:
    ./dev run python bench/image_bench.py
    ./dev run python bench/image_bench.py --packages 25
    git worktree add /tmp/before 3799587 && ./dev run python bench/image_bench.py --checkout /tmp/before --targets runtime train
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the deployment tests' daemon helpers

from tests.docker_daemon import BASE_IMAGE, Docker, daemon, debian_image, host_ca_bundle, run  # noqa: E402

TARGETS = ("runtime", "viz", "train")
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"


def build(docker: Docker, checkout: Path, target: str, tag: str) -> float:
    """Build one target of the checkout's Dockerfile; return the seconds it took."""
    cafile = host_ca_bundle()  # a TLS-intercepting proxy's CA lives in the host's bundle
    secret = ["--secret", f"id=pip-ca,src={cafile}"] if cafile else []
    started = time.perf_counter()
    run(docker.cli, "build", *secret, "--target", target, "-t", tag, str(checkout), env={**docker.env, "DOCKER_BUILDKIT": "1"}, timeout=1800)
    return time.perf_counter() - started


def packages(docker: Docker, tag: str, count: int) -> list[tuple[str, float]]:
    """The largest entries of the image's site-packages (a package and its .pyc files), in MB."""
    listing = docker("run", "--rm", "--entrypoint", "sh", tag, "-c", f"du -sk {SITE_PACKAGES}/* | sort -rn | head -{count}").stdout
    return [(Path(path).name, int(kilobytes) / 1024) for kilobytes, path in (line.split("\t") for line in listing.splitlines())]


def main() -> None:
    """Build, measure, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=12, help="largest packages to list per image")
    parser.add_argument("--checkout", type=Path, default=REPO, help="the checkout whose Dockerfile to build (default: this one)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help=f"targets to build (default: {' '.join(TARGETS)})")
    args = parser.parse_args()
    stamp = uuid.uuid4().hex[:8]
    with daemon() as docker, debian_image(docker) as debian:
        stand_in = docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0
        if stand_in and docker("pull", BASE_IMAGE, check=False, timeout=120).returncode != 0:
            docker("tag", debian, BASE_IMAGE)
        base_mb = int(docker("image", "inspect", "-f", "{{.Size}}", BASE_IMAGE).stdout) / 1e6
        print(f"# base {BASE_IMAGE}{' (a Debian stand-in: no registry)' if stand_in else ''}: {base_mb:.1f} MB")
        print("| image (target) | size | venv | build s |\n|---|---:|---:|---:|")
        listings = {}
        try:
            for target in args.targets:
                tag = f"digitnet-bench-{target}:{stamp}"
                seconds = build(docker, args.checkout, target, tag)
                size = int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout) / 1e6
                venv = int(docker("run", "--rm", "--entrypoint", "du", tag, "-sk", "/opt/venv").stdout.split()[0]) / 1024
                print(f"| {target} | {size:.1f} MB | {venv:.1f} MB | {seconds:.0f} |", flush=True)
                listings[target] = packages(docker, tag, args.packages)
        finally:
            docker("rmi", "-f", *(f"digitnet-bench-{target}:{stamp}" for target in args.targets), check=False)
            if stand_in:
                docker("rmi", BASE_IMAGE, check=False)
        for target, listing in listings.items():
            print(f"\n{target}: largest in {SITE_PACKAGES}\n| package | MB |\n|---|---:|")
            print("\n".join(f"| {name} | {mb:.1f} |" for name, mb in listing))


if __name__ == "__main__":
    main()
