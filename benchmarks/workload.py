"""The side-by-side workload: a realistic-size tokenizer, a LLaVA baseline, its OpenMind conversion and a dataset.

Both sides get IDENTICAL weights: the transformers `LlavaForConditionalGeneration` is built first (random init, seeded),
saved, and converted with `openmind_hf.export.convert_llava` (a strict, one-to-one copy). Both processors render the
same chat template (OpenMind's, which has the `{% generation %}` markers assistant-only loss needs), so both sides see
the same token ids, pixels and labels; `gate.py` checks that before anything is timed.

Configs:

- `small` (the CPU benchmark): 32k-token byte-level BPE; SigLIP 128 px / patch 16 (64 image tokens); Qwen2-style LM,
  hidden 256, 4 layers, untied head; batch 8; 20% one-word visual QA (as in the synthetic set), 80% chats whose
  answer lengths are log-normal (long-tailed).
- `smoke` (CI): the same code paths at toy sizes, so the correctness gate runs in seconds.
(`gpu_mfu.py` builds its own ~1B model.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one side-by-side workload (both sides use exactly these)."""

    name: str
    vocab_size: int  # BPE vocabulary before the special tokens
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_ffn: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_ffn: int
    batch_size: int
    num_samples: int  # dataset rows (each has one image)
    short_fraction: float  # share of one-word visual QA (the synthetic set); the rest are longer chats
    answer_median_words: float  # long chats: answer length ~ LogNormal(log(median), sigma), in words
    answer_sigma: float
    answer_max_words: int
    max_turns: int
    train_vision: bool = False  # LLaVA-1.5-style SFT: vision tower frozen, projector + LM trained

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


SMALL = BenchConfig(
    name="small", vocab_size=32768, image_size=128, patch_size=16,
    vision_hidden=256, vision_layers=4, vision_heads=4, vision_ffn=1024,
    text_hidden=256, text_layers=4, text_heads=4, text_kv_heads=2, text_ffn=1024,
    batch_size=8, num_samples=256, short_fraction=0.2,
    answer_median_words=40, answer_sigma=0.6, answer_max_words=320, max_turns=2,
)  # fmt: skip

SMOKE = BenchConfig(
    name="smoke", vocab_size=768, image_size=32, patch_size=8,
    vision_hidden=32, vision_layers=2, vision_heads=2, vision_ffn=64,
    text_hidden=32, text_layers=2, text_heads=2, text_kv_heads=1, text_ffn=64,
    batch_size=4, num_samples=16, short_fraction=0.5,
    answer_median_words=8, answer_sigma=0.8, answer_max_words=40, max_turns=2,
)  # fmt: skip

CONFIGS = {c.name: c for c in (SMALL, SMOKE)}

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<audio>", "<video>")
THINK_TOKENS = ("<think>", "</think>")


# ---------------------------------------------------------------------------------------------------- tokenizer


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """Pronounceable made-up words: enough distinct strings for a BPE to learn a 32k vocabulary from."""
    onsets = list("bcdfghjklmnprstvwz") + ["ch", "sh", "th", "st", "tr", "pl", "gr", "br"]
    vowels = list("aeiou") + ["ai", "ea", "ou", "io"]
    words = set()
    for _ in range(n):
        syllables = rng.integers(1, 5)
        word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(syllables))
        words.add(word + (onsets[rng.integers(len(onsets))] if rng.random() < 0.5 else ""))
    return sorted(words)


