"""Convert a transformers `LlavaForConditionalGeneration` checkpoint into an OpenMind checkpoint.

    openmind convert --from-llava SRC --output DST      (also: python scripts/convert_checkpoint.py ...)

OpenMind keeps LLaVA's module names (`vision_tower`, `multi_modal_projector.linear_{1,2}`, `language_model`,
`lm_head`), so weights copy one to one; the load is strict, so a missing or misshaped key fails loudly. The same
inputs then give the same logits (the test checks max |diff| <= 1e-5 in fp32) and the same greedy tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model stack is imported where it is used: `openmind convert --help` needs no torch
    from ..modeling.configuration_openmind import OpenMindConfig

EXTRA_TOKENS = ("<audio>", "<video>")
THINK_TOKENS = ("<think>", "</think>")


def openmind_config_from_llava(llava_config, token_ids: dict[str, int]) -> OpenMindConfig:
    from ..modeling.configuration_openmind import OpenMindConfig

    return OpenMindConfig(
        vision_config=llava_config.vision_config,
        text_config=llava_config.text_config,
        image_token_id=llava_config.image_token_id,
        video_token_id=token_ids["<video>"],
        think_start_token_id=token_ids["<think>"],
        think_end_token_id=token_ids["</think>"],
        vision_projector_type="mlp",
        vision_feature_layer=llava_config.vision_feature_layer,
        vision_feature_select_strategy=llava_config.vision_feature_select_strategy,
        projector_hidden_act=llava_config.projector_hidden_act,
        multimodal_projector_bias=llava_config.multimodal_projector_bias,
        tie_word_embeddings=llava_config.tie_word_embeddings,
    )


def _pil_image_processor(image_processor):
    """LLaVA repos may carry the torchvision-backed class; OpenMind uses the PIL one with the same settings."""
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    if type(image_processor).__name__.endswith("Pil"):
        return image_processor
    cls = SiglipImageProcessorPil if "siglip" in type(image_processor).__name__.lower() else CLIPImageProcessorPil
    settings = {
        k: v for k, v in image_processor.to_dict().items() if not k.startswith("_") and k != "image_processor_type"
    }
    return cls(**settings)


def convert_llava_checkpoint(src: str | Path, dst: str | Path | None = None):
    """Returns `(model, processor)` converted from the LLaVA checkpoint at `src`; saves them to `dst` if given."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration, WhisperFeatureExtractor

    from ..building.vocabulary import add_openmind_tokens, resize_with_mean_rows
    from ..modeling.modeling_openmind import OpenMindForConditionalGeneration
    from ..processing.chat_template import CHAT_TEMPLATE
    from ..processing.processing_openmind import OpenMindProcessor

    llava = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    llava_processor = AutoProcessor.from_pretrained(src)
    tokenizer = llava_processor.tokenizer
    add_openmind_tokens(tokenizer)
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (*EXTRA_TOKENS, *THINK_TOKENS)}
    # A checkpoint whose embedding matrix has no spare rows for the added tokens grows first (the config validates
    # every token id against the vocabulary). New embedding rows start at the mean embedding and new lm_head rows at
    # the mean row, so they never win the argmax over the original vocabulary and greedy decoding is unchanged.
    if len(tokenizer) > llava.config.text_config.vocab_size:
        resize_with_mean_rows(llava, len(tokenizer))

    config = openmind_config_from_llava(llava.config, {**token_ids})
    model = OpenMindForConditionalGeneration(config)
    state = llava.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"LLaVA -> OpenMind weight mismatch: missing {missing[:10]}, unexpected {unexpected[:10]}")
    model.tie_weights()
    model.generation_config = llava.generation_config

    processor = OpenMindProcessor(
        image_processor=_pil_image_processor(llava_processor.image_processor),
        feature_extractor=WhisperFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=llava_processor.chat_template or CHAT_TEMPLATE,
        num_image_tokens=config.num_image_tokens,
    )
    if dst is not None:
        model.save_pretrained(dst)
        processor.save_pretrained(dst)
    return model, processor


# `openmind convert ...`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-llava", dest="src", required=True, help="transformers LLaVA checkpoint directory")
    parser.add_argument("--output", required=True, help="where to write the OpenMind checkpoint")


def run(args: argparse.Namespace) -> int:
    convert_llava_checkpoint(args.src, args.output)
    print(f"Converted {args.src} -> {args.output}")
    return 0


__all__ = ["convert_llava_checkpoint", "openmind_config_from_llava"]
