"""The arguments every recipe shares: where the model comes from, what trains, and which data.

A recipe parses `(ModelArguments, DataArguments, <Stage>Config)` with `TrlParser`: a YAML `--config` sets the
values, flags on the command line override them, and an unknown key in either place is an error. The stage configs
are TRL's own configs with CPU-safe defaults (`bf16` only where a CUDA device supports it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from trl import DPOConfig, GRPOConfig, RewardConfig, SFTConfig

STAGES = ("pretrain", "sft", "dpo", "reward", "grpo")
TOWERS = ("vision", "audio", "projectors", "llm")
# Default LoRA targets: the attention and MLP projections of the language model only (towers keep their names
# `q_proj`/`k_proj` too, so the pattern is anchored on `language_model`).
DEFAULT_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def _as_dict(value, name: str) -> dict:
    if value is None or isinstance(value, dict):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{name} must be a JSON object, e.g. '{{\"hidden_size\": 128}}'; got {value!r}") from err
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object, got {value!r}")
    return parsed


@dataclass
class ModelArguments:
    r"""
    Where the model comes from and what trains: `model_name_or_path` (an OpenMind checkpoint, e.g. the previous
    stage's output), or `text_model` (+ optional `vision_model` / `audio_model`) to compose a NEW model from
    pretrained towers, or else `preset` (a tiny random model for CPU runs). A checkpoint or towers given on the command
    line win over a `preset` set in the YAML, so the tiny configs also run on your own checkpoint.

    Freezing: `freeze_*` left unset take the stage's default (pretrain: only the projectors train; other stages: the
    whole model trains). Learning rates: `*_lr` left unset use `learning_rate`.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "OpenMind checkpoint dir or Hub id."})
    preset: str | None = field(default=None, metadata={"help": "Build a random preset instead: 'tiny' or 'small'."})
    preset_overrides: dict | str | None = field(
        default=None, metadata={"help": "JSON object of OpenMindConfig overrides for the preset, e.g. pixel_shuffle."}
    )
    vision_model: str | None = field(default=None, metadata={"help": "Pretrained vision tower (CLIP/SigLIP)."})
    audio_model: str | None = field(default=None, metadata={"help": "Pretrained audio tower (Whisper)."})
    text_model: str | None = field(default=None, metadata={"help": "Pretrained causal LM (Qwen2/Llama...)."})
    projector: str = field(default="mlp", metadata={"help": "'mlp' or 'pixel_shuffle' (new models only)."})
    dtype: str = field(default="float32", metadata={"help": "Weights dtype: float32, bfloat16, float16 or auto."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa, flash_attention_2 or flex_attention (default: sdpa)."}
    )
    freeze_vision: bool | None = field(default=None, metadata={"help": "Freeze the vision tower."})
    freeze_audio: bool | None = field(default=None, metadata={"help": "Freeze the audio tower."})
    freeze_llm: bool | None = field(default=None, metadata={"help": "Freeze the language model (and its head)."})
    freeze_projectors: bool | None = field(default=None, metadata={"help": "Freeze the two projectors."})
    vision_lr: float | None = field(default=None, metadata={"help": "Learning rate of the vision tower."})
    audio_lr: float | None = field(default=None, metadata={"help": "Learning rate of the audio tower."})
    projector_lr: float | None = field(default=None, metadata={"help": "Learning rate of the projectors."})
    llm_lr: float | None = field(default=None, metadata={"help": "Learning rate of the language model."})
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the LM weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names (or one regex) to adapt; default: the LM's attention and MLP projections."},
    )
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: load the LM in 4-bit NF4 (CUDA only)."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "nf4 or fp4."})

    def __post_init__(self):
        self.preset_overrides = _as_dict(self.preset_overrides, "preset_overrides")
        if self.model_name_or_path is not None and self.text_model is not None:
            raise ValueError(
                "Give one model source: --model_name_or_path (a checkpoint) or --text_model (+ --vision_model/"
                "--audio_model) to compose a new model."
            )
        if (self.vision_model or self.audio_model) and self.text_model is None:
            raise ValueError("--vision_model/--audio_model compose a new model: also give --text_model.")
        if self.load_in_4bit and not self.use_lora:
            raise ValueError(
                "--load_in_4bit is QLoRA: it needs --use_lora (4-bit weights cannot be trained directly)."
            )
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ValueError(f"--dtype must be float32, bfloat16, float16 or auto, got {self.dtype!r}")
        if self.projector not in ("mlp", "pixel_shuffle"):
            raise ValueError(f"--projector must be 'mlp' or 'pixel_shuffle', got {self.projector!r}")

    @property
    def has_source(self) -> bool:
        return any(x is not None for x in (self.model_name_or_path, self.preset, self.text_model))


