"""trainer.compile (with its eager fallback) and trainer.precision, on the CPU with the real configs."""

import logging

import pytest
import torch

from ebm_cli.errors import UserError
from ebm_cli.runtime.accelerate import wants_compile
from ebm_cli.tasks.train import train
from helpers import make_cfg

SMOKE = ("debug=smoke", "trainer.device=cpu", "logger.tensorboard=false", "logger.landscape_every=0")


def without_timings(metrics):
    return {k: v for k, v in metrics.items() if not k.endswith("_s")}


@pytest.mark.parametrize("setting, device, steps, expected", [
    ("auto", "cpu", 100000, False),  # no gain per step on the CPU, and ~20 s to compile
    ("auto", "cuda", 20000, True),
    ("auto", "cuda", 1000, False),  # a short run would spend more time compiling than training
    ("true", "cpu", 10, True),
    (True, "cpu", 10, True),  # `trainer.compile=true` on the command line arrives as a bool
    ("false", "cuda", 100000, False),
])
def test_auto_compiles_only_where_it_pays(setting, device, steps, expected):
    assert wants_compile(setting, torch.device(device), steps) is expected


def test_a_failing_compiler_falls_back_to_eager_with_one_line(tmp_path, monkeypatch, caplog):
    """A compiled call that raises hands over to the eager module: the run completes with exactly
    the numbers of an eager run, and says so once."""
    eager = train(make_cfg(*SMOKE, "trainer.compile=false"), tmp_path / "eager")

    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("backend exploded\nsecond line of a long compiler error")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level(logging.INFO, logger="ebm_cli"):
        fallen_back = train(make_cfg(*SMOKE, "trainer.compile=true"), tmp_path / "compiled")
    assert without_timings(fallen_back) == without_timings(eager)
    lines = [r.getMessage() for r in caplog.records if "running eager" in r.getMessage()]
    assert len(lines) == 1 and "backend exploded" in lines[0] and "\n" not in lines[0], lines


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """torch.compile of the default energy on the CPU (inductor): the same metrics to rounding."""
    eager = train(make_cfg(*SMOKE, "trainer.compile=false"), tmp_path / "eager")
    compiled = train(make_cfg(*SMOKE, "trainer.compile=true"), tmp_path / "compiled")
    for key, value in without_timings(eager).items():
        assert compiled[key] == pytest.approx(value, rel=0.05, abs=0.02), key


def test_bf16_autocast_trains_to_finite_metrics(tmp_path):
    for overrides in [(), ("loss=cd",), ("experiment=curves_latent",)]:
        metrics = train(make_cfg(*SMOKE, "trainer.precision=bf16", *overrides), tmp_path / "_".join(overrides or ["nll"]))
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics


@pytest.mark.parametrize("override, message", [
    ("trainer.compile=sometimes", "trainer.compile=sometimes: must be auto, true or false"),
    ("trainer.compile_mode=fast", "trainer.compile_mode=fast: must be one of"),
    ("trainer.precision=fp16", "trainer.precision=fp16: must be one of fp32, tf32, bf16"),
])
def test_bad_acceleration_settings_are_one_line(tmp_path, override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        train(make_cfg(*SMOKE, override), tmp_path)
    assert not (tmp_path / "checkpoints").exists()
