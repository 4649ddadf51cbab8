"""Perplexity counts only the tokens the model is asked to predict: no prompt, no media placeholders, no padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from openmind_hf.evaluation.perplexity import perplexity


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))


def _manual_nll(model, inputs, scored) -> tuple[float, int]:
    """Reference: full logits, then the mean over scored target positions, written out plainly."""
    with torch.no_grad():
        logits = model(**inputs).logits  # [B, T, V]
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(1, logits.shape[1]):
            if scored[b, t]:
                log_probs = torch.log_softmax(logits[b, t - 1].double(), dim=-1)
                total -= float(log_probs[inputs["input_ids"][b, t]])
                count += 1
    return total, count


def test_chat_sample_scores_only_the_answer(tiny_model_and_processor, image):
    model, processor = tiny_model_and_processor
    model.eval()
    answer = "a red square"
    sample = {
        "messages": [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": answer},
        ]
    }
    result = perplexity(model, processor, [sample])
    # The answer's tokens plus <|im_end|>; nothing from the prompt, the 16 image placeholders or the think block.
    assert result["num_tokens"] == len(processor.tokenizer(answer)["input_ids"]) + 1

    inputs = processor.apply_chat_template(
        [sample["messages"]], tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    scored = inputs.pop("assistant_masks").bool()
    total, count = _manual_nll(model, inputs, scored)
    assert count == result["num_tokens"]
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)

    # A longer prompt changes the context, not which tokens are scored.
    longer = {"messages": [{"role": "system", "content": "Be brief."}, *sample["messages"]]}
    assert perplexity(model, processor, [longer])["num_tokens"] == result["num_tokens"]


def test_image_text_sample_masks_the_placeholders(tiny_model_and_processor, image):
    model, processor = tiny_model_and_processor
    caption = "\na red square on white"
    result = perplexity(model, processor, [{"text": "<image>" + caption, "image": image}])
    # Every caption token is predicted (from the image tokens before it); no placeholder is a target.
    assert result["num_tokens"] == len(processor.tokenizer(caption)["input_ids"])

    inputs = processor(text=["<image>" + caption], images=[[image]], return_tensors="pt")
    scored = inputs["input_ids"] != processor.image_token_id
    total, count = _manual_nll(model, dict(inputs), scored)
    assert count == result["num_tokens"]
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


def test_batching_and_padding_do_not_change_the_result(tiny_model_and_processor, image):
    model, processor = tiny_model_and_processor
    samples = [
        {"text": "short"},
        {"text": "a much longer line of plain text to force padding in its batch"},
        {"text": "<image>\nred", "image": image},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]},
        {
            "messages": [
                {"role": "user", "content": "a longer question, please?"},
                {"role": "assistant", "content": "ok"},
            ]
        },
    ]
    side = processor.tokenizer.padding_side
    one = perplexity(model, processor, samples, batch_size=1)
    many = perplexity(model, processor, samples, batch_size=4)
    assert one["num_tokens"] == many["num_tokens"]
    assert one["perplexity"] == pytest.approx(many["perplexity"], rel=1e-4)
    assert processor.tokenizer.padding_side == side  # restored for the caller


def test_bad_samples_are_refused(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="at least one sample"):
        perplexity(model, processor, [])
    with pytest.raises(ValueError, match="no assistant tokens"):
        perplexity(model, processor, [{"messages": [{"role": "user", "content": "no answer"}]}])
