"""Case `time_to_quality`: how long until the coverage on the held-out x reaches 0.95. One row.

ours: ebm-run's configured loss (by default loss=nll on the curves with the MLP energy), energy, data,
      optimiser and learning-rate schedule, stepped in the same loop as the peer (below), so that both stop
      at the evaluation that first reaches 0.95; check: it does within task.time_limit. ebm-run's own run
      of the same config (ebm_cli.tasks.train.train into <run dir>/time_to_quality/, to its last step, with
      checkpoints and figures) runs too: its coverage and wall time are in the row's note.
peer: TorchEBM's contrastive-divergence recipe, its ContrastiveDivergence loss (CD-k: chains start at the
      batch's data) with its LangevinDynamics sampler, training the run's own energy (the same architecture
      and seed) on the same training pairs with the same optimiser (Adam, trainer.lr, trainer.grad_clip),
      with the CD settings of ebm-run's loss=cd before the speed work (30 steps of 1e-3, energy penalty 0.1) and the y box as its clamp. TorchEBM
      samples its state alone: x is held fixed per batch by passing it as the model's conditioning
      (model_kwargs), so U(y; x) = F(x, y).
The loop: every quality_eval_every steps an evaluation exactly as ours (ebm_cli.tasks.evaluate.evaluate_model:
the run's inference on the test x, coverage@eps); the time is the training time (evaluations off the clock)
until the evaluation that reached 0.95, plus that evaluation. One that never does within task.time_limit
seconds of training gets the limit as its time (a lower bound), and the row says so.
"""

import copy
import math
import time
from pathlib import Path
from typing import List

import torch
from omegaconf import OmegaConf, open_dict

from ebm_cli.bench.common import FAILED, PASSED, host_default, import_peer, peer_label, row, skipped_row, sync
from ebm_cli.runtime.summary import metric_key
from ebm_cli.schema import TaskConfig
from ebm_cli.training.trainer import Diverged

TARGET = 0.95
PEER_CD = dict(k_steps=30, step_size=1e-3, energy_reg_weight=0.1)  # loss=cd's steps, step_size and alpha before the speed work
# task.size=tiny: a seconds-long run through both code paths (its coverage is not quality)
TINY = {"trainer": dict(steps=10, log_every=5, ckpt_every=0),
        "dataset": dict(train_size=256, test_size=11),
        "logger": dict(tensorboard=False, landscape_every=0, resolution=16)}


def train_config(cfg, settings):
    """The run's config as a training run (task=train), shrunk for task.size=tiny."""
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.task = OmegaConf.structured(TaskConfig(name="train"))  # a training run's task node: its name alone
    c.logger.progress = False  # no live progress bar inside the bench's output
    if settings.tiny:
        for group, values in TINY.items():
            for key, value in values.items():
                if key in c[group]:
                    c[group][key] = value
    return c


