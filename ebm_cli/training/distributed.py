"""Data-parallel training on torch.distributed (trainer.devices=N): one run, N processes.

The command's own process is rank 0: it holds the run folder, writes checkpoints, TensorBoard and
metrics.json, evaluates, and receives the signals. It starts ranks 1..N-1 as fresh processes
(`spawn`), which build the same run from the same config and seed and write nothing. Every step:

- all ranks draw the same global batch of trainer.batch_size rows (one random stream, in step on
  every rank) and each trains on its 1/N of the rows;
- the gradients are averaged over the ranks (one all-reduce of every gradient in a flat buffer,
  before clipping), so every rank applies the same update to the same weights: the run is the
  single-process run with the same global batch, to float tolerance;
- the step's values (loss, grad_norm, statistics) are averaged too, so that every rank sees the same
  divergence, and a stop signal received by any rank stops them all at the same step;
- what a loss draws at random (cd's chains, hinge's and nce's negatives) comes from a stream of its
  own per rank and step (seed, step, rank), so the ranks' negatives are independent and a resumed
  run draws them again exactly.

Validation and its decisions (keep, lower the learning rate, stop) are rank 0's, broadcast to the
others.

Started by torchrun instead (`torchrun --nproc_per_node=N -m ebm_cli hydra.run.dir=<folder> ...`,
several nodes included: `launched()`), every process is a rank from the start: rank 0 runs the
command as usual, and the others run no Hydra, no checks and no folder: they join the group and
take the config and the run folder from rank 0 (`follow_rank_0`). gloo on the CPU, NCCL on GPUs (rank r on cuda:r). Plain torch.distributed rather than
DistributedDataParallel: the losses call the energy several times per step (positives, negatives,
samplers, grad_y F) and some differentiate twice, which DDP's one-forward-one-backward hooks do not
follow; one explicit all-reduce after backward is the same arithmetic for all of them.
"""

import contextlib
import datetime
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Tuple

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)  # a rank waits this long for the others (rank 0's evaluations)


def launched() -> Optional[Tuple[int, int, int]]:
    """(rank, world, local_rank) where a launcher (torchrun, or srun with its variables) started this
    process as one of several; None otherwise."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1 or "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return None
    rank = int(os.environ["RANK"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def submitit_ranks() -> Optional[Tuple[int, int, int]]:
    """In a submitit job of several tasks (the submitit launchers' hydra.launcher.tasks_per_node, on
    SLURM or locally): torch.distributed's variables exported from the job's (RANK, WORLD_SIZE,
    MASTER_ADDR, ...; each task keeps every GPU of its node and takes cuda:<local rank>), and
    launched(); None elsewhere."""
    if not any(key.startswith(("SUBMITIT_", "SLURM_JOB_ID")) for key in os.environ):
        return None
    try:
        import submitit

        tasks = submitit.JobEnvironment().num_tasks
    except Exception:  # noqa: BLE001 - not inside a submitit job (or no submitit): a single process
        return None
    if tasks <= 1:
        return None
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return launched()


def launched_backend() -> str:
    """The backend of a launched group, the same on every rank before any config is read: gloo for
    the CPU's tensors, NCCL for the GPU's where there are GPUs."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


_joined_launch: List[bool] = []  # this process has joined its launcher's group (once per command)


def join_launched_group(rank: int, world: int) -> None:
    """Join the group of a launcher's processes (env://): once per command."""
    from ebm_cli.errors import UserError

    if _joined_launch:
        raise UserError(f"started by a launcher as {world} processes, a command trains one run (no -m, no second "
                        "run in the same process)")
    _joined_launch.append(True)
    dist.init_process_group(launched_backend(), init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT)


def release_followers() -> None:
    """Rank 0 of a launched group that did not train (another task, --cfg, --help, a refusal before
    the ranks met): the other ranks, waiting in follow_rank_0, are told there is nothing to do."""
    launch = launched()
    if launch is None or launch[0] != 0 or _joined_launch:
        return
    join_launched_group(0, launch[1])
    dist.broadcast_object_list([None, None], src=0)
    dist.destroy_process_group()


def follow_rank_0(rank: int, world: int, train) -> None:
    """A launched rank > 0: join the group, take rank 0's config and run folder, and train(cfg, run_dir,
    rank=rank) with them (tasks/train.py's train, passed in: this module does not import the tasks)."""
    import logging

    from omegaconf import OmegaConf

    from ebm_cli.schema import register_configs

    logging.getLogger("ebm_cli").setLevel(logging.WARNING)  # rank 0 says what the run does
    join_launched_group(rank, world)
    box = [None, None]
    dist.broadcast_object_list(box, src=0)
    config_yaml, run_dir = box
    if config_yaml is None:  # rank 0 ran no training (another task, --cfg, a refusal): nothing to do
        dist.destroy_process_group()
        return
    register_configs()
    train(OmegaConf.create(config_yaml), Path(run_dir), rank=rank)


class Single:
    """One process: every collective is the identity."""

    rank, world = 0, 1
    is_main = True

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def average_gradients(self, parameters: List[torch.Tensor], values: Optional[torch.Tensor] = None):
        return values

    def any(self, flag: bool) -> bool:
        return flag

    def broadcast(self, obj: Any) -> Any:
        return obj

    def gather(self, obj: Any) -> List[Any]:
        return [obj]

    def sampling(self, step: int):
        return contextlib.nullcontext()

    def close(self) -> None:
        pass


