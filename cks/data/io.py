"""Reading microscopy images and instance label images from disk.

Conventions (shared by all of ``cks``):

* images are ``float32`` numpy arrays of shape ``[C, H, W]`` with ``C`` in 1..3,
  holding the raw pixel values (no scaling: a 16-bit image keeps its 0..65535 range);
* instance label images are ``int32`` arrays of shape ``[H, W]``, 0 = background.

Every problem with an input file raises :class:`cks.errors.CksDataError` with a
one-line message that names the file and says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cks.errors import CksDataError

__all__ = [
    "read_image",
    "read_label",
    "read_mask",
    "check_same_shape",
    "normalize_image",
    "TIFF_SUFFIXES",
]

TIFF_SUFFIXES = (".tif", ".tiff")
MAX_CHANNELS = 3


def _fail(path, what: str, todo: str) -> CksDataError:
    return CksDataError(f"{path}: {what}; {todo}")


def _tiff_pages(path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as t:
            return len(t.pages)
    except Exception:  # noqa: BLE001  (a damaged index counts as no page)
        return 0


def _tiff_axes(path) -> tuple[str, tuple[int, ...]]:
    """The axes letters and shape of a TIFF's first series as its metadata (ImageJ, OME, shaped) gives them,
    e.g. ``("CYX", (5, 512, 512))``; ``("", ())`` where they cannot be read."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as t:
            series = t.series[0]
            return str(series.axes), tuple(int(n) for n in series.shape)
    except Exception:  # noqa: BLE001  (unreadable metadata: the pixel array decides, as before)
        return "", ()


def _tiff_planes(path) -> list[tuple[str, int]]:
    """The z (``Z``) and time (``T``) axes of a TIFF's first series with more than one plane, as its metadata
    (ImageJ, OME) names them: ``[("Z", 3)]`` for a 3-plane z-stack; ``[]`` where it names none."""
    axes, shape = _tiff_axes(path)
    return [(ax, n) for ax, n in zip(axes, shape) if ax in "ZT" and n > 1]


