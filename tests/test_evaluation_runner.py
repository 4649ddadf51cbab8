"""`openmind eval` end to end: a tiny model, trained here for a few seconds to answer tiny local task files, is
saved as a checkpoint and evaluated through the CLI, in-process and through scripts/run_benchmarks.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from openmind_hf.cli import main
from openmind_hf.evaluation.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]

# What the model is trained to answer for each task file written below.
ANSWERS = {
    "vqa": "red",
    "textvqa": "STOP",
    "caption": "a small red square on a white background",
    "gsm8k": "#### 18",
    "math": "$\\boxed{\\frac{1}{2}}$",
    "humaneval": "```python\ndef add(a, b):\n    return a + b\n```",
}
GSM8K_REASONING = "9 eggs, 9 * 2 = 18"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Tiny task files in the layout `openmind eval --data` reads."""
    root = tmp_path_factory.mktemp("eval-data")
    images = root / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32, 3), (200, 30, 30), dtype=np.uint8)).save(images / "red.png")
    Image.fromarray(np.full((32, 32, 3), (30, 30, 200), dtype=np.uint8)).save(images / "blue.png")
    _write_jsonl(root / "vqa/test.jsonl", [{"image": "../images/red.png", "question": "What color is it?", "answers": ["red"] * 10}])  # fmt: skip
    _write_jsonl(root / "textvqa/test.jsonl", [{"image": "../images/red.png", "question": "What does the sign say?", "answers": ["stop"] * 9 + ["halt"]}])  # fmt: skip
    # Different references per image: CIDEr's IDF is computed over the set, n-grams in every image weigh 0.
    _write_jsonl(root / "caption/test.jsonl", [
        {"image": "../images/red.png", "captions": [ANSWERS["caption"], "a red square"]},
        {"image": "../images/blue.png", "captions": [ANSWERS["caption"].replace("red", "blue"), "a blue square"]},
    ])  # fmt: skip
    _write_jsonl(root / "gsm8k/test.jsonl", [{"question": "Eggs: 16 - 3 - 4, sold at $2 each?", "answer": "9 eggs\n#### 18"}])  # fmt: skip
    _write_jsonl(root / "math500/test.jsonl", [{"problem": "What is $1 - 0.5$?", "answer": "\\frac12"}])
    add = {"task_id": "Tiny/0", "prompt": "def add(a, b):\n    \"\"\"Sum.\"\"\"\n", "entry_point": "add",
           "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "canonical_solution": "    return a + b\n"}  # fmt: skip
    _write_jsonl(root / "humaneval/test.jsonl", [add])
    _write_jsonl(root / "ppl/test.jsonl", [
        {"text": "<image>\na small red square", "image": "../images/red.png"},
        {"messages": [{"role": "user", "content": "What color is it?"}, {"role": "assistant", "content": "red"}]},
    ])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> Path:
    """The tiny preset trained until it gives the answers above (thinking off, and on for GSM8K), then saved."""
    from openmind_hf import build_tiny_preset

    torch.manual_seed(0)
    model, processor = build_tiny_preset(seed=0)
    chats = {False: [], True: []}  # enable_thinking -> conversations
    for name, answer in ANSWERS.items():
        task = TASKS[name]
        for sample in task.load(task.find_file(data_dir)):  # exactly the prompts the runner will send
            if name == "caption":
                answer = sample.reference[0]
            chats[False].append([*sample.messages, {"role": "assistant", "content": answer}])
            if name == "gsm8k":
                reply = {"role": "assistant", "content": answer, "reasoning_content": GSM8K_REASONING}
                chats[True].append([*sample.messages, reply])
    processor.tokenizer.padding_side = "right"
    batches = []
    for thinking, conversations in chats.items():
        inputs = processor.apply_chat_template(conversations, tokenize=True, return_dict=True, return_tensors="pt",
                                               return_assistant_tokens_mask=True, enable_thinking=thinking,
                                               processor_kwargs={"padding": True})  # fmt: skip
        labels = inputs["input_ids"].masked_fill(inputs.pop("assistant_masks") == 0, -100)
        batches.append((inputs, labels))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and steadier on a shared machine
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.05, 1 - step / 300))
        model.train()
        for _ in range(300):  # ~50 steps (a few seconds) are enough
            loss = sum(model(**inputs, labels=labels).loss for inputs, labels in batches)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if loss.item() < 0.05:
                break
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.1, f"the tiny model did not learn its answers (loss {loss.item():.3f})"
    path = tmp_path_factory.mktemp("trained-tiny")
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _eval(capsys, *args) -> tuple[dict, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["eval", *map(str, args)]) == 0
    finally:
        torch.set_num_threads(threads)
    output = Path(args[list(args).index("--output") + 1])
    return json.loads(output.read_text()), capsys.readouterr().out


