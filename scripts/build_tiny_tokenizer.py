"""Train the tiny byte-level BPE tokenizer bundled with the package (for the tiny preset, tests and the demo).

    python scripts/build_tiny_tokenizer.py   # rewrites src/openmind_hf/assets/tiny_tokenizer/tokenizer.json

Offline and deterministic: the corpus is the synthetic dataset's vocabulary plus a little general English, so demo
words are single tokens and any other text still encodes (byte-level fallback).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from openmind_hf.building.presets import SPECIAL_TOKENS, THINK_TOKENS  # noqa: E402
from openmind_hf.data.synthetic import SYNTHETIC_VOCABULARY  # noqa: E402

GENERAL_ENGLISH = """
You are a helpful assistant. Describe the image. What do you see in this picture? Listen to the audio clip and
answer the question. Think step by step, then give the final answer. The answer is yes. The answer is no.
This is a photo of a cat sitting on a table next to a window. A man is riding a bicycle down the street.
Please write a short caption for the image. Transcribe the speech. What is the sum of these numbers?
Let me think about this carefully. First, count the objects. Then add them together. Therefore the result is.
def add(a, b): return a + b  # Python code with numbers 10 20 30 100 1000 and symbols ( ) [ ] { } : ; = + - * /
"""


def main() -> None:
    words = list(SYNTHETIC_VOCABULARY)
    corpus = [" ".join(words)] * 50 + [" " + w for w in words] * 20 + GENERAL_ENGLISH.split("\n") * 10
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    # <think> / </think> are added (not special) tokens: they survive decode(skip_special_tokens=True).
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    out = ROOT / "src" / "openmind_hf" / "assets" / "tiny_tokenizer" / "tokenizer.json"
    tokenizer.save(str(out))
    print(f"wrote {out} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
