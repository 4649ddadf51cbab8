"""LLaVA -> OpenMind conversion: the same logits (max |diff| <= 1e-5, fp32) and the same greedy tokens."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from openmind_hf.building import load_tiny_tokenizer

TOWERS = {
    "clip-default": (CLIPVisionConfig, CLIPImageProcessorPil, "default", -2),
    "siglip-full": (SiglipVisionConfig, SiglipImageProcessorPil, "full", [-3, -1]),
}


def _tiny_llava(tmp_path, kind):
    config_cls, processor_cls, strategy, layer = TOWERS[kind]
    tokenizer = load_tiny_tokenizer()
    vision = config_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                        image_size=24, patch_size=6)  # fmt: skip
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy=strategy, vision_feature_layer=layer, image_seq_length=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = processor_cls(size={"height": 24, "width": 24}, crop_size={"height": 24, "width": 24},
                                    do_center_crop=False)  # fmt: skip
    num_additional = 1 if kind.startswith("clip") else 0
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=6,
                               vision_feature_select_strategy=strategy, num_additional_image_tokens=num_additional)  # fmt: skip
    src = tmp_path / f"llava-{kind}"
    model.save_pretrained(src)
    processor.save_pretrained(src)
    return src, processor


@pytest.mark.parametrize("kind", list(TOWERS))
def test_converted_model_matches_llava(tmp_path, kind):
    src, llava_processor = _tiny_llava(tmp_path, kind)
    dst = tmp_path / "openmind"
    from openmind_hf.cli import main

    assert main(["convert", "--from-llava", str(src), "--output", str(dst)]) == 0
    from transformers import AutoModelForImageTextToText, AutoProcessor

    llava = LlavaForConditionalGeneration.from_pretrained(src).eval()
    converted = AutoModelForImageTextToText.from_pretrained(dst).eval()
    processor = AutoProcessor.from_pretrained(dst)
    images = [Image.new("RGB", (30, 20), (30, 200, 90)), Image.new("RGB", (24, 24), (250, 250, 0))]
    prompts = ["USER: <image>\nWhat color? ASSISTANT:", "USER: <image> and this? ASSISTANT:"]
    llava_processor.tokenizer.padding_side = "left"
    reference_inputs = llava_processor(images=images, text=prompts, padding=True, return_tensors="pt")
    processor.tokenizer.padding_side = "left"
    our_inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    assert torch.equal(our_inputs["input_ids"], reference_inputs["input_ids"])  # same expansion
    torch.testing.assert_close(our_inputs["pixel_values"], reference_inputs["pixel_values"])
    with torch.no_grad():
        expected = llava(**reference_inputs).logits
        got = converted(**our_inputs).logits
    diff = (got - expected).abs().max().item()
    print(f"{kind}: max |logit diff| = {diff:.2e}")
    assert diff <= 1e-5
    kwargs = {"max_new_tokens": 8, "do_sample": False}
    assert torch.equal(converted.generate(**our_inputs, **kwargs), llava.generate(**reference_inputs, **kwargs))
