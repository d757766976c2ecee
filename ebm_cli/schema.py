"""The typed schema of the run's own settings (task, trainer, logger and the top-level keys).

The swappable components (dataset, energy, inference, beta, loss) are typed by their classes: each
config names its class with `_target_`, and the builder checks the node's keys and types against
the constructor's signature (ebm_cli/build.py). This schema is registered in Hydra's ConfigStore
as `schema`, the first entry of config.yaml's defaults, so a misspelled key or a wrong type here
fails at composition time, before Hydra creates any output folder.
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


BENCH_CASES = ("langevin", "gradient", "chain", "free_energy", "cd_step", "time_to_quality")


@dataclass
class TaskConfig:
    """What every task has: its name. A task with settings of its own extends it (BenchTaskConfig),
    so a training run's `task` node holds nothing but its name."""
    name: str = "train"  # train | infer | landscape | compare_inference | bench


@dataclass
class BenchTaskConfig(TaskConfig):
    """task=bench's settings (ebm_cli/bench, configs/task/bench.yaml). A null size setting takes the
    preset of `size`: full (the benchmark's sizes) or tiny (every case in seconds: a smoke test)."""
    name: str = "bench"
    size: str = "full"  # full | tiny
    cases: List[str] = field(default_factory=lambda: list(BENCH_CASES))
    repeats: Optional[int] = None  # timed runs of each implementation, in turns, after a warm-up; the median
    max_seconds: Optional[float] = None  # a measurement stops repeating once its runs took this long, each
    langevin_batches: Optional[List[int]] = None  # chains per run (langevin, gradient)
    langevin_steps: Optional[int] = None
    chain_sizes: Optional[List[str]] = None  # BxTxS: batch x length x states
    landscape: Optional[str] = None  # free_energy: XxYxZ: x values x y values x discrete z values
    cd_batches: Optional[List[int]] = None  # cd_step batch sizes
    time_limit: Optional[float] = None  # time_to_quality: the training time limit of its loops, seconds
    quality_eval_every: Optional[int] = None  # time_to_quality: the loops' steps between evaluations
    # Every case again beside a CPU-bound neighbour process (as in a sweep or beside a second run):
    # the rows gain ours_s_busy, peer_s_busy and ratio_busy. neighbour_threads: the threads it keeps busy.
    contention: bool = False
    neighbour_threads: int = 1


TASK_SCHEMAS = {"bench": BenchTaskConfig}  # task name -> its settings; the other tasks have only a name


def task_schema(name: str):
    """The settings class of the task called `name`."""
    return TASK_SCHEMAS.get(name, TaskConfig)


@dataclass
class TrainerConfig:
    # The budget comes from the data: every eval_every steps the moving average of the weights (ema)
    # is scored on a validation split; the run stops after `patience` evaluations without a better
    # objective and keeps the best weights. `steps` is only a ceiling.
    steps: int = 5000
    batch_size: Optional[int] = 128  # null: the data's own (Dataset.batch_size_hint: frames keep the pixels per batch)
    lr: float = 2e-2
    ema: float = 0.99  # decay of the weights' moving average, which is evaluated and kept (0 = the trained weights)
    weight_decay: float = 0.0
    grad_clip: Optional[float] = 10.0  # max gradient norm; null = no clipping
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Processes training one run data-parallel (torch.distributed: gloo on the CPU, NCCL on GPUs, rank r
    # on cuda:r); the global batch_size is split among them. training/distributed.py.
    devices: int = 1
    log_every: int = 50
    ckpt_every: int = 500
    resume: str = "never"  # never | auto (continue from the run folder's last good checkpoint)
    max_abs: float = 1.0e8  # a loss, energy or gradient norm beyond this counts as divergence
    deterministic: bool = False  # deterministic CUDA kernels (slower); CPU runs are always repeatable
    # Also train the feed-forward MSE baseline (regressor, or conv_regressor on frames, with this
    # energy's sizes) on the same batches: its metrics come out as baseline_*, next to the model's.
    baseline: bool = False
    # Held-out evaluation during training: every eval_every steps (0 = off: no validation, the run
    # trains to `steps` and keeps the last weights) the loss and the metrics on a validation split
    # (val_fraction of the training inputs, or clips, carved from the training data; never the test
    # split) go to TensorBoard under Validation/ (the run tb/validation), beside Training/loss.
    eval_every: int = 100
    val_fraction: float = 0.1
    keep: str = "best"  # best (checkpoints/best.pt: the best weights by the objective on validation) | last
    patience: int = 3  # evaluations without progress before lowering the lr (lr_drops left) or stopping; 0 = never
    lr_drops: int = 0  # times the lr is lowered on a plateau before the run stops (0 = stop at the first)
    lr_drop: float = 0.1  # the factor each such drop multiplies the lr by
    # torch.compile of the energy: auto (a GPU and a run of >= 5000 steps) | true | false; a compiled
    # call that fails falls back to eager with one log line. compile_mode: torch.compile's mode
    # (default | reduce-overhead: CUDA graphs on a GPU | max-autotune).
    compile: str = "auto"
    compile_mode: str = "default"
    precision: str = "fp32"  # fp32 | tf32 (TF32 matrix products) | bf16 (bfloat16 autocast of the step)


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    landscape_every: int = 1000  # steps between landscape images; 0 = only at the end
    resolution: int = 128  # landscape grid points per axis
    slice_x: Optional[List[float]] = None  # x of the slice panels; None = 1/4, 1/2, 3/4 into the data's x range
    slice_betas: List[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    latent_betas: List[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])  # F_beta panels (+ F_inf)
    progress: bool = True  # rich progress bar when stdout is a terminal
    video_examples: int = 4  # frames: held-out contexts shown in the image grid
    text_examples: int = 5  # translations: held-out sources shown as TensorBoard text
    collapse_below: float = 1.0  # a run whose beta * energy_range ends below this says it collapsed (flat)


@dataclass
class Config:
    task: Any = MISSING  # each task's own schema (task_schema), attached by its yaml's defaults
    dataset: Any = MISSING
    energy: Any = MISSING
    inference: Any = MISSING
    beta: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING  # a torch.optim class by _target_ (_partial_: the runner passes the parameters)
    scheduler: Any = None  # a torch.optim.lr_scheduler class by _target_ (the runner passes the optimizer)
    callbacks: Any = field(default_factory=dict)  # name -> a Callback by _target_ (ebm_cli/training/callbacks.py)
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    objective: str = "coverage"  # the metric a sweep optimises (coverage = coverage@<the data's eps>)
    objective_direction: str = "maximize"  # maximize | minimize
    run_dir: Optional[str] = None  # infer / landscape: the finished run to load
    x: Optional[List[Any]] = None  # infer: the inputs to predict for (numbers, lists of numbers, sentences)
    trust: List[str] = field(default_factory=list)  # infer / landscape / compare: classes a run's stored config may name besides ebm_cli's


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    # each task yaml's first default (`/schema/task/<name>@_here_`): a group of its own, not a task to pick
    store.store(group="schema/task", name="task", node=TaskConfig)
    store.store(group="schema/task", name="bench", node=BenchTaskConfig)
