"""Structured-config schemas, registered in Hydra's ConfigStore.

Every YAML option of a config group extends one of these dataclasses (its defaults list names
``/schema/<group>/<name>@_here_``), so a misspelled key or a value of the wrong type fails at
composition time, before Hydra creates any output folder.
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

DEFAULT_BRANCHES = [
    "0.6 + 0.3 * sin(pi * x)",
    "0.4 * x",
    "-0.6 + 0.3 * cos(pi * x)",
]


@dataclass
class TaskConfig:
    name: str = "train"  # train | infer | landscape | compare_inference


@dataclass
class CurvesConfig:
    """Multi-branch curves: each x has several valid y (one per branch)."""

    name: str = "curves"
    path: Optional[str] = None  # CSV with header x,y; None = generate from `branches`
    branches: List[str] = field(default_factory=lambda: list(DEFAULT_BRANCHES))
    x_min: float = -1.0
    x_max: float = 1.0
    noise: float = 0.02  # std of Gaussian noise added to generated training y
    train_size: int = 4096
    test_size: int = 101  # generated: held-out x-grid points
    test_fraction: float = 0.2  # CSV: share of the distinct x values held out for testing
    y_min: Optional[float] = None  # y-domain; None = data range plus a margin
    y_max: Optional[float] = None
    eps: float = 0.05  # distance tolerance of coverage@eps and precision@eps
    seed: Optional[int] = None  # None = the run's seed


@dataclass
class CurvesCSVConfig(CurvesConfig):
    name: str = "curves_csv"
    path: Optional[str] = MISSING  # required: dataset.path=<file.csv>


@dataclass
class VideoConfig:
    """Toy video: a sprite moves over `context` frames, then takes one of `moves` known moves."""

    name: str = "video"
    path: Optional[str] = None  # .npz (context, futures[, num_futures]) or Moving-MNIST-style .npy; None = generate
    size: int = 16  # frame height and width (generated)
    context: int = 3  # context frames C (also: how a .npy clip is split)
    moves: int = 3  # K valid next moves: turn up, go straight, turn down (K = 3)
    sprite: str = "square"  # square | plus | diamond
    sprite_size: int = 3
    speed: float = 3.0  # pixels per frame (whole pixels), also the vertical step between moves
    noise: float = 0.0  # std of Gaussian noise on the context frames (the futures stay clean)
    train_size: int = 5000  # generated clips to train on (one training row per valid future)
    test_size: int = 200  # generated held-out clips
    test_fraction: float = 0.2  # file: share of the clips held out
    # Per-pixel MSE tolerance of coverage@eps / precision@eps. 0.01 = 2.56 fully wrong pixels out
    # of 256; two different futures of the default sprite are 0.070 apart (a seventh of that), and
    # the average of the three futures (what an MSE regressor predicts) is 0.023 from each.
    # Per pixel: for 32x32 frames of the same sprite the same margins are eps / 4.
    eps: float = 0.01
    seed: Optional[int] = None  # None = the run's seed


@dataclass
class TranslationConfig:
    """Translation pairs from a small synchronous grammar, each source with its valid translations."""

    name: str = "translation"
    path: Optional[str] = None  # UTF-8 TSV source<TAB>target (repeated sources: several targets); None = generate
    train_size: int = 3000  # generated: distinct training sources (one row per valid translation)
    test_size: int = 300  # generated: distinct held-out sources, built from the same words
    test_fraction: float = 0.1  # TSV: share of the distinct sources held out
    max_valid: int = 4  # generated: largest valid set (sentences with more translations are redrawn)
    adjective_rate: float = 0.5  # generated: chance of an adjective in each noun phrase
    adverb_rate: float = 0.5  # generated: chance of a closing adverb (hoy: word order; ahora: optional word)
    eps: float = 0.0  # token mismatches allowed: 0 = exact match (coverage@0, precision@0)
    seed: Optional[int] = None  # None = the run's seed


@dataclass
class ChainConfig:
    """E(x, y, z) = sum_t u(x, z)[t, y_t] + sum_t p(z)[y_{t-1}, y_t]: a GRU source encoder, a
    chain over the target positions, and K modes z."""

    name: str = "chain"
    hidden: int = 64
    k: int = 4  # modes z; 1 = the one-mode baseline
    # how z leaves -log P(y | x, z): min (hard-EM: each example trains the mode that explains it
    # best) | softmin at the run's beta (soft-EM, a uniform prior over modes; anneal beta upward)
    eliminate: str = "softmin"


@dataclass
class MLPConfig:
    """An MLP energy F(x, y), or the explicit regressor y = f(x) (name=regressor)."""

    name: str = "mlp"
    hidden: int = 64
    depth: int = 2  # number of hidden layers
    activation: str = "silu"  # relu | silu | gelu | tanh | softplus | elu


@dataclass
class ZConfig:
    """The latent z: its space and capacity (what keeps low energy from covering all of y)."""

    kind: str = "discrete"  # discrete | box | circle | sphere
    k: int = 6  # discrete: number of values
    dim: int = 1  # box / sphere: dimension (a circle is 1-D, an angle)
    low: float = -1.0  # box bounds
    high: float = 1.0
    reg: float = 0.0  # decoder with prior=l2: weight of R(z) = reg * ||z||^2 (box z)


@dataclass
class FreeEnergyConfig:
    """How z is eliminated: F_inf = min_z E, or F_beta = -1/beta log ∫ exp(-beta E) dz."""

    eliminate: str = "softmin"  # softmin (F_beta at the beta schedule's value) | min (F_inf)
    method: str = "auto"  # auto | enumerate | quadrature | monte_carlo | minimize
    points: int = 32  # quadrature / z-sweep nodes per z dimension
    samples: int = 256  # monte_carlo: uniform z samples per (x, y)
    restarts: int = 4  # minimize: Adam on z from this many random starts ...
    steps: int = 50  # ... for this many steps
    lr: float = 0.05


@dataclass
class LatentEnergyConfig:
    """decoder: E = ||y - g(x, z)||^2 + R(x, z); latent_mlp: E = MLP([x, y, z])."""

    name: str = "decoder"
    hidden: int = 64
    depth: int = 2
    activation: str = "silu"
    prior: str = "none"  # decoder's R: none | l2 (reg ||z||^2) | learned (a network r(x, z))
    z: ZConfig = field(default_factory=ZConfig)
    free_energy: FreeEnergyConfig = field(default_factory=FreeEnergyConfig)


@dataclass
class ConvLatentConfig(LatentEnergyConfig):
    """Frames: E(x, y, z) = ||y - Dec(Enc(x), z)||^2 + R(z), a conv encoder of the context."""

    name: str = "conv_latent"
    channels: int = 16  # of the first convolution (then 2x, 2x)
    hidden: int = 256
    depth: int = 1


@dataclass
class ConvRegressorConfig:
    """Frames: the deterministic MSE baseline f(x) = Dec(Enc(x)), E = ||y - f(x)||^2."""

    name: str = "conv_regressor"
    channels: int = 16
    hidden: int = 256
    depth: int = 1
    activation: str = "silu"


@dataclass
class GradientInferenceConfig:
    name: str = "gradient"
    k: int = 3  # candidates returned per x
    starts: int = 32  # starting points, spread evenly over the y-domain
    steps: int = 150
    lr: float = 0.03
    lr_min: float = 0.001  # cosine step-size decay from lr to lr_min
    optimizer: str = "adam"  # adam | sgd
    tol: float = 1e-5  # stop when no y moved more than this in one step (checked every 10 steps)
    dedup: float = 0.02  # minima closer than this are one candidate


@dataclass
class GridInferenceConfig:
    name: str = "grid"
    k: int = 3
    points: int = 512  # grid points per y dimension
    dedup: float = 0.02


@dataclass
class LangevinInferenceConfig:
    """Langevin chains y <- y - eta grad F + sqrt(2 eta / beta(t)) xi at an annealed beta."""

    name: str = "langevin"
    k: int = 3
    chains: int = 64  # uniform starts per x
    steps: int = 200
    step_size: float = 3e-4  # eta
    anneal: str = "exponential"  # constant (beta_end throughout) | linear | exponential | cosine
    beta_start: float = 1.0  # inverse temperature at the first step ...
    beta_end: float = 1000.0  # ... and at the last: a large beta ends the chains in minima
    grad_clip: Optional[float] = 100.0  # max norm of grad_y F per chain; null = none
    dedup: float = 0.02


@dataclass
class DFOInferenceConfig:
    """Derivative-free: resample by softmax(-F / temperature), perturb, shrink the noise."""

    name: str = "dfo"
    k: int = 3
    starts: int = 16  # independent populations, each on its share of the y-box
    samples: int = 64  # per population
    iters: int = 8
    sigma: float = 0.1  # initial noise, as a share of the y-box width
    shrink: float = 0.5  # noise factor per iteration
    temperature: float = 1.0
    dedup: float = 0.02


@dataclass
class CEMInferenceConfig:
    """Cross-entropy method from several populations: refit a Gaussian to each one's elites."""

    name: str = "cem"
    k: int = 3
    starts: int = 16  # populations, their means spread over the y-box
    samples: int = 64  # draws per population and iteration
    iters: int = 20
    elite: float = 0.1  # share of the draws kept
    sigma: float = 0.1  # initial standard deviation, as a share of the y-box width
    dedup: float = 0.02


