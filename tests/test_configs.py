"""Every option of every config group composes against the schema and passes validation."""

from importlib import resources

import pytest

from ebm_cli.validate import validate
from helpers import make_cfg

GROUPS = ["task", "dataset", "energy", "inference", "beta", "loss", "trainer", "logger", "experiment", "debug",
          "launcher", "hparams_search"]
# Options that select a Hydra plugin compose only where its extra is installed.
PLUGINS = {
    ("launcher", "joblib"): "hydra_plugins.hydra_joblib_launcher",
    ("launcher", "submitit_local"): "hydra_plugins.hydra_submitit_launcher",
    ("launcher", "submitit_slurm"): "hydra_plugins.hydra_submitit_launcher",
    ("hparams_search", "curves_optuna"): "hydra_plugins.hydra_optuna_sweeper",
}
# Options that need a value from the user before they can run.
REQUIRED = {
    ("dataset", "curves_csv"): ["dataset.path=__CSV__"],
    ("task", "infer"): ["run_dir=__RUN__", "x=[0.0]"],
    ("task", "landscape"): ["run_dir=__RUN__"],
    ("task", "compare_inference"): ["run_dir=__RUN__"],
    # options that serve only a decoder energy
    ("inference", "z_sweep"): ["energy=decoder"],
    ("loss", "free_energy"): ["energy=decoder"],
    # frames: a conv energy served by the z-sweep
    ("dataset", "video"): ["energy=conv_latent", "inference=z_sweep", "loss=free_energy"],
    ("energy", "conv_latent"): ["dataset=video", "inference=z_sweep", "loss=free_energy"],
    ("energy", "conv_regressor"): ["dataset=video", "inference=z_sweep"],
    # sequences: the chain energy served by dynamic programming
    ("dataset", "translation"): ["energy=chain", "inference=dp"],
    ("energy", "chain"): ["dataset=translation", "inference=dp"],
}


def options(group):
    folder = resources.files("ebm_cli.configs") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"config group {group} has no options"


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_validates(group, option, tmp_path):
    if (group, option) in PLUGINS:
        pytest.importorskip(PLUGINS[(group, option)])
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n0,1\n0,2\n1,1\n")
    extra = [o.replace("__CSV__", str(csv)).replace("__RUN__", str(tmp_path)) for o in REQUIRED.get((group, option), [])]
    cfg = make_cfg(f"{group}={option}", *extra)
    if (group, option) == ("inference", "dp"):  # no curves energy is a chain: refused in one line
        from ebm_cli.errors import UserError

        with pytest.raises(UserError, match="needs a chain-structured energy"):
            validate(cfg)
        return
    validate(cfg)
    if group not in ("experiment", "debug", "launcher", "hparams_search"):
        assert cfg[group] is not None


def test_defaults_are_the_documented_ones():
    cfg = make_cfg()
    assert (cfg.task.name, cfg.dataset.name, cfg.energy.name, cfg.inference.name, cfg.loss.name, cfg.beta.name) == (
        "train", "curves", "mlp", "grid", "nll", "constant")
    assert len(cfg.dataset.branches) == 3


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("trainer.steps=-1", "trainer.steps=-1: must be >= 0"),
        ("beta.value=0", "beta.value=0.0: must be > 0"),
        ("inference.k=0", "inference.k=0: must be > 0"),
        ("dataset.eps=0", "dataset.eps=0.0: must be > 0"),
        ("energy.activation=swish", "energy.activation=swish"),
        ("trainer.device=tpu", "trainer.device=tpu"),
        ("dataset.x_min=2", "dataset.x_min=2.0: must be below"),
    ],
)
def test_impossible_values_are_named(override, fragment):
    from ebm_cli.errors import UserError

    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        validate(make_cfg(override))
