"""Fetch the dashboard's JavaScript and CSS from the npm registry, checked, into the tree.

``python scripts/vendor_ui_assets.py`` downloads each pinned package's tarball
from registry.npmjs.org, refuses it unless its sha512 matches the integrity
pinned below (the one the registry published), and copies the minified files
and the licence into place:

- htmx and uPlot into ``src/chatledger/ui/static/vendor/`` (served by ``chatledger ui``);
- axe-core into ``tests/assets/`` (the browser tests' accessibility check).

The files are committed, so installing chatledger needs neither Node nor the
network, and the dashboard works offline. To move to a new version, change its
``version`` and ``integrity`` (``npm view PACKAGE@VERSION dist.integrity``),
run this script, and commit what changed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    """One npm package: which version, its published integrity, and what to take from it."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as the registry's dist.integrity says
    files: dict[str, str]  # path inside the tarball (under package/) -> path in this repository

    @property
    def tarball(self) -> str:
        """The tarball's URL on the registry."""
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"


PACKAGES = (
    Package(
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        {
            "dist/htmx.min.js": "src/chatledger/ui/static/vendor/htmx/htmx.min.js",
            "LICENSE": "src/chatledger/ui/static/vendor/htmx/LICENSE",
        },
    ),
    Package(
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {
            "dist/uPlot.iife.min.js": "src/chatledger/ui/static/vendor/uplot/uPlot.iife.min.js",
            "dist/uPlot.min.css": "src/chatledger/ui/static/vendor/uplot/uPlot.min.css",
            "LICENSE": "src/chatledger/ui/static/vendor/uplot/LICENSE",
        },
    ),
    Package(
        "axe-core",
        "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        {
            "axe.min.js": "tests/assets/axe.min.js",
            "LICENSE": "tests/assets/axe-core.LICENSE",
        },
    ),
)


def _verify(package: Package, data: bytes) -> None:
    algorithm, _, expected = package.integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise SystemExit(f"{package.name}: pin a sha512 integrity, not {package.integrity!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise SystemExit(
            f"{package.name} {package.version}: the tarball's sha512 is {actual}, "
            f"not the pinned {expected}; refusing it"
        )


def fetch(package: Package) -> bytes:
    """The package's tarball, checked against its pinned integrity."""
    with urllib.request.urlopen(package.tarball, timeout=60) as response:  # noqa: S310 (https only)
        data: bytes = response.read()
    _verify(package, data)
    return data


def extract(package: Package, data: bytes) -> list[Path]:
    """Copy the package's chosen files out of its tarball; return where they went."""
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {member.name: member for member in archive.getmembers() if member.isfile()}
        for inside, target in package.files.items():
            member = members.get(f"package/{inside}")
            if member is None:
                raise SystemExit(f"{package.name} {package.version} has no {inside}")
            source = archive.extractfile(member)
            assert source is not None  # a regular file, checked above
            path = ROOT / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source.read())
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Vendor every package (or those named); print each file written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these packages (default: all)")
    args = parser.parse_args(argv)
    for package in PACKAGES:
        if args.names and package.name not in args.names:
            continue
        for path in extract(package, fetch(package)):
            print(f"{package.name} {package.version}: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
