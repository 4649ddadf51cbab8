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


def _tokenizer_without_openmind_tokens():
    """A word-level tokenizer trained here (milliseconds) with `<image>` but none of the tokens OpenMind adds."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    corpus = ["USER: <image>\nWhat color? ASSISTANT: red green blue yellow", "and this? a the is it"] * 4
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>", "<image>"])
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip


def test_conversion_grows_an_embedding_matrix_without_spare_rows(tmp_path):
    # The LLaVA vocabulary is exactly the tokenizer: `<audio>`, `<video>`, `<think>`, `</think>` need new rows.
    tokenizer = _tokenizer_without_openmind_tokens()
    vocab_size = len(tokenizer)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=24, patch_size=6)  # fmt: skip
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    config = LlavaConfig(vision_config=vision, text_config=text, image_seq_length=16,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"))  # fmt: skip
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessorPil(size={"height": 24, "width": 24}, crop_size={"height": 24, "width": 24},
                                            do_center_crop=False)  # fmt: skip
    llava_processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=6,
                                     vision_feature_select_strategy="default", num_additional_image_tokens=1)  # fmt: skip
    src = tmp_path / "llava"
    llava.save_pretrained(src)
    llava_processor.save_pretrained(src)

    from openmind_hf.export.convert_llava import convert_llava_checkpoint

    converted, processor = convert_llava_checkpoint(src, tmp_path / "openmind")
    added = [processor.tokenizer.convert_tokens_to_ids(t) for t in ("<audio>", "<video>", "<think>", "</think>")]
    assert sorted(added) == list(range(vocab_size, vocab_size + 4))
    assert converted.config.text_config.vocab_size == vocab_size + 4
    image = Image.new("RGB", (24, 24), (30, 200, 90))
    prompt = "USER: <image>\nWhat color? ASSISTANT:"
    reference = llava_processor(images=image, text=prompt, return_tensors="pt")
    ours = processor(images=image, text=prompt, return_tensors="pt")
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    with torch.no_grad():
        expected = llava(**reference).logits
        got = converted.eval()(**ours).logits
    torch.testing.assert_close(got[..., :vocab_size], expected, atol=1e-5, rtol=1e-5)
    # The added tokens' logits are the mean of the original ones: below the best token, never generated.
    assert (got[..., vocab_size:].max(-1).values < got[..., :vocab_size].max(-1).values).all()
    kwargs = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False}
    generated = converted.generate(**ours, **kwargs)
    assert torch.equal(generated, llava.generate(**reference, **kwargs))
    assert not torch.isin(generated, torch.tensor(added)).any()
