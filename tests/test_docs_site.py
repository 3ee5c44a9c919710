"""The documentation site builds, strictly: every page, link and API reference resolves.

``make docs`` builds the same site into site/; here it is built into a
temporary folder with ``--strict``, where any warning (a broken link, a
page outside the navigation, an object mkdocstrings cannot find) fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        cwd=config.parent,
    )


def test_the_site_builds_strictly_with_its_api_reference(tmp_path: Path) -> None:
    """Every guide and reference page is built; the reference holds the stores' methods."""
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    stores = (tmp_path / "site" / "reference" / "stores" / "index.html").read_text()
    assert "save_message" in stores
    assert "for_tenant" in stores
    for guide in ("tenancy", "erasure", "secrets", "clickhouse", "scaling", "benchmarks"):
        assert (tmp_path / "site" / guide / "index.html").exists(), guide


def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path) -> None:
    """The check has teeth: a link to a missing page, or a missing object, stops the build."""
    for broken, named in (
        ("[gone](missing.md)", "missing.md"),
        ("::: chatledger.no_such_module", "chatledger.no_such_module"),
    ):
        copy = tmp_path / broken[:3].strip("[:")
        shutil.copytree(ROOT / "docs", copy / "docs")
        shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
        page = copy / "docs" / "index.md"
        page.write_text(page.read_text() + f"\n{broken}\n")
        config = copy / "mkdocs.yml"
        config.write_text(config.read_text().replace("paths: [src]", f"paths: [{ROOT / 'src'}]"))
        failed = _build(config, copy / "site")
        assert failed.returncode != 0, broken
        assert named in failed.stderr, failed.stderr
