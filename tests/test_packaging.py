"""The installation the docs describe is the one the metadata and CI give.

Plain file checks (no install): version ranges rather than exact pins in the
library's metadata, CI's pins in a constraints file that `.ci/run` passes to
pip, Pillow declared (the PNG grids import it), no `pip install keras-gcm` in
the docs while there is no release, and a `site_url` for the docs site.
"""

import pathlib
import re
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements():
    project = _project()
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    return reqs


def test_metadata_carries_ranges_not_exact_pins():
    pinned = [req for req in _requirements() if re.search(r"===?\s*[\d*]", req)]
    assert pinned == [], f"exact pins belong in .ci/constraints.txt, not the metadata: {pinned}"
    torch = [req for req in _project()["optional-dependencies"]["torch"] if req.startswith("torch")]
    assert torch and ">=" in torch[0]


def test_ci_pins_the_cpu_torch_through_a_constraints_file():
    constraints = (ROOT / ".ci" / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", constraints, re.M)
    run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install .*-c \.ci/constraints\.txt", run)


def test_pillow_is_declared_where_it_is_used():
    users = [path for path in (ROOT / "keras_gcm").rglob("*.py")
             if re.search(r"^\s*(from PIL|import PIL)", path.read_text(), re.M)]
    assert users, "nothing imports Pillow any more: drop it from the dependencies"
    assert any(re.match(r"pillow\b", req, re.I) for req in _project()["dependencies"])


@pytest.mark.parametrize("path", ["README.md", "docs/installation.md", "docs/quickstart.md",
                                  "docs/index.md"])
def test_docs_install_from_the_source_tree(path):
    text = (ROOT / path).read_text()
    # No release exists: `pip install keras-gcm` / "keras-gcm[jax]" would fail.
    assert not re.search(r"pip install[^\n`]*\bkeras[-_]gcm\b", text), path


def test_readme_quick_start_is_two_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in quick.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands == ['pip install ".[jax]" && python recipes/toy2d.py',
                        'pip install -e ".[dev]" && KERAS_BACKEND=jax python -m pytest -q']


def test_gpu_installs_are_documented_per_backend():
    text = (ROOT / "docs" / "installation.md").read_text()
    for needle in ('jax[cuda12]', 'tensorflow[and-cuda]', 'download.pytorch.org/whl/cu'):
        assert needle in text


def test_docs_site_has_a_site_url():
    assert re.search(r"^site_url:\s*https?://\S+", (ROOT / "mkdocs.yml").read_text(), re.M)