def _read_raw(path, palette_indices: bool = False) -> tuple[np.ndarray, bool]:
    """Read the pixel array of ``path`` as stored, or raise CksDataError.

    Returns ``(array, channels_last)``; ``channels_last`` is True for PIL-read files, whose
    colour axis is always last. Palette images give their indices if ``palette_indices``
    (label images), else their colours.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "file not found", "check the path (relative paths resolve against CKS_DATA_DIR)")
    if path.is_dir():
        raise _fail(path, "is a folder, not an image file", "give the path of an image file")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)", "re-download or re-export the image")
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as exc:  # tifffile raises many types for damaged files
            raise _fail(path, f"corrupt or truncated TIFF ({type(exc).__name__}: {exc})",
                        "re-download the file or re-save it with an image editor") from None
        if np.asarray(arr).size == 0 and _tiff_pages(path) == 0:  # cut before its first image: read as empty
            raise _fail(path, f"truncated TIFF: the file ({path.stat().st_size} bytes) ends before its image data",
                        "re-download the file or re-save it with an image editor")
        planes = _tiff_planes(path)
        if planes:  # 2-3 planes would otherwise be read as channels
            what = ", ".join(f"{n} {'z-planes' if ax == 'Z' else 'time points'}" for ax, n in planes)
            raise _fail(path, f"a stack of {what} (the TIFF's metadata says so), not one image",
                        "save one plane or a projection per image (Fiji: Image > Stacks > Z Project, or "
                        "Image > Stacks > Stack to Images); if the planes are channels, say so in Fiji "
                        "(Image > Properties: channels) and use --channel K")
        return np.asarray(arr), False
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P" and palette_indices:  # label images are often saved with a palette
                arr = np.asarray(im)
            elif mode in ("P", "PA"):
                arr = np.asarray(im.convert("RGBA"))
                if arr[..., 3].min() == arr[..., 3].max():
                    arr = arr[..., :3]
                if (arr[..., :1] == arr[..., 1:3]).all():  # gray palette
                    arr = arr[..., :1] if arr.shape[-1] == 3 else arr[..., [0, 3]]
            elif mode in ("LA", "RGBA"):
                arr = np.asarray(im)
                alpha = arr[..., -1]
                if alpha.min() == alpha.max():  # a constant (opaque) alpha channel carries nothing
                    arr = arr[..., :-1]
            elif mode == "CMYK":
                arr = np.asarray(im.convert("RGB"))
            else:
                arr = np.asarray(im)
    except UnidentifiedImageError:
        raise _fail(path, "not a readable image (unknown format)",
                    "give a PNG or TIFF file (other formats: convert them first)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"corrupt or truncated image ({exc})", "re-download or re-export the file") from None
    return arr, True


def _check_values(arr: np.ndarray, path) -> None:
    if arr.size == 0 or min(arr.shape) == 0:
        raise _fail(path, f"image has zero size (shape {tuple(arr.shape)})", "check the file")
    if np.iscomplexobj(arr):
        raise _fail(path, "complex-valued pixels", "save real-valued intensities")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise _fail(path, f"{n_bad} NaN/inf pixel(s)", "replace them (e.g. with 0) before use")


def _to_chw(arr: np.ndarray, path, channels_last: bool = False) -> np.ndarray:
    """Bring a 2-D or 3-D pixel array into ``[C, H, W]`` layout (guessing the channel axis for TIFF)."""
    if channels_last and arr.ndim == 3:  # PIL: [H, W, C]
        arr = np.moveaxis(arr, -1, 0)
        channels_last = False
    elif arr.ndim > 2:
        arr = arr.reshape([s for s in arr.shape if s != 1] or [1])  # drop singleton axes (ImageJ stacks)
        if arr.ndim < 2:  # everything was singleton except one axis
            raise _fail(path, f"image is 1-D (shape {arr.shape})", "give a 2-D image")
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise _fail(path, f"image has {arr.ndim} dimensions (shape {tuple(arr.shape)})",
                    "give a 2-D image with at most 3 channels (split stacks into single images)")
    first, last = arr.shape[0], arr.shape[-1]
    if channels_last or (last <= 4 and first > 4):  # [H, W, C] (PNG, RGB TIFF)
        arr = np.moveaxis(arr, -1, 0)
    elif not first <= 4:
        raise _fail(path, f"image has shape {tuple(arr.shape)}, which looks like a stack, not channels",
                    "give a 2-D image with at most 3 channels (split stacks into single images); if the planes "
                    "are channels, --channel K (cks predict, cks points) uses one")
    if arr.shape[0] > MAX_CHANNELS:
        raise _fail(path, f"image has {arr.shape[0]} channels (at most {MAX_CHANNELS} supported)",
                    "select the channels to use and save them as a 1-3 channel image (or use one: --channel K in "
                    "cks predict and cks points)")
    return arr


def _pick_channel(arr: np.ndarray, path, channels_last: bool, channel: int) -> np.ndarray:
    """Plane ``channel`` of a 2-D or 3-D pixel array, as ``[1, H, W]``, with any number of channels.

    For a TIFF the channel axis is the one that is neither Y nor X in the file's own axes (ImageJ or OME
    metadata, or its pages: each page of a plain multi-page TIFF is one Y x X plane, so 40 pages of 32 x 32 px
    are 40 channels, not 32). A plain TIFF whose pages are narrower than their count and height (128 pages of
    96 x 5 px: most likely a 128 x 96 image with 5 channels last, saved without saying so) is refused as
    ambiguous. For a PIL image (PNG) the channel axis is the colour axis, the last. Only where neither is
    known (no readable TIFF axes), the shortest axis is taken, the first of equal ones.
    """
    if arr.ndim > 2:
        axes, shape = _tiff_axes(path) if Path(path).suffix.lower() in TIFF_SUFFIXES else ("", ())
        if shape == arr.shape and "Y" in axes and "X" in axes:
            yx = [axes.index("Y"), axes.index("X")]
            other = [i for i, n in enumerate(shape) if i not in yx and n > 1]
            ones = [i for i, n in enumerate(shape) if i not in yx and n == 1]
            if len(other) > 1:  # e.g. CYXS: channels of RGB samples; one index cannot name a plane
                named = ", ".join(f"{axes[i]} = {shape[i]}" for i in other)
                raise _fail(path, f"a TIFF with axes {axes} (shape {tuple(shape)}): besides Y and X it has {named}, "
                                  "so one --channel index does not name one plane",
                            "save the plane you need as an image of its own (Fiji: Image > Color > Split Channels; "
                            "Python: tifffile.imwrite(name, plane))")
            if len(other) == 1 and axes[other[0]] not in "CS":  # not named channels: pages
                n_pages, h, w = shape[other[0]], shape[yx[0]], shape[yx[1]]
                if w < min(n_pages, h):
                    raise _fail(path, f"a plain TIFF of {n_pages} pages of {h} x {w} px: it does not say which axis "
                                      f"holds the channels (a {n_pages} x {h} image with {w} channels last?)",
                                "save it with its axes named (Fiji: an image with channels; Python: tifffile.imwrite"
                                "(..., photometric='minisblack', planarconfig='contig') for channels last, or "
                                "metadata={'axes': 'CYX'})")
            arr = np.transpose(arr, other + yx + ones).reshape([shape[i] for i in other + yx])
        else:
            arr = arr.reshape([s for s in arr.shape if s != 1] or [1])
            if arr.ndim == 3:
                axis = 2 if channels_last else int(np.argmin(arr.shape))  # the first of equal shortest axes
                arr = np.moveaxis(arr, axis, 0)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise _fail(path, f"image has {arr.ndim} dimensions (shape {tuple(arr.shape)})",
                    "give a 2-D image or one stack of channels [C, H, W]")
    if not 0 <= channel < arr.shape[0]:
        raise _fail(path, f"has {arr.shape[0]} channel(s), no channel {channel}",
                    f"use --channel 0..{arr.shape[0] - 1}")
    return arr[channel:channel + 1]


def read_image(path: str | os.PathLike, channel: int | None = None) -> np.ndarray:
    """Read a PNG or TIFF (8/16/32-bit or float, 1-3 channels) image.

    Args:
        path: image file. ``.tif``/``.tiff`` are read with ``tifffile``, anything else with PIL.
            Channel-last (``[H, W, C]``) and channel-first (``[C, H, W]``) arrays are both accepted;
            singleton axes are dropped; a constant alpha channel is dropped.
        channel: read only this channel (0-based), from an image with any number of channels, e.g. a
            5-channel TIFF (``cks predict --channel``, ``cks points --channel``); without it, more than
            ``MAX_CHANNELS`` (3, what a model takes) are an error. Z-stacks and time series (named so by the
            TIFF's metadata) are refused either way.
    Returns:
        ``float32`` array ``[C, H, W]`` with the raw pixel values (not normalised); ``[1, H, W]`` with ``channel``.
    Raises:
        CksDataError: missing/empty/unreadable/corrupt file, NaN or inf pixels, zero size,
            more than ``MAX_CHANNELS`` channels without ``channel``, a ``channel`` the image does not have.
            A constant (blank) image is valid.
    """
    arr, channels_last = _read_raw(path)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if channel is None:
        _check_values(arr, path)
        arr = _to_chw(arr, path, channels_last)
    else:  # only the chosen channel's values are checked: a NaN in another channel does not matter
        if arr.size == 0:
            _check_values(arr, path)  # says "zero size"
        arr = _pick_channel(arr, path, channels_last, int(channel))
        _check_values(arr, path)
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():  # float64 values beyond float32 range
        raise _fail(path, "pixel values overflow float32", "rescale the image intensities")
    return out


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read an instance label image (0 = background, one positive id per cell).

    Args:
        path: PNG (8/16-bit gray or palette) or TIFF with one channel.
    Returns:
        ``int32`` array ``[H, W]``.
    Raises:
        CksDataError: the file problems of :func:`read_image`, or a label image with several
            channels, negative ids or non-integer values.
    """
    arr, _ = _read_raw(path, palette_indices=True)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    _check_values(arr, path)
    arr = arr.reshape([s for s in arr.shape if s != 1]) if arr.ndim > 2 else arr
    if arr.ndim != 2:
        raise _fail(path, f"label image has shape {tuple(arr.shape)}, expected one channel [H, W]",
                    "save instance ids as a single-channel (gray or palette) image")
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)):
            raise _fail(path, "label image has non-integer values", "save integer instance ids")
    if arr.dtype.kind in "iuf" and arr.min() < 0:
        raise _fail(path, "label image has negative ids", "use 0 for background and positive ids for cells")
    if arr.max() > np.iinfo(np.int32).max:
        raise _fail(path, "label ids exceed the int32 range", "relabel the instances sequentially")
    return arr.astype(np.int32)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary (foreground) mask image: any pixel > 0 is foreground.

    Returns:
        ``bool`` array ``[H, W]`` (a multi-channel file is reduced with ``any`` over channels).
    """
    arr = read_image(path)
    return (arr > 0).any(axis=0)


def check_same_shape(image: np.ndarray, label: np.ndarray, image_path="image", label_path="label") -> None:
    """Raise CksDataError unless ``label`` ``[H, W]`` matches the spatial size of ``image`` ``[C, H, W]``."""
    if tuple(image.shape[-2:]) != tuple(label.shape[-2:]):
        raise CksDataError(
            f"{label_path}: label size {tuple(label.shape[-2:])} does not match image {image_path} "
            f"size {tuple(image.shape[-2:])}; pair each image with its own label file")


def normalize_image(img: np.ndarray, std_floor: float = 1e-6) -> np.ndarray:
    """Per-image, per-channel standardisation ``(x - mean) / max(std, std_floor)``.

    This is the normalisation of the author's evaluation code. A constant channel
    becomes all zeros.

    Args:
        img: ``[C, H, W]`` (or ``[H, W]``) array, any real dtype.
        std_floor: lower bound of the divisor.
    Returns:
        ``float32`` array of the same shape.
    """
    x = np.asarray(img, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    if x.ndim != 3:
        raise CksDataError(f"normalize_image: expected [C, H, W], got shape {x.shape}; pass one image")
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    out = ((x - mean) / np.maximum(std, std_floor)).astype(np.float32)
    return out[0] if squeeze else out


def image_batch(img: np.ndarray, device=None):
    """One image as the models take it: ``normalize_image`` then a ``torch.float32`` batch ``[1, C, H, W]``.

    Args:
        img: ``[C, H, W]`` or ``[H, W]`` array.
        device: torch device for the tensor (default CPU); pass a model's, e.g.
            ``next(model.parameters()).device``.
    """
    import torch

    x = np.asarray(img)
    x = normalize_image(x[None] if x.ndim == 2 else x)
    return torch.from_numpy(x)[None].to(device or "cpu")