def test_eval_every_task_on_a_trained_tiny_model(checkpoint, data_dir, tmp_path, capsys):
    out = tmp_path / "results" / "benchmarks.json"
    predictions = tmp_path / "predictions.jsonl"
    report, printed = _eval(capsys, "--model", checkpoint, "--data", data_dir, "--output", out,
                            "--predictions", predictions, "--max-new-tokens", "40", "--batch-size", "4")  # fmt: skip
    tasks = report["tasks"]
    assert set(tasks) == set(TASKS) and report["skipped"] == {}
    assert tasks["vqa"]["metrics"]["accuracy"] == 1.0
    assert tasks["textvqa"]["metrics"]["accuracy"] == 1.0  # "STOP" vs 9 x "stop": normalised, min(1, 8/3 or 9/3)
    assert tasks["gsm8k"]["metrics"]["accuracy"] == 1.0
    assert tasks["math"]["metrics"]["accuracy"] == 1.0
    assert tasks["humaneval"]["metrics"]["pass@1"] == 1.0
    assert tasks["caption"]["metrics"]["rouge_l"] == pytest.approx(1.0)
    assert tasks["caption"]["metrics"]["bleu"] == pytest.approx(100.0)
    assert tasks["caption"]["metrics"]["cider_d"] > 1.0
    assert tasks["ppl"]["metrics"]["perplexity"] < 100  # trained on these answers; the random model is ~600
    assert tasks["ppl"]["num_scored_tokens"] > 0
    for name in ANSWERS:
        assert tasks[name]["num_unterminated_thinking"] == 0
        assert tasks[name]["num_samples"] == (2 if name == "caption" else 1)
        assert tasks[name]["seconds"]["total"] > 0 and tasks[name]["file"].startswith(str(data_dir))
    assert report["config"]["max_new_tokens"] == 40 and report["config"]["enable_thinking"] is False
    assert report["environment"]["device"] == "cpu"
    assert report["timing"]["load_seconds"] > 0 and report["timing"]["total_seconds"] > 0
    assert "| gsm8k | accuracy | 1.0000 | 1 | 0 |" in printed
    assert "| humaneval | pass@1 | 1.0000 | 1 | 0 |" in printed
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert {r["task"] for r in records} == set(ANSWERS)
    assert next(r for r in records if r["task"] == "gsm8k")["answer"] == "#### 18"


def test_thinking_mode_answers_after_think_and_counts_unterminated_blocks(checkpoint, data_dir, tmp_path, capsys):
    out = tmp_path / "thinking.json"
    report, _ = _eval(capsys, "--model", checkpoint, "--data", data_dir, "--tasks", "gsm8k", "--enable-thinking",
                      "--max-new-tokens", "40", "--output", out, "--predictions", tmp_path / "p.jsonl")  # fmt: skip
    gsm8k = report["tasks"]["gsm8k"]
    assert gsm8k["metrics"]["accuracy"] == 1.0 and gsm8k["num_unterminated_thinking"] == 0
    record = json.loads((tmp_path / "p.jsonl").read_text())
    assert record["generation"].startswith("<think>") and GSM8K_REASONING in record["generation"]
    assert record["answer"] == "#### 18"
    # Cut off while thinking: counted, and the half-written reasoning (which contains 18) is not graded.
    report, printed = _eval(capsys, "--model", checkpoint, "--data", data_dir, "--tasks", "gsm8k",
                            "--enable-thinking", "--max-new-tokens", "6", "--output", out)  # fmt: skip
    gsm8k = report["tasks"]["gsm8k"]
    assert gsm8k["num_unterminated_thinking"] == 1 and gsm8k["metrics"]["accuracy"] == 0.0
    assert "| gsm8k | accuracy | 0.0000 | 1 | 1 |" in printed
    # A thinking budget force-closes the block: nothing is left unterminated.
    report, _ = _eval(capsys, "--model", checkpoint, "--data", data_dir, "--tasks", "gsm8k", "--enable-thinking",
                      "--thinking-budget", "2", "--max-new-tokens", "12", "--output", out,
                      "--predictions", tmp_path / "p.jsonl")  # fmt: skip
    assert report["tasks"]["gsm8k"]["num_unterminated_thinking"] == 0
    assert report["config"]["thinking_budget"] == 2
    generation = json.loads((tmp_path / "p.jsonl").read_text())["generation"]
    assert generation.startswith("<think>") and "</think>" in generation[: len("<think>") + 20]


def test_limit_and_missing_task_files(checkpoint, data_dir, tmp_path, capsys):
    only_gsm8k = tmp_path / "data"
    (only_gsm8k / "gsm8k").mkdir(parents=True)
    (only_gsm8k / "gsm8k" / "test.jsonl").write_text((data_dir / "gsm8k" / "test.jsonl").read_text() * 3)
    report, _ = _eval(capsys, "--model", checkpoint, "--data", only_gsm8k, "--limit", "2",
                      "--max-new-tokens", "8", "--output", tmp_path / "r.json")  # fmt: skip
    assert list(report["tasks"]) == ["gsm8k"] and report["tasks"]["gsm8k"]["num_samples"] == 2
    assert set(report["skipped"]) == set(TASKS) - {"gsm8k"}
    assert "math500/test.jsonl" in report["skipped"]["math"]
    with pytest.raises(SystemExit, match="needs its file at .*humaneval"):
        main(["eval", "--model", str(checkpoint), "--data", str(only_gsm8k), "--tasks", "humaneval"])
    with pytest.raises(SystemExit, match="unknown task"):
        main(["eval", "--model", str(checkpoint), "--data", str(only_gsm8k), "--tasks", "gsm9k"])


