"""The eval runner: load a checkpoint, generate answers for each task in left-padded batches, cut them after
`</think>`, score them, and write one JSON report (metrics, config, timing, sample counts).

The model is prompted exactly as a user would prompt it through `pipeline` or `generate`: the chat template applied
to the user's turn, whose text is the task's prompt template filled with the row (for VQA, the question as written).
`predictions` records, per item, the prompt the model received (decoded from its input ids), the references, the
raw generation, the answer that was scored and its score, so any score can be checked by reading that file.

    from openmind_hf.evaluation import EvalConfig, run_evaluation
    report = run_evaluation(EvalConfig(model="checkpoints/sft", data_dir="data/eval", tasks=["gsm8k"]))
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .perplexity import perplexity
from .tasks import TASKS, EvalSample, Task, get_task
from .thinking import split_thinking


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Args:
        model (`str`): checkpoint directory or Hub id.
        data_dir (`str`): directory holding the task files (layout in `openmind_hf.evaluation.tasks`).
        tasks (`list[str]`, *optional*): task names; empty means every task whose file is present.
        output (`str`, *optional*): where to write the JSON report.
        enable_thinking (`bool`, *optional*, defaults to `False`): the chat template's thinking switch.
        thinking_budget (`int`, *optional*): force-close thinking after this many tokens (OpenMind models).
        batch_size (`int`, *optional*, defaults to 8): prompts per `generate` call.
        max_new_tokens (`int`, *optional*, defaults to 512): generation length limit.
        limit (`int`, *optional*): evaluate only the first N samples of each task.
        device (`str`, *optional*, defaults to `"auto"`): `"auto"` (CUDA when available), `"cpu"`, `"cuda:0"`...
        dtype (`str`, *optional*, defaults to `"auto"`): `"auto"` (bf16 on CUDA, fp32 on CPU), `"float32"`, ...
        predictions (`str`, *optional*): also write, per item, the prompt as sent, the references, the generation,
            the scored answer and its score to this JSONL file.
        prompt_template (`str`, *optional*): `str.format` template over a row's fields (e.g. `"{question}"`) for
            the user's text, replacing each selected task's default (see `openmind eval --list-tasks`).
        media_root (`str`, *optional*): folder that relative image paths resolve against; defaults to the folder
            of each task file.
        allow_pickled_weights (`bool`, *optional*, defaults to `False`): also load a checkpoint whose weights are
            only pickled (`pytorch_model.bin`); unpickling can run code.
    """

    model: str
    data_dir: str
    tasks: list[str] = field(default_factory=list)
    output: str | None = None
    enable_thinking: bool = False
    thinking_budget: int | None = None
    batch_size: int = 8
    max_new_tokens: int = 512
    limit: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    predictions: str | None = None
    prompt_template: str | None = None
    media_root: str | None = None
    allow_pickled_weights: bool = False

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}.")
        for name in self.tasks:
            get_task(name)  # unknown names fail before any model is loaded
        if self.media_root is not None and not Path(self.media_root).is_dir():
            raise FileNotFoundError(f"media_root {self.media_root!r} is not a directory.")


def select_tasks(config: EvalConfig) -> tuple[list[tuple[Task, Path]], dict[str, str]]:
    """The tasks to run with their files, and the skipped ones with the reason. A task named explicitly
    whose file is missing is an error; with no names, absent tasks are skipped."""
    chosen, skipped = [], {}
    for name in config.tasks or list(TASKS):
        task = TASKS[name]
        path = task.find_file(config.data_dir)
        if path is not None:
            chosen.append((task, path))
            continue
        expected = " or ".join(str(Path(config.data_dir) / f) for f in task.files)
        if config.tasks:
            raise FileNotFoundError(f"Task {name!r} needs its file at {expected}; none exists.")
        skipped[name] = f"no file at {expected}"
    return chosen, skipped


def load_model(path: str, device: str = "auto", dtype: str = "auto", allow_pickled_weights: bool = False):
    """Any image-text-to-text checkpoint (plain or quantized) and its processor, in eval mode on `device`."""
    from transformers import AutoProcessor

    from ..building.inference import load_model_for_inference

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    model = load_model_for_inference(
        path, dtype=torch_dtype, device=device, allow_pickled_weights=allow_pickled_weights
    )
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


def _move(inputs, model) -> dict:
    return {
        k: v.to(model.device, dtype=model.dtype) if torch.is_floating_point(v) else v.to(model.device)
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }


def _prompt_size(sample: EvalSample) -> int:
    return sum(len(b.get("text", "")) for m in sample.messages for b in m["content"] if isinstance(b, dict))


def _prompt_as_sent(processor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> str:
    """One row's prompt decoded from the ids the model received, each run of media placeholders shown once."""
    text = processor.tokenizer.decode(input_ids[attention_mask.bool()], skip_special_tokens=False)
    for name in ("image_token", "audio_token", "video_token"):
        token = getattr(processor, name, None)
        if token:
            text = re.sub(f"(?:{re.escape(token)})+", token, text)
    return text


@torch.no_grad()
def generate_texts(
    model, processor, samples: Sequence[EvalSample], config: EvalConfig, desc: str = "generating"
) -> tuple[list[str], list[int], list[str]]:
    """Greedy generations for `samples` (in their order), the number of new tokens of each, and each prompt as the
    model received it.

    Prompts are sorted by length so batches carry little padding, then put back in order.
    """
    from tqdm.auto import tqdm

    tokenizer = processor.tokenizer
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    order = sorted(range(len(samples)), key=lambda i: _prompt_size(samples[i]))
    texts, lengths, prompts = [""] * len(samples), [0] * len(samples), [""] * len(samples)
    kwargs = {"max_new_tokens": config.max_new_tokens, "do_sample": False}
    if tokenizer.pad_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    if config.thinking_budget is not None:
        kwargs["thinking_budget"] = config.thinking_budget
    try:
        with tqdm(total=len(samples), desc=desc, unit="sample") as bar:
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                inputs = processor.apply_chat_template(
                    [samples[i].messages for i in batch],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                    enable_thinking=config.enable_thinking,
                    processor_kwargs={"padding": True},
                )
                inputs = _move(inputs, model)
                new_tokens = model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1] :]  # [B, new]
                decoded = processor.batch_decode(new_tokens, skip_special_tokens=True)
                for row, index in enumerate(batch):
                    texts[index] = decoded[row]
                    prompts[index] = _prompt_as_sent(
                        processor, inputs["input_ids"][row], inputs["attention_mask"][row]
                    )
                    lengths[index] = int((new_tokens[row] != kwargs.get("pad_token_id", -1)).sum())
                bar.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
    return texts, lengths, prompts


