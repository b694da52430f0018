"""Several processes through torchrun: DDP or FSDP2, one consistent view of the run.

``torchrun --nproc_per_node N -m growlm.cli.main train CONFIG`` (or the ``growlm``
script under torchrun) starts N processes; each one finds ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK`` in its environment and joins a process group (NCCL on GPUs, gloo on
CPUs). Config key ``distributed``: ``auto`` (DDP when there is more than one process),
``ddp``, ``fsdp`` (FSDP2 ``fully_shard`` per decoder block and at the root, bf16
parameters with fp32 gradient reduction on GPUs) or ``none``. An explicit ``ddp`` or
``fsdp`` also holds for a single process (a one-process group), so one config file
serves every process count.

What every rank agrees on:

* the data: the global batch of a micro-step is ``world * micro_batch_size`` windows from
  the data position; rank r takes the r-th slice, so N processes see exactly the windows
  one process with an N times larger micro-batch would. A stream of sources
  (``data: {sources: ...}``) is different: each rank reads only its own share of it
  (``data/sources.py``), and its checkpointed state resumes on the same number of ranks;
* every decision: losses and gradient norms are reduced before they are logged or
  checked for non-finite values, and a stop signal seen by any rank stops all of them at
  the same step;
* checkpoints: full (unsharded) weights and optimizer moments keyed by parameter name,
  written by rank 0, so a checkpoint written by N processes resumes in M processes (or
  one) -- growth and plan stages work on full checkpoints and re-shard when training
  starts again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
from torch import nn

from growlm.errors import ConfigError
from growlm.models.storage import canonical_name
from growlm.training.optim import load_state_by_name
from growlm.training.trainable import base_model

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    from growlm.models import GrowLMForCausalLM

STRATEGIES = ("auto", "none", "ddp", "fsdp")


@dataclass
class Runtime:
    """This process's place in the run."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    strategy: str = "none"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """A process group exists (DDP or FSDP2, possibly with a single process)."""
        return self.strategy != "none"

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """All-reduced mean of a scalar tensor."""
        if self.active:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def total(self, value: torch.Tensor) -> torch.Tensor:
        if self.active:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def anyone(self, flag: bool, device: torch.device) -> bool:
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def rank_device(device_name: str) -> torch.device:
    """This process's device for a config's ``device`` setting (its local GPU under torchrun)."""
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is available")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")


def join_process_group(device: torch.device) -> None:
    """Join (once) the process group for ``device``: NCCL on GPUs, gloo on CPUs."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and "MASTER_ADDR" not in os.environ:
        # An explicit ddp/fsdp in one plain process wraps the model exactly as under
        # `torchrun --nproc_per_node 1`, so one config file serves every process count.
        dist.init_process_group(backend, store=dist.HashStore(), world_size=1, rank=0)
    else:
        dist.init_process_group(backend)


def setup(strategy: str, device_name: str) -> tuple[Runtime, torch.device]:
    """Join the process group torchrun prepared (if any) and pick this rank's device."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"distributed must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(device_name)
    if world == 1 and strategy in ("auto", "none"):
        return Runtime(), device
    if strategy == "none":
        raise ConfigError("several processes were started but distributed is 'none'")
    join_process_group(device)
    return Runtime(world, rank, local_rank, "ddp" if strategy == "auto" else strategy), device


def wrap(model: nn.Module, runtime: Runtime, device: torch.device, autocast: torch.dtype | None) -> nn.Module:
    """DDP or FSDP2 around the model (which every rank built identically)."""
    if runtime.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if runtime.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # without autocast: fully_shard's default policy (parameters and reductions in their own dtype)
        policy = (MixedPrecisionPolicy(param_dtype=autocast, reduce_dtype=torch.float32) if autocast
                  else MixedPrecisionPolicy())
        root = fsdp_root(model)
        for layer in root.model.layers:
            fully_shard(layer, mp_policy=policy)
        fully_shard(root, mp_policy=policy)
    return model


def fsdp_root(model: nn.Module) -> GrowLMForCausalLM:
    """The module FSDP2 shards at the root: the growlm model, also inside a peft wrapper (which
    owns no parameters itself, and whose attribute forwarding should not be relied on)."""
    return base_model(model)


def inner(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def sync_gradients(model: nn.Module, runtime: Runtime, sync: bool):
    """Context in which backward does (not) all-reduce gradients: skip it on all but the last micro-step."""
    import contextlib

    if runtime.strategy == "ddp" and not sync:
        return cast("DistributedDataParallel", model).no_sync()  # wrap() wrapped it
    if runtime.strategy == "fsdp":
        cast("FSDPModule", fsdp_root(model)).set_requires_gradient_sync(sync)  # fully_shard made it one
    return contextlib.nullcontext()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, runtime: Runtime
               ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Unsharded weights and FQN-keyed optimizer state (collective under FSDP; complete on rank 0)."""
    if runtime.strategy != "fsdp":
        return inner(model).state_dict(), None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def load_fsdp_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, by_fqn: dict[str, Any]) -> None:
    """Full FQN-keyed optimizer state from rank 0 into a sharded optimizer.

    Not strict: parameters without saved moments (new blocks after growth) start fresh."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, by_fqn,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                      strict=False))


def positional_optimizer_state(by_fqn: dict[str, Any], param_names: list[str]) -> dict[str, Any]:
    """The FQN-keyed optimizer state :func:`full_state` gathers under FSDP, keyed by position in
    ``param_names`` instead, as a plain optimizer's ``state_dict()`` (and ``optimizer.pt``) is."""
    index = {fqn: param_names.index(canonical_name(fqn)) for g in by_fqn["param_groups"]
             for fqn in g["params"]}  # FSDP names what peft wraps by its full path
    return {"state": {index[n]: v for n, v in by_fqn["state"].items()},
            "param_groups": [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[n] for n in g["params"]]}
                             for g in by_fqn["param_groups"]]}


def load_moments_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, param_names: list[str],
                         runtime: Runtime, by_name: dict[str, dict[str, Any]],
                         group_settings: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
    """AdamW moments by parameter name, into a plain, DDP or FSDP optimizer (the mirror of
    :func:`positional_optimizer_state`); moments whose name or shape does not match are left fresh.

    ``group_settings``: saved param groups whose settings (the current lr above all) to
    restore too, as ``optimizer.load_state_dict`` would; by default the groups keep theirs.
    Returns the names loaded and those that start fresh."""
    if runtime.strategy != "fsdp":
        return load_state_by_name(optimizer, param_names, by_name, group_settings)
    params = {canonical_name(n): (n, p.shape) for n, p in inner(model).named_parameters()}
    usable = [n for n, e in by_name.items() if n in params and e["exp_avg"].shape == params[n][1]]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    group_names = [param_names[sum(sizes[:i]): sum(sizes[: i + 1])] for i in range(len(sizes))]
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [params[n][0] for n in names]}
              for g, names in zip(group_settings or optimizer.param_groups, group_names, strict=True)]
    load_fsdp_optimizer(model, optimizer, {"state": {params[n][0]: by_name[n] for n in usable}, "param_groups": groups})
    return usable, [n for n in param_names if n not in usable]


def grad_norm_value(norm: torch.Tensor) -> float:
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
