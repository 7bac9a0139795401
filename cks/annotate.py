"""Click cells in a notebook: a light point annotator (Jupyter, JupyterLab, Colab) that saves a points file.

    >>> from cks.annotate import PointAnnotator          # doctest: +SKIP
    >>> ann = PointAnnotator(image)                      # shows the image; click a cell to add a point,
    >>> ann                                              # click a point again to remove it
    >>> ann.save("my_folder/field1.csv")                 # y, x per row: `cks train --data my_folder/` reads it

The widget is an `anywidget <https://anywidget.dev>`_ (a canvas and a few lines of JavaScript, no server
extension): the browser only reports clicks; adding and removing points is :meth:`PointAnnotator.click`, plain
Python, so it is tested without a browser. Without a notebook front end (papermill, CI) nobody clicks:
:meth:`PointAnnotator.points_or` then returns the points of a file instead, so the cells after it run unchanged.
"""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np

from .errors import CksDataError

#: a click within this many image pixels of an existing point removes that point
REMOVE_RADIUS = 6.0

_ESM = """
function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.style.cursor = "crosshair"; canvas.style.maxWidth = "100%";
  const info = document.createElement("div"); info.style.font = "12px sans-serif";
  el.append(canvas, info);
  const img = new Image();
  const draw = () => {
    const [h, w] = model.get("shape"); const z = model.get("zoom");
    canvas.width = w * z; canvas.height = h * z;
    const ctx = canvas.getContext("2d"); ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, w * z, h * z);
    ctx.strokeStyle = "yellow"; ctx.lineWidth = 2;
    for (const [y, x] of model.get("points")) {
      const cx = (x + 0.5) * z, cy = (y + 0.5) * z;
      ctx.beginPath(); ctx.moveTo(cx - 5, cy); ctx.lineTo(cx + 5, cy); ctx.moveTo(cx, cy - 5); ctx.lineTo(cx, cy + 5);
      ctx.stroke();
    }
    info.textContent = model.get("points").length + " points: click a cell to add, click a point to remove";
  };
  img.onload = draw; img.src = "data:image/png;base64," + model.get("png");
  canvas.addEventListener("click", (e) => {
    const r = canvas.getBoundingClientRect(); const z = model.get("zoom") * r.width / canvas.width;
    model.send({ click: [(e.clientY - r.top) / z - 0.5, (e.clientX - r.left) / z - 0.5] });
  });
  model.on("change:points", draw);
}
export default { render };
"""


def _png(image: np.ndarray) -> str:
    from PIL import Image

    from .viz import gray

    buf = io.BytesIO()
    Image.fromarray((gray(image) * 255).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _widget_base():
    try:
        import anywidget
        import traitlets
    except ImportError:  # pragma: no cover - anywidget is in requirements.txt
        return None, None
    return anywidget.AnyWidget, traitlets


_Base, _traitlets = _widget_base()


class _Logic:
    """Add / remove / save, independent of any front end (``points``: list of ``[y, x]``)."""

    shape: tuple

    def click(self, y: float, x: float) -> str:
        """A click at pixel ``(y, x)``: removes the nearest point within :data:`REMOVE_RADIUS`, else adds one.

        Returns ``"added"``, ``"removed"`` or ``"outside"`` (clicks off the image are ignored).
        """
        h, w = self.shape
        if not (-0.5 <= y < h - 0.5 and -0.5 <= x < w - 0.5):
            return "outside"
        pts = np.asarray(self.points, np.float64).reshape(-1, 2)
        if len(pts):
            d = np.hypot(pts[:, 0] - y, pts[:, 1] - x)
            k = int(np.argmin(d))
            if d[k] <= REMOVE_RADIUS:
                self.points = [list(p) for i, p in enumerate(self.points) if i != k]
                return "removed"
        self.points = [*self.points, [round(float(y), 2), round(float(x), 2)]]
        return "added"

    def as_array(self) -> np.ndarray:
        """The points as float32 ``[N, 2]`` (y, x)."""
        return np.asarray(self.points, np.float32).reshape(-1, 2)

    def points_or(self, fallback) -> np.ndarray:
        """The clicked points, or (none clicked: a headless run such as papermill/CI, or no clicks yet) the points
        of ``fallback``, a point file (any format of :mod:`cks.data.point_files`) or an ``[N, 2]`` array."""
        if len(self.points):
            return self.as_array()
        if isinstance(fallback, (str, os.PathLike)):
            from .data.point_files import read_point_file

            return read_point_file(fallback, shape=tuple(self.shape))
        return np.asarray(fallback, np.float32).reshape(-1, 2)

    def save(self, path) -> Path:
        """Write the points (``.csv``: ``y,x`` rows; ``.json``: ``{"points": ...}``) for ``cks train``."""
        from .points import write_points

        if not len(self.points):
            raise CksDataError(f"{path}: no points to save; click some cells first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_points(path, self.as_array())
        return path


if _Base is not None:
    class PointAnnotator(_Logic, _Base):
        """Click-to-annotate widget over ``image`` (``[H, W]`` or ``[C, H, W]``); ``points`` in (y, x) pixels."""

        _esm = _ESM
        png = _traitlets.Unicode("").tag(sync=True)
        shape = _traitlets.Tuple((0, 0)).tag(sync=True)
        zoom = _traitlets.Float(1.0).tag(sync=True)
        points = _traitlets.List([]).tag(sync=True)

        def __init__(self, image, points=None, zoom: float | None = None):
            a = np.asarray(image)
            hw = a.shape[-2:]
            super().__init__(png=_png(a), shape=tuple(int(v) for v in hw),
                             zoom=float(zoom or max(1.0, 512 / max(hw))),
                             points=[[float(y), float(x)] for y, x in np.asarray(points if points is not None
                                                                                  else [], float).reshape(-1, 2)])
            self.on_msg(self._on_msg)

        def _on_msg(self, _widget, content, _buffers):
            if isinstance(content, dict) and "click" in content:
                self.click(*content["click"])
else:  # pragma: no cover
    class PointAnnotator(_Logic):
        def __init__(self, image, points=None, zoom=None):
            raise CksDataError("the point annotator needs anywidget: pip install anywidget")


__all__ = ["PointAnnotator", "REMOVE_RADIUS"]
