"""Held-out evaluation during training (trainer.eval_every, keep=best, patience, the moving average of
the weights) and its split, for every data kind, and every window of a .npy clip (dataset.windows)."""

import json
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ebm_cli.build import build_dataset
from ebm_cli.datasets.video import Video
from ebm_cli.errors import UserError
from ebm_cli.runtime.checkpoint import find_checkpoint, load_checkpoint
from ebm_cli.tasks.checks import check_before_writing
from ebm_cli.tasks.train import train
from helpers import make_cfg, write_csv

QUICK = ("logger.landscape_every=0", "trainer.log_every=10")
KINDS = {  # a few seconds of training of each data kind
    "curves": ("debug=smoke",),
    "video": ("experiment=video_latent", "trainer.steps=30", "trainer.batch_size=32", "dataset.train_size=150",
              "dataset.test_size=10", "trainer.baseline=false", "beta.steps=10"),
    "translation": ("experiment=translation_latent", "trainer.steps=30", "dataset.train_size=150",
                    "dataset.test_size=10", "beta.steps=10"),
}


def clips_npy(path, t=7, n=12, size=8, seed=0):
    """A (T, N, H, W) uint8 array of N clips whose every frame is distinct (frame value = clip, time)."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, (t, n, size, size), dtype=np.uint8)
    np.save(path, clips)
    return clips


def rows_of(x):
    return {tuple(r) for r in x.flatten(1).tolist()}


# -- the split -------------------------------------------------------------------------------------
@pytest.mark.parametrize("windows", ["all", "first"])
def test_every_window_of_a_clip_and_clips_held_out_whole(tmp_path, windows):
    clips = clips_npy(tmp_path / "clips.npy", t=7, n=12)
    data = Video(path=str(tmp_path / "clips.npy"), context=3, windows=windows, test_fraction=0.25)
    per_clip = 7 - 3 if windows == "all" else 1
    assert data.num_rows + len(data.x_test) == 12 * per_clip
    assert len(data.x_test) == 3 * per_clip  # 3 of the 12 clips, every window of them
    x_train, y_train = data.batch(torch.arange(data.num_rows))
    frames = torch.from_numpy(clips.astype(np.float32) / 255).transpose(0, 1)  # (N, T, H, W)
    windows_of = {c: [(frames[c, s : s + 3], frames[c, s + 3]) for s in range(per_clip)] for c in range(12)}

    def clip_of(x, y):
        found = [c for c, ws in windows_of.items() if any(torch.equal(x, a) and torch.equal(y, b) for a, b in ws)]
        assert len(found) == 1
        return found[0]

    train_clips = {clip_of(x, y) for x, y in zip(x_train, y_train)}
    test_clips = {clip_of(x, v[0]) for x, v in zip(data.x_test, data.valid)}
    assert len(train_clips) == 9 and len(test_clips) == 3 and not train_clips & test_clips
    assert set(data.train_groups.tolist()) == train_clips


@pytest.mark.parametrize("kind", ["curves", "curves_csv", "translation", "clips"])
def test_the_validation_split_is_carved_from_the_training_rows_only(tmp_path, kind):
    if kind == "curves_csv":
        path = write_csv(tmp_path / "c.csv", [lambda x: x, lambda x: -x], [i / 50 for i in range(100)])
        data = build_dataset(make_cfg("dataset=curves_csv", f"dataset.path={path}"))
    elif kind == "clips":
        clips_npy(tmp_path / "clips.npy", t=6, n=20)
        data = build_dataset(make_cfg("experiment=video_latent", f"dataset.path={tmp_path / 'clips.npy'}"))
    else:
        data = build_dataset(make_cfg(*KINDS[kind]))
    train, val = data.split_validation(0.2, seed=0)
    assert 0 < train.num_rows < data.num_rows
    assert torch.equal(train.x_test, data.x_test) and torch.equal(train.valid, data.valid)  # test untouched
    train_x = train.batch(torch.arange(train.num_rows))[0]
    assert not rows_of(val.x_test) & rows_of(train_x)  # no validation input is trained on
    assert val.valid.shape[:2] == val.valid_mask.shape and val.valid_mask.any(1).all()
    if kind == "clips":  # whole clips: the validation rows are every row of the held-out clips
        held = set(data.train_groups.tolist()) - set(train.train_groups.tolist())
        assert held and int(val.valid_mask.sum()) == sum(g in held for g in data.train_groups.tolist())
    if kind == "curves":  # generated: every branch is a valid y of a validation x
        assert val.valid.shape[1] == 3 and val.valid_mask.all()
        branches = val.valid[:, :, 0]
        assert torch.allclose(branches[:, 1], 0.4 * val.x_test[:, 0], atol=1e-6)
    else:  # a validation input's valid set: the y of its held-out rows
        n_rows = int(val.valid_mask.sum())
        assert n_rows == data.num_rows - train.num_rows
    val.check()
    train.check()
    assert train.y_space is data.y_space and val.y_space is data.y_space


def test_a_split_that_leaves_nothing_is_one_line(tmp_path):
    path = write_csv(tmp_path / "c.csv", [lambda x: x], [0.1, 0.2, 0.3])
    cfg = make_cfg("dataset=curves_csv", f"dataset.path={path}", "dataset.test_fraction=0.34", "trainer.eval_every=5")
    with pytest.raises(UserError, match="trainer.val_fraction=0.1: 2 training group"):
        check_before_writing(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,message", [
    (("trainer.ema=1",), "trainer.ema=1.0: must be in [0, 1)"),
    (("trainer.ema=-0.5",), "trainer.ema=-0.5: must be in [0, 1)"),
    (("trainer.keep=newest",), "trainer.keep=newest: must be last or best"),
    (("trainer.eval_every=-1",), "trainer.eval_every=-1: must be >= 0"),
    (("trainer.lr_drop=1.5",), "trainer.lr_drop=1.5: must be between 0 and 1"),
    (("trainer.lr_drops=-1",), "trainer.lr_drops=-1: must be >= 0"),
    (("trainer.eval_every=10", "trainer.val_fraction=1.0"), "trainer.val_fraction=1.0: must be between 0 and 1"),
    (("trainer.eval_every=10", "trainer.keep=best", "objective=train_time_s"),
     "objective=train_time_s: not measured on the validation split"),
    (("objective=bleu", "experiment=translation_latent"), "objective=bleu: not measured on the validation split"),
])
def test_bad_validation_settings_are_refused_before_a_folder(tmp_path, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        check_before_writing(make_cfg("debug=smoke", *overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- during training -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_validation_curves_go_to_tensorboard_beside_the_training_loss(tmp_path, kind):
    metrics = train(make_cfg(*KINDS[kind], *QUICK, "trainer.eval_every=10"), tmp_path)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    # the validation curves are a run of their own (tb/validation): TensorBoard gives it its own colour
    val = EventAccumulator(str(tmp_path / "tb" / "validation"), size_guidance={"scalars": 0})
    val.Reload()
    coverage = next(k for k in metrics if k.startswith("coverage@"))
    assert "Training/loss" in acc.Tags()["scalars"]
    for tag in ("Validation/loss", f"Validation/{coverage}", f"Validation/precision@{coverage.split('@')[1]}"):
        assert tag in val.Tags()["scalars"], (tag, val.Tags()["scalars"])
    assert not any(t.startswith("Validation/") for t in acc.Tags()["scalars"])
    assert [e.step for e in val.Scalars("Validation/loss")] == [10, 20, 30]
    assert all(np.isfinite(e.value) for e in val.Scalars("Validation/loss"))
    assert all(0 <= e.value <= 1 for e in val.Scalars(f"Validation/{coverage}"))
    assert "custom_scalars__config__" in acc.Tags()["tensors"]  # the train-vs-validation chart
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["best_validation"]["step"] in (10, 20, 30) and record["stopped_early"] is False


def test_validation_does_not_change_training(tmp_path):
    """Evaluations draw on their own random stream: the same split evaluated at other steps trains
    the same weights (and the same average of them)."""
    a = train(make_cfg("debug=smoke", *QUICK, "trainer.eval_every=10", "trainer.keep=last"), tmp_path / "a")
    b = train(make_cfg("debug=smoke", *QUICK, "trainer.eval_every=15", "trainer.keep=last"), tmp_path / "b")
    for key in ("model", "train_model"):
        wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")[key]
        wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")[key]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["chamfer"] == b["chamfer"]


def test_keep_best_evaluates_and_serves_the_best_checkpoint(tmp_path):
    train(make_cfg("debug=smoke", *QUICK, "trainer.eval_every=10", "trainer.keep=best"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["step"] == record["best_validation"]["step"] == record["evaluated_step"]
    assert best["best"]["value"] == record["best_validation"]["coverage"]
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoints" / "best.pt"  # what task=infer reads
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 30
    # the HParams tab has the kept weights' validation objective beside the test metrics (a sweep's order)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    exp = plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/experiment"])
    assert {"metrics/validation_coverage", "metrics/coverage@0.05"} <= {m.name.tag for m in exp.experiment.metric_infos}
    assert acc.Scalars("metrics/validation_coverage")[-1].value == pytest.approx(record["best_validation"]["coverage"])


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    # a learning rate this small leaves the objective where the first evaluation found it
    train(make_cfg("debug=smoke", *QUICK, "trainer.steps=100", "trainer.lr=1e-12", "trainer.eval_every=10",
                   "trainer.patience=2", "trainer.lr_drops=0"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["stopped_early"] is True and record["best_validation"]["step"] in (10, 20, 30)
    assert record["step"] == 30 and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 30


def test_no_stop_before_the_beta_annealing_ends(tmp_path):
    """While beta still moves the objective is not comparable from one evaluation to the next: the
    same run as above counts its evaluations from beta.steps on (60, 70, 80), and keeps none before."""
    train(make_cfg("debug=smoke", *QUICK, "trainer.steps=100", "trainer.lr=1e-12", "trainer.eval_every=10",
                   "trainer.patience=2", "trainer.lr_drops=0", "beta=anneal", "beta.steps=55"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["stopped_early"] is True and record["step"] == 80
    assert record["best_validation"]["step"] in (60, 70, 80)  # a tie keeps the later weights


def test_the_moving_average_is_what_is_evaluated_and_served(tmp_path):
    """trainer.ema: the checkpoint's `model` (what task=infer loads and the metrics are of) is the
    average of the trained weights, which it keeps beside it for a resume; with ema=0 they are one."""
    from ebm_cli.tasks.infer import load_run

    train(make_cfg("debug=smoke", *QUICK, "trainer.keep=last"), tmp_path / "ema")
    state = load_checkpoint(tmp_path / "ema" / "checkpoints" / "last.pt")
    assert state["average"]["updates"] == 30
    assert any(not torch.equal(state["model"][k], state["train_model"][k]) for k in state["model"])
    energy, _, _ = load_run(tmp_path / "ema", torch.device("cpu"))
    assert all(torch.equal(v, state["model"][k]) for k, v in energy.state_dict().items())
    train(make_cfg("debug=smoke", *QUICK, "trainer.keep=last", "trainer.ema=0"), tmp_path / "plain")
    plain = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    assert "train_model" not in plain and "average" not in plain


def test_without_validation_a_run_trains_to_its_ceiling(tmp_path):
    train(make_cfg("debug=smoke", *QUICK, "trainer.eval_every=0"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["step"] == 30 and "best_validation" not in record
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_a_plateau_lowers_the_learning_rate_in_training(tmp_path):
    """trainer.lr_drops=1: the first plateau multiplies the lr by trainer.lr_drop (Training/lr shows it),
    the second stops the run."""
    train(make_cfg("debug=smoke", *QUICK, "trainer.steps=200", "trainer.lr=1e-12", "trainer.eval_every=10",
                   "trainer.patience=2", "trainer.lr_drops=1", "trainer.lr_drop=0.5"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["stopped_early"] is True and record["step"] == 50  # 10, 20, 30 (lower), 40, 50 (stop)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    lrs = {e.step: e.value for e in events.Scalars("Training/lr")}
    assert lrs[30] == pytest.approx(1e-12) and lrs[40] == pytest.approx(0.5e-12)


def test_a_run_stopped_early_and_killed_in_its_final_evaluation_resumes_to_the_same_end(tmp_path):
    """The stop is part of the checkpoint: resumed, the run does not train on past its stopping step."""
    args = ("debug=smoke", *QUICK, "trainer.steps=100", "trainer.lr=1e-12", "trainer.eval_every=10",
            "trainer.patience=2")
    first = train(make_cfg(*args), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["stopped_early"] is True
    (tmp_path / "metrics.json").unlink()  # as if killed after the final checkpoint, before metrics.json
    again = train(make_cfg(*args, "trainer.resume=auto"), tmp_path)
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed["step"] == record["step"] and resumed["stopped_early"] is True
    assert {k: v for k, v in again.items() if not k.endswith("_time_s")} == \
        {k: v for k, v in first.items() if not k.endswith("_time_s")}
