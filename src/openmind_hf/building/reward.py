"""The reward model: `OpenMindForSequenceClassification` (a scalar `score` head on the last non-pad token), made
from a causal-LM OpenMind in memory ([`to_reward_model`]) or loaded from a checkpoint ([`load_reward_model`]).
Either way the towers and LM body carry over and a new head starts at zero, so every input first scores 0.
"""

from __future__ import annotations

import copy
import json
import os

from torch import nn


def to_reward_model(causal_lm, num_labels: int = 1):
    """A causal-LM OpenMind -> `OpenMindForSequenceClassification` sharing its towers and LM body (new `score`).

    Args:
        causal_lm (`OpenMindForConditionalGeneration`): the model whose `model` (towers + LM body) is copied.
        num_labels (`int`, *optional*, defaults to 1): outputs of the head (1 for a Bradley-Terry reward).
    """
    from ..modeling.modeling_openmind import OpenMindForSequenceClassification

    config = copy.deepcopy(causal_lm.config)  # the causal LM's config is not mutated
    config.num_labels = num_labels
    reward = OpenMindForSequenceClassification(config)
    reward.model.load_state_dict(causal_lm.model.state_dict())  # strict: every tower and LM weight carries over
    nn.init.zeros_(reward.score.weight)  # start at reward 0 for every input: the first pairs give a clean signal
    return reward.to(next(causal_lm.parameters()).dtype)


def load_reward_model(path: str, **from_pretrained_kwargs):
    """The reward model at `path`: a reward checkpoint as saved, or a causal-LM OpenMind checkpoint with a new
    zero-initialised `score` head (the loading is strict about every other key).

    Args:
        path (`str`): checkpoint directory or Hub id.
        from_pretrained_kwargs: passed to `from_pretrained` (`dtype`, `quantization_config`, ...).
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **from_pretrained_kwargs)
    if "score.weight" not in checkpoint_keys(path):
        nn.init.zeros_(model.score.weight)  # a causal-LM checkpoint: the head is new
    return model


def checkpoint_keys(path: str) -> set[str]:
    """The weight names stored in a local safetensors checkpoint; empty for a Hub id or a non-safetensors one."""
    from safetensors import safe_open

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            return set(json.load(f)["weight_map"])
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(single):
        with safe_open(single, "pt") as f:
            return set(f.keys())
    return set()  # a Hub id: the head is new unless the repo says otherwise; zero init is harmless either way


__all__ = ["checkpoint_keys", "load_reward_model", "to_reward_model"]