class Group(Single):
    """This process's place (rank) among `world` processes of one run."""

    def __init__(self, rank: int, world: int, init_file: Optional[str], device: torch.device, seed: int = 0):
        """init_file: the rendezvous of ranks this command spawned; None: a launcher's (env://), or
        the group this process has already joined (follow_rank_0)."""
        self.rank, self.world, self.is_main = rank, world, rank == 0
        self.device, self.seed = device, seed
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's objects (broadcast_object_list) go to the current device
        if dist.is_initialized():
            return
        if init_file is None:
            join_launched_group(rank, world)
        else:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                                    timeout=TIMEOUT)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (B, ...) -> (B / world, ...)."""
        per = batch.shape[0] // self.world
        return batch[self.rank * per:(self.rank + 1) * per]

    def average_gradients(self, parameters: List[torch.Tensor], values: Optional[torch.Tensor] = None):
        """Every parameter's gradient := its mean over the ranks, and values (n,) (the step's loss and
        statistics) too: one all-reduce of one flat buffer (a collective costs ~1 ms on gloo). Returns
        the averaged values."""
        grads = [p.grad for p in parameters if p.grad is not None]
        parts = [g.reshape(-1).float() for g in grads] + ([values.to(self.device).float()] if values is not None else [])
        if not parts:
            return values
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:] if values is not None else None

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's flag is (a stop signal one rank received)."""
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor)
        return bool(tensor.item() > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's obj, on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_list(self, objects: List[Any]) -> List[Any]:
        """Rank 0's list of objects, on every rank (the same length everywhere)."""
        dist.broadcast_object_list(objects, src=0)
        return objects

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's obj, in rank order, on every rank."""
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sampling(self, step: int):
        """The random stream of this rank's loss at this step (negatives, chains): its own, and the
        same again on a resumed run; the shared stream (the batches) is left where it was."""
        @contextlib.contextmanager
        def fork():
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed((self.seed * 1_000_003 + step * 7919 + self.rank) % 2**63)
                yield

        return fork()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _worker(rank: int, world: int, init_file: str, config_yaml: str, run_dir: str, messages, train) -> None:
    """Ranks 1..N-1 (spawned: a fresh interpreter): train(...) (the training run's loop, passed by
    reference), writing nothing. What stops it early goes to rank 0 as one line through `messages`."""
    import logging

    from omegaconf import OmegaConf

    from ebm_cli.schema import register_configs

    logging.getLogger("ebm_cli").setLevel(logging.WARNING)  # rank 0 says what the run does
    torch.set_num_threads(int(os.environ.get("EBM_CLI_RANK_THREADS", "1")))
    try:
        register_configs()
        train(OmegaConf.create(config_yaml), Path(run_dir), rank=rank, init_file=init_file,
              ready=lambda: messages.put((rank, None)))
    except BaseException as exc:  # noqa: B902 - whatever it is, rank 0 says it in one line
        from ebm_cli.errors import one_line

        messages.put((rank, one_line(exc) if str(exc) else type(exc).__name__))
        raise SystemExit(1)


class Ranks:
    """Rank 0's handle on ranks 1..N-1: started once the run is built (a refused config starts none),
    waited for until each has built the same run, joined at its end."""

    def __init__(self, world: int, config_yaml: str, run_dir: Path, train):
        import torch.multiprocessing as mp

        self.world = world
        handle, self.init_file = tempfile.mkstemp(prefix="ebm-run-rendezvous-")
        os.close(handle)
        os.unlink(self.init_file)  # the file store creates it; it must not exist yet
        threads = max(1, (os.cpu_count() or 1) // world)  # the cores shared out, not oversubscribed
        os.environ["EBM_CLI_RANK_THREADS"] = str(threads)
        self.threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
        context = mp.get_context("spawn")
        self.messages = context.SimpleQueue()
        self.processes = [context.Process(target=_worker, name=f"ebm-run rank {rank}",
                                          args=(rank, world, self.init_file, config_yaml, str(run_dir), self.messages,
                                                train),
                                          daemon=True) for rank in range(1, world)]
        for process in self.processes:
            process.start()

    def wait_ready(self, poll_s: float = 0.05) -> None:
        """Return once every rank has built the run; raise UserError naming the first that could not."""
        import time

        from ebm_cli.errors import UserError

        waiting = set(range(1, self.world))
        while waiting:
            while not self.messages.empty():
                rank, error = self.messages.get()
                if error is not None:
                    self.join(timeout=5.0)
                    raise UserError(f"trainer.devices={self.world}: rank {rank} could not start: {error}")
                waiting.discard(rank)
            dead = [p for p in self.processes if not p.is_alive() and p.exitcode != 0]
            if dead and self.messages.empty():
                self.join(timeout=5.0)
                raise UserError(f"trainer.devices={self.world}: {dead[0].name} ended with exit code {dead[0].exitcode}")
            time.sleep(poll_s)

    def failure(self) -> Optional[str]:
        """The first error a rank reported, if any (after a collective failed)."""
        for process in self.processes:
            process.join(5.0)
        while not self.messages.empty():
            rank, error = self.messages.get()
            if error is not None:
                return f"rank {rank}: {error}"
        dead = [p for p in self.processes if p.exitcode not in (None, 0)]
        if dead:
            code = dead[0].exitcode
            how = f"the signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            return f"{dead[0].name} was ended by {how}"
        return None

    def join(self, timeout: Optional[float] = 60.0) -> None:
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.terminate()  # SIGTERM: a rank inside its loop takes it as a stop at the next step...
                process.join(5.0)
            if process.is_alive():
                process.kill()  # ... but one blocked in a collective (NCCL) never gets there
                process.join(5.0)
        torch.set_num_threads(self.threads_before)
        with contextlib.suppress(OSError):
            os.unlink(self.init_file)
