"""Training on several processes: torchrun's ranks, the process group, each rank's share of a batch.

`torchrun --standalone --nproc-per-node N stages/train.py …` starts N copies of the train
stage and tells each its rank in RANK, WORLD_SIZE and LOCAL_RANK. `distributed.processes`
in params.yaml asks for the same from `dvc repro` and `dvc exp run`: the stage then starts
itself through torchrun's own launcher (`launch`). Every rank draws the randomness of the
whole (global) batch identically and trains on its slice, so the ranks together see what
one process sees; rank 0 alone validates, tracks and writes.

torch is imported inside the functions that need it: the stage decides whether to launch
before it loads torch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from unmix.errors import UnmixError

# Set by `launch` in each rank's environment: the launcher, not rank 0, then says in one
# line why a training on several processes stopped.
LAUNCHED_ENV = "UNMIX_LAUNCHED"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training's processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # which GPU of this machine, on CUDA

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, talks to MLflow and writes outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


class Stopped(KeyboardInterrupt):
    """Training stopped from outside (SIGTERM, or another rank gone): the run ends KILLED and
    resumes from its last checkpoint, as after Ctrl-C."""


class LaunchFailed(UnmixError):
    """A rank of a launched training failed; the message is the one line that says so."""


def ranks_from_env(env: Mapping[str, str]) -> Ranks:
    """The ranks torchrun set, or a single process when it did not run this one."""
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise UnmixError(
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, RANK={env.get('RANK')!r}: expected the "
            "integers torchrun sets; start several processes with torchrun"
        ) from None
    if not 0 <= rank < world_size:
        raise UnmixError(f"RANK={rank}: expected 0 to WORLD_SIZE-1 = {world_size - 1}")
    return Ranks(rank, world_size, local_rank)


def share(n: int, ranks: Ranks) -> slice:
    """Rank r's contiguous share of n items in rank order; shares differ by at most one item
    (the split `torch.tensor_split` makes)."""
    base, extra = divmod(n, ranks.world_size)
    start = ranks.rank * base + min(ranks.rank, extra)
    return slice(start, start + base + (1 if ranks.rank < extra else 0))


def share_weight(n_share: int, n_total: int, ranks: Ranks) -> float:
    """What a rank's mean loss is multiplied by so that DistributedDataParallel's average of
    the ranks' gradients is the gradient of the global batch's mean loss.

    DDP divides the summed gradients by the number of ranks; a share of `n_share` of
    `n_total` items must count `n_share / n_total` of the whole, hence the factor.
    """
    return n_share * ranks.world_size / n_total


def join(ranks: Ranks, device):
    """Join the process group (gloo on the CPU, NCCL with one GPU per rank); return the
    device this rank trains on. One process joins nothing."""
    import torch
    import torch.distributed as dist

    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def leave() -> None:
    """Leave the process group after a finished training (nothing when none was joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(tensor, ranks: Ranks):
    """The element-wise sum of `tensor` over every rank (the tensor itself for one process)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def peer_lost(error: BaseException) -> bool:
    """Whether a collective failed because another rank is gone: NCCL and the store raise
    their own types, gloo a RuntimeError from its TCP transport ("Connection reset by peer")."""
    import torch.distributed as dist

    if isinstance(error, (dist.DistBackendError, dist.DistNetworkError)):
        return True
    return isinstance(error, RuntimeError) and "gloo/transport/" in str(error)


def launched(env: Mapping[str, str]) -> bool:
    """Whether torchrun (or `launch`) started this process as one of several ranks."""
    return "WORLD_SIZE" in env


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Torch threads for each of `processes` ranks on this machine's cores (at least one):
    more threads than cores make every rank wait on the others."""
    return max(1, (cores or os.cpu_count() or 1) // processes)


def launch(processes: int, script: str, argv: list[str], name: str) -> int:
    """Run `python script argv` on `processes` ranks as `torchrun --standalone` does (torchrun's
    own launcher, a fresh rendezvous port per launch, so parallel queued experiments do not
    meet); return 0, or raise LaunchFailed with one line naming the rank that failed.

    Ctrl-C reaches the ranks too; rank 0 then says how to resume, and this returns 130.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for logger in ("torch.distributed.run", "torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(logger).setLevel(logging.ERROR)  # banners and "Setting OMP_NUM_THREADS"
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(processes)))
    os.environ[LAUNCHED_ENV] = "1"
    try:
        run(
            parse_args(["--standalone", "--nproc-per-node", str(processes), "--monitor-interval", "0.5", script, *argv])
        )
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        how = (
            f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
        )
        raise LaunchFailed(
            f"{name}: rank {rank} of {processes} {how}, so every rank stopped; run `dvc repro` "
            "(or the same `dvc exp run`) again to resume from the last checkpoint"
        ) from None
    except SignalException as error:
        if error.sigval.name == "SIGINT":
            return 130  # rank 0 has said how to resume
        print(
            f"{name}: stopped by {error.sigval.name}; run `dvc repro` (or the same `dvc exp run`) again to "
            "resume from the last checkpoint",
            file=sys.stderr,
        )
        return 128 + int(error.sigval)
    return 0