def rng_fork(device: torch.device):
    """Training seeds the global RNGs: the bench's own stream is restored afterwards."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def conditional_model(torchebm, energy, device: torch.device):
    """The run's energy F(x, y) as a TorchEBM model of y alone, x passed as conditioning: U(y; cond=x)."""
    from torchebm.core import BaseModel

    class Conditional(BaseModel):
        def __init__(self):
            super().__init__(device=device)
            self.energy = energy

        def forward(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return self.energy(cond, y)

    return Conditional()


def peer_optimiser(energy, cfg):
    """The peer trains with ebm-run's configured optimizer (optimizer=, adam by default) and gradient
    clipping (trainer.grad_clip): update(loss) applies one step."""
    from ebm_cli.build import build_optimizer
    from ebm_cli.training.callbacks import GradientClipping

    opt = build_optimizer(cfg.optimizer, energy.parameters())
    clip = GradientClipping(cfg.trainer.grad_clip)

    def update(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(energy.parameters(), clip.max_norm)
        opt.step()

    return update


def peer_step(torchebm, run, cfg, trainer=None):
    """TorchEBM's CD recipe as one training step (xb, yb, step) -> loss."""
    from torchebm.losses import ContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    energy, device, space = run.energy, run.device, run.data.y_space
    model = conditional_model(torchebm, energy, device)
    sampler = LangevinDynamics(model, step_size=PEER_CD["step_size"], noise_scale=1.0, clamp=(space.low, space.high),
                               device=device)
    loss_fn = ContrastiveDivergence(model, sampler, k_steps=PEER_CD["k_steps"], persistent=False,
                                    energy_reg_weight=PEER_CD["energy_reg_weight"], device=device)
    update = peer_optimiser(energy, cfg)

    def step(xb: torch.Tensor, yb: torch.Tensor, i: int) -> float:
        loss, _ = loss_fn(yb, model_kwargs={"cond": xb})
        update(loss)
        return float(loss.detach())

    return step


def ours_step(run, cfg, trainer):
    """ebm-run's own training step (ebm_cli.training.Trainer, as train builds it: the configured loss,
    beta schedule, optimizer, learning-rate schedule and callbacks), without its logging,
    checkpoints and figures."""
    from ebm_cli.core.energy import LatentEnergy

    def step(xb: torch.Tensor, yb: torch.Tensor, i: int) -> float:
        b = run.beta(i)
        if isinstance(run.energy, LatentEnergy):
            run.energy.set_beta(b)
        return trainer.step(xb, yb, b)["loss"]

    return step


def train_until(cfg, settings, make_step, key_name: str = "coverage") -> dict:
    """Train the run's energy (built from cfg: data, architecture and seed as ours) with make_step(run, cfg, trainer)
    until coverage >= TARGET on the test x, the time limit, or (tiny) trainer.steps steps; evaluated every
    quality_eval_every steps with ebm-run's own evaluation (evaluations off the clock)."""
    from ebm_cli.tasks.evaluate import evaluate_model
    from ebm_cli.tasks.prepare import prepare
    from ebm_cli.tasks.train import seed_everything

    t = cfg.trainer
    seed_everything(cfg.seed)
    run, _, trainer = prepare(cfg)  # the same data, energy (architecture and seed) and inference as ours
    data, energy, inference, device = run.data, run.energy, run.inference, run.device
    step_fn = make_step(run, cfg, trainer)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    max_steps = t.steps if settings.tiny else None
    train_s, step, best, best_step, reached, losses_finite = 0.0, 0, -1.0, 0, None, True
    energy.train()
    while True:
        start = time.perf_counter()
        idx = torch.randint(0, len(x_train), (t.batch_size,), device=device)
        xb, yb = data.augment(x_train[idx], y_train[idx])
        try:
            loss = step_fn(xb, yb, step)
        except Diverged:  # ours stops within the step that diverges
            loss = math.nan
        sync(device)
        train_s += time.perf_counter() - start
        step += 1
        losses_finite = losses_finite and math.isfinite(loss)
        out_of_time = train_s >= settings.time_limit or (max_steps is not None and step >= max_steps)
        if step % settings.quality_eval_every == 0 or out_of_time:
            metrics = evaluate_model(energy, inference, data, device)["metrics"]
            energy.train()
            coverage = metrics[metric_key(metrics, key_name)]
            if coverage > best:
                best, best_step = coverage, step
            if coverage >= TARGET:
                reached = train_s + metrics["infer_time_s"]
                break
        if out_of_time:
            break
    return {"seconds": reached, "best": best, "best_step": best_step, "steps": step, "train_s": train_s,
            "losses_finite": losses_finite}


def outcome(who: str, result: dict, settings) -> str:
    if result["seconds"] is not None:
        return f"{who} reached {TARGET} at step {result['best_step']} ({result['seconds']:.1f} s)"
    return (f"{who} did not reach {TARGET} in {settings.time_limit:g} s (best {result['best']:.2f} at step "
            f"{result['best_step']} of {result['steps']}): its time is the limit, a lower bound")


def run(cfg, settings, device: torch.device, run_dir: Path) -> List[dict]:
    from ebm_cli.tasks.train import train

    c = train_config(cfg, settings)
    folder = Path(run_dir) / "time_to_quality"
    with rng_fork(device), host_default():  # ebm-run's own data loading builds on the default device
        start = time.perf_counter()
        metrics = train(c, folder)
        wall = time.perf_counter() - start
    key = metric_key(metrics, "coverage")
    coverage = metrics[key]
    train_s = metrics["train_time_s"] + metrics["infer_time_s"]
    loss_name = c.loss._target_.rsplit(".", 1)[-1]
    data_name = str(c.dataset.get("_target_", "data")).rsplit(".", 1)[-1].lower()
    n = c.dataset.get("train_size")
    size = f"{data_name}{f' n={n}' if n else ''}, batch {c.trainer.batch_size}"
    peer = peer_label("torchebm", "ContrastiveDivergence")  # with its LangevinDynamics sampler
    ours_train = f"ebm-run train, {c.trainer.steps} steps, {loss_name}"
    ours_loop = f"ebm_cli {loss_name}, eval every {settings.quality_eval_every}"
    torchebm = import_peer("torchebm")
    with rng_fork(device), host_default():
        mine = train_until(c, settings, ours_step)
        theirs = train_until(c, settings, lambda r, cc, tr: peer_step(torchebm, r, cc)) if torchebm is not None else None
    mine_s = mine["seconds"] if mine["seconds"] is not None else settings.time_limit
    if theirs is None:
        return [skipped_row("time_to_quality", size, ours_loop, peer, mine_s)]
    whole_run = (f"ebm-run's default run as a whole ({ours_train}): {key} {coverage:.3f}, {wall:.1f} s with "
                 f"checkpoints, figures and evaluation")
    if settings.tiny:
        ok = all(0.0 <= v <= 1.0 for v in (coverage, mine["best"], theirs["best"]))
        ok = ok and mine["losses_finite"] and theirs["losses_finite"]
        peer_s = theirs["seconds"] if theirs["seconds"] is not None else theirs["train_s"]
        mine_s = mine["seconds"] if mine["seconds"] is not None else mine["train_s"]
        note = (f"tiny: a smoke run of the code paths, not quality ({key}: train() {coverage:.2f}, ours' loop "
                f"{mine['best']:.2f}, peer {theirs['best']:.2f} after {theirs['steps']} steps); check: metrics in "
                f"[0, 1], losses finite")
        return [row("time_to_quality", size, ours_loop, peer, mine_s, peer_s, PASSED if ok else FAILED, note)]
    peer_s = theirs["seconds"] if theirs["seconds"] is not None else settings.time_limit
    return [row("time_to_quality", size, ours_loop, peer, mine_s, peer_s,
                PASSED if mine["seconds"] is not None else FAILED,
                f"both in one loop, evaluated alike, evaluations off the clock: {outcome('ours', mine, settings)}; "
                f"{outcome('peer', theirs, settings)}; check: ours reaches {TARGET} within the limit; {whole_run}",
                coverage_ours_best=mine["best"], ours_steps=mine["steps"], coverage_peer_best=theirs["best"],
                peer_steps=theirs["steps"], coverage_ours_run=coverage, ours_run_wall_s=wall, ours_run_train_s=train_s)]
