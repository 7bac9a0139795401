"""The runnable examples in the docstrings of the public modules."""
import doctest

import pytest

import cks.chapter
import cks.config
import cks.data.writers
import cks.evaluation
import cks.metrics
import cks.points
import cks.presets


@pytest.mark.parametrize("module", [cks.data.writers, cks.evaluation, cks.metrics, cks.config, cks.presets, cks.points, cks.chapter], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
