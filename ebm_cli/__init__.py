"""ebm_cli: an experiment runner for energy-based models (after LeCun's lecture on EBMs)."""

__version__ = "0.1.0"


def compose_config(*overrides: str, config_dir=None):
    """The composed ebm-run config, as `ebm-run <overrides>` would see it, for calling the tasks from
    Python: `train(compose_config("debug=smoke"), "runs/smoke")`. config_dir: a folder of your own
    config groups, searched as `--config-dir` is."""
    import os

    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from ebm_cli.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    if config_dir is not None:
        overrides = (*overrides, f"hydra.searchpath=[file://{os.path.abspath(config_dir)}]")
    with initialize_config_module("ebm_cli.configs", version_base="1.3"):
        return compose("config", overrides=list(overrides))
