"""MkDocs hooks of the keras_gcm docs (`hooks:` in mkdocs.yml).

1. Notebooks. For every `docs/**/*.ipynb` the hook runs the notebook with
`nbclient` (in the repository root, in the Python that runs MkDocs), converts it to markdown
with `nbconvert` (images become files next to the page) and adds
`<name>.md` to the site, so the nav can list `tutorials/toy2d.md`. The
`.ipynb` itself is published too (each page links to it).

Environment:

* `KERAS_GCM_DOCS_EXECUTE=0` converts without executing (fast `mkdocs serve`;
  the pages then show code only);
* `KERAS_GCM_DOCS_SMALL=1` is read by the notebooks: tiny settings that
  execute in CI in a few minutes (set by `tools/build_docs.py` unless
  `--full`);
* `KERAS_GCM_DOCS_TIMEOUT`: per-cell timeout in seconds (default 1200).

Stderr outputs (backend start-up warnings) and ANSI colour codes are dropped
from the pages; an error in any cell fails the build.

2. `<!-- presets-table -->` in a page is replaced by the table of every preset
(name, table cell, components, the paper's CIFAR-10 FIDs), generated from
`keras_gcm.presets`, so the page cannot go stale.
"""

import logging
import os
import re
import time

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.notebooks")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _clean(nb):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                if output.get("name") == "stderr":
                    continue
                output["text"] = _ANSI.sub("", output.get("text", ""))
            outputs.append(output)
        cell["outputs"] = outputs
    return nb


def convert(path, execute):
    """(markdown, {image path relative to the notebook: bytes}) of the notebook at `path`."""
    import nbformat
    from nbconvert import MarkdownExporter

    nb = nbformat.read(path, as_version=4)
    if execute:
        from nbclient import NotebookClient

        start = time.time()
        timeout = int(os.environ.get("KERAS_GCM_DOCS_TIMEOUT", "1200"))
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": ROOT}}).execute()
        log.info("executed %s in %.0f s", os.path.relpath(path, ROOT), time.time() - start)
    stem = os.path.splitext(os.path.basename(path))[0]
    body, resources = MarkdownExporter().from_notebook_node(
        _clean(nb), resources={"output_files_dir": f"{stem}_files"})
    source = os.path.relpath(path, ROOT).replace(os.sep, "/")
    link = (f"\n\n[Download this notebook]({stem}.ipynb) · run it with "
            f"`jupyter lab {source}`\n")
    return body + link, dict(resources.get("outputs", {}))


def on_files(files, config):
    execute = os.environ.get("KERAS_GCM_DOCS_EXECUTE", "1") != "0"
    notebooks = [f for f in files if f.src_uri.endswith(".ipynb")]
    for nb_file in notebooks:
        markdown, images = convert(nb_file.abs_src_path, execute)
        folder = os.path.dirname(nb_file.src_uri)
        page_uri = nb_file.src_uri[: -len(".ipynb")] + ".md"
        files.append(File.generated(config, page_uri, content=markdown))
        for name, data in images.items():
            uri = f"{folder}/{name}" if folder else name
            files.append(File.generated(config, uri, content=data))
    return files


_PRESETS_MARKER = "<!-- presets-table -->"


def _spec_text(spec):
    if isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str):
        args = ", ".join(f"{k}={_spec_text(v)}" for k, v in spec[1].items())
        return f"{spec[0]}({args})"
    return repr(spec)


def presets_table():
    """Markdown table of every preset, generated from `keras_gcm.presets`."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras_gcm import presets

    lines = ["| preset | table cell | components | paper FID (1 / 2-step) |",
             "|---|---|---|---|"]
    for name in presets.list():
        data = presets.get(name)
        description = data.pop("description").replace("|", "\\|")
        parts = [f"{key}: `{_spec_text(value)}`" for key, value in data.items()]
        fid = presets.paper_fid(name)
        fid_text = "–" if fid is None else f"{fid[0]:.2f} / {fid[1]:.2f}"
        lines.append(f"| `{name}` | {description} | {'<br>'.join(parts)} | {fid_text} |")
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if _PRESETS_MARKER in markdown:
        markdown = markdown.replace(_PRESETS_MARKER, presets_table())
    return markdown