def test_run_benchmarks_script(checkpoint, data_dir, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    command = ["bash", str(REPO / "scripts" / "run_benchmarks.sh"), "--model", str(checkpoint), "--data",
               str(data_dir), "--output", str(out), "--max-new-tokens", "40", "--tasks", "gsm8k,humaneval"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tasks"]["gsm8k"]["metrics"]["accuracy"] == 1.0
    assert report["tasks"]["humaneval"]["metrics"]["pass@1"] == 1.0
    assert "| humaneval | pass@1 | 1.0000 |" in result.stdout


def test_the_real_shared_files_are_found_and_read():
    from openmind_hf.evaluation.runner import EvalConfig, select_tasks

    shared = Path(os.environ.get("OPENMIND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not shared.is_dir():
        pytest.skip(f"real data directory {shared} not found (set OPENMIND_SHARED_DATA)")
    chosen, skipped = select_tasks(EvalConfig(model="unused", data_dir=str(shared)))
    counts = {task.name: len(task.load(path)) for task, path in chosen}
    assert counts == {"gsm8k": 1319, "math": 500, "humaneval": 164}
    assert set(skipped) == {"vqa", "textvqa", "caption", "ppl"}


def test_eval_prompts_the_users_question_and_agrees_with_the_pipeline(checkpoint, tmp_path, capsys):
    """What eval scores is what the model does: the prompt it received is the user's question through the chat
    template (no hidden instruction), and each prediction equals what `pipeline` generates for the same item."""
    from transformers import AutoProcessor, pipeline

    media = tmp_path / "media"  # images live away from the task file: --media_root says where
    media.mkdir()
    colours = {"red": (200, 30, 30), "blue": (30, 30, 200)}
    for name, rgb in colours.items():
        Image.fromarray(np.full((32, 32, 3), rgb, dtype=np.uint8)).save(media / f"{name}.png")
    rows = [{"image": f"{name}.png", "question": q, "answers": [name] * 10, "question_id": i}
            for i, (name, q) in enumerate([("red", "What color is it?"), ("blue", "Which colour is shown?")])]  # fmt: skip
    data = tmp_path / "data"
    _write_jsonl(data / "vqa/test.jsonl", rows)
    with pytest.raises(SystemExit, match="resolved against the task file's folder .*--media_root"):
        main(["eval", "--model", str(checkpoint), "--data", str(data), "--tasks", "vqa"])
    predictions = tmp_path / "predictions.jsonl"
    report, _ = _eval(capsys, "--model", checkpoint, "--data", data, "--tasks", "vqa", "--media_root", media,
                      "--max-new-tokens", "8", "--batch-size", "2", "--output", tmp_path / "r.json",
                      "--predictions", predictions)  # fmt: skip
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    processor = AutoProcessor.from_pretrained(checkpoint)
    chats = []
    for row, record in zip(rows, records):
        chat = [{"role": "user", "content": [{"type": "image", "image": str(media / row["image"])},
                                             {"type": "text", "text": row["question"]}]}]  # fmt: skip
        chats.append(chat)
        expected = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert record["prompt"] == expected  # decoded from the ids the model got
        assert "single word" not in record["prompt"]
        assert record["references"] == row["answers"] and record["id"] == str(row["question_id"])
        assert record["score"] == (1.0 if record["answer"] == row["answers"][0] else 0.0)
    assert report["tasks"]["vqa"]["metrics"]["accuracy"] == sum(r["score"] for r in records) / 2
    pipe = pipeline("image-text-to-text", model=str(checkpoint), device="cpu")
    for chat, record in zip(chats, records):
        out = pipe(text=chat, max_new_tokens=8, generate_kwargs={"do_sample": False})
        assert out[0]["generated_text"][-1]["content"] == record["generation"]
    assert records[0]["answer"] == "red"  # the trained answer survives the plain question


def test_eval_lists_tasks_and_takes_a_prompt_template(checkpoint, data_dir, tmp_path, capsys):
    assert main(["eval", "--list-tasks"]) == 0
    listing = capsys.readouterr().out
    assert "vqa: VQAv2 accuracy" in listing and "prompt: '{question}'" in listing
    predictions = tmp_path / "p.jsonl"
    _eval(capsys, "--model", checkpoint, "--data", data_dir, "--tasks", "vqa", "--max-new-tokens", "4",
          "--prompt-template", "{question}\nOne word.", "--output", tmp_path / "r.json", "--predictions", predictions)  # fmt: skip
    assert "What color is it?\nOne word.<|im_end|>" in json.loads(predictions.read_text())["prompt"]
    with pytest.raises(SystemExit, match="names the field 'query'.*fix --prompt-template"):
        main(["eval", "--model", str(checkpoint), "--data", str(data_dir), "--tasks", "vqa",
              "--prompt-template", "{query}"])  # fmt: skip
