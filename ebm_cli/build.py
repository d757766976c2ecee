"""The one place that turns config nodes into objects (data, energies, inference, losses)."""

import math
from types import SimpleNamespace
from typing import Any, Dict, Union

import torch
from omegaconf import OmegaConf

from ebm_cli.data import data_kind
from ebm_cli.data.curves import CurvesData, load_curves
from ebm_cli.data.translation import TranslationData, load_translation
from ebm_cli.data.video import VideoData, load_video
from ebm_cli.energies.base import BoxSpace
from ebm_cli.energies.chain import ChainEnergy
from ebm_cli.energies.conv import ConvLatentEnergy, ConvRegressorEnergy
from ebm_cli.energies.latent import DecoderEnergy, LatentMLPEnergy, build_z_space
from ebm_cli.energies.mlp import MLPEnergy, RegressorEnergy
from ebm_cli.errors import UserError
from ebm_cli.inference.dfo import CEMInference, DFOInference
from ebm_cli.inference.dp import DPInference
from ebm_cli.inference.gradient import GradientInference
from ebm_cli.inference.langevin import LangevinInference
from ebm_cli.inference.grid import GridInference
from ebm_cli.inference.z_sweep import ZSweepInference
from ebm_cli.losses import ChainNLL, ContrastiveDivergence, FreeEnergyLoss, GibbsNLL, Hinge


def resolve_device(name: str) -> torch.device:
    """auto = cuda when available; asking for cuda without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={name}: no CUDA device is available on this machine (use cpu or auto)")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(f"trainer.device={name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)


Data = Union[CurvesData, VideoData, TranslationData]
BASELINES = {"curves": "regressor", "video": "conv_regressor"}  # the feed-forward MSE model per data kind


def build_data(cfg) -> Data:
    kind = data_kind(cfg.dataset)
    if kind == "video":
        return load_video(cfg.dataset, cfg.seed)
    if kind == "translation":
        return load_translation(cfg.dataset, cfg.seed)
    return load_curves(cfg.dataset, cfg.seed)


def data_meta(data: Data) -> Dict[str, Any]:
    """What an energy needs to be rebuilt without the data (stored in checkpoints)."""
    if isinstance(data, TranslationData):
        return {"src_vocab": data.src_vocab, "tgt_vocab": data.tgt_vocab, "length": int(data.y_train.shape[1])}
    x_shape = list(data.x_train.shape[1:])
    return {
        "x_dim": math.prod(x_shape),
        "x_shape": x_shape,
        "x_low": data.x_low,
        "x_high": data.x_high,
        "y_low": data.y_low,
        "y_high": data.y_high,
        "y_shape": list(data.y_train.shape[1:]),
    }


def build_energy(cfg, meta: Dict[str, Any]) -> torch.nn.Module:
    if cfg.name == "chain":
        return ChainEnergy(len(meta["src_vocab"]), len(meta["tgt_vocab"]), meta["length"], cfg.k, cfg.hidden, cfg.eliminate)
    space = BoxSpace(meta["y_low"], meta["y_high"], tuple(meta["y_shape"]))
    common = (meta["x_dim"], meta["x_low"], meta["x_high"], space)
    if cfg.name in ("mlp", "regressor"):
        cls = {"mlp": MLPEnergy, "regressor": RegressorEnergy}[cfg.name]
        return cls(*common, cfg.hidden, cfg.depth, cfg.activation)
    frames = (meta.get("x_shape", [meta["x_dim"]]), meta["x_low"], meta["x_high"], space)
    if cfg.name == "conv_regressor":
        return ConvRegressorEnergy(*frames, cfg.channels, cfg.hidden, cfg.depth, cfg.activation)
    z_space, f = build_z_space(cfg.z), cfg.free_energy
    options = dict(eliminate=f.eliminate, method=f.method, points=f.points, samples=f.samples,
                   restarts=f.restarts, steps=f.steps, lr=f.lr)
    if cfg.name == "decoder":
        return DecoderEnergy(*common, z_space, cfg.hidden, cfg.depth, cfg.activation, prior=cfg.prior, reg=cfg.z.reg, **options)
    if cfg.name == "conv_latent":
        return ConvLatentEnergy(*frames, z_space, cfg.channels, cfg.hidden, cfg.depth, cfg.activation,
                                prior=cfg.prior, reg=cfg.z.reg, **options)
    if cfg.name == "latent_mlp":
        return LatentMLPEnergy(*common, z_space, cfg.hidden, cfg.depth, cfg.activation, **options)
    raise UserError(f"unknown energy {cfg.name!r}")


def baseline_config(energy_cfg, dataset_cfg):
    """The feed-forward MSE baseline's energy config: the run's energy sizes, as a regressor."""
    keys = ("hidden", "depth", "activation") + (("channels",) if data_kind(dataset_cfg) == "video" else ())
    return OmegaConf.create({"name": BASELINES[data_kind(dataset_cfg)], **{k: energy_cfg[k] for k in keys}})


def build_inference(cfg, seed: int = 0):
    if cfg.name == "grid":
        return GridInference(cfg.k, cfg.points, cfg.dedup)
    if cfg.name == "gradient":
        return GradientInference(cfg.k, cfg.starts, cfg.steps, cfg.lr, cfg.lr_min, cfg.optimizer, cfg.tol, cfg.dedup, seed)
    if cfg.name == "z_sweep":
        return ZSweepInference(cfg.k, cfg.dedup, cfg.min_share)
    if cfg.name == "langevin":
        return LangevinInference(cfg.k, cfg.chains, cfg.steps, cfg.step_size, langevin_beta(cfg), cfg.grad_clip, cfg.dedup, seed)
    if cfg.name == "dfo":
        return DFOInference(cfg.k, cfg.starts, cfg.samples, cfg.iters, cfg.sigma, cfg.shrink, cfg.temperature, cfg.dedup, seed)
    if cfg.name == "cem":
        return CEMInference(cfg.k, cfg.starts, cfg.samples, cfg.iters, cfg.elite, cfg.sigma, cfg.dedup, seed)
    if cfg.name == "dp":
        return DPInference(cfg.k, cfg.min_share)
    raise UserError(f"unknown inference method {cfg.name!r}")


def langevin_beta(cfg) -> SimpleNamespace:
    """The beta schedule of a Langevin config: beta_start -> beta_end over its steps."""
    name = cfg.anneal if cfg.anneal != "constant" else "constant"
    return SimpleNamespace(name=name, start=cfg.beta_start, end=cfg.beta_end, steps=max(cfg.steps - 1, 1), value=cfg.beta_end)


def build_loss(cfg, inference, data: Data, device):
    if cfg.name == "nll":
        return ChainNLL() if isinstance(data, TranslationData) else GibbsNLL(cfg.grid_points)
    if cfg.name == "free_energy":
        return FreeEnergyLoss()
    if cfg.name == "cd":
        space = BoxSpace(data.y_low, data.y_high, tuple(data.y_train.shape[1:]))
        return ContrastiveDivergence(cfg.steps, cfg.step_size, cfg.grad_clip, cfg.buffer_size, cfg.reinit, cfg.alpha,
                                     space, device)
    if cfg.name == "hinge":
        return Hinge(cfg.margin, cfg.exclude, cfg.x_window, inference, data.x_train, data.y_train).to(device)
    raise UserError(f"unknown loss {cfg.name!r}")
