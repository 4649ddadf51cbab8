"""transformers' own common model tests (`ModelTesterMixin`, `PipelineTesterMixin`, `ConfigTester`) run on OpenMind,
wired exactly like transformers' LLaVA test class (`tests/models/llava/test_modeling_llava.py`): tiny configs, the
media placeholders at the start of each row, `OpenMindModel` and `OpenMindForConditionalGeneration` under test.

The mixins come from the transformers source distribution of the installed version, fetched at test time into a
cache outside the repo (see `hf_sdist_tests.py`); without network the whole module skips with pip's error. The
generation mixin is not in the sdist: its behaviours (assisted decoding, prompt lookup, static cache, compile, past
key values) are covered in `test_modeling_openmind.py`.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_transformers_common.py`
"""

from __future__ import annotations

import importlib
import socket
import unittest
from unittest import mock

import pytest
import torch

import openmind_hf  # noqa: F401  (registers the Auto classes)
from openmind_hf import OpenMindConfig, OpenMindForConditionalGeneration
from openmind_hf.building import build_tiny_preset, load_tiny_tokenizer
from openmind_hf.modeling.modeling_openmind import OpenMindModel, OpenMindPreTrainedModel
from openmind_hf.processing.processing_openmind import OpenMindProcessor

try:
    from hf_sdist_tests import ensure_importable

    _pkg = ensure_importable()
    _common = importlib.import_module(f"{_pkg}.test_modeling_common")
    _pipeline = importlib.import_module(f"{_pkg}.test_pipeline_mixin")
    _config = importlib.import_module(f"{_pkg}.test_configuration_common")
    _processing = importlib.import_module(f"{_pkg}.test_processing_common")
    _generation = importlib.import_module(f"{_pkg}.generation.test_utils")
except Exception as error:  # no network, no sdist for this version: nothing to run against
    pytest.skip(f"transformers' common tests are unavailable: {error}", allow_module_level=True)

ModelTesterMixin, floats_tensor, ids_tensor = _common.ModelTesterMixin, _common.floats_tensor, _common.ids_tensor
PipelineTesterMixin, ConfigTester = _pipeline.PipelineTesterMixin, _config.ConfigTester
ProcessorTesterMixin = _processing.ProcessorTesterMixin
GenerationTesterMixin = _generation.GenerationTesterMixin  # a placeholder: the real one is not in the sdist

IMAGE, VIDEO, AUDIO, PAD = 3, 4, 5, 1
FIRST_TEXT_ID = 6  # ids below this are special (placeholders, pad) and never drawn as text


class OpenMindModelTester:
    """LLaVA's `LlavaVisionText2TextModelTester`, plus an optional audio tower: tiny towers, 7 text tokens."""

    def __init__(self, parent, vision_config: dict, text_config: dict, audio_config: dict | None, select: str):
        self.parent = parent
        self.vision_config, self.text_config, self.audio_config = vision_config, text_config, audio_config
        self.vision_feature_select_strategy = select
        self.batch_size = 3
        self.is_training = True
        self.pad_token_id = PAD
        self.num_hidden_layers = text_config["num_hidden_layers"]
        self.num_attention_heads = text_config["num_attention_heads"]
        self.hidden_size = text_config["hidden_size"]
        self.vocab_size = text_config["vocab_size"]
        self.image_size, self.patch_size = vision_config["image_size"], vision_config["patch_size"]
        self.num_image_tokens = self.get_config().num_image_tokens
        self.num_audio_tokens = 0
        if audio_config is not None:
            self.mel_frames = 2 * audio_config["max_source_positions"]  # Whisper's fixed input length
            self.num_audio_tokens = audio_config["max_source_positions"] // 2  # pooled by audio_pool_stride=2
        self.seq_length = 7 + self.num_image_tokens + self.num_audio_tokens
        self.encoder_seq_length = self.seq_length

    def get_config(self) -> OpenMindConfig:
        return OpenMindConfig(
            vision_config=self.vision_config,
            text_config=self.text_config,
            audio_config=self.audio_config,
            image_token_id=IMAGE,
            video_token_id=VIDEO,
            audio_token_id=AUDIO if self.audio_config is not None else None,
            vision_feature_layer=-1,
            vision_feature_select_strategy=self.vision_feature_select_strategy,
            audio_pool_stride=2,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        vision = self.vision_config
        pixel_values = floats_tensor(
            [self.batch_size, vision["num_channels"], vision["image_size"], vision["image_size"]]
        )
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - FIRST_TEXT_ID) + FIRST_TEXT_ID
        input_ids[:, : self.num_image_tokens] = IMAGE
        inputs = {"pixel_values": pixel_values}
        if self.audio_config is not None:
            input_ids[:, self.num_image_tokens : self.num_image_tokens + self.num_audio_tokens] = AUDIO
            mels = self.audio_config["num_mel_bins"]
            inputs["input_features"] = floats_tensor([self.batch_size, mels, self.mel_frames])
            inputs["feature_attention_mask"] = torch.ones(self.batch_size, self.mel_frames, dtype=torch.long)
        inputs["input_ids"] = input_ids
        inputs["attention_mask"] = torch.ones(input_ids.shape, dtype=torch.long)
        return config, inputs


