"""Multi-process launches that would silently not be distributed, refused before any work is done.

`accelerate launch` with an FSDP config on a machine without GPUs starts N processes that each come up as
`DistributedType.NO`, rank 0 of 1 (no `cpu=True`), or as gloo DDP (`use_cpu`: accelerate only turns GPU-type
distributed states into FSDP), and nothing says so: N unrelated copies train, or DDP runs where sharding was asked
for. `check_distributed_launch` compares what the launcher started (its `WORLD_SIZE` and `ACCELERATE_USE_*`
environment) with what the run's accelerate state became, and raises naming the config and the fix.
"""

from __future__ import annotations

import os

CPU_CONFIGS = (
    "recipes/accelerate_configs/cpu_ddp.yaml (DDP), zero2_cpu.yaml or zero3_cpu.yaml (DeepSpeed ZeRO-2/3 on CPU)"
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def launch_mismatch(world_size: int, distributed_type: str) -> str | None:
    """
    Why a launch with `world_size` processes that became `distributed_type` is not what was asked for; None if fine.

    Args:
        world_size (`int`): the number of processes the run sees (`TrainingArguments.world_size`).
        distributed_type (`str`): accelerate's process-level `DistributedType` name (`"NO"`, `"MULTI_CPU"`,
            `"MULTI_GPU"`...), before a DeepSpeed/FSDP plugin is applied.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    engine = "FSDP" if _flag("ACCELERATE_USE_FSDP") else "DeepSpeed" if _flag("ACCELERATE_USE_DEEPSPEED") else None
    if launched > 1 and world_size == 1 and engine == "DeepSpeed":
        # no GPU backend: accelerate counts 1 process although DeepSpeed's group has `launched` (measured, 1.15)
        return (
            f"a DeepSpeed config launched {launched} processes but accelerate sees world size 1 "
            f"(DistributedType.{distributed_type}, no communication backend): every process would be rank 0 and read "
            "the same data. Fix: on CPU pass `--ddp_backend gloo` to the recipe (recipes/accelerate_configs/"
            "zero2_cpu.yaml / zero3_cpu.yaml show the command)."
        )
    if launched > 1 and world_size == 1:
        return (
            f"{launched} processes were launched (WORLD_SIZE={launched}) but this one is not distributed "
            f"(accelerate's DistributedType.{distributed_type}, world size 1): each process would train its own "
            f"copy of the model on the full data. {_cause(engine)}"
        )
    # accelerate makes FSDP out of a GPU-type state only; a CPU state (gloo DDP) or none at all does not shard
    if engine == "FSDP" and distributed_type in ("NO", "MULTI_CPU") and launched > 1:
        return (
            f"an FSDP config was launched (ACCELERATE_USE_FSDP=true) but the run became "
            f"DistributedType.{distributed_type}, which does not shard. {_cause(engine)}"
        )
    return None


def _cause(engine: str | None) -> str:
    if engine == "FSDP":
        return (
            "accelerate runs FSDP only on GPUs (an FSDP config on CPU, with or without `use_cpu: true`, silently "
            f"falls back). Fix: on GPUs, drop `use_cpu` from the config; on CPU use {CPU_CONFIGS}."
        )
    return (
        "Fix: launch with a distributed config: on GPUs recipes/accelerate_configs/multi_gpu.yaml; on CPU "
        f"{CPU_CONFIGS}, with ACCELERATE_USE_CPU=1 in the environment for DDP (or `--use_cpu true` to the recipe): "
        "a config's `use_cpu: true` does not reach the processes `accelerate launch` starts, and "
        "`accelerate launch --cpu --num_processes N` starts one process."
    )


def check_distributed_launch(training_args) -> None:
    """
    Raises `RuntimeError` when the launch would run silently non-distributed (see the module docstring).

    Args:
        training_args (`transformers.TrainingArguments`): the stage's TRL config (its accelerate state is set up
            here, as `Trainer` would).
    """
    from accelerate.state import PartialState

    world_size = training_args.world_size  # sets up the accelerate state the Trainer will use
    state = PartialState() if PartialState._shared_state else None
    distributed_type = state.distributed_type.name if state is not None else "NO"
    problem = launch_mismatch(world_size, distributed_type)
    if problem:
        raise RuntimeError(f"Refusing to train: {problem}")


def honour_zero3_init_flag(training_args) -> None:
    """
    With a DeepSpeed config whose `zero3_init_flag` is false, builds models without `deepspeed.zero.Init`.

    accelerate registers transformers' global DeepSpeed config whatever the flag says
    (`DeepSpeedPlugin.set_deepspeed_weakref`, accelerate 1.15), so every `from_config` inside our model's `__init__`
    then partitions the towers as they are built and `post_init` re-initialises the partitioned (empty) tensors:
    "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions". The Trainer registers the
    config again when it is built (after the model), so ZeRO-3 itself and its consolidated save are unaffected.

    Args:
        training_args (`transformers.TrainingArguments`): the stage's TRL config.
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is not None and not plugin.zero3_init_flag:
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


# The FSDP2 units of `recipes/accelerate_configs/fsdp2.yaml` (`fsdp_transformer_layer_cls_to_wrap`): every decoder
# layer and every tower layer; `fsdp2_units` adds each projector as a unit of its own, and the root takes the rest
# (embeddings, the towers' patch / conv stems and final norms, tied LM head). The towers themselves are NOT units:
# `fully_shard` on a tower (a `PreTrainedModel`) stops transformers' output capture, and the tower returns
# `hidden_states=None`, which the projector reads (measured: torch 2.13, transformers 5.24).
FSDP2_LAYER_CLASSES = ("Qwen2DecoderLayer", "CLIPEncoderLayer", "SiglipEncoderLayer", "WhisperEncoderLayer")
FSDP2_MODULE_UNITS = ("multi_modal_projector", "audio_projector")


def fsdp2_units(model) -> list:
    """
    The submodules `fully_shard` wraps, innermost first (decoder and tower layers, then projectors; the root last).

    Args:
        model (`OpenMindForConditionalGeneration`): the model (unwrapped).
    """
    layers = [m for m in model.modules() if type(m).__name__ in FSDP2_LAYER_CLASSES]
    inner = getattr(model, "model", model)
    projectors = [getattr(inner, name) for name in FSDP2_MODULE_UNITS if getattr(inner, name, None) is not None]
    return layers + projectors


def apply_fsdp2(model, **fully_shard_kwargs):
    """
    Shards `model` in place with PyTorch's `fully_shard` (FSDP2) along `fsdp2_units`, then the root. Needs an
    initialised process group (gloo on CPU, nccl on GPUs).

    Args:
        model (`torch.nn.Module`): the model to shard.
        fully_shard_kwargs: passed to every `fully_shard` call (`mesh`, `reshard_after_forward`, `mp_policy`...).
    """
    from torch.distributed.fsdp import fully_shard

    for unit in fsdp2_units(model):
        fully_shard(unit, **fully_shard_kwargs)
    return fully_shard(model, **fully_shard_kwargs)


__all__ = [
    "FSDP2_LAYER_CLASSES",
    "apply_fsdp2",
    "check_distributed_launch",
    "fsdp2_units",
    "honour_zero3_init_flag",
    "launch_mismatch",
]
