"""cks.data.io: image / label reading, error messages, normalisation."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from cks.data.io import check_same_shape, normalize_image, read_image, read_label, read_mask
from cks.errors import CksDataError, CksError


def test_error_types():
    assert issubclass(CksDataError, CksError) and issubclass(CksDataError, ValueError)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_gray_roundtrip(tmp_path, dtype):
    a = (np.arange(30 * 40).reshape(30, 40) % np.iinfo(dtype).max).astype(dtype)
    Image.fromarray(a).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (1, 30, 40) and img.dtype == np.float32
    np.testing.assert_array_equal(img[0], a)


def test_png_rgb_and_opaque_rgba(tmp_path):
    a = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), a.transpose(2, 0, 1))
    rgba = np.concatenate([a, np.full((20, 24, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (3, 20, 24)


@pytest.mark.parametrize("layout", ["hw", "chw", "hwc", "1hw"])
def test_tiff_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 65535, (2, 32, 40), dtype=np.uint16)
    arr = {"hw": base[0], "chw": base, "hwc": base.transpose(1, 2, 0), "1hw": base[:1]}[layout]
    tifffile.imwrite(tmp_path / "x.tif", arr)
    img = read_image(tmp_path / "x.tif")
    expect = base[:1] if layout in ("hw", "1hw") else base
    np.testing.assert_array_equal(img, expect.astype(np.float32))


def test_constant_image_is_fine(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.full((16, 16), 7, np.uint16))
    img = read_image(tmp_path / "c.tif")
    assert (img == 7).all()
    assert (normalize_image(img) == 0).all()


def _expect_error(path, *words):
    with pytest.raises(CksDataError) as info:
        read_image(path)
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg
    for w in words:
        assert w in msg.lower()


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.tif", "not found")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am text")
    _expect_error(tmp_path / "notes.png", "not a readable image")
    (tmp_path / "empty.png").write_bytes(b"")
    _expect_error(tmp_path / "empty.png", "empty")


def test_truncated_files(tmp_path):
    a = np.random.default_rng(2).integers(0, 65535, (64, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", a)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "half.tif").write_bytes(data[: len(data) // 2])
    (tmp_path / "head.tif").write_bytes(data[:100])
    _expect_error(tmp_path / "half.tif", "corrupt")
    _expect_error(tmp_path / "head.tif", "corrupt")
    (tmp_path / "index.tif").write_bytes(data[:8])  # the header only: cut before the image index
    _expect_error(tmp_path / "index.tif", "truncated tiff")
    Image.fromarray(a).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path / "half.png", "corrupt")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf(tmp_path, bad):
    a = np.ones((8, 8), np.float32)
    a[3, 4] = bad
    tifffile.imwrite(tmp_path / "bad.tif", a)
    _expect_error(tmp_path / "bad.tif", "nan/inf")


def test_too_many_channels(tmp_path):
    tifffile.imwrite(tmp_path / "four.tif", np.random.default_rng(0).random((4, 16, 16)).astype(np.float32),
                     photometric="minisblack")
    _expect_error(tmp_path / "four.tif", "4 channels")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((7, 16, 16), np.uint8))
    _expect_error(tmp_path / "stack.tif", "stack")
    rgba = np.random.default_rng(0).integers(0, 255, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    _expect_error(tmp_path / "alpha.png", "4 channels")


@pytest.mark.parametrize("axes, n, needle", [("ZYX", 3, "3 z-planes"), ("TYX", 2, "2 time points")])
def test_small_stacks_are_not_read_as_channels(tmp_path, axes, n, needle):
    """2-3 planes fit the channel rule; the TIFF's own axes (ImageJ metadata) say they are a stack."""
    planes = np.random.default_rng(0).random((n, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", planes, imagej=True, metadata={"axes": axes})
    _expect_error(tmp_path / "stack.tif", needle)
    tifffile.imwrite(tmp_path / "channels.tif", planes, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "channels.tif"), planes)  # channels stay channels


@pytest.mark.parametrize("layout", ["plain_chw", "samples_hwc", "imagej_cyx", "ome_cyx"])
def test_one_channel_of_many(tmp_path, layout):
    """read_image(channel=K) takes plane K of an image with more channels than a model takes (here 5 or 6),
    wherever the file keeps its channel axis; without ``channel`` such a file is refused as before."""
    planes = np.random.default_rng(2).random((6 if layout == "samples_hwc" else 5, 16, 20)).astype(np.float32)
    path = tmp_path / "many.tif"
    if layout == "plain_chw":
        tifffile.imwrite(path, planes)
    elif layout == "samples_hwc":  # 6 samples per pixel, the TIFF says so (axes YXS)
        tifffile.imwrite(path, planes.transpose(1, 2, 0), photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(path, planes, imagej=layout == "imagej_cyx", ome=layout == "ome_cyx",
                         metadata={"axes": "CYX"})
    for k in (0, len(planes) - 1):
        got = read_image(path, channel=k)
        assert got.shape == (1, 16, 20) and got.dtype == np.float32
        np.testing.assert_array_equal(got[0], planes[k])
    with pytest.raises(CksDataError) as e:
        read_image(path)
    assert "--channel" in str(e.value)
    with pytest.raises(CksDataError) as e:
        read_image(path, channel=len(planes))
    assert f"no channel {len(planes)}" in str(e.value) and f"--channel 0..{len(planes) - 1}" in str(e.value)


@pytest.mark.parametrize("shape", [(40, 32, 32), (5, 3, 100), (12, 8, 8)])
def test_channel_axis_from_the_pages_not_the_shortest_side(tmp_path, shape):
    """A plain multi-page TIFF with more channels than pixels on a side (multiplexed imaging: 40 markers on a
    32 x 32 crop): each page is one Y x X plane, so plane K is page K, never a slice across the channels."""
    planes = np.random.default_rng(4).random(shape).astype(np.float32)
    tifffile.imwrite(tmp_path / "pages.tif", planes)
    for k in (0, shape[0] - 1):
        np.testing.assert_array_equal(read_image(tmp_path / "pages.tif", channel=k), planes[k:k + 1])
    with pytest.raises(CksDataError, match=f"has {shape[0]} channel"):
        read_image(tmp_path / "pages.tif", channel=shape[0])


def test_channel_of_a_plain_channel_last_tiff_is_refused(tmp_path):
    """A 128 x 96 image with 5 channels last written without metadata is stored as 128 pages of 96 x 5 px; no
    plane of it is what the user means, so --channel refuses and says how to save it."""
    tifffile.imwrite(tmp_path / "hwc.tif", np.random.default_rng(7).random((128, 96, 5)).astype(np.float32))
    with pytest.raises(CksDataError, match="does not say which axis holds the channels") as e:
        read_image(tmp_path / "hwc.tif", channel=2)
    assert "planarconfig='contig'" in str(e.value)


def test_channel_of_channels_of_rgb_samples_is_refused_naming_the_axes(tmp_path):
    """An OME-TIFF of 2 channels of RGB samples (axes CYXS): one index cannot name one plane, so --channel refuses
    with the file's own axes and how to save one plane, not with a bare "4 dimensions"."""
    tifffile.imwrite(tmp_path / "cyxs.ome.tif", np.zeros((2, 32, 40, 3), np.uint8), metadata={"axes": "CYXS"},
                     photometric="rgb")
    with pytest.raises(CksDataError, match=r"axes CYXS .*C = 2, S = 3") as e:
        read_image(tmp_path / "cyxs.ome.tif", channel=1)
    assert "Split Channels" in str(e.value)


def test_channel_checks_only_its_own_values(tmp_path):
    """A NaN in channel 3 stops channel 3 (with the usual message) and not channel 0; a one-row line scan
    (ImageJ CYX, 5 x 1 x 100) gives one channel's row, not all channels as one image."""
    planes = np.random.default_rng(5).random((5, 16, 20)).astype(np.float32)
    planes[3, 2, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", planes, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "nan.tif", channel=0), planes[:1])
    with pytest.raises(CksDataError, match="NaN"):
        read_image(tmp_path / "nan.tif", channel=3)
    line = np.random.default_rng(6).random((5, 1, 100)).astype(np.float32)
    tifffile.imwrite(tmp_path / "line.tif", line, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "line.tif", channel=2), line[2:3])


def test_channel_of_small_images_and_stacks(tmp_path):
    """channel=K on a 2-D image (only 0 exists), on an RGBA PNG (4 channels, alpha included) and on a
    3-plane ImageJ z-stack, which stays refused: its planes are not channels."""
    gray = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10)
    tifffile.imwrite(tmp_path / "gray.tif", gray)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.tif", channel=0)[0], gray)
    with pytest.raises(CksDataError, match="no channel 1"):
        read_image(tmp_path / "gray.tif", channel=1)
    rgba = np.random.default_rng(3).integers(0, 255, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", channel=3)[0], rgba[..., 3])
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((3, 16, 16), np.float32), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(CksDataError, match="3 z-planes"):
        read_image(tmp_path / "z.tif", channel=0)


def test_zero_size(tmp_path):
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 10), np.uint8))
    _expect_error(tmp_path / "zero.tif", "zero size")


