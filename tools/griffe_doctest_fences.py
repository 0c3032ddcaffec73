"""Griffe extension for the API reference: fence the docstrings' doctest examples.

keras_gcm docstrings write their examples as bare doctest lines after an
`Example:` line (keras-hub style):

    Example:

    >>> h = keras_gcm.schedules.ExponentialStep()
    >>> h(t)  # 0.005 exp(-3.5 t)

Markdown would render `>>>` as nested block quotes; this extension wraps each
run of doctest lines (prompts, continuation lines and their expected output)
in a ```` ```pycon ```` fence and drops `# doctest: ...` flags, so the
examples render as highlighted code. Docstrings are not changed on disk.
Used by `mkdocs.yml` (mkdocstrings `extensions` option).
"""

import re

import griffe

_PROMPT = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")
_FLAGS = re.compile(r"\s*#\s*doctest:.*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def fence_doctests(text):
    """Wraps bare doctest blocks of a docstring in ```pycon fences."""
    lines = text.split("\n")
    out, in_fence, i = [], False, 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        match = None if in_fence else _PROMPT.match(line)
        if match is None or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = match.group(1)
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(_FLAGS.sub("", lines[i]))
            i += 1
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        out.extend(block)
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fences doctest examples in every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
