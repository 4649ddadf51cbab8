"""ModelTester-style suite for OpenMindConfig / OpenMindModel / OpenMindForConditionalGeneration."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import openmind_hf  # noqa: F401  (registers the Auto classes)
from openmind_hf import OpenMindConfig, OpenMindForConditionalGeneration
from openmind_hf.building import build_tiny_preset, tiny_config
from openmind_hf.modeling.modeling_openmind import labelled_positions_loss


def _image(color=(200, 30, 30), size=48):
    return Image.new("RGB", (size, size), color)


def _tone(seconds=1.0, freq=440.0):
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _mixed_batch(processor, with_answers=True):
    """Four samples: image, audio, text-only, two images + audio."""
    chats = [
        [{"role": "user", "content": [{"type": "image", "image": _image()}, {"type": "text", "text": "What color?"}]}],
        [
            {
                "role": "user",
                "content": [{"type": "audio", "audio": _tone(0.7)}, {"type": "text", "text": "How many tones?"}],
            }
        ],
        [{"role": "user", "content": "What is 2 plus 2?"}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": _image((0, 0, 255))},
                    {"type": "image", "image": _image((0, 255, 0), 20)},
                    {"type": "audio", "audio": _tone(1.4, 880)},
                    {"type": "text", "text": "Which shape?"},
                ],
            }
        ],
    ]
    if with_answers:
        for chat, answer in zip(chats, ["red", "3", "4", "circle"]):
            chat.append({"role": "assistant", "content": answer})
    return processor.apply_chat_template(
        chats,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        add_generation_prompt=not with_answers,
        return_assistant_tokens_mask=with_answers,
        processor_kwargs={"padding": True},
    )


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_and_processor):
    return tiny_model_and_processor


# ---------------------------------------------------------------- config


class TestConfig:
    def test_round_trip(self, tmp_path):
        config = tiny_config()
        config.save_pretrained(tmp_path)
        loaded = OpenMindConfig.from_pretrained(tmp_path)
        assert loaded.to_dict() == config.to_dict()
        assert loaded.vision_config.model_type == "siglip_vision_model"
        assert loaded.audio_config.model_type == "whisper"
        assert loaded.num_image_tokens == 16
        assert loaded.get_text_config() is loaded.text_config

    def test_optional_towers(self):
        base = tiny_config()
        text_only = OpenMindConfig(text_config=base.text_config)
        assert text_only.vision_config is None and text_only.audio_config is None
        vision_text = OpenMindConfig(
            text_config=base.text_config,
            vision_config=base.vision_config,
            image_token_id=base.image_token_id,
            vision_feature_select_strategy="full",
        )
        assert vision_text.num_image_tokens == base.num_image_tokens
        audio_text = OpenMindConfig(
            text_config=base.text_config, audio_config=base.audio_config, audio_token_id=base.audio_token_id
        )
        model = OpenMindForConditionalGeneration(audio_text)
        assert model.model.vision_tower is None and model.model.audio_tower is not None

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"image_token_id": None}, "image_token_id"),
            ({"image_token_id": 10_000}, "outside the text vocabulary"),
            ({"vision_feature_layer": 7}, "vision_feature_layer"),
            ({"vision_projector_type": "pixel_shuffle", "pixel_shuffle_factor": 3}, "must divide"),
            ({"audio_pool_stride": 0}, "audio_pool_stride"),
            ({"audio_config": {"model_type": "clip_vision_model"}}, "audio_config.model_type"),
        ],
    )
    def test_validation_errors(self, overrides, message):
        with pytest.raises(ValueError, match=message):
            tiny_config(**overrides)

    def test_token_counts(self):
        config = tiny_config(vision_projector_type="pixel_shuffle", pixel_shuffle_factor=2)
        assert config.num_image_tokens == 4  # 16 patches / 2^2
        from transformers import CLIPVisionConfig

        clip = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                image_size=30, patch_size=6)  # fmt: skip
        default = tiny_config(vision_config=clip, vision_feature_select_strategy="default")
        full = tiny_config(vision_config=clip, vision_feature_select_strategy="full")
        assert (default.num_image_tokens, full.num_image_tokens) == (25, 26)  # CLS dropped / kept
        # Audio tokens follow the clip's real length: 1 s = 100 mel frames -> 50 encoder frames -> 13 tokens.
        assert tiny_config().num_audio_tokens(100) == 13
        assert tiny_config().num_audio_tokens(200) == 25


# ---------------------------------------------------------------- model


class TestModel:
    def test_mixed_modalities_forward_and_labelled_loss(self, model_and_processor):
        model, processor = model_and_processor
        batch = _mixed_batch(processor)
        masks = batch.pop("assistant_masks")
        assert batch["pixel_values"].shape[0] == 3 and batch["input_features"].shape[0] == 2
        labels = batch["input_ids"].masked_fill(masks == 0, -100)
        out = model(**batch, labels=labels)
        # Reference: full logits + HF's shifted cross-entropy over every position.
        logits = out.logits.float()
        reference = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        torch.testing.assert_close(out.loss, reference, atol=1e-6, rtol=1e-6)
        assert out.image_hidden_states.shape[0] == 3 * 16

    def test_labelled_loss_gradients_match_plain_path(self, model_and_processor):
        model, _ = model_and_processor
        torch.manual_seed(0)
        hidden = torch.randn(2, 9, model.config.text_config.hidden_size, requires_grad=True)
        labels = torch.randint(0, 50, (2, 9))
        labels[0, :4] = -100
        head = copy.deepcopy(model.lm_head)
        fast = labelled_positions_loss(hidden, head, labels, chunk=3)
        fast.backward()
        grads_fast = (hidden.grad.clone(), head.weight.grad.clone())
        hidden.grad, head.weight.grad = None, None
        logits = head(hidden)
        plain = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        plain.backward()
        torch.testing.assert_close(fast, plain)
        torch.testing.assert_close(grads_fast[0], hidden.grad)
        torch.testing.assert_close(grads_fast[1], head.weight.grad)

    def test_placeholder_mismatch_raises_with_both_counts(self, model_and_processor):
        model, processor = model_and_processor
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        broken = dict(batch, pixel_values=batch["pixel_values"][:2])
        with pytest.raises(ValueError, match=r"tokens: 48, features: 32"):
            model(**broken)
        # Audio is checked the same way; placeholders with no media at all stay plain tokens, as in LLaVA
        # (TestTransformersConventions.test_placeholders_without_media_are_plain_tokens).
        one_clip = dict(batch, input_features=batch["input_features"][:1])
        one_clip["feature_attention_mask"] = batch["feature_attention_mask"][:1]
        with pytest.raises(ValueError, match=r"<audio> features and <audio> tokens do not match: tokens: \d+"):
            model(**one_clip)

    def test_batch_invariance(self, model_and_processor):
        """A sample's logits do not depend on what else is in the (padded) batch."""
        model, processor = model_and_processor
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        full = model(**batch).logits
        single_chat = [
            {
                "role": "user",
                "content": [{"type": "image", "image": _image()}, {"type": "text", "text": "What color?"}],
            },
            {"role": "assistant", "content": "red"},
        ]
        single = processor.apply_chat_template(single_chat, tokenize=True, return_dict=True, return_tensors="pt")
        n = single["input_ids"].shape[1]
        torch.testing.assert_close(model(**single).logits[0], full[0, :n], atol=1e-5, rtol=1e-5)

    def test_packed_row_never_attends_across_samples_even_with_use_cache(self, model_and_processor):
        model, _ = model_and_processor
        a, b = torch.tensor([[30, 31, 32, 33]]), torch.tensor([[40, 41, 42]])
        packed = torch.cat([a, b], dim=1)
        position_ids = torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
        assert model.config.text_config.use_cache  # the default that used to build a cache and drop the masks
        logits = model(input_ids=packed, position_ids=position_ids).logits
        torch.testing.assert_close(logits[:, 4:], model(input_ids=b).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[:, :4], model(input_ids=a).logits, atol=1e-5, rtol=1e-5)

    def test_generate_with_and_without_cache_agree(self, model_and_processor):
        model, processor = model_and_processor
        processor.tokenizer.padding_side = "left"
        try:
            batch = _mixed_batch(processor, with_answers=False)
        finally:
            processor.tokenizer.padding_side = "right"
        kwargs = {"max_new_tokens": 8, "do_sample": False, "min_new_tokens": 8}
        with_cache = model.generate(**batch, use_cache=True, **kwargs)
        without_cache = model.generate(**batch, use_cache=False, **kwargs)
        assert torch.equal(with_cache, without_cache)
        assert with_cache.shape[1] == batch["input_ids"].shape[1] + 8
        placeholders = [model.config.image_token_id, model.config.audio_token_id, model.config.video_token_id]
        assert not torch.isin(with_cache[:, batch["input_ids"].shape[1] :], torch.tensor(placeholders)).any()

    @pytest.mark.parametrize("attn", ["eager", "flex_attention"])
    def test_attention_implementations_agree_with_sdpa(self, tiny_checkpoint, attn, model_and_processor):
        _, processor = model_and_processor
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        sdpa = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint, attn_implementation="sdpa")
        other = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint, attn_implementation=attn)
        mask = batch["attention_mask"].bool()
        with torch.no_grad():  # flex_attention has no CPU backward
            torch.testing.assert_close(other(**batch).logits[mask], sdpa(**batch).logits[mask], atol=1e-4, rtol=1e-4)

    def test_activation_checkpointing_parity(self, tiny_checkpoint, model_and_processor):
        _, processor = model_and_processor
        batch = _mixed_batch(processor)
        masks = batch.pop("assistant_masks")
        labels = batch["input_ids"].masked_fill(masks == 0, -100)

        def loss_and_grads(checkpointing: bool):
            model = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint).train()
            model.config.text_config.dropout = 0.0
            if checkpointing:
                model.activation_checkpointing_enable()
                assert model.model.language_model.is_activation_checkpointing
            loss = model(**batch, labels=labels, use_cache=False).loss
            loss.backward()
            return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

        loss_a, grads_a = loss_and_grads(False)
        loss_b, grads_b = loss_and_grads(True)
        torch.testing.assert_close(loss_a, loss_b)
        assert grads_a.keys() == grads_b.keys() and any("vision_tower" in k for k in grads_a)
        for name in grads_a:
            torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5, msg=name)

    def test_frozen_towers_run_without_autograd(self, tiny_checkpoint, model_and_processor):
        _, processor = model_and_processor
        model = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint)
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
        seen = {}

        def hook(module, args, output):
            seen["grad"] = torch.is_grad_enabled()

        model.model.vision_tower.register_forward_hook(hook)
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        out = model(**batch)
        assert seen["grad"] is False
        out.logits.sum().backward()
        assert model.model.multi_modal_projector.linear_1.weight.grad is not None

    def test_tied_and_untied_embeddings(self, tmp_path):
        tied, _ = build_tiny_preset()
        assert tied.lm_head.weight.data_ptr() == tied.get_input_embeddings().weight.data_ptr()
        base = tiny_config()
        text = base.text_config.to_dict() | {"tie_word_embeddings": False}
        untied = OpenMindForConditionalGeneration(tiny_config(text_config=text, tie_word_embeddings=False))
        assert untied.lm_head.weight.data_ptr() != untied.get_input_embeddings().weight.data_ptr()
        untied.save_pretrained(tmp_path)
        reloaded = OpenMindForConditionalGeneration.from_pretrained(tmp_path)
        torch.testing.assert_close(reloaded.lm_head.weight, untied.lm_head.weight)

    def test_resize_token_embeddings(self):
        model, _ = build_tiny_preset()
        vocab = model.config.text_config.vocab_size
        model.resize_token_embeddings(vocab + 5)
        assert model.get_input_embeddings().weight.shape[0] == vocab + 5
        assert model.lm_head.weight.shape[0] == vocab + 5
        assert model(input_ids=torch.tensor([[vocab + 4, 30]])).logits.shape[-1] == vocab + 5

    def test_device_map_auto(self, tiny_checkpoint):
        model = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint, device_map="auto")
        assert model.device.type == "cpu"
        assert model(input_ids=torch.tensor([[30, 31, 32]])).logits.shape[:2] == (1, 3)

    def test_thinking_budget_closes_open_block(self, model_and_processor):
        model, processor = model_and_processor
        tok = processor.tokenizer
        chat = [{"role": "user", "content": "How many?"}]
        inputs = processor.apply_chat_template(
            chat,
            add_generation_prompt=True,
            enable_thinking=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        think = tok.convert_tokens_to_ids("<think>")
        end = tok.convert_tokens_to_ids("</think>")
        # Open the block in the prompt so the budget applies from the first generated token.
        input_ids = torch.cat([inputs["input_ids"], torch.tensor([[think]])], dim=1)
        attention = torch.ones_like(input_ids)
        for budget in (0, 3):
            out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=6, do_sample=False,
                                 thinking_budget=budget, bad_words_ids=[[think]])  # fmt: skip
            new = out[0, input_ids.shape[1] :].tolist()
            assert new[budget] == end, (budget, new)
        out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=6, do_sample=False,
                             bad_words_ids=[[think]])  # fmt: skip
        assert end not in out[0, input_ids.shape[1] :].tolist()  # the random model would not close it by itself