@dataclass
class DataArguments:
    r"""
    The data, the same in every recipe. `dataset_name` is a local JSONL/JSON/Parquet file or folder, or a `datasets`
    Hub id. Relative media paths resolve against `media_root` (default: the dataset file's folder).
    """

    dataset_name: str | None = field(default=None, metadata={"help": "JSONL/JSON/Parquet file or folder, or Hub id."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "Evaluation data (same forms)."})
    eval_dataset_split: str = field(default="test", metadata={"help": "Split of the evaluation data."})
    media_root: str | None = field(default=None, metadata={"help": "Folder relative media paths resolve against."})
    on_error: str = field(default="raise", metadata={"help": "Bad records: 'raise' (stop) or 'skip' (count)."})
    confine_media_to_root: bool = field(
        default=False,
        metadata={"help": "A media path whose real path (symlinks resolved) is outside media_root is a bad record."},
    )
    max_chars_per_token: float = field(
        default=16,
        metadata={"help": "Records with more text than max_length x this many characters are skipped untokenized."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N eval records."})
    enable_thinking: bool | None = field(
        default=None,
        metadata={
            "help": "Thinking mode of the chat template: true/false for every sample; unset = on exactly for samples "
            "whose assistant turns carry reasoning (SFT), off for pairs. GRPO prompts need true to think."
        },
    )
    cache_encoded_samples: bool = field(
        default=False,
        metadata={
            "help": "Keep each chat sample's encoding in memory after its first batch (multi-epoch, small data)."
        },
    )
    tasks: list[str] | None = field(
        default=None, metadata={"help": "Keep only records whose metadata.task is one of these."}
    )
    min_quality_score: float | None = field(
        default=None,
        metadata={
            "help": "Keep only records whose metadata.quality_score is at least this (records without a score are "
            "kept); filtered records are not errors."
        },
    )
    use_audio_in_video: bool = field(
        default=False,
        metadata={
            "help": "Hear every video's sound (its audio track over the same span as its frames) unless its record "
            'says "audio": false; a video without an audio stream is then a bad record.'
        },
    )

    def __post_init__(self):
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"--on_error must be 'raise' or 'skip', got {self.on_error!r}")


@dataclass
class GRPOScriptArguments:
    r"""GRPO rewards: named verifiable rewards and, optionally, a trained OpenMind reward model."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "think_format"],
        metadata={"help": "Verifiable rewards by name: accuracy, think_format."},
    )
    reward_model: str | None = field(default=None, metadata={"help": "A trained OpenMind reward model directory."})


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class _OpenMindDefaults:
    """Defaults that differ from TRL's: bf16 only on a bf16 CUDA device (TRL's default fails on CPU), no activation
    checkpointing unless asked (tiny CPU models only get slower), and a log line every step. Listed first among the
    bases, so these fields override the TRL config's."""

    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision (default: on a bf16 GPU)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Alias of --activation_checkpointing."}
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    allow_pickled_checkpoint_state: bool = field(
        default=False,
        metadata={
            "help": "Resume from a checkpoint OpenMind did not write (stock Trainer: optimizer.pt, scheduler.pt, "
            "rng_state.pth), reading its pickles with torch.load. Only for checkpoints you trust."
        },
    )

    def _openmind_post_init(self):
        if self.bf16 is None:
            self.bf16 = not self.fp16 and _cuda_bf16()


def _refuse_packing(config) -> None:
    if config.packing:
        raise ValueError(
            f"--packing is not supported by {type(config).__name__}: preference pairs and generated completions are "
            "scored per sequence. Packing applies to the pretrain and sft stages."
        )


@dataclass
class OpenMindSFTConfig(_OpenMindDefaults, SFTConfig):
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep media columns for the collator."})

    def __post_init__(self):
        self._openmind_post_init()
        # The collator renders, tokenizes and (with --packing) packs on the fly. TRL's own packing refuses media
        # datasets and custom collators, so TRL sees packing off and our collator packs (padding-free rows whose
        # position_ids restart per sample).
        self.openmind_packing, self.packing = bool(self.packing or getattr(self, "openmind_packing", False)), False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__post_init__()


@dataclass
class OpenMindDPOConfig(_OpenMindDefaults, DPOConfig):
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep media columns for the collator."})
    packing: bool = field(default=False, metadata={"help": "Not supported for preference pairs."})

    def __post_init__(self):
        self._openmind_post_init()
        _refuse_packing(self)
        super().__post_init__()


@dataclass
class OpenMindRewardConfig(_OpenMindDefaults, RewardConfig):
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep media columns for the collator."})
    packing: bool = field(default=False, metadata={"help": "Not supported for preference pairs."})

    def __post_init__(self):
        self._openmind_post_init()
        _refuse_packing(self)
        super().__post_init__()


@dataclass
class OpenMindGRPOConfig(_OpenMindDefaults, GRPOConfig):
    packing: bool = field(default=False, metadata={"help": "Not supported for generated completions."})

    def __post_init__(self):
        self._openmind_post_init()
        _refuse_packing(self)
        super().__post_init__()


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "STAGES",
    "DataArguments",
    "GRPOScriptArguments",
    "ModelArguments",
    "OpenMindDPOConfig",
    "OpenMindGRPOConfig",
    "OpenMindRewardConfig",
    "OpenMindSFTConfig",
]
