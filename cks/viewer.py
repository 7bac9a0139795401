"""An ipywidgets viewer to browse images, predictions and collaborator maps.

``browse(items)`` shows a slider over the items and, for the selected one, the image next to its
named panels (label images are overlaid, float maps shown in [0, 1]) using :func:`cks.viz.show_maps`.
In a live Jupyter/Colab session it is interactive; when the notebook is executed headless (papermill,
CI, the book build — signalled by ``CKS_STATIC_FIGURES=1``, which ``book/run_chapters.py`` sets) or
ipywidgets is missing, it degrades to one static figure per item (up to ``max_static``), so the
rendered book still shows the content.
"""
from __future__ import annotations

import os


def interactive_available() -> bool:
    """True in a live IPython kernel with ipywidgets, unless ``CKS_STATIC_FIGURES`` is set."""
    if os.environ.get("CKS_STATIC_FIGURES", "") not in ("", "0"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def browse(items: list[dict], panels: tuple[str, ...] | None = None, max_static: int = 2, size: float = 3.2):
    """Browse a list of ``{"image": [C,H,W] or [H,W], "title": str, <panel name>: array, ...}``.

    Args:
        items: one dict per image; every key other than ``image``/``title`` is a panel (label image or
            map in [0, 1]), e.g. ``{"image": x, "prediction": lab, "M_c": mc, "B_c": bc}``.
        panels: which keys to show, in order (default: all in the first item's order).
        max_static: how many items to draw in static mode.
    Returns:
        the ipywidgets widget (interactive) or the list of matplotlib figures (static).
    """
    from .viz import show_maps

    if not items:
        raise ValueError("browse: no items to show")
    names = panels or tuple(k for k in items[0] if k not in ("image", "title"))

    def figure(i: int):
        it = items[i]
        fig = show_maps(it["image"], {k: it[k] for k in names if k in it}, size=size)
        fig.suptitle(it.get("title", f"item {i}"))
        return fig

    if not interactive_available():
        figs = [figure(i) for i in range(min(max_static, len(items)))]
        return figs
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(items) - 1, description="image")

    def draw(change=None):
        with out:
            out.clear_output(wait=True)
            fig = figure(slider.value)
            plt.show()
            plt.close(fig)

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([slider, out])
