"""cks.evaluation: the cell size each image is predicted at, and scores that match cks.metrics on the same masks."""
import numpy as np
import pytest

from cks.errors import CksConfigError


def _sample(side=20):
    lab = np.zeros((80, 80), np.int32)
    lab[5:5 + side, 5:5 + side], lab[50:50 + side, 50:50 + side] = 1, 2
    return {"name": "f", "image": lab[None].astype(np.float32), "label": lab}


class _SizeModel:
    """Stands in for a size-normalised principal model: only ``cfg.size.normalize`` and ``scale`` are read."""
    class cfg:
        class size:
            normalize = True
            diameter = 32.0
    scale = 1.0


class _FixedModel(_SizeModel):
    class cfg:
        class size:
            normalize = False
    scale = 0.5


@pytest.fixture
def fake_predict(monkeypatch):
    """cks.predict.predict replaced by an oracle that returns the masks and records its size keywords."""
    import importlib

    calls = []

    def predict(model, image, score_threshold=0.5, return_info=False, **kw):
        calls.append(kw)
        lab = (image[0] if image.ndim == 3 else image).astype(np.int32)
        ids = np.unique(lab)[1:]
        table = {"label": ids, "score": np.full(len(ids), 0.9)}
        return lab, table, {"diameter": kw.get("diameter"), "scale": kw.get("scale", 1.0), "diameter_source": "given"}

    monkeypatch.setattr(importlib.import_module("cks.predict"), "predict", predict)  # the module, not cks.predict()
    return calls


def test_true_times_k_asks_k_times_the_masks_median_diameter(fake_predict):
    from cks.evaluation import evaluate_model, predict_many
    from cks.size import median_diameter

    s = _sample()
    true = median_diameter(s["label"])  # two 20x20 squares: the equivalent diameter sqrt(4 * 400 / pi)
    assert true == pytest.approx(np.sqrt(1600 / np.pi))
    predict_many(_SizeModel(), [s], size="true")
    predict_many(_SizeModel(), [s], size="true*0.8")
    predict_many(_FixedModel(), [s], size="true*2")  # a fixed-scale model: its scale over K
    assert fake_predict[0] == {"diameter": pytest.approx(true)}
    assert fake_predict[1] == {"diameter": pytest.approx(0.8 * true)}
    assert fake_predict[2] == {"scale": pytest.approx(0.25)}
    r = evaluate_model(_SizeModel(), [s], size="true*1.25")
    assert r["ap50"] == 1.0 and r["count_ratio"] == 1.0
    assert r["sizes"][0]["diameter"] / r["sizes"][0]["true_diameter"] == pytest.approx(1.25)


@pytest.mark.parametrize("bad", ["true*0", "true*-1", "true*x", "true*nan", "guess"])
def test_bad_size_is_refused_with_what_to_give(fake_predict, bad):
    from cks.evaluation import predict_many

    with pytest.raises(CksConfigError, match="true"):
        predict_many(_SizeModel(), [_sample()], size=bad)
    assert fake_predict == []
