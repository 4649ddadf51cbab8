"""One home for building models (issue 10 item 5): `modeling/` defines classes and builds from configs only,
`openmind_hf.building` makes model objects, and the public entry points keep working from the package root."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import openmind_hf

MODELING = Path(openmind_hf.__file__).parent / "modeling"


def _loading_calls(source: str) -> list[str]:
    """Calls of `<something>.from_pretrained(...)` other than `super().from_pretrained(...)`."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            receiver = node.func.value
            is_super = isinstance(receiver, ast.Call) and getattr(receiver.func, "id", None) == "super"
            if not is_super:
                calls.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return calls


def test_modeling_never_loads_weights_from_a_hub_id():
    """House rule 3: towers are built from config; weights arrive only through the model's own `from_pretrained`."""
    offending = {p.name: _loading_calls(p.read_text()) for p in MODELING.glob("*.py")}
    offending = {name: calls for name, calls in offending.items() if calls}
    assert not offending, f"modeling/ loads pretrained weights (move it to openmind_hf/building/): {offending}"
    assert not hasattr(openmind_hf.OpenMindForConditionalGeneration, "from_pretrained_components")


def test_public_builders_from_the_package_root():
    from openmind_hf import building

    assert openmind_hf.build_tiny_preset is building.build_tiny_preset
    assert openmind_hf.build_from_components is building.build_from_components


def test_to_reward_model_shares_the_body_and_starts_at_zero(tiny_model_and_processor):
    from openmind_hf import OpenMindForSequenceClassification
    from openmind_hf.building import to_reward_model

    causal_lm, processor = tiny_model_and_processor
    config_before = causal_lm.config.to_dict()
    reward = to_reward_model(causal_lm, num_labels=1)
    assert isinstance(reward, OpenMindForSequenceClassification)
    assert causal_lm.config.to_dict() == config_before  # the causal LM's config is not mutated (house rule 4)
    for name, tensor in causal_lm.model.state_dict().items():
        torch.testing.assert_close(reward.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    inputs = processor.tokenizer(["hello there", "a red square"], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = reward(**inputs).logits
    assert scores.shape == (2, 1) and torch.count_nonzero(scores) == 0


def test_load_reward_model_from_a_causal_lm_checkpoint(tiny_checkpoint, tiny_model_and_processor):
    from openmind_hf.building import load_reward_model

    reward = load_reward_model(str(tiny_checkpoint))  # strict load: only `score` is new, and it starts at zero
    assert torch.count_nonzero(reward.score.weight) == 0
    body = tiny_model_and_processor[0].model.state_dict()
    for name, tensor in reward.model.state_dict().items():
        torch.testing.assert_close(tensor, body[name], rtol=0, atol=0, msg=name)
