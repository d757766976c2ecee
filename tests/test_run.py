"""A real seconds-long training run (debug=smoke), read back from disk and TensorBoard events."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ebm_cli.errors import UserError
from ebm_cli.runtime.checkpoint import load_checkpoint
from ebm_cli.tasks import infer as predict
from ebm_cli.tasks.train import train
from helpers import make_cfg, write_csv


def events(run_dir, run: str = ""):
    acc = EventAccumulator(str(run_dir / "tb" / run), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_run_folder_layout(smoke_run):
    run_dir, cfg, metrics = smoke_run
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "checkpoints" / "previous.pt").is_file()  # ckpt_every=20 < steps=30
    assert (run_dir / "figures" / "energy.png").stat().st_size > 1000
    assert (run_dir / "figures" / "slices.png").stat().st_size > 1000
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["step"] == cfg.trainer.steps
    assert saved["metrics"] == pytest.approx(metrics)
    for key in ("coverage@0.05", "precision@0.05", "chamfer", "best_of_k"):
        assert 0 <= metrics[key] < float("inf")


def test_tensorboard_events_read_back(smoke_run):
    run_dir, cfg, metrics = smoke_run
    acc = events(run_dir)
    tags = acc.Tags()
    for tag in ("Training/loss", "Training/e_pos", "Training/e_neg", "Training/grad_norm", "Training/beta", "metrics/coverage@0.05"):
        assert tag in tags["scalars"], tag
    losses = acc.Scalars("Training/loss")
    assert [s.step for s in losses] == [10, 20, 30]
    assert acc.Scalars("metrics/coverage@0.05")[-1].value == pytest.approx(metrics["coverage@0.05"])
    # the landscape image every 15 steps, and the final one with the candidates
    energy_images = acc.Images("landscape/energy")
    assert [im.step for im in energy_images] == [15, 30]
    assert energy_images[-1].width > 100 and energy_images[-1].height > 100
    assert "landscape/slices" in tags["images"]
    # the resolved config as text
    assert any("config" in t for t in tags["tensors"])
    # HParams: the session-start info holds the hyper-parameters, the experiment the metrics
    plugin = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["trainer.lr"].number_value == pytest.approx(cfg.trainer.lr)
    assert hp["energy"].string_value == "MLPEnergy"  # the group's class, by its short name
    assert not any(name.endswith("_target_") for name in hp)
    exp = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"])
    assert "metrics/coverage@0.05" in [m.name.tag for m in exp.experiment.metric_infos]
    # what the command line changed is marked, so the HParams tab lists and shows it first
    assert [h.name for h in exp.experiment.hparam_infos if h.differs] == ["trainer.lr"]


def test_tags_sort_training_curves_first(smoke_run):
    """TensorBoard orders tag groups by name, capitals first, and opens the first two: the
    training and validation curves, then the landscapes and the final metrics."""
    acc, val = events(smoke_run[0]), events(smoke_run[0], "validation")
    groups = sorted({tag.split("/")[0] for a in (acc, val) for kind in ("scalars", "images") for tag in a.Tags()[kind]})
    assert groups[0] == "Training" and set(groups[1:]) <= {"Validation", "landscape", "metrics"}


def test_checkpoint_is_complete_and_weights_only(smoke_run):
    run_dir, cfg, _ = smoke_run
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == cfg.trainer.steps
    assert {"model", "optimizer", "rng", "config", "meta"} <= set(state)
    assert "energy:" in state["config"] and state["optimizer"]["state"]
    assert torch.load(run_dir / "checkpoints" / "previous.pt", weights_only=True)["step"] == 20


def test_infer_and_landscape_tasks_use_the_checkpoint(smoke_run, tmp_path):
    run_dir, _, _ = smoke_run
    results = predict.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]"))
    assert [r["x"] for r in results] == [0.0, 0.5]
    assert all(1 <= len(r["candidates"]) <= 3 for r in results)
    energies = [c["energy"] for c in results[0]["candidates"]]
    assert energies == sorted(energies)
    before = (run_dir / "figures" / "energy.png").stat().st_mtime_ns
    paths = predict.landscape(make_cfg("task=landscape", f"run_dir={run_dir}", "inference=gradient"), tmp_path / "out")
    assert {p.name for p in paths} == {"energy.png", "slices.png"}
    assert all(p.parent == tmp_path / "out" / "figures" for p in paths)  # its own folder: the run is only read
    assert (run_dir / "figures" / "energy.png").stat().st_mtime_ns == before


def test_broken_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    ckpt = tmp_path / "checkpoints" / "last.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(ckpt)
    ckpt.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(UserError, match="cannot be read"):
        predict.infer(make_cfg("task=infer", f"run_dir={tmp_path}", "x=[0.0]"))
    with pytest.raises(UserError, match="has no checkpoints"):
        predict.infer(make_cfg("task=infer", f"run_dir={tmp_path / 'checkpoints'}", "x=[0.0]"))


def test_csv_with_four_branches_trains_and_evaluates(tmp_path):
    branches = [lambda x: 1.0 + 0.2 * x, lambda x: 0.3 * x, lambda x: -0.6, lambda x: -1.2 + 0.3 * x * x]
    path = write_csv(tmp_path / "four.csv", branches, [i / 100 - 1 for i in range(201)], noise=0.01)
    cfg = make_cfg("debug=smoke", "dataset=curves_csv", f"dataset.path={path}", "inference.k=4", "logger.tensorboard=false", "loss=hinge")
    metrics = train(cfg, tmp_path / "run")
    assert metrics["candidates_per_x"] <= 4 and 0 <= metrics["coverage@0.05"] <= 1
    assert not (tmp_path / "run" / "tb").exists()


def test_the_tasks_are_callable_from_python(tmp_path):
    """The README's "From Python" lines: compose, train into a new folder, infer from it."""
    from ebm_cli import compose_config

    run_dir = tmp_path / "runs" / "smoke"
    metrics = train(compose_config("debug=smoke", "energy.hidden=32", "logger.landscape_every=0"), run_dir)
    assert (run_dir / "metrics.json").is_file() and 0 <= metrics["coverage@0.05"] <= 1
    results = predict.infer(compose_config("task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]"))
    assert len(results) == 2 and results[0]["candidates"]


def test_changed_hparams_follow_the_overrides_as_typed():
    from ebm_cli.tasks.train import changed_hparams

    names = ["energy", "energy.hidden", "energy.z", "energy.z.k", "trainer.lr", "trainer.resume", "seed"]
    assert changed_hparams(names, ["energy/z=box", "+trainer.lr=0.1", "trainer.resume=auto"]) == ["energy.z", "energy.z.k", "trainer.lr"]
    assert changed_hparams(names, ["energy=mlp", "seed=3"]) == ["energy", "energy.hidden", "energy.z", "energy.z.k", "seed"]
