"""Mask test-time augmentation (cks.tta): the geometry checked against a model whose windows are known."""
import numpy as np
import pytest
import torch

from cks.data.synthetic import synthetic_sample
from cks.errors import CksConfigError
from cks.metrics import intersections, iou_from_intersections
from cks.models.segmentor import window_origin
from cks.predict import predict
from cks.tta import TTA_CHOICES, augmented_window_logits, transforms_for
from tests.test_predict import model  # noqa: F401  (module fixture: a supervised model trained 150 steps on generated cells)


class _CropSegmentor:
    """Draws each window as the image's own pixels under it (zeros outside) plus the image's value at the point
    given: a perfectly equivariant head that also sees where the point is (as the location encoding does)."""
    window = 24

    def trunk_features(self, feat4):
        return feat4

    def __call__(self, feat4, points, batch, trunk=None):
        img = feat4[0, 0]  # the fake features are the image itself
        _, origin = window_origin(points, self.window)
        s = self.window
        pad = torch.nn.functional.pad(img, (s, s, s, s))
        wins = torch.stack([pad[oy + s:oy + 2 * s, ox + s:ox + 2 * s] for oy, ox in origin.tolist()])  # test only
        at = torch.round(points).long()
        at = img[at[:, 0].clamp(0, img.shape[0] - 1), at[:, 1].clamp(0, img.shape[1] - 1)]
        return wins + at[:, None, None], origin


class _CropModel:
    segmentor = _CropSegmentor()

    def features(self, image):
        # an augmented image reaches the model padded to the backbone's stride, so that its own padding adds nothing
        assert image.shape[-2] % 32 == 0 and image.shape[-1] % 32 == 0, image.shape
        return {4: image}

    def windows_at(self, image, points):  # as cks.models.Principal.windows_at
        return self.segmentor(self.features(image)[4], points, torch.zeros(len(points), dtype=torch.long))


def _identity_windows(fake, x, pts):
    return fake.segmentor(x[None], pts, torch.zeros(len(pts), dtype=torch.long))


@pytest.mark.parametrize("choice", ["flips", "d4"])
@pytest.mark.parametrize("hw", [(50, 70), (64, 96), (33, 31)])
def test_equivariant_head_is_unchanged(choice, hw):
    """Each orientation's windows, mapped back and aligned, hold the same pixels as the original ones."""
    g = torch.Generator().manual_seed(hw[0])
    x = torch.rand(1, *hw, generator=g) * 6 - 3  # values used as logits
    pts = torch.stack([torch.rand(13, generator=g) * (hw[0] - 1), torch.rand(13, generator=g) * (hw[1] - 1)], 1)
    fake = _CropModel()
    logits, origin = _identity_windows(fake, x, pts)
    out = augmented_window_logits(fake, x, pts, logits, origin, transforms_for(choice))
    assert out.shape == logits.shape
    torch.testing.assert_close(out, logits, atol=2e-4, rtol=0)


def test_a_biased_orientation_is_averaged_in():
    """A head that draws flipped images higher: the mean probability moves by a closed-form amount."""
    hw = (64, 64)
    x = torch.zeros(1, *hw)
    pts = torch.tensor([[31.0, 31.0], [10.0, 50.0]])
    fake = _CropModel()
    logits, origin = _identity_windows(fake, x, pts)  # all 0: probability 0.5

    class Biased(_CropModel):
        def features(self, image):
            return {4: image + 1.0}  # every non-identity orientation is seen 1 logit higher

    out = augmented_window_logits(Biased(), x, pts, logits, origin, TTA_CHOICES["flips"])
    p = torch.sigmoid(out)
    # the flips' windows: 1 everywhere plus the point's value 1 = logit 2; identity + 3 flips where all four cover
    expect = (0.5 + 3 * torch.sigmoid(torch.tensor(2.0))) / 4
    centre = p[:, 4:20, 4:20]  # pixels covered by every orientation (windows may be 4 px off)
    torch.testing.assert_close(centre, torch.full_like(centre, float(expect)), atol=1e-5, rtol=0)


def test_choices_and_errors():
    assert transforms_for(True) == transforms_for("flips") and len(transforms_for("flips")) == 4
    assert transforms_for(False) == transforms_for(None) == ((False, False, False),)
    assert len(set(transforms_for("d4"))) == 8 and transforms_for("d4")[0] == (False, False, False)
    for bad in ("rot", ["flips"], 2):
        with pytest.raises(CksConfigError, match="tta must be one of"):
            transforms_for(bad)


def test_predict_keeps_the_detections(model):
    """tta changes masks only: the same cells at the same places with the same scores, masks close to the plain ones."""
    s = synthetic_sample((200, 232), n_cells=30, radius=(7, 11), seed=5)  # not a multiple of 32
    plain, tp = predict(model, s["image"], score_threshold=0.3)
    for choice in ("flips", "d4"):
        lab, tt = predict(model, s["image"], score_threshold=0.3, tta=choice)
        assert lab.shape == plain.shape and lab.dtype == np.int32
        for k in ("score", "y", "x"):
            np.testing.assert_array_equal(tt[k], tp[k])
        ids_a, ids_b, iou = (lambda r: (r[0], r[1], iou_from_intersections(*r[2:]).toarray()))(intersections(lab, plain))
        assert len(ids_a) == len(tp["label"])
        assert np.median(iou.max(1)) > 0.7  # the same cells, redrawn


def test_predict_rejects_a_bad_tta(model):
    with pytest.raises(CksConfigError, match="tta must be one of"):
        predict(model, np.zeros((64, 64), np.float32) + 1, tta="x")


def test_windows_in_chunks_are_the_same(model):
    """Principal.windows_at (the augmented orientations' windows) splits thousands of cells into chunks without
    changing them: a chunk of 3 cells gives the same labels as one chunk."""
    s = synthetic_sample((160, 160), n_cells=20, radius=(7, 11), seed=3)
    whole, _ = predict(model, s["image"], score_threshold=0.3, tta="flips")
    old = model.inference_chunk
    try:
        model.inference_chunk = 3
        chunked, _ = predict(model, s["image"], score_threshold=0.3, tta="flips")
    finally:
        model.inference_chunk = old
    np.testing.assert_array_equal(chunked, whole)