# ---------------------------------------------------------------- save / load / peft


class TestLoading:
    def test_auto_classes_round_trip(self, tiny_checkpoint, model_and_processor):
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForImageTextToText,
            AutoModelForMultimodalLM,
            AutoProcessor,
        )

        from openmind_hf import OpenMindModel, OpenMindProcessor

        model, processor = model_and_processor
        assert isinstance(AutoConfig.from_pretrained(tiny_checkpoint), OpenMindConfig)
        assert isinstance(AutoProcessor.from_pretrained(tiny_checkpoint), OpenMindProcessor)
        base = AutoModel.from_pretrained(tiny_checkpoint)
        assert isinstance(base, OpenMindModel)
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        expected = model(**batch).logits
        for auto in (AutoModelForImageTextToText, AutoModelForMultimodalLM):
            loaded = auto.from_pretrained(tiny_checkpoint)
            assert isinstance(loaded, OpenMindForConditionalGeneration)
            torch.testing.assert_close(loaded(**batch).logits, expected)
        torch.testing.assert_close(base(**batch).last_hidden_state, model.model(**batch).last_hidden_state)

    def test_safetensors_only_and_strict_loading(self, tiny_checkpoint, tmp_path):
        import shutil

        from safetensors.torch import load_file, save_file

        files = {p.name for p in tiny_checkpoint.iterdir()}
        assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
        # A checkpoint with a missing key, or a wrong shape, must fail loudly.
        for damage in ("missing", "shape"):
            broken = tmp_path / damage
            shutil.copytree(tiny_checkpoint, broken)
            state = load_file(broken / "model.safetensors")
            key = "model.multi_modal_projector.linear_1.weight"
            if damage == "missing":
                del state[key]
            else:
                state[key] = torch.zeros(3, 3)
            save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
            with pytest.raises(Exception, match="linear_1|ignore_mismatched_sizes"):
                OpenMindForConditionalGeneration.from_pretrained(broken)

    def test_peft_lora_targets_only_the_language_model(self, tiny_checkpoint):
        from peft import LoraConfig, get_peft_model

        model = OpenMindForConditionalGeneration.from_pretrained(tiny_checkpoint)
        config = LoraConfig(
            r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)", lora_dropout=0.0
        )
        peft_model = get_peft_model(model, config)
        lora = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
        trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert lora and all("language_model" in n for n in lora)
        assert set(trainable) == set(lora)
        assert not any("vision_tower" in n or "audio_tower" in n for n in lora)


