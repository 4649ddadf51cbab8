"""`model_from_components` (the model alone; `build_from_components` adds the processor and is tested end to end in
test_modeling_openmind.py): a text-only composition, and a clear error when the LM is missing."""

from __future__ import annotations

import pytest
import torch

from openmind_hf.building import model_from_components


def _save_plain_lm(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "<eos>", "hi"])}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=3, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))  # fmt: skip
    lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return lm, tokenizer


def test_text_only_composition(tmp_path):
    lm, tokenizer = _save_plain_lm(tmp_path / "lm")
    model = model_from_components(text=str(tmp_path / "lm"), tokenizer=tokenizer)
    assert model.model.vision_tower is None and model.model.audio_tower is None
    assert model.config.image_token_id is None and model.config.audio_token_id is None
    assert len(tokenizer) == 3 + 5  # <image> <audio> <video> <think> </think> added in place
    embed = model.get_input_embeddings().weight
    torch.testing.assert_close(embed[:3], lm.model.embed_tokens.weight, rtol=0, atol=0)
    torch.testing.assert_close(embed[3:], lm.model.embed_tokens.weight.mean(0).expand(5, -1))
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()  # the LM's tying carries over


def test_missing_text_model_is_a_clear_error():
    with pytest.raises(ValueError, match="needs `text`: a causal LM checkpoint"):
        model_from_components(vision="some/vision-tower")
