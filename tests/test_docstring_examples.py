"""Every docstring `Example:` of keras_gcm runs, under the current Keras backend.

The examples are doctests (`>>>` lines, keras-hub style). This module collects
them from every module of the package (new modules are picked up
automatically) and runs each with `doctest`, with `keras_gcm`, `keras` and
`np` (numpy) defined and nothing else, so an example that uses an undefined
name, an old import path or a changed output fails here. An example too big
for a CPU test carries `# doctest: +SKIP` on its lines, and a comment saying
why; the report below counts them.
"""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import keras

import keras_gcm

_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.REPORT_ONLY_FIRST_FAILURE


def _modules():
    backend = keras.backend.backend()
    names = [keras_gcm.__name__] + [
        info.name for info in pkgutil.walk_packages(keras_gcm.__path__, "keras_gcm.")
    ]
    # The per-backend train steps import their backend; only the current one is loaded.
    return [
        name for name in names
        if not name.startswith("keras_gcm.trainers.") or name == f"keras_gcm.trainers.{backend}"
    ]


def _doctests():
    finder = doctest.DocTestFinder()
    tests = []
    for name in _modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            if test.examples:
                tests.append(test)
    return sorted(tests, key=lambda test: test.name)


_TESTS = _doctests()


def test_the_runner_finds_the_examples():
    names = {test.name for test in _TESTS}
    # One from each kind of object: a class, a function, a method, a moved module.
    for expected in ("keras_gcm.schedules.ExponentialStep", "keras_gcm.metrics.distances.energy_distance",
                     "keras_gcm.data.step_indexed_batches.StepIndexedBatches",
                     "keras_gcm.utils.image_grids.image_grid"):
        assert expected in names, f"{expected} has no collected example"
    assert len(_TESTS) >= 90


@pytest.mark.parametrize("test", _TESTS, ids=[test.name for test in _TESTS])
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    test.globs = {"keras_gcm": keras_gcm, "keras": keras, "np": np, "__name__": test.name}
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    output = []
    runner.run(test, out=output.append, clear_globs=True)
    skipped = sum(bool(example.options.get(doctest.SKIP)) for example in test.examples)
    if runner.failures:
        pytest.fail(f"{test.name} (line {test.lineno} of {test.filename}):\n" + "".join(output),
                    pytrace=False)
    if skipped == len(test.examples):
        pytest.skip("every line is marked `# doctest: +SKIP` (its docstring says why)")