# ---------------------------------------------------------------- components


def test_from_pretrained_components(tmp_path):
    """A new model from towers saved locally: tower weights load exactly, projectors are fresh, and the
    tokenizer gains the special tokens with embedding rows starting at the mean."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        CLIPConfig,
        CLIPModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        SiglipImageProcessorPil,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    from openmind_hf import build_from_components

    torch.manual_seed(0)
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 24, "patch_size": 6}  # fmt: skip
    text = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 99, "max_position_embeddings": 16}  # fmt: skip
    clip = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=16))  # full CLIP checkpoint
    clip.save_pretrained(tmp_path / "clip")
    SiglipImageProcessorPil(size={"height": 24, "width": 24}).save_pretrained(tmp_path / "clip")
    WhisperModel(tiny_config().audio_config).save_pretrained(tmp_path / "whisper")  # encoder + decoder checkpoint
    WhisperFeatureExtractor(feature_size=40, chunk_length=2).save_pretrained(tmp_path / "whisper")
    # A plain LM with a tokenizer that knows none of OpenMind's tokens.
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "<eos>", "hello", "world", "red"])},
                                         unk_token="<unk>"))  # fmt: skip
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    lm_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=5, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))  # fmt: skip
    lm.save_pretrained(tmp_path / "llama")
    lm_tokenizer.save_pretrained(tmp_path / "llama")

    model, processor = build_from_components(
        vision=str(tmp_path / "clip"), audio=str(tmp_path / "whisper"), text=str(tmp_path / "llama"),
        projector="pixel_shuffle", vision_feature_select_strategy="default", output_dir=tmp_path / "om",
    )  # fmt: skip
    # Tower and LM weights are exactly the pretrained ones.
    for name, p in clip.vision_model.state_dict().items():
        torch.testing.assert_close(model.model.vision_tower.state_dict()[name], p)
    for name, p in lm.model.layers.state_dict().items():
        torch.testing.assert_close(model.model.language_model.layers.state_dict()[name], p)
    torch.testing.assert_close(model.lm_head.weight[:5], lm.lm_head.weight)
    # New tokens start at the mean embedding / mean head row.
    vocab = processor.tokenizer.get_vocab()
    assert {"<image>", "<audio>", "<video>", "<think>", "</think>"} <= set(vocab)
    for token in ("<image>", "<think>"):
        torch.testing.assert_close(
            model.get_input_embeddings().weight[vocab[token]], lm.model.embed_tokens.weight.mean(0)
        )
        torch.testing.assert_close(model.lm_head.weight[vocab[token]], lm.lm_head.weight.mean(0))
    assert model.config.num_image_tokens == 4  # 4x4 patches (CLS dropped), pixel-shuffled by 2
    # The result reloads through the Auto classes and runs on image + audio.
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "om")
    proc = AutoProcessor.from_pretrained(tmp_path / "om")
    chat = [{"role": "user", "content": [{"type": "image", "image": _image()}, {"type": "audio", "audio": _tone(0.5)},
                                         {"type": "text", "text": "hello"}]}]  # fmt: skip
    inputs = proc.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert (inputs["input_ids"] == vocab["<image>"]).sum() == 4
    assert reloaded(**inputs).logits.shape[-1] == len(proc.tokenizer)


# ---------------------------------------------------------------- transformers conventions (issue 11)


def _prompt_batch(processor):
    processor.tokenizer.padding_side = "left"
    try:
        batch = _mixed_batch(processor, with_answers=False)
    finally:
        processor.tokenizer.padding_side = "right"
    return batch


class TestTransformersConventions:
    def test_past_key_values_is_used_not_dropped(self, model_and_processor):
        # `past_key_values=` used to vanish into **kwargs next to `cache=None`: the decode step saw no history.
        model, processor = model_and_processor
        batch = _mixed_batch(processor, with_answers=False)
        with torch.no_grad():
            prefill = model(**batch, use_cache=True)
            step = torch.full((batch["input_ids"].shape[0], 1), 7)
            mask = torch.cat([batch["attention_mask"], torch.ones_like(step)], dim=1)
            full = model(**{**batch, "input_ids": torch.cat([batch["input_ids"], step], 1), "attention_mask": mask})
            decoded = model(input_ids=step, attention_mask=mask, past_key_values=prefill.cache)
        assert decoded.cache.get_seq_length() == mask.shape[1]
        torch.testing.assert_close(decoded.logits[:, -1], full.logits[:, -1], atol=1e-5, rtol=1e-5)

    def test_return_dict_false_gives_tuples(self, model_and_processor):
        model, processor = model_and_processor
        batch = _mixed_batch(processor)
        labels = batch.pop("assistant_masks") * batch["input_ids"] - 100 * (1 - batch["attention_mask"])
        with torch.no_grad():
            as_dict = model(**batch, labels=labels)
            as_tuple = model(**batch, labels=labels, return_dict=False)
            base = model.model(**batch, return_dict=False)
        assert isinstance(as_tuple, tuple) and isinstance(base, tuple)
        torch.testing.assert_close(as_tuple[0], as_dict.loss)
        torch.testing.assert_close(as_tuple[1], as_dict.logits)
        torch.testing.assert_close(base[0], model.model(**batch).last_hidden_state)

    def test_loss_uses_shift_labels(self, model_and_processor):
        # Context parallelism passes `shift_labels` (already shifted); they must define the loss.
        model, processor = model_and_processor
        batch = _mixed_batch(processor)
        batch.pop("assistant_masks")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
        other = shifted.masked_fill(torch.arange(shifted.shape[1]) % 2 == 0, -100)  # keep every other target
        with torch.no_grad():
            logits = model(**batch).logits
            from_labels = model(**batch, labels=labels).loss
            from_shifted = model(**batch, labels=labels, shift_labels=shifted).loss
            from_other = model(**batch, labels=labels, shift_labels=other).loss
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), other.flatten(), ignore_index=-100)
        torch.testing.assert_close(from_shifted, from_labels)
        torch.testing.assert_close(from_other, expected, atol=1e-5, rtol=1e-5)

    def test_inputs_embeds_with_media_merges_them(self, model_and_processor):
        # With `inputs_embeds`, pixel_values / input_features used to be ignored silently.
        model, processor = model_and_processor
        batch = _mixed_batch(processor, with_answers=False)
        input_ids = batch.pop("input_ids")
        embeds = model.get_input_embeddings()(input_ids)
        with torch.no_grad():
            from_ids = model(input_ids=input_ids, **batch).logits
            from_embeds = model(inputs_embeds=embeds, **batch).logits
            text_only = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(from_embeds, from_ids, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(text_only, from_ids, atol=1e-3)
        with pytest.raises(ValueError, match=r"tokens: 48, features: 32"):
            model(inputs_embeds=embeds, **{**batch, "pixel_values": batch["pixel_values"][:2]})

    def test_feature_methods_return_output_objects(self, model_and_processor):
        model, processor = model_and_processor
        batch = _mixed_batch(processor, with_answers=False)
        cfg = model.config
        with torch.no_grad():
            image = model.get_image_features(batch["pixel_values"], output_hidden_states=True)
            audio = model.get_audio_features(
                batch["input_features"], batch["feature_attention_mask"], output_hidden_states=True
            )
            as_tuple = model.get_image_features(batch["pixel_values"], return_dict=False)
            out = model(**batch)
        n_images = batch["pixel_values"].shape[0]
        assert image.pooler_output.shape == (n_images, cfg.num_image_tokens, cfg.text_config.hidden_size)
        assert len(image.hidden_states) == cfg.vision_config.num_hidden_layers + 1
        assert isinstance(as_tuple, tuple)
        assert len(audio.pooler_output) == batch["input_features"].shape[0]
        assert len(audio.hidden_states) == cfg.audio_config.encoder_layers + 1
        # The projected media travel with the outputs.
        torch.testing.assert_close(out.image_hidden_states, image.pooler_output.flatten(0, 1))
        torch.testing.assert_close(out.audio_hidden_states, torch.cat(audio.pooler_output))
        n_audio_tokens = int((batch["input_ids"] == cfg.audio_token_id).sum())
        assert out.audio_hidden_states.shape[0] == n_audio_tokens

    def test_model_without_audio_tower_says_so(self):
        config = tiny_config(audio_config=None, audio_token_id=None)
        model = OpenMindForConditionalGeneration(config).eval()
        with pytest.raises(ValueError, match="has no audio tower"):
            model.get_audio_features(torch.zeros(1, 80, 3000))
        with pytest.raises(ValueError, match="has no audio tower"):
            model(input_ids=torch.tensor([[5, 6]]), input_features=torch.zeros(1, 80, 3000))

    def test_video_features_need_only_the_frames(self, model_and_processor):
        model, _ = model_and_processor
        size = model.config.vision_config.image_size
        clips = torch.randn(2, 3, 3, size, size)  # [videos, frames, 3, H, W]
        with torch.no_grad():
            stacked = model.get_video_features(clips).pooler_output
            flat = model.get_video_features(clips.flatten(0, 1), torch.tensor([3, 3])).pooler_output
        assert len(stacked) == 2
        pool = model.config.video_temporal_pool
        assert stacked[0].shape[0] == -(-3 // pool) * model.config.num_image_tokens  # frames averaged by `pool`
        torch.testing.assert_close(stacked, flat)

    def test_placeholders_without_media_are_plain_tokens(self, model_and_processor):
        # As LLaVA: no media, no merge (a draft model or decode step gets no pixels). With media, counts are checked.
        model, processor = model_and_processor
        batch = _mixed_batch(processor, with_answers=False)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            no_media = model(input_ids=ids, attention_mask=mask).logits
            from_embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).logits
        torch.testing.assert_close(no_media, from_embeds)

    def test_assisted_and_prompt_lookup_decoding_with_image_and_audio(self, model_and_processor):
        # The assistant (and the lookup candidates) see no media; the main model's prompt forward merges them.
        model, processor = model_and_processor
        batch = _mixed_batch(processor, with_answers=False)  # rows: image / audio / text / images + audio
        kwargs = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
        image_prompt = {"pixel_values": batch["pixel_values"][:1]}
        audio_prompt = {k: batch[k][:1] for k in ("input_features", "feature_attention_mask")}
        for row, media in ((0, image_prompt), (1, audio_prompt)):
            length = int(batch["attention_mask"][row].sum())  # right padding: the prompt is the first `length` ids
            inputs = {"input_ids": batch["input_ids"][row : row + 1, :length], **media}
            greedy = model.generate(**inputs, **kwargs)
            assisted = model.generate(**inputs, assistant_model=model, **kwargs)
            lookup = model.generate(**inputs, prompt_lookup_num_tokens=2, **kwargs)
            assert torch.equal(assisted, greedy) and torch.equal(lookup, greedy)
            with torch.no_grad():  # the media do shape the prompt's next-token logits
                with_media = model(**inputs).logits[:, -1]
                without_media = model(input_ids=inputs["input_ids"]).logits[:, -1]
            assert not torch.allclose(with_media, without_media, atol=1e-4)

    def test_static_cache_and_compiled_generation_match_dynamic(self, model_and_processor):
        from transformers import CompileConfig

        model, processor = model_and_processor
        assert model._can_compile_fullgraph
        batch = _prompt_batch(processor)
        kwargs = {"max_new_tokens": 5, "min_new_tokens": 5, "do_sample": False}
        dynamic = model.generate(**batch, **kwargs)
        static = model.generate(**batch, cache_implementation="static", **kwargs)
        # fullgraph tracing of the decode step through dynamo (the "eager" backend skips inductor's codegen).
        compiled = model.generate(
            **batch,
            cache_implementation="static",
            compile_config=CompileConfig(backend="eager", fullgraph=True),
            disable_compile=False,
            **kwargs,
        )
        assert torch.equal(static, dynamic) and torch.equal(compiled, dynamic)


class TestProcessorConventions:
    def test_text_max_length_does_not_truncate_audio(self, model_and_processor):
        # A flat `max_length` is the text's: it used to reach the feature extractor and cut a 1 s clip to 0.25 s.
        _, processor = model_and_processor
        clip = _tone(1.0)
        plain = processor(text="<audio> hi", audio=[clip], return_tensors="pt")
        capped = processor(text="<audio> hi", audio=[clip], max_length=64, padding="max_length", return_tensors="pt")
        assert capped["input_ids"].shape[1] == 64
        assert int(capped["feature_attention_mask"].sum()) == int(plain["feature_attention_mask"].sum()) == 100
        torch.testing.assert_close(capped["input_features"], plain["input_features"])

    def test_video_as_array_or_frame_list(self, model_and_processor):
        _, processor = model_and_processor
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, size=(3, 40, 48, 3), dtype=np.uint8)  # [F, H, W, C]
        as_pil = processor(text="<video> what?", videos=[Image.fromarray(f) for f in frames], return_tensors="pt")
        outputs = [
            processor(text="<video> what?", videos=video, return_tensors="pt")
            for video in (frames, np.moveaxis(frames, -1, 1), [frames], list(frames))
        ]
        assert as_pil["video_num_frames"].tolist() == [3]
        for out in outputs:
            torch.testing.assert_close(out["pixel_values_videos"], as_pil["pixel_values_videos"])
            assert torch.equal(out["input_ids"], as_pil["input_ids"])
        assert hasattr(processor, "video_processor") and processor.video_token == "<video>"
