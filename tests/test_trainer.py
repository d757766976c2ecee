"""Open training: the optimizer, the learning-rate schedule and callbacks are config groups built by
`_target_` (a user's own from their --config-dir or module), the one training step is
ebm_cli.training.Trainer, and a resumed run is the uninterrupted one whatever they are."""

import json
import math
import os
import textwrap

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebm_cli.build import build_optimizer, build_scheduler
from ebm_cli.errors import UserError
from ebm_cli.losses.nll import NLL
from ebm_cli.tasks.checks import check_before_writing
from ebm_cli.tasks.train import prepare, train
from ebm_cli.training.callbacks import GradientClipping
from ebm_cli.training.ema import WeightAverage
from ebm_cli.training.schedulers import Cosine, WarmupCosine
from helpers import make_cfg, run_cli, sigterm_at_call

SHORT = ["debug=smoke", "trainer.steps=40", "trainer.ckpt_every=10", "trainer.log_every=5", "logger.landscape_every=0"]


def lrs_of(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_the_cosine_decays_to_min_lr_and_never_climbs_from_an_lr_below_it():
    params = [torch.nn.Parameter(torch.zeros(1))]
    lrs = lrs_of(Cosine(torch.optim.SGD(params, lr=0.02), total_steps=100, min_lr=1e-3), 120)
    assert lrs[0] == pytest.approx(0.02) and lrs[50] == pytest.approx((0.02 + 1e-3) / 2) and lrs[100] == pytest.approx(1e-3)
    assert lrs[119] == pytest.approx(1e-3)  # past total_steps it stays at its end
    assert lrs_of(Cosine(torch.optim.SGD(params, lr=1e-4), total_steps=100, min_lr=1e-3), 101) == pytest.approx([1e-4] * 101)
    warm = lrs_of(WarmupCosine(torch.optim.SGD(params, lr=0.02), total_steps=100, warmup_steps=10, min_lr=0.0), 101)
    assert warm[0] == pytest.approx(0.002) and warm[9] == pytest.approx(0.02) and warm[100] == pytest.approx(0.0)
    assert max(warm) == pytest.approx(0.02)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("scheduler", ["constant", "cosine", "warmup_cosine", "onecycle", "plateau"])
def test_every_packaged_optimizer_and_schedule_builds_over_the_energy(optimizer, scheduler):
    cfg = make_cfg(f"optimizer={optimizer}", f"scheduler={scheduler}")
    run, _, trainer = prepare(cfg)
    assert type(trainer.optimizer).__name__.lower() == optimizer
    first = {"onecycle": 0.02 / 25, "warmup_cosine": 0.02 / 100}.get(scheduler, 0.02)  # one-cycle starts at max_lr / 25
    assert trainer.lr == pytest.approx(first)
    assert {"ema", "grad_clip"} <= set(trainer.callbacks)


def test_a_run_logs_its_learning_rate_under_train_lr_and_follows_its_schedule(tmp_path):
    train(make_cfg(*SHORT, "scheduler=cosine", "trainer.eval_every=0"), tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    lrs = {e.step: e.value for e in events.Scalars("Training/lr")}
    # the lr of step s (counted from 1) is the cosine's at s - 1: from 0.02 at the start to min_lr at the end
    assert lrs[5] == pytest.approx(0.001 + 0.5 * 0.019 * (1 + math.cos(math.pi * 4 / 40)), rel=1e-5)
    assert lrs[40] == pytest.approx(0.001 + 0.5 * 0.019 * (1 + math.cos(math.pi * 39 / 40)), rel=1e-5)


def test_without_callbacks_the_trained_weights_are_evaluated_and_nothing_is_clipped(tmp_path):
    cfg = make_cfg(*SHORT, "callbacks=none")
    run, _, trainer = prepare(cfg)
    assert trainer.callbacks == {}
    train(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert "train_model" not in state  # no average: "model" is the trained weights


USER_MODULE = textwrap.dedent('''
    import json, os, signal, torch
    from ebm_cli.training.callbacks import Callback

    class Lion(torch.optim.Optimizer):
        """A user's optimizer (sign of the momentum), with its own state."""
        def __init__(self, params, lr=1e-3, beta=0.9):
            super().__init__(params, dict(lr=lr, beta=beta))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    m = self.state[p].setdefault("m", torch.zeros_like(p))
                    p.add_(torch.sign(group["beta"] * m + (1 - group["beta"]) * p.grad), alpha=-group["lr"])
                    m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])

    class Halving(torch.optim.lr_scheduler.LambdaLR):
        def __init__(self, optimizer, every=10):
            super().__init__(optimizer, lambda step: 0.5 ** (step // every))

    class StopAndCount(Callback):
        """Counts the steps it saw (its state is checkpointed), logs it, and stops the run at a step."""
        def __init__(self, stop_at=1000):
            self.stop_at, self.seen = stop_at, 0

        def on_step_end(self, trainer, step, stats):
            self.seen += 1
            trainer.tb.scalars({"seen": self.seen}, step, "mine/")
            if step >= self.stop_at:
                trainer.should_stop = f"StopAndCount saw step {step}"

        def on_train_end(self, trainer, step, metrics):
            (trainer.run_dir / "mine.json").write_text(json.dumps({"seen": self.seen, "step": step}))

        def state_dict(self):
            return {"seen": self.seen}

        def load_state_dict(self, state):
            self.seen = state["seen"]

    class NotACallback:
        pass

    class Broken(Callback):
        def on_after_backward(self, trainer):
            raise RuntimeError("my hook is broken")

    class StopAndSignal(Callback):
        """Asks the run to stop at step 12 and, within the same step, sends this process SIGTERM."""
        def on_step_end(self, trainer, step, stats):
            if step == 12:
                trainer.should_stop = "enough at step 12"
                os.kill(os.getpid(), signal.SIGTERM)

    class SeesTheEnd(Callback):
        """Writes what ended the run (on_exception) into the run folder."""
        def on_exception(self, trainer, step, error):
            (trainer.run_dir / "ended_by.json").write_text(json.dumps({"step": step, "error": type(error).__name__}))
''')


@pytest.fixture
def user_dir(tmp_path):
    """A user's folder: their module, and a --config-dir with their own optimizer, scheduler and callback."""
    (tmp_path / "my_training.py").write_text(USER_MODULE)
    conf = tmp_path / "conf"
    for group, name, body in [
        ("optimizer", "lion", "_target_: my_training.Lion\n_partial_: true\nlr: 0.002\n"),
        ("scheduler", "halving", "_target_: my_training.Halving\n_partial_: true\nevery: 10\n"),
        ("callbacks", "mine", "defaults:\n  - default\nstop:\n  _target_: my_training.StopAndCount\n  stop_at: 25\n"),
    ]:
        (conf / group).mkdir(parents=True)
        (conf / group / f"{name}.yaml").write_text(body)
    return tmp_path


def test_a_users_optimizer_scheduler_and_callback_run_from_their_config_dir(user_dir):
    run_dir = user_dir / "run"
    result = run_cli(["--config-dir", "conf", "optimizer=lion", "scheduler=halving", "callbacks=mine", *SHORT,
                      "trainer.eval_every=0", f"hydra.run.dir={run_dir}"], user_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 25  # the callback stopped it
    assert json.loads((run_dir / "mine.json").read_text()) == {"seen": 25, "step": 25}
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["callbacks"]["stop"] == {"seen": 25} and state["scheduler"]["last_epoch"] == 25
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("Training/lr")}[25] == pytest.approx(0.002 * 0.25)
    assert [e.value for e in events.Scalars("mine/seen")][-1] == 25
    # the run is served from a folder without the user's module: only training builds those classes
    elsewhere = user_dir / "elsewhere"
    elsewhere.mkdir()
    served = run_cli(["task=infer", f"run_dir={run_dir}", "x=[0.0]", f"hydra.run.dir={elsewhere / 'infer'}"], elsewhere)
    assert served.returncode == 0, served.stderr


def test_a_signal_in_the_step_where_the_run_stops_lets_it_finish_there(user_dir):
    """A stop asked for (patience, a callback) and a stop signal in the same step: the run ends at that
    step as a finished one (its final evaluation, "completed"), not as preempted and resumable past it."""
    run_dir = user_dir / "both"
    result = run_cli(["+callbacks.both._target_=my_training.StopAndSignal", *SHORT, "trainer.eval_every=0",
                      f"hydra.run.dir={run_dir}"], user_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 12


def test_a_users_callback_sees_the_step_that_diverged_and_the_run_still_reports_it(user_dir):
    """on_exception: a user's callback gets the Diverged of step 1 (its update not applied); the
    run's own divergence report is written beside it, exit 3."""
    run_dir = user_dir / "diverged"
    result = run_cli(["+callbacks.watch._target_=my_training.SeesTheEnd", "trainer.max_abs=1e-6", *SHORT,
                      f"hydra.run.dir={run_dir}"], user_dir)
    assert result.returncode == 3, result.stderr
    assert json.loads((run_dir / "ended_by.json").read_text()) == {"step": 0, "error": "Diverged"}
    report = json.loads((run_dir / "divergence.json").read_text())
    assert report["step"] == 1 and report["last_finite"] == {} and report["seed"] == 0
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("override,message", [
    (["optimizer=lion", "+optimizer.momentum=0.9"], "optimizer.momentum: Lion has no argument 'momentum' (it takes: lr, beta)"),
    (["optimizer.lr=-1"], "optimizer: Adam failed to build (ValueError: Invalid learning rate: -1"),
    (["optimizer._target_=my_training.Missing"], "optimizer: cannot import my_training.Missing"),
    (["+callbacks.bad._target_=my_training.NotACallback"], "callbacks.bad: NotACallback must subclass ebm_cli.training.callbacks.Callback"),
    (["+callbacks.bad._target_=my_training.Broken"], "callbacks.bad (Broken.on_after_backward) fails"),
    (["scheduler=plateau", "trainer.eval_every=0"], "scheduler: ReduceLROnPlateau steps on the validation objective"),
    (["scheduler=halving", "scheduler.every=0"], "scheduler: Halving failed to build (ZeroDivisionError"),
])
def test_a_users_training_parts_that_break_are_one_line_before_a_folder(user_dir, override, message):
    run_dir = user_dir / "refused"
    result = run_cli(["--config-dir", "conf", *override, *SHORT, f"hydra.run.dir={run_dir}"], user_dir)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not run_dir.exists()


def test_a_run_with_a_schedule_sgd_and_a_users_callback_resumes_bit_exact(user_dir, monkeypatch):
    """Killed at step 15 (a SIGTERM inside the step), resumed: the same weights, optimizer moments,
    scheduler and callback state as the run that was never interrupted."""
    os.chdir(user_dir)  # the user's module is importable from where they run
    monkeypatch.syspath_prepend(str(user_dir))
    args = [*SHORT, "optimizer=sgd", "scheduler=warmup_cosine", "scheduler.warmup_steps=5",
            "+callbacks.stop._target_=my_training.StopAndCount", "callbacks.grad_clip.max_norm=0.5"]
    whole = user_dir / "whole"
    expected = train(make_cfg(*args), whole)
    original = sigterm_at_call(monkeypatch, NLL, 15)
    cut = user_dir / "cut"
    with pytest.raises(UserError, match="stopped by SIGTERM at step 15"):
        train(make_cfg(*args), cut)
    monkeypatch.setattr(NLL, "__call__", original)
    resumed = train(make_cfg(*args, "trainer.resume=auto"), cut)
    assert {k: v for k, v in resumed.items() if not k.endswith("_time_s")} == \
        {k: v for k, v in expected.items() if not k.endswith("_time_s")}
    a, b = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (whole, cut))
    for key in ("model", "train_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 40
    assert a["callbacks"]["stop"] == b["callbacks"]["stop"] == {"seen": 40}
    assert json.dumps(a["optimizer"]["param_groups"]) == json.dumps(b["optimizer"]["param_groups"])


def test_the_pre_run_check_and_the_benchmark_take_the_runs_own_step(tmp_path):
    """One Trainer.step: the check builds it (an optimizer that fails is found before the folder), and
    the benchmark's time-to-quality case trains ours with it."""
    from ebm_cli.bench.quality import ours_step

    cfg = make_cfg("debug=smoke", "optimizer=sgd")
    check_before_writing(cfg, tmp_path / "checked")
    run, _, trainer = prepare(cfg)
    before = [p.detach().clone() for p in run.energy.parameters()]
    step = ours_step(run, cfg, trainer)
    x, y = run.data.x_train[:64], run.data.y_train[:64]
    assert math.isfinite(step(x, y, 0)) and trainer.step_count == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, run.energy.parameters()))
    assert isinstance(trainer.callbacks["grad_clip"], GradientClipping)
    assert isinstance(trainer.callbacks["ema"], WeightAverage) and trainer.callbacks["ema"].updates == 1


def test_build_functions_refuse_what_is_not_an_optimizer_or_a_scheduler():
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(UserError, match="optimizer: Linear must subclass torch.optim.Optimizer"):
        build_optimizer({"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1}, params)
    opt = build_optimizer({"_target_": "torch.optim.SGD", "lr": 0.1}, params)
    with pytest.raises(UserError, match="scheduler: Identity must subclass torch.optim.lr_scheduler.LRScheduler"):
        build_scheduler({"_target_": "torch.nn.Identity"}, opt)
    assert build_scheduler(None, opt) is None
