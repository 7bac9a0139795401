"""cks: collaborative knowledge sharing for point-supervised single-cell segmentation.

The few names a user needs, importable from ``cks`` (all but ``predict`` and ``train`` load on first use)::

    import cks
    model = cks.load_model("runs/cks")                          # a trained run folder (or checkpoint.pt)
    image = cks.read_image("field.tif")                         # [C, H, W]
    label, table = cks.predict(model, image)                    # cell size estimated; or diameter=30
    cks.write_labels(label, "out/field.labels.tif"); cks.write_table(table, "out/field.csv")
    print(cks.evaluate_model(model, cks.load_dataset("my_set_with_masks/"))["ap50"])

Training: ``cks.train(cks.get_preset("phase_points", size="convnext_atto"), samples)`` (what ``cks train --labels
points`` trains; ``base`` is the ablations' reference); the command line is ``cks``.
"""
from importlib import import_module

# ``predict`` and ``train`` are also module names: importing the functions here, before anything imports
# ``cks.predict`` / ``cks.train`` as modules, keeps ``cks.predict`` and ``cks.train`` the functions
from .predict import predict  # noqa: E402
from .train import train  # noqa: E402

#: public name -> module that defines it
_EXPORTS = {
    "Config": "config", "get_preset": "config", "with_overrides": "config", "preset_diff": "config",
    "load_model": "checkpoint",
    "predict": "predict", "scores_by_label": "predict",
    "predict_many": "evaluation", "evaluate_model": "evaluation",
    "evaluate": "metrics",
    "train": "train", "read_history": "run_folder",
    "read_image": "data.io", "read_label": "data.io",
    "load_dataset": "data.spec",
    "write_labels": "data.writers", "write_table": "data.writers", "read_table_scores": "data.writers",
    "read_points": "points", "write_points": "points", "points_from_nuclei": "points",
    "estimate_diameter": "size",
    "CksError": "errors", "CksDataError": "errors", "CksConfigError": "errors", "CksCheckpointError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cks' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
