"""Build the documentation site: execute the tutorials, `mkdocs build --strict`, check the API.

    python tools/build_docs.py                  # CI: notebooks on the small setting, into site/
    python tools/build_docs.py --full           # notebooks on their full setting (slow on CPU)
    python tools/build_docs.py --no-execute     # pages from the notebooks' code only (fast)

Steps:

1. `mkdocs build --strict` (warnings are errors). Its hooks
   (`tools/mkdocs_hooks.py`) execute `docs/tutorials/*.ipynb` with
   `KERAS_GCM_DOCS_SMALL=1` (tiny settings: a few minutes in total on 2 CPU
   cores) and render them as pages; the API reference comes from the
   docstrings through mkdocstrings.
2. Checks that every public name of `keras_gcm` (the `__all__` of the package
   and of each public module, or its public classes and functions) is in the
   built API reference (`objects.inv`) and that its docstring has an
   `Example:`; exits non-zero naming any that is not.

The concept figures (`docs/images/concept_*.png`) are committed; regenerate
them with `python tools/make_concept_plots.py`. The ablation tables
(`docs/ablation/`) come from `recipes/ablation.py`; see docs/ablations.md.
"""

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_names():
    """{public module: [public names]} of keras_gcm (imports the package)."""
    import keras_gcm

    modules = {"keras_gcm": [n for n in keras_gcm.__all__
                             if not inspect.ismodule(getattr(keras_gcm, n))]}
    for name in keras_gcm.__all__:
        module = getattr(keras_gcm, name)
        if not inspect.ismodule(module):
            continue
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, v in vars(module).items()
                     if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                     and getattr(v, "__module__", None) == module.__name__]
        modules[module.__name__] = [n for n in names
                                    if not inspect.ismodule(getattr(module, n))]
    return modules


def read_inventory(path):
    """Object names in a Sphinx `objects.inv` (as written by mkdocstrings)."""
    with open(path, "rb") as f:
        for _ in range(4):
            f.readline()
        text = zlib.decompress(f.read()).decode("utf-8")
    return {line.split(" ", 1)[0] for line in text.splitlines() if line.strip()}


def check_api(site_dir):
    """Problems: public names missing from the reference or without an example."""
    import griffe

    inventory = read_inventory(os.path.join(site_dir, "objects.inv"))
    package = griffe.load("keras_gcm", search_paths=[ROOT], resolve_aliases=True,
                          resolve_external=False)
    problems = []
    for module_name, names in public_names().items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            qualname = getattr(obj, "__qualname__", name)
            canonical = f"{getattr(obj, '__module__', module_name)}.{qualname}"
            if canonical not in inventory and not any(
                    item.startswith("keras_gcm.") and item.endswith(f".{name}")
                    for item in inventory):
                problems.append(f"{module_name}.{name}: not in the API reference")
                continue
            path = canonical if canonical.startswith("keras_gcm.") else f"{module_name}.{name}"
            try:
                docstring = package[path[len("keras_gcm."):]].docstring
            except (KeyError, griffe.AliasResolutionError):
                docstring = None
            text = docstring.value if docstring is not None else (inspect.getdoc(obj) or "")
            if "Example" not in text:
                problems.append(f"{module_name}.{name}: docstring has no Example")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="execute the notebooks on their full setting")
    parser.add_argument("--no-execute", action="store_true",
                        help="render the notebooks without executing them")
    parser.add_argument("--site-dir", default=os.path.join(ROOT, "site"))
    parser.add_argument("--backend", default=None,
                        help="Keras backend of the notebooks (default: $KERAS_BACKEND or jax)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env["KERAS_BACKEND"] = args.backend or env.get("KERAS_BACKEND", "jax")
    env["KERAS_GCM_DOCS_SMALL"] = "0" if args.full else "1"
    env["KERAS_GCM_DOCS_EXECUTE"] = "0" if args.no_execute else "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NO_MKDOCS_2_WARNING", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)

    start = time.time()
    command = [sys.executable, "-m", "mkdocs", "build", "--strict",
               "--config-file", os.path.join(ROOT, "mkdocs.yml"), "--site-dir", args.site_dir]
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode:
        print(f"mkdocs build --strict failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode
    os.environ["KERAS_BACKEND"] = env["KERAS_BACKEND"]
    problems = check_api(args.site_dir)
    for problem in problems:
        print("API reference:", problem, file=sys.stderr)
    print(f"docs built into {args.site_dir} in {time.time() - start:.0f} s"
          + (f"; {len(problems)} API problem(s)" if problems else "; API reference complete"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
