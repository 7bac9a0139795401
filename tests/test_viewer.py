"""The viewer degrades to static figures when headless and is interactive otherwise."""
import numpy as np
import pytest

from cks import viewer


def items():
    img = np.random.default_rng(0).normal(size=(1, 32, 40)).astype(np.float32)
    lab = np.zeros((32, 40), np.int32)
    lab[5:15, 5:15] = 1
    return [{"image": img, "title": "a", "prediction": lab, "M_c": np.full((32, 40), 0.3)}] * 3


def test_static_when_headless(monkeypatch):
    monkeypatch.setenv("CKS_STATIC_FIGURES", "1")
    assert not viewer.interactive_available()
    figs = viewer.browse(items(), max_static=2)
    assert isinstance(figs, list) and len(figs) == 2
    assert len(figs[0].axes) == 3  # image + 2 panels


def test_interactive_widget(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("CKS_STATIC_FIGURES", "0")
    monkeypatch.setattr(viewer, "interactive_available", lambda: True)
    w = viewer.browse(items())
    slider = w.children[0]
    assert slider.max == 2
    slider.value = 1  # redraws without error


def test_empty():
    with pytest.raises(ValueError):
        viewer.browse([])
