"""The documentation site builds with warnings as errors, and the build's checks have teeth.

The full build (every page plus the API reference from the docstrings) must pass; small
throwaway sites prove that a broken link and an undocumented public function do fail it, and
that a page missing from the navigation still builds (under "More").
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_peer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(autouse=True)
def generator():
    """The generator is in the test extra; a checkout without it skips (CI fails instead)."""
    for module in ("sphinx", "myst_parser", "furo"):
        need_peer(importlib.util.find_spec(module) is not None, f"the {module} package")


def build(src: Path, out: Path, timeout: float = 50) -> subprocess.CompletedProcess:
    """The README's docs command, into ``out``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(src), str(out)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def small_site(tmp_path: Path, pages: dict[str, str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    for name, text in {"index.md": "# Home\n\nA test site.\n", **pages}.items():
        (src / name).write_text(text)
    return src


@pytest.mark.timeout(60)
def test_site_builds_without_warnings(tmp_path):
    proc = build(DOCS, tmp_path / "html")
    assert proc.returncode == 0, f"docs build failed:\n{proc.stdout}\n{proc.stderr}"
    html = tmp_path / "html"
    for page in ("index", "concepts", "benchmarks", "migrating-from-gevent",
                 "migrating-from-eventlet", "migrating-from-asyncio", "choosing"):
        assert (html / f"{page}.html").exists(), page
    core = (html / "api" / "core.html").read_text()
    for name in ("dhaga.spawn", "dhaga.Dhaga.kill", "dhaga.timeout", "dhaga.Group"):
        assert f'id="{name}"' in core, name
    for page, name in (("sync", "dhaga.sync.Queue"), ("pool", "dhaga.pool.Pool"),
                       ("net", "dhaga.net.StreamServer"), ("rpc", "dhaga.rpc.Client"),
                       ("mq", "dhaga.mq.Socket"), ("web", "dhaga.web.WSGIServer"),
                       ("monkey", "dhaga.monkey.patch_all")):
        assert f'id="{name}"' in (html / "api" / f"{page}.html").read_text(), name


def test_broken_link_fails_the_build(tmp_path):
    src = small_site(tmp_path, {"guide.md": "# Guide\n\nSee [the missing page](missing.md).\n"})
    proc = build(src, tmp_path / "html")
    assert proc.returncode != 0
    assert "missing.md" in proc.stderr


def test_undocumented_public_function_fails_the_build(tmp_path):
    pkg = tmp_path / "undocumented_mod.py"
    pkg.write_text('"""A module."""\n\n__all__ = ["f"]\n\n\ndef f(x):\n    return x\n')
    src = small_site(tmp_path, {"ref.md": "# Ref\n\n```{automodule} undocumented_mod\n```\n"})
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(src), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=50, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"),
    )
    assert proc.returncode != 0
    assert "undocumented_mod.f has no docstring" in proc.stderr


def test_page_left_out_of_the_navigation_still_builds(tmp_path):
    src = small_site(tmp_path, {"new-page.md": "# A new page\n\nNobody listed me.\n"})
    proc = build(src, tmp_path / "html")
    assert proc.returncode == 0, proc.stderr
    index = (tmp_path / "html" / "index.html").read_text()
    assert 'href="new-page.html"' in index and "More" in index