def test_read_label(tmp_path):
    lab = np.zeros((10, 12), np.uint8)
    lab[2:5, 3:6] = 3
    im = Image.fromarray(lab, mode="L").convert("P")
    im.save(tmp_path / "pal.png")
    out = read_label(tmp_path / "pal.png")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, lab)
    tifffile.imwrite(tmp_path / "neg.tif", -lab.astype(np.int16))
    with pytest.raises(CksDataError, match="neg.tif.*negative"):
        read_label(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(CksDataError, match="rgb.tif.*one channel"):
        read_label(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "frac.tif", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(CksDataError, match="frac.tif.*non-integer"):
        read_label(tmp_path / "frac.tif")


def test_read_mask(tmp_path):
    m = np.zeros((6, 6), np.uint16)
    m[1:3, 1:3] = 65535
    tifffile.imwrite(tmp_path / "m.tif", m)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), m > 0)


def test_shape_mismatch_message():
    with pytest.raises(CksDataError, match="lab.png.*does not match.*img.tif"):
        check_same_shape(np.zeros((1, 4, 5)), np.zeros((4, 6)), "img.tif", "lab.png")


def test_normalize_image_per_channel():
    rng = np.random.default_rng(3)
    img = np.stack([rng.normal(100, 5, (20, 20)), rng.normal(-3, 0.1, (20, 20))]).astype(np.float32)
    out = normalize_image(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)


def test_palette_png_as_image_and_label(tmp_path):
    gray = (np.arange(12 * 14).reshape(12, 14) % 7).astype(np.uint8)
    Image.fromarray(gray, mode="L").convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0], gray)
    im = Image.fromarray(gray, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * (253 * 3))
    im.save(tmp_path / "colour.png")
    img = read_image(tmp_path / "colour.png")
    assert img.shape == (3, 12, 14) and img[0][gray == 1].min() == 255
    np.testing.assert_array_equal(read_label(tmp_path / "colour.png"), gray)  # labels keep the indices