def build_tokenizer(config: BenchConfig, seed: int = 0):
    """A byte-level BPE with `config.vocab_size` learned tokens plus OpenMind's special tokens, trained offline.

    Returns `(tokenizer, lexicon)`: the lexicon is the word list the long answers are drawn from.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from openmind_hf.data.synthetic import SYNTHETIC_VOCABULARY

    rng = np.random.default_rng(seed)
    lexicon = _pseudo_words(rng, max(2000, config.vocab_size * 4))
    corpus = [" ".join(lexicon[i : i + 64]) for i in range(0, len(lexicon), 64)] * 2
    corpus += [" ".join(SYNTHETIC_VOCABULARY)] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    lexicon = [lexicon[i] for i in rng.permutation(len(lexicon))]  # frequency rank independent of spelling
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "audio_token": "<audio>", "video_token": "<video>"},
        model_max_length=8192,
    )
    return fast, lexicon


# ------------------------------------------------------------------------------------------------------- models


def build_llava(config: BenchConfig, tokenizer, seed: int = 0):
    """The baseline: a random `LlavaForConditionalGeneration` (SigLIP + Qwen2, untied head) and its processor."""
    import torch
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    from openmind_hf.processing.chat_template import CHAT_TEMPLATE

    vision = SiglipVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=config.vision_ffn, num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads, image_size=config.image_size, patch_size=config.patch_size,
        vision_use_head=False,  # the pooling head's output is never used by a VLM
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=config.text_ffn,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        num_key_value_heads=config.text_kv_heads, max_position_embeddings=8192, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )  # fmt: skip
    llava_config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_seq_length=config.num_image_tokens,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config).eval()
    model.generation_config.eos_token_id = text.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    side = config.image_size
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        patch_size=config.patch_size,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def set_trainable(model, config: BenchConfig) -> None:
    """The same trainable set on both sides: projector + LM (+ vision tower when `config.train_vision`)."""
    tower = model.model.vision_tower
    tower.requires_grad_(config.train_vision)


# --------------------------------------------------------------------------------------------------------- data


def _short_sample(rng: np.random.Generator) -> dict:
    """One-word visual QA about a picture of shapes, as in `openmind_hf.data.synthetic`."""
    from openmind_hf.data.synthetic import COLORS, POSITIONS, SHAPES, render_shapes_image

    count, color = int(rng.integers(1, 5)), str(rng.choice(list(COLORS)))
    shape, position = str(rng.choice(list(SHAPES))), str(rng.choice(list(POSITIONS)))
    image = render_shapes_image(count, color, shape, position, rng)
    question, answer = [
        ("What color are the shapes?", color),
        ("Which shape is shown?", shape),
        ("How many shapes are there?", str(count)),
        ("Where are the shapes?", position),
    ][int(rng.integers(4))]
    return _record(image, [(question, answer)])


def _words(rng: np.random.Generator, lexicon: list[str], n: int) -> str:
    # Zipf-like word frequencies, like natural text.
    ranks = np.minimum(rng.zipf(1.2, size=n), len(lexicon)) - 1
    return " ".join(lexicon[r] for r in ranks)


def _long_sample(rng: np.random.Generator, lexicon: list[str], config: BenchConfig) -> dict:
    """A chat about a picture with 1..max_turns turns and long-tailed (log-normal) answer lengths."""
    from openmind_hf.data.synthetic import COLORS, POSITIONS, SHAPES, render_shapes_image

    image = render_shapes_image(
        int(rng.integers(1, 5)), str(rng.choice(list(COLORS))), str(rng.choice(list(SHAPES))),
        str(rng.choice(list(POSITIONS))), rng,
    )  # fmt: skip
    turns = []
    for _ in range(int(rng.integers(1, config.max_turns + 1))):
        n_answer = int(
            np.clip(rng.lognormal(np.log(config.answer_median_words), config.answer_sigma), 2, config.answer_max_words)
        )
        question = _words(rng, lexicon, int(rng.integers(4, 20))) + "?"
        turns.append((question, _words(rng, lexicon, n_answer) + "."))
    return _record(image, turns)


def _record(image, turns: list[tuple[str, str]]) -> dict:
    """TRL's conversational vision format, which OpenMind's collator also reads: `messages` + `images`."""
    messages = []
    for i, (question, answer) in enumerate(turns):
        user = [{"type": "image", "text": None}] if i == 0 else []
        messages.append({"role": "user", "content": [*user, {"type": "text", "text": question}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return {"messages": messages, "images": [image]}


def build_records(config: BenchConfig, lexicon: list[str], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed + 1)
    return [
        _short_sample(rng) if rng.random() < config.short_fraction else _long_sample(rng, lexicon, config)
        for _ in range(config.num_samples)
    ]


# ---------------------------------------------------------------------------------------------------- workspace


def prepare_workspace(config: BenchConfig, workdir: str | Path, seed: int = 0) -> dict:
    """Writes everything both sides load: `llava/` (baseline), `openmind/` (converted), `dataset/`, `workload.json`."""
    from datasets import Dataset

    from openmind_hf.export.convert_llava import convert_llava_checkpoint

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer, lexicon = build_tokenizer(config, seed)
    llava, llava_processor = build_llava(config, tokenizer, seed)
    llava.save_pretrained(workdir / "llava")
    llava_processor.save_pretrained(workdir / "llava")
    convert_llava_checkpoint(workdir / "llava", workdir / "openmind")
    Dataset.from_list(build_records(config, lexicon, seed)).save_to_disk(str(workdir / "dataset"))
    meta = {"config": asdict(config), "seed": seed, "vocab_size_with_specials": len(tokenizer)}
    (workdir / "workload.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_config(workdir: str | Path) -> BenchConfig:
    return BenchConfig(**json.loads((Path(workdir) / "workload.json").read_text())["config"])


def with_overrides(config: BenchConfig, **overrides) -> BenchConfig:
    return replace(config, **overrides)


__all__ = [
    "BenchConfig",
    "SMALL",
    "SMOKE",
    "CONFIGS",
    "build_tokenizer",
    "build_llava",
    "build_records",
    "set_trainable",
    "prepare_workspace",
    "load_config",
]