def _run_generation_task(model, processor, task: Task, samples, config: EvalConfig) -> tuple[dict, list[dict]]:
    start = time.perf_counter()
    raw, lengths, prompts = generate_texts(model, processor, samples, config, desc=task.name)
    generation_seconds = time.perf_counter() - start
    splits = [split_thinking(text) for text in raw]
    answers = [s.answer for s in splits]
    start = time.perf_counter()
    metrics, per_sample = task.score(answers, samples)
    scoring_seconds = time.perf_counter() - start
    result = {
        "metrics": metrics,
        "num_samples": len(samples),
        "num_unterminated_thinking": sum(not s.terminated for s in splits),
        "mean_new_tokens": sum(lengths) / len(lengths),
        "seconds": {"generation": generation_seconds, "scoring": scoring_seconds},
        "samples_per_second": len(samples) / generation_seconds if generation_seconds > 0 else None,
    }
    records = [
        {
            "task": task.name,
            "id": s.id,
            "prompt": prompt,
            "references": _references(s),
            "generation": text,
            "answer": a,
            "score": score,
        }
        for s, prompt, text, a, score in zip(samples, prompts, raw, answers, per_sample)
    ]
    return result, records


def _references(sample: EvalSample):
    # HumanEval's reference is the whole problem: its tests are what the answer is checked against.
    if isinstance(sample.reference, dict) and "test" in sample.reference:
        return {"test": sample.reference["test"], "entry_point": sample.reference.get("entry_point")}
    return sample.reference


def _run_perplexity_task(model, processor, samples, config: EvalConfig) -> dict:
    start = time.perf_counter()
    items = [{"messages": s.messages} if s.messages else s.extra for s in samples]
    metrics = perplexity(model, processor, items, config.batch_size, config.enable_thinking, progress=True)
    num_tokens = metrics.pop("num_tokens")
    seconds = time.perf_counter() - start
    return {
        "metrics": metrics,
        "num_samples": len(samples),
        "num_scored_tokens": num_tokens,
        "seconds": {"total": seconds},
    }


def evaluate(model, processor, config: EvalConfig, model_name: str | None = None) -> dict:
    """Run the configured tasks on an already loaded model and return the report (also written to
    `config.output` when set)."""
    started = time.perf_counter()
    chosen, skipped = select_tasks(config)
    report = {
        "model": model_name or config.model,
        "config": asdict(config),
        "environment": _environment(model),
        "tasks": {},
        "skipped": skipped,
    }
    records: list[dict] = []
    for task, path in chosen:
        samples = task.load(path, config.prompt_template, config.media_root)[: config.limit]
        if not samples:
            report["skipped"][task.name] = f"{path} has no samples"
            continue
        task_start = time.perf_counter()
        if task.kind == "perplexity":
            result = _run_perplexity_task(model, processor, samples, config)
        else:
            result, task_records = _run_generation_task(model, processor, task, samples, config)
            records += task_records
        result["file"] = str(path)
        result["seconds"]["total"] = time.perf_counter() - task_start
        report["tasks"][task.name] = result
    report["timing"] = {"total_seconds": time.perf_counter() - started}
    report["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if config.output:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        Path(config.output).write_text(json.dumps(report, indent=2) + "\n")
    if config.predictions:
        Path(config.predictions).parent.mkdir(parents=True, exist_ok=True)
        with open(config.predictions, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return report


def run_evaluation(config: EvalConfig) -> dict:
    """Load `config.model`, evaluate it, write the report; returns the report."""
    select_tasks(config)  # a missing task file fails before the model loads
    start = time.perf_counter()
    model, processor = load_model(config.model, config.device, config.dtype, config.allow_pickled_weights)
    load_seconds = time.perf_counter() - start
    report = evaluate(model, processor, config)
    report["timing"]["load_seconds"] = load_seconds
    if config.output:
        Path(config.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _environment(model) -> dict:
    import transformers

    return {
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _format(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(report: dict) -> str:
    """The report as a markdown table: one row per task and metric."""
    lines = ["| task | metric | value | samples | unterminated thinking | seconds |", "|---|---|---|---|---|---|"]
    for name, result in report["tasks"].items():
        for metric, value in result["metrics"].items():
            if not isinstance(value, (int, float)):
                continue  # e.g. which caption tokenizer ran: kept in the JSON
            unterminated = result.get("num_unterminated_thinking", "-")
            seconds = result["seconds"]["total"]
            lines.append(
                f"| {name} | {metric} | {_format(value)} | {result['num_samples']} | {unterminated} | {seconds:.1f} |"
            )
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {reason} | | | | |")
    return "\n".join(lines)


__all__ = [
    "EvalConfig",
    "evaluate",
    "generate_texts",
    "load_model",
    "markdown_table",
    "run_evaluation",
    "select_tasks",
]
