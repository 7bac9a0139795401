"""Configuration: paper defaults, presets as small diffs, overrides and round trips."""
import pytest

from cks.config import BASE, PRESETS, Config, get_preset, preset_diff, with_overrides
from cks.errors import CksConfigError


def test_paper_defaults():
    assert BASE.backbone.name == "convnext_small" and BASE.backbone.init == "he"
    assert BASE.detector.strides == (4, 8, 16, 32)
    assert BASE.segmentor.window == 96 and BASE.segmentor.encoding == "learned"
    assert BASE.collaborator.foreground == (16, 32, 64) and BASE.collaborator.border == "cnn"
    assert BASE.loss.prior_scale == 2.0
    # size-dependent terms are size-relative (issue #9); the paper's absolute forms are a preset
    paper = get_preset("paper_absolute")
    assert paper.loss.collapse_exponent == 1.0 and paper.loss.prior_d == (20.0,) and not paper.size.normalize
    assert BASE.loss.consistency_principal == "linear" and BASE.loss.consistency_collaborator == "linear"
    assert BASE.train.steps == 90_000 and BASE.train.lr == 1e-3 and BASE.train.finetune_lr == 2e-4


def test_every_table_has_presets():
    names = set(PRESETS)
    for table, n in (("table2_", 3), ("table5_", 2), ("table6_", 3), ("table7_", 4)):
        assert sum(k.startswith(table) for k in names) >= n, table


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_small_visible_diffs(name):
    cfg = get_preset(name)
    diff = preset_diff(name)
    assert len(diff) <= 14  # the largest: "author", one entry per row of its diff table that a setting covers, and L_PW off
    base, new = BASE.to_dict(), cfg.to_dict()
    changed = {f"{s}.{k}" for s in base for k in base[s] if base[s][k] != new[s][k]}
    assert changed <= set(diff)  # nothing changes beyond the stated diff


@pytest.mark.parametrize("preset, recipe, results", [
    ("phase_points", ("table7_a2_b1", {"loss.pairwise_on": "both"}), "usiigaci_points_v2/a2_pairwise_both_8000_seed{}"),
    ("nuclear_pairwise", ("nuclear_points", {"loss.pairwise_weight": 1.0}),
     "deepcell_nuclei_v2/nuclear_pairwise_fresh_long_seed{}")])
def test_chosen_presets_are_the_headline_configurations(preset, recipe, results):
    """The presets named for what the tuning splits chose are exactly what the headline's CKS runs were trained with:
    their recorded commands' preset plus ``--set`` (``recipe``), and the configuration those runs recorded, every
    section but the budget (``train.*``: steps, seed, crops of the protocol). The committed results must be there."""
    import json
    from pathlib import Path

    assert get_preset(preset) == with_overrides(get_preset(recipe[0]), recipe[1])
    ours = get_preset(preset, size="convnext_atto").to_dict()
    for seed in (0, 1):
        f = Path(__file__).parents[1] / "results" / (results.format(seed) + ".json")
        recorded = Config.from_dict(json.loads(f.read_text())["config"]).to_dict()
        assert {s: v for s, v in recorded.items() if s != "train"} == {s: v for s, v in ours.items() if s != "train"}


def test_phase_points_leaves_the_base_as_it_was():
    """The choice has its own name; the base, and so every ablation row, keeps the paper's a1 collaborator."""
    assert get_preset("phase_points").collaborator.foreground == (16, 32, 64, 128)
    assert BASE.collaborator.foreground == (16, 32, 64) and BASE.loss.pairwise_on == "collaborator"


def test_overrides_and_errors():
    cfg = with_overrides(BASE, ["loss.prior_scale=0", "detector.strides=4,8", "backbone.pretrained=false"])
    assert cfg.loss.prior_scale == 0.0 and cfg.detector.strides == (4, 8) and cfg.backbone.pretrained is False
    with pytest.raises(CksConfigError, match="unknown config key"):
        with_overrides(BASE, ["loss.nope=1"])
    with pytest.raises(CksConfigError, match="section.key"):
        with_overrides(BASE, ["steps=3"])
    with pytest.raises(CksConfigError, match="unknown preset"):
        get_preset("table99")
    with pytest.raises(CksConfigError, match="bad value"):
        with_overrides(BASE, ["train.steps=many"])


def test_configs_without_prior_until_keep_the_whole_run_prior():
    """A config written before ``loss.prior_until`` existed (the prior on for the whole run) still means that."""
    old = get_preset("base").to_dict()
    del old["loss"]["prior_until"]
    assert Config.from_dict(old).loss.prior_until == 1.0
    assert Config.from_dict(get_preset("base").to_dict()).loss.prior_until == 0.5


def test_round_trip():
    cfg = get_preset("table7_a3_b2", size="convnext_atto")
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(CksConfigError):
        Config.from_dict({"loss": {"bogus": 1}})


@pytest.mark.parametrize("override,needle", [
    ("train.checkpoint_every=0", "train.checkpoint_every=0 is out of range: it must be > 0"),
    ("train.crop_size=0", "> 0"), ("train.lr=-1", "train.lr=-1.0"), ("train.steps=-5", ">= 0"),
    ("train.batch_size=0", "> 0"), ("train.optimizer=sgd", "one of 'adam', 'adamw'"),
    ("loss.mode=foo", "one of 'cks', 'supervised'"), ("segmentor.window=0", "> 0"), ("train.lr=nan", "> 0"),
    ("loss.prior_d=-3", "every entry must be > 0"), ("train.scale_range=1.2,0.8", "0 < low <= high"),
    ("train.scale_range=0,1", "0 < low <= high"), ("train.scale_range=1", "two factors")])
def test_out_of_range_values_fail_when_the_config_is_built(override, needle):
    from cks.config import get_preset, with_overrides
    from cks.errors import CksConfigError

    with pytest.raises(CksConfigError) as e:
        with_overrides(get_preset("base"), [override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_every_preset_is_valid():
    from cks.config import PRESETS, SIZES, get_preset, validate

    for name in PRESETS:
        for size in SIZES:
            validate(get_preset(name, size=size))


def test_presets_import_first_and_answer_from_config_too():
    """cks.presets builds on cks.config; importing either first works in a fresh interpreter, and cks.config
    hands out the presets' own objects (``from cks.config import get_preset`` still works)."""
    import subprocess
    import sys

    for first in ("cks.presets", "cks.config"):
        code = (f"import {first}\nfrom cks.config import PRESETS, get_preset\nimport cks.presets as p\n"
                "assert PRESETS is p.PRESETS and get_preset is p.get_preset\nprint(get_preset('supervised').loss.mode)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "supervised"
    import cks.config

    with pytest.raises(AttributeError):
        cks.config.NO_SUCH_NAME  # noqa: B018