@dataclass
class DPInferenceConfig:
    """Viterbi (min-sum) on chain-structured energies over discrete sequences: the k best
    (with a latent mode: Viterbi per z, the k best distinct across z)."""

    name: str = "dp"
    k: int = 3
    # latent modes: drop a mode's translation whose P(y | x, z) is below this share of the best
    # one's (log Z by the forward algorithm); 0 keeps every mode's translation
    min_share: float = 0.0


@dataclass
class ZSweepInferenceConfig:
    """Decoder energies: the predictions g(x, z) for every z node, ranked by F(x, g(x, z))."""

    name: str = "z_sweep"
    k: int = 3  # at most this many candidates per x
    dedup: float = 0.02
    # Drop a candidate whose Gibbs weight is below this share of the best one's:
    # exp(-beta (F - F_best)) < min_share. 0 keeps all k.
    min_share: float = 0.0


@dataclass
class ConstantBetaConfig:
    name: str = "constant"
    value: float = 1.0


@dataclass
class AnnealedBetaConfig:
    """linear | exponential | cosine interpolation from `start` to `end` over `steps`."""

    name: str = "linear"
    start: float = 0.1
    end: float = 1.0
    steps: int = MISSING  # usually ${trainer.steps}


@dataclass
class StepBetaConfig:
    name: str = "step"
    betas: List[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    milestones: List[int] = field(default_factory=lambda: [500, 1000])  # len(betas) - 1 steps


@dataclass
class NLLLossConfig:
    """Gibbs negative log-likelihood, log Z over a y-grid (exact in the limit for 1-D y)."""

    name: str = "nll"
    grid_points: int = 128  # cells per y dimension; one random point in each per step


@dataclass
class HingeLossConfig:
    """Margin loss against the most offending incorrect y found by the inference method."""

    name: str = "hinge"
    margin: float = 1.0
    exclude: float = 0.1  # incorrect: farther than this from every correct y of this x
    x_window: float = 0.02  # the training y with x' within this of x are x's correct answers


@dataclass
class CDLossConfig:
    """Contrastive divergence: negatives from Langevin chains at the run's beta, persistent buffer."""

    name: str = "cd"
    steps: int = 30  # Langevin steps per training step
    step_size: float = 1e-3
    grad_clip: Optional[float] = 100.0  # max norm of grad_y F per chain; null = none
    buffer_size: int = 4096  # persistent chains (saved in the checkpoint)
    reinit: float = 0.05  # share of chains restarted from uniform y each step
    alpha: float = 0.1  # weight of the energy magnitude penalty F+^2 + F-^2


@dataclass
class FreeEnergyLossConfig:
    """Push down F_beta(x, y_data) alone: for latent models whose capacity limits low energy."""

    name: str = "free_energy"


@dataclass
class TrainerConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-2
    lr_schedule: str = "constant"  # constant | cosine (decays to lr_min at the last step)
    lr_min: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: Optional[float] = 10.0  # max gradient norm; null = no clipping
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    ckpt_every: int = 500
    resume: str = "never"  # never | auto (continue from the run folder's last good checkpoint)
    max_abs: float = 1.0e8  # a loss, energy or gradient norm beyond this counts as divergence
    deterministic: bool = False  # deterministic CUDA kernels (slower); CPU runs are always repeatable
    # Also train the feed-forward MSE baseline (regressor, or conv_regressor on frames, with this
    # energy's sizes) on the same batches: its metrics come out as baseline_*, next to the model's.
    baseline: bool = False


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    landscape_every: int = 500  # steps between landscape images; 0 = only at the end
    resolution: int = 128  # landscape grid points per axis
    slice_x: List[float] = field(default_factory=lambda: [-0.5, 0.0, 0.5])
    slice_betas: List[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    latent_betas: List[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])  # F_beta panels (+ F_inf)
    progress: bool = True  # rich progress bar when stdout is a terminal
    video_examples: int = 4  # frames: held-out contexts shown in the image grid
    text_examples: int = 5  # translations: held-out sources shown as TensorBoard text


@dataclass
class Config:
    task: TaskConfig = MISSING
    dataset: Any = MISSING
    energy: Any = MISSING
    inference: Any = MISSING
    beta: Any = MISSING
    loss: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    objective: str = "coverage@0.05"  # the metric a sweep optimises
    objective_direction: str = "maximize"  # maximize | minimize
    run_dir: Optional[str] = None  # infer / landscape: the finished run to load
    x: Optional[List[float]] = None  # infer: the inputs to predict for


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for group, name, node in [
        ("dataset", "curves", CurvesConfig),
        ("dataset", "curves_csv", CurvesCSVConfig),
        ("energy", "mlp", MLPConfig),
        ("dataset", "video", VideoConfig),
        ("dataset", "translation", TranslationConfig),
        ("energy", "chain", ChainConfig),
        ("energy", "latent", LatentEnergyConfig),
        ("energy", "conv_latent", ConvLatentConfig),
        ("energy", "conv_regressor", ConvRegressorConfig),
        ("inference", "gradient", GradientInferenceConfig),
        ("inference", "grid", GridInferenceConfig),
        ("inference", "z_sweep", ZSweepInferenceConfig),
        ("inference", "langevin", LangevinInferenceConfig),
        ("inference", "dfo", DFOInferenceConfig),
        ("inference", "cem", CEMInferenceConfig),
        ("inference", "dp", DPInferenceConfig),
        ("beta", "constant", ConstantBetaConfig),
        ("beta", "annealed", AnnealedBetaConfig),
        ("beta", "step", StepBetaConfig),
        ("loss", "nll", NLLLossConfig),
        ("loss", "hinge", HingeLossConfig),
        ("loss", "free_energy", FreeEnergyLossConfig),
        ("loss", "cd", CDLossConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node)
