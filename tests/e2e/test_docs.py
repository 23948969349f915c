"""The documentation site builds strictly, and the code of its guides runs.

Each page's fenced blocks tagged ``python`` are joined in order into one script and run
in a fresh interpreter (so a guide may set up JAX or NumPyro devices before anything
else does); blocks tagged ``py`` are illustrations (e.g. neural-tangents code) and are
not run. The site build needs the ``docs`` extra (``pip install -e .[docs]``).
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNNABLE = [
    "index.md",
    "guides/from-neural-tangents.md",
    "guides/numpyro-priors.md",
    "guides/calibration-study.md",
]
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    """The runnable code of a Markdown page: its ```python blocks, in order."""
    return _BLOCK.findall(page.read_text())


def _env():
    env = dict(os.environ)
    env.setdefault("NTK_BAYES_JAX_CACHE", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return env


_PRELUDE = """\
import os, jax
_cache = os.environ.get("NTK_BAYES_JAX_CACHE")
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
"""


@pytest.mark.parametrize("page", RUNNABLE)
def test_guide_code_runs(page, tmp_path):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no ```python block"
    # the prelude would import JAX before a guide's own first lines: only when the guide
    # does not configure devices itself
    prelude = "" if "set_host_device_count" in blocks[0] else _PRELUDE
    script = tmp_path / "guide.py"
    script.write_text(prelude + "\n\n".join(blocks))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"{page} failed after {seconds:.0f} s:\n{proc.stderr[-4000:]}"
    print(f"{page}: {seconds:.1f} s")


def test_runnable_pages_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in RUNNABLE:
        assert page in nav, page


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "mkdocstrings", "latex2mathml")),
    reason="the docs extra is not installed (pip install -e .[docs])",
)
def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**_env(), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]
    home = (site / "index.html").read_text()
    assert "guides/numpyro-priors/" in home  # the home page links the guides
    gp_page = (site / "gp" / "index.html").read_text()
    assert "<math" in gp_page and 'class="arithmatex"' not in gp_page  # rendered at build
    for page in site.rglob("*.html"):  # nothing fetched from the network
        text = page.read_text()
        assert not re.search(r"(src|href)=\"https?://[^\"]*\.(js|css)", text), page
        assert "fonts.googleapis" not in text, page
    api = {p.parent.name for p in site.glob("api-*/index.html")}
    expected = {
        "bnn", "calibrate", "datasets", "diagnostics", "empirical", "gp", "predict",
        "priors", "stax", "theory",
    }  # fmt: skip
    assert {f"api-{m}" for m in expected} <= api
