"""The metrics as TRL reward functions: string and chat completions, answers after </think>, the thinking-format
reward, the code reward in the sandbox, and a real GRPOTrainer step calling them."""

from __future__ import annotations

import pytest

from openmind_hf.evaluation.registry import compute_metric, get_metric, list_metrics
from openmind_hf.evaluation.rewards import (
    code_accuracy_reward,
    completion_to_text,
    get_reward_function,
    gsm8k_accuracy_reward,
    make_reward_function,
    math_accuracy_reward,
    textvqa_accuracy_reward,
    thinking_format_reward,
    vqa_accuracy_reward,
)
from openmind_hf.evaluation.thinking import split_thinking

# What GRPOTrainer passes besides the dataset columns.
TRL_EXTRAS = {"prompts": None, "completion_ids": None, "trainer_state": None, "log_extra": None, "log_metric": None}


def chat(text: str, reasoning: str | None = None) -> list[dict]:
    message = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return [message]


def test_gsm8k_reward_reads_the_answer_after_think():
    completions = [
        "<think>9 * 2 = 18</think>\n#### 18",
        "<think>maybe 18? no</think>\n#### 17",  # the 18 inside the thinking block does not count
        "<think>9 * 2 = 18, so the answer is 18",  # never closed: 0 even though 18 is there
        "#### 18",  # thinking off
        chat("#### 18", reasoning="9 * 2"),  # conversational completion with reasoning_content
        chat([{"type": "text", "text": "The answer is 18."}]),  # content blocks
    ]
    rewards = gsm8k_accuracy_reward(completions, answer=["... #### 18"] * len(completions), **TRL_EXTRAS)
    assert rewards == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_math_vqa_and_textvqa_rewards():
    assert math_accuracy_reward(["<think>x</think>$\\boxed{\\frac{1}{2}}$", "\\boxed{2}"], answer=["0.5", "3"]) == [
        1.0,
        0.0,
    ]
    answers = [["red"] * 3 + ["dark red"] * 7] * 3
    assert vqa_accuracy_reward(["<think>hmm</think> Red.", "dark red", "<think>red"], answers=answers) == [
        0.9,
        1.0,
        0.0,
    ]
    assert textvqa_accuracy_reward([chat("Coca-Cola")], answers=[["coca cola"] * 10]) == [1.0]


def test_reward_names_and_missing_columns():
    assert gsm8k_accuracy_reward.__name__ == "gsm8k_accuracy_reward"  # TRL logs rewards/<name>
    with pytest.raises(KeyError, match="needs the dataset column 'answer'.*'question'"):
        gsm8k_accuracy_reward(["#### 1"], question=["q"], trainer_state=None)
    with pytest.raises(ValueError, match="corpus-level"):
        make_reward_function("bleu")
    custom = make_reward_function("gsm8k_accuracy", reference_column="solution")
    assert custom(["#### 3"], solution=["#### 3"]) == [1.0]
    assert get_reward_function("thinking_format") is thinking_format_reward
    with pytest.raises(KeyError, match="Known rewards"):
        get_reward_function("bleu")


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<think>\nadd them\n</think>\n\n#### 18", 1.0),
        ("  <think>a</think>b", 1.0),
        ("<think>\nadd them\n</think>\n\n", 0.0),  # no answer
        ("<think>\n\n</think>\n\n#### 18", 0.0),  # empty reasoning
        ("<think>add them", 0.0),  # never closed
        ("#### 18", 0.0),  # no block
        ("intro <think>a</think> b", 0.0),  # the block must come first
        ("<think>a</think> b <think>c</think> d", 0.0),  # exactly one block
        ("<think>a <think> b</think> c", 0.0),  # nested
        ("<think>a</think> b </think>", 0.0),  # stray close
    ],
)
def test_thinking_format_reward(completion, reward):
    assert thinking_format_reward([completion], **TRL_EXTRAS) == [reward]
    assert thinking_format_reward([chat(completion)]) == [reward]


def test_thinking_format_accepts_reasoning_content_messages():
    assert thinking_format_reward([chat("#### 18", reasoning="add them")]) == [1.0]


def test_split_thinking_counts_unterminated_blocks():
    assert split_thinking("<think>a</think> b").terminated
    assert split_thinking("no block at all").answer == "no block at all"
    cut = split_thinking("<think>a</think> b <think> c")
    assert not cut.terminated and cut.answer == ""


def test_code_reward_runs_the_tests_in_the_sandbox():
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0"
    completions = [
        "<think>add</think>\n```python\ndef add(a, b):\n    return a + b\n```",  # full function
        "    return a + b",  # continuation of the stub
        "```python\ndef add(a, b):\n    return a - b\n```",  # wrong
        "```python\nimport os\nos.system('echo pwned')\n```",  # hostile
        "```python\nimport os\nos._exit(0)\n```",  # reward hack: exit before the tests
        "<think>def add(a, b): return a + b",  # unterminated thinking
    ]
    n = len(completions)
    rewards = code_accuracy_reward(
        completions, test=[test] * n, entry_point=["add"] * n, code_prompt=["def add(a, b):\n"] * n, **TRL_EXTRAS
    )
    assert rewards == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_registry_serves_evaluation_too():
    assert {"vqa_accuracy", "textvqa_accuracy", "gsm8k_accuracy", "math_accuracy", "pass@1", "bleu", "rouge_l",
            "cider_d"} <= set(list_metrics())  # fmt: skip
    assert compute_metric("gsm8k_accuracy", ["#### 18", "#### 2"], ["#### 18", "#### 3"]) == 0.5
    assert get_metric("vqa_accuracy").sample_score("yes", ["yes"] * 10) == 1.0
    with pytest.raises(KeyError, match="Known metrics"):
        get_metric("accuracy")


def test_completion_to_text_skips_non_assistant_turns():
    messages = [{"role": "tool", "content": "ignored"}, {"role": "assistant", "content": "kept"}]
    assert completion_to_text(messages) == "kept"


def test_grpo_trainer_calls_the_rewards(tmp_path):
    """A real GRPOTrainer step with our reward functions: TRL passes chat completions and the dataset columns."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from openmind_hf import build_tiny_preset

    model, processor = build_tiny_preset(seed=0)
    seen = []

    def spy_reward(completions, **kwargs):
        seen.append((completions, kwargs))
        return [0.0] * len(completions)

    rows = [{"prompt": [{"role": "user", "content": "What is 9 * 2?"}], "answer": "#### 18"}] * 4
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        # GRPO suppresses only the image token itself; a random model must not emit any placeholder.
        generation_kwargs={
            "suppress_tokens": [processor.image_token_id, processor.audio_token_id, processor.video_token_id]
        },
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = GRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=[gsm8k_accuracy_reward, thinking_format_reward, spy_reward],
            args=args,
            train_dataset=Dataset.from_list(rows),
        )
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    completions, kwargs = seen[0]
    assert isinstance(completions[0], list) and completions[0][0]["role"] == "assistant"
    assert kwargs["answer"] == ["#### 18"] * 4
    logged = trainer.state.log_history[0]
    for name in ("gsm8k_accuracy_reward", "thinking_format_reward"):
        assert 0.0 <= logged[f"rewards/{name}/mean"] <= 1.0
