"""benchmarks/pseudo_labels.py: a run's own masks on its training fields, in a folder every reader of cks takes."""
import json

import numpy as np
import torch

from benchmarks import pseudo_labels
from cks.cli import main
from cks.data.io import read_label
from cks.data.spec import load_dataset
from cks.evaluation import predict_many
from cks.checkpoint import load_model
from tests.cli_helpers import TINY, write_set


def test_pseudo_labels_are_the_runs_own_masks_in_the_usiigaci_layout(tmp_path):
    torch.set_num_threads(1)
    for i in (1, 2):
        write_set(tmp_path / "data" / f"set{i}", seed=i)
    run = tmp_path / "RUN"
    assert main(["train", "--data", str(tmp_path / "data"), "--labels", "points", "--out", str(run), "--steps", "2",
                 *TINY]) == 0
    out = tmp_path / "PSEUDO"
    summary = pseudo_labels.main(["--run", str(run), "--data", str(tmp_path / "data"), "--out", str(out),
                                  "--score-threshold", "0.0"])
    # the same prediction, made here independently: the written labels are exactly the run's masks
    samples = load_dataset(str(tmp_path / "data"), scale=1.0, points="none")
    expected = predict_many(load_model(run), samples, size="auto", score_threshold=0.0)
    written = load_dataset(str(out), scale=1.0, points="auto")  # read back as a Usiigaci data set
    assert [s["name"] for s in written] == ["set1", "set2"]
    for s, w, (label, _, _) in zip(samples, written, expected):
        np.testing.assert_allclose(w["image"], s["image"])
        assert np.array_equal(read_label(out / s["name"] / "instances_ids.png"), label)
        assert (label[w["label"] > 0] > 0).all()  # the reader keeps each id's largest component, nothing new
    rec = json.loads((out / "pseudo_labels.json").read_text())
    assert rec == json.loads(json.dumps(summary)) and rec["score_threshold"] == 0.0
    assert [f["cells"] for f in rec["fields"]] == [len(np.unique(e[0])) - 1 for e in expected]