_TEXT_COMMON = {
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 37,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
    "pad_token_id": PAD,
    "bos_token_id": 2,
    "eos_token_id": 2,
}
_VISION_COMMON = {
    "image_size": 8,
    "patch_size": 2,
    "num_channels": 3,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "attention_dropout": 0.1,
    "initializer_range": 0.02,
}
_WHISPER = {
    "model_type": "whisper",
    "num_mel_bins": 8,
    "d_model": 16,
    "encoder_layers": 2,
    "encoder_attention_heads": 4,
    "encoder_ffn_dim": 32,
    "decoder_layers": 1,
    "decoder_attention_heads": 4,
    "decoder_ffn_dim": 32,
    "max_source_positions": 8,
    "max_target_positions": 16,
    "vocab_size": 50,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}


class _OpenMindCommonTests(ModelTesterMixin, GenerationTesterMixin, PipelineTesterMixin):
    """The body of LLaVA's `LlavaForConditionalGenerationModelTest`, shared by the variants below."""

    all_model_classes = (OpenMindModel, OpenMindForConditionalGeneration)
    pipeline_model_mapping = {
        "image-to-text": OpenMindForConditionalGeneration,
        "image-text-to-text": OpenMindForConditionalGeneration,
        "any-to-any": OpenMindForConditionalGeneration,
    }
    _is_composite = True
    vision_config: dict = {}
    text_config: dict = {}
    audio_config: dict | None = None
    select_strategy = "default"

    def setUp(self):
        # The mixins find a model's role in transformers' static name tables (`get_values(MODEL_MAPPING_NAMES)`:
        # base models get no labels, image-text-to-text models get the pooler checks), which only list in-tree models.
        # Enter what `openmind_hf`'s `AutoModel*.register` calls declare, for the duration of each test.
        from transformers.models.auto import modeling_auto

        for table, name in (
            (modeling_auto.MODEL_MAPPING_NAMES, "OpenMindModel"),
            (modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, "OpenMindForConditionalGeneration"),
            (modeling_auto.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES, "OpenMindForConditionalGeneration"),
        ):
            patcher = mock.patch.dict(table, {"openmind": name})
            patcher.start()
            self.addCleanup(patcher.stop)
        self.model_tester = OpenMindModelTester(
            self, self.vision_config, self.text_config, self.audio_config, self.select_strategy
        )
        common_properties = ["image_token_id", "vision_feature_layer"]
        self.config_tester = ConfigTester(
            self, config_class=OpenMindConfig, has_text_modality=False, common_properties=common_properties
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_mismatching_num_image_tokens(self):
        """As LLaVA's: one image too few for the image tokens raises, naming both counts."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            model(**inputs)
            with self.assertRaisesRegex(ValueError, "tokens: .*features: "):
                model(**{**inputs, "pixel_values": inputs["pixel_values"][-1:]})

    # The one allowed deviation: OpenMind's `from_pretrained` is strict by design (a missing weight raises instead of
    # being initialised at random with a warning). These mixin tests expect the tolerant loading, which OpenMind gives
    # with `strict=False`: they run unchanged with that as the default, so the tolerant path is what they check.
    def _with_lenient_loading(self, test):
        strict_from_pretrained = OpenMindPreTrainedModel.from_pretrained.__func__

        def lenient(cls, *args, **kwargs):
            kwargs.setdefault("strict", False)
            return strict_from_pretrained(cls, *args, **kwargs)

        with mock.patch.object(OpenMindPreTrainedModel, "from_pretrained", classmethod(lenient)):
            test()

    def test_correct_missing_keys(self):
        self._with_lenient_loading(super().test_correct_missing_keys)

    def test_model_weights_reload_no_missing_tied_weights(self):
        self._with_lenient_loading(super().test_model_weights_reload_no_missing_tied_weights)

    def test_base_model_prefix_loads_base_weights(self):  # a base-model checkpoint has no lm_head
        self._with_lenient_loading(super().test_base_model_prefix_loads_base_weights)

    # LLaVA's class skips these three (https://github.com/huggingface/transformers/pull/27124); `_use_reentrant` is
    # named `_use_reentrant_true` in the 5.x mixin. As in LLaVA, the tower's post-layernorm (and SigLIP's pooling head)
    # gets no gradient: the projector reads `hidden_states[vision_feature_layer]`, before them.
    @unittest.skip(reason="As LLaVA: gradients under GC, see transformers PR 27124")
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason="As LLaVA: gradients under GC, see transformers PR 27124")
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(reason="As LLaVA: gradients under GC, see transformers PR 27124")
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason="As LLaVA: VLM pad-free inputs are tested as part of the LLM's tests")
    def test_flash_attention_2_padding_matches_padding_free_with_position_ids(self):
        pass


class OpenMindClipLlamaWhisperTest(_OpenMindCommonTests, unittest.TestCase):
    vision_config = {"model_type": "clip_vision_model", "projection_dim": 32, **_VISION_COMMON}
    text_config = {"model_type": "llama", **_TEXT_COMMON}
    audio_config = _WHISPER


class OpenMindSiglipQwen2Test(_OpenMindCommonTests, unittest.TestCase):
    vision_config = {"model_type": "siglip_vision_model", **_VISION_COMMON}
    text_config = {"model_type": "qwen2", **_TEXT_COMMON}
    select_strategy = "full"  # SigLIP has no CLS token to drop

    # Not in LLaVA's class: this variant has no audio tower, so there are no audio inputs to call
    # `get_audio_features` with; it raises a clear error instead (`test_model_without_audio_tower_says_so` in
    # test_modeling_openmind.py). The CLIP + Llama + Whisper variant runs these tests.
    _NO_AUDIO = "this variant has no audio tower (get_audio_features raises; the Whisper variant runs this test)"

    @unittest.skip(reason=_NO_AUDIO)
    def test_get_audio_features_output_0(self):  # the mixin's test is parameterized over return_dict
        pass

    @unittest.skip(reason=_NO_AUDIO)
    def test_get_audio_features_output_1(self):
        pass

    @unittest.skip(reason=_NO_AUDIO)
    def test_get_audio_features_output_2(self):
        pass

    @unittest.skip(reason=_NO_AUDIO)
    def test_get_audio_features_hidden_states(self):
        pass

    @unittest.skip(reason=_NO_AUDIO)
    def test_get_audio_features_attentions(self):
        pass


class OpenMindProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    """transformers' processor tests on the tiny preset's processor (SigLIP images, Whisper audio, bundled tokenizer)."""

    processor_class = OpenMindProcessor

    @classmethod
    def _setup_image_processor(cls):
        return build_tiny_preset()[1].image_processor

    @classmethod
    def _setup_feature_extractor(cls):
        return build_tiny_preset()[1].feature_extractor

    @classmethod
    def _setup_tokenizer(cls):
        return load_tiny_tokenizer()

    @staticmethod
    def prepare_processor_dict():
        processor = build_tiny_preset()[1]
        keys = ("num_image_tokens", "audio_model_type", "audio_pool_stride", "video_max_frames", "video_temporal_pool")
        return {"chat_template": processor.chat_template, **{k: getattr(processor, k) for k in keys}}

    # The mixin's chat-template tests load their media from huggingface.co (its CI pre-fetches them).
    def _needs_network(self, test):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
        except OSError as error:
            self.skipTest(f"needs the network (the mixin's media are on huggingface.co): {error}")
        test()

    def test_apply_chat_template_audio_0(self):
        self._needs_network(super().test_apply_chat_template_audio_0)

    def test_apply_chat_template_audio_1(self):
        self._needs_network(super().test_apply_chat_template_audio_1)

    def test_apply_chat_template_audio_2(self):
        self._needs_network(super().test_apply_chat_template_audio_2)

    def test_apply_chat_template_audio_3(self):
        self._needs_network(super().test_apply_chat_template_audio_3)

    def test_apply_chat_template_image_0(self):
        self._needs_network(super().test_apply_chat_template_image_0)

    def test_apply_chat_template_image_1(self):
        self._needs_network(super().test_apply_chat_template_image_1)

    # `openmind_hf` registers the processor for `trust_remote_code` export. For such a class transformers'
    # `save_pretrained` writes `auto_map` into the saved-from instance while `from_pretrained` drops it, so `to_dict()`
    # can never round-trip; these two tests run with that registration lifted (what they check is unaffected).
    def _without_remote_code_export(self, test):
        with mock.patch.object(OpenMindProcessor, "_auto_class", None):
            test()

    def test_processor_from_and_save_pretrained(self):
        self._without_remote_code_export(super().test_processor_from_and_save_pretrained)

    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        self._without_remote_code_export(super().test_processor_from_and_save_pretrained_as_nested_dict)

    @unittest.skip(
        reason="video frames go through the image processor (`video_processor` is a property, not a component): "
        "transformers' video processors need torchvision, which has no CPU build here; the mixin then builds "
        "`<video>` prompts without videos"
    )
    def test_processor_with_multiple_inputs(self):
        pass
