"""The `Examples:` in docstrings run: every module of the three packages holding one is
doctested, so an example that drifts from the code fails here."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("cebench", "synthetic_saes", "groundtruth")
    for path in (ROOT / package).rglob("*.py") if ">>>" in path.read_text())


def test_the_examples_are_found():
    assert "cebench.scores" in MODULES and "groundtruth.stats" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    skipped_only = "doctest: +SKIP" in Path(module.__file__).read_text()  # examples needing a model
    assert result.attempted > 0 or skipped_only, f"{name} has '>>>' but doctest ran none"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
