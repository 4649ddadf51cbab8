"""Benchmark tasks: where each one's file lives under the data directory, how a row becomes a chat prompt, and
which metrics score it.

Layout of `--data DIR` (the first path that exists is used). Relative image paths resolve against `--media_root`
when it is given, else against the folder of the task file; a missing image names both.

| task      | file(s) under DIR                                               | row fields                         |
|-----------|-----------------------------------------------------------------|------------------------------------|
| vqa       | `vqa/test.jsonl`, `vqav2/test.jsonl`                            | `image`, `question`, `answers` (10)|
| textvqa   | `textvqa/test.jsonl`                                            | `image`, `question`, `answers` (10)|
| caption   | `caption/test.jsonl`, `coco_caption/test.jsonl`                 | `image`, `captions` (list)         |
| gsm8k     | `gsm8k/test.jsonl`                                              | `question`, `answer` (`#### n`)    |
| math      | `math500/test.jsonl`, `math/test.jsonl`                         | `problem`, `answer` (LaTeX)        |
| humaneval | `human-eval/data/HumanEval.jsonl.gz`, `humaneval/HumanEval.jsonl.gz`, `humaneval/test.jsonl` | HumanEval fields |
| ppl       | `ppl/test.jsonl`                                                | `text` (+ `image`), or `messages`  |

GSM8K, MATH-500 and HumanEval are the files as their authors publish them (`openai/grade-school-math`,
`HuggingFaceH4/MATH-500`, `openai/human-eval`).

The user turn's text is the task's prompt template filled with the row's fields (`Task.prompt_template`, shown by
`openmind eval --list-tasks`, replaced with `--prompt-template`). VQA's default is the question exactly as the data
has it: an instruction the model never saw in training would score the instruction, not the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .caption_metrics import bleu, cider_d, rouge_l
from .humaneval import read_jsonl
from .math_answers import gsm8k_correct, math_correct
from .registry import code_pass_rates
from .vqa import textvqa_accuracy, vqa_accuracy

CAPTION_INSTRUCTION = "Describe this image in one sentence."
GSM8K_INSTRUCTION = "Solve the problem step by step, then write the final number after '####'."
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = "Complete the following Python function. Reply with the whole function in a ```python code block."


@dataclass
class EvalSample:
    """One evaluation item: the chat to generate from (or to score, for perplexity) and what the answer is
    compared with. Image blocks hold file paths until the batch is built."""

    id: str
    messages: list[dict]
    reference: Any = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A benchmark task. `score(answers, samples)` returns `(metrics, per_sample_scores)`; `kind` is
    `"generate"` or `"perplexity"` (scored by `perplexity.perplexity`, `score` is None)."""

    name: str
    files: tuple[str, ...]
    reader: Callable[[Path, PromptOptions], list[EvalSample]]
    score: Callable[[Sequence[str], Sequence[EvalSample]], dict] | None
    kind: str = "generate"
    description: str = ""
    prompt_template: str | None = None

    def load(
        self, path: str | Path, prompt_template: str | None = None, media_root: str | Path | None = None
    ) -> list[EvalSample]:
        """The samples of the task file at `path`.

        Args:
            path (`str` or `Path`): the task file.
            prompt_template (`str`, *optional*): `str.format` template over the row's fields for the user's text;
                defaults to the task's `prompt_template`.
            media_root (`str` or `Path`, *optional*): folder relative image paths resolve against; defaults to
                the task file's folder.
        """
        template = prompt_template or self.prompt_template
        return self.reader(Path(path), PromptOptions(template, Path(media_root) if media_root else None))

    def find_file(self, data_dir: str | Path) -> Path | None:
        for relative in self.files:
            path = Path(data_dir) / relative
            if path.is_file():
                return path
        return None


@dataclass(frozen=True)
class PromptOptions:
    """How rows become prompts: the user-text template and where relative media paths resolve."""

    template: str | None
    media_root: Path | None


def _literal(text: str) -> str:
    """`text` as a `str.format` template that renders to itself."""
    return text.replace("{", "{{").replace("}", "}}")


def _fill(template: str, row: dict, path: Path, number: int) -> str:
    try:
        return template.format_map(row)
    except KeyError as err:
        raise ValueError(
            f"{path}: row {number}: the prompt template {template!r} names the field {err.args[0]!r}, which this row "
            f"lacks (it has {sorted(row)}); fix --prompt-template."
        ) from None
    except (ValueError, IndexError) as err:
        raise ValueError(
            f"prompt template {template!r}: {err}. Name row fields as {{question}}; write literal braces as {{{{ }}}}."
        ) from None


def _require(row: dict, fields: Sequence[str], path: Path, number: int) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{path}: row {number} lacks {missing}; rows of this task need {list(fields)}.")


def _image_path(row: dict, path: Path, number: int, media_root: Path | None = None) -> str:
    image = Path(row["image"])
    root = media_root if media_root is not None else path.parent
    image = image if image.is_absolute() else root / image
    if not image.is_file():
        where = "--media_root" if media_root is not None else "the task file's folder (set --media_root to change it)"
        raise FileNotFoundError(
            f"{path}: row {number} points to image {row['image']!r}, resolved against {where} as {str(image)!r}, "
            "which does not exist."
        )
    return str(image)


def _user(*blocks: dict) -> list[dict]:
    return [{"role": "user", "content": list(blocks)}]


def _load_vqa(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("image", "question", "answers"), path, number)
        if isinstance(row["answers"], str) or not row["answers"]:
            raise ValueError(f"{path}: row {number}: `answers` must be a non-empty list of human answers.")
        answers = [a["answer"] if isinstance(a, dict) else a for a in row["answers"]]  # VQA's dicts or strings
        text = _fill(options.template, row, path, number)
        image = _image_path(row, path, number, options.media_root)
        messages = _user({"type": "image", "image": image}, {"type": "text", "text": text})
        samples.append(EvalSample(str(row.get("question_id", number)), messages, answers))
    return samples


def _load_caption(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("image", "captions"), path, number)
        if isinstance(row["captions"], str) or not row["captions"]:
            raise ValueError(f"{path}: row {number}: `captions` must be a non-empty list of reference captions.")
        image = {"type": "image", "image": _image_path(row, path, number, options.media_root)}
        messages = _user(image, {"type": "text", "text": _fill(options.template, row, path, number)})
        samples.append(EvalSample(str(row.get("image_id", number)), messages, list(row["captions"])))
    return samples


def _load_gsm8k(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("question", "answer"), path, number)
        messages = _user({"type": "text", "text": _fill(options.template, row, path, number)})
        samples.append(EvalSample(str(number), messages, row["answer"]))
    return samples


def _load_math(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("problem", "answer"), path, number)
        messages = _user({"type": "text", "text": _fill(options.template, row, path, number)})
        samples.append(EvalSample(str(row.get("unique_id", number)), messages, row["answer"]))
    return samples


def _load_humaneval(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("task_id", "prompt", "test", "entry_point"), path, number)
        text = _fill(options.template, row, path, number)
        samples.append(EvalSample(row["task_id"], _user({"type": "text", "text": text}), row))
    return samples


def _load_ppl(path: Path, options: PromptOptions) -> list[EvalSample]:
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if "messages" in row:
            messages = row["messages"]
            for message in messages:
                for block in message.get("content") if isinstance(message.get("content"), list) else []:
                    if block.get("type") == "image" and isinstance(block.get("image"), str):
                        block["image"] = _image_path({"image": block["image"]}, path, number, options.media_root)
            samples.append(EvalSample(str(number), messages))
        elif "text" in row:
            extra = {"text": row["text"]}
            if row.get("image") is not None:  # the pretraining format: {"text": "<image>caption", "image": path}
                extra["image"] = _image_path(row, path, number, options.media_root)
            samples.append(EvalSample(str(number), [], extra=extra))
        else:
            raise ValueError(f"{path}: row {number} needs `text` or `messages` for perplexity.")
    return samples


def _accuracy(scorer: Callable[[str, Any], float], key: str = "accuracy"):
    def score(answers: Sequence[str], samples: Sequence[EvalSample]) -> dict:
        values = [scorer(a, s.reference) for a, s in zip(answers, samples)]
        return {key: sum(values) / len(values)}, values

    return score


def _score_caption(answers: Sequence[str], samples: Sequence[EvalSample]) -> tuple[dict, list]:
    references = [s.reference for s in samples]
    metrics = {"bleu": bleu(answers, references), "rouge_l": rouge_l(answers, references)}
    if len(samples) >= 2:
        metrics["cider_d"], metrics["cider_tokenizer"] = cider_d(answers, references)
    per_sample = [rouge_l([a], [r]) for a, r in zip(answers, references)]
    return metrics, per_sample


def _score_humaneval(answers: Sequence[str], samples: Sequence[EvalSample]) -> tuple[dict, list]:
    values = code_pass_rates(answers, [s.reference for s in samples])
    return {"pass@1": sum(values) / len(values)}, values


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("vqa", ("vqa/test.jsonl", "vqav2/test.jsonl"), _load_vqa, _accuracy(vqa_accuracy),
             description="VQAv2 accuracy", prompt_template="{question}"),
        Task("textvqa", ("textvqa/test.jsonl",), _load_vqa, _accuracy(textvqa_accuracy),
             description="TextVQA accuracy", prompt_template="{question}"),
        Task("caption", ("caption/test.jsonl", "coco_caption/test.jsonl"), _load_caption, _score_caption,
             description="BLEU-4, ROUGE-L, CIDEr-D", prompt_template=CAPTION_INSTRUCTION),
        Task("gsm8k", ("gsm8k/test.jsonl",), _load_gsm8k, _accuracy(gsm8k_correct), description="GSM8K accuracy",
             prompt_template="{question}\n" + GSM8K_INSTRUCTION),
        Task("math", ("math500/test.jsonl", "math/test.jsonl"), _load_math, _accuracy(math_correct),
             description="MATH accuracy (math-verify)", prompt_template="{problem}\n" + _literal(MATH_INSTRUCTION)),
        Task("humaneval", ("human-eval/data/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl.gz",
                           "humaneval/test.jsonl"), _load_humaneval, _score_humaneval,
             description="HumanEval pass@1 (sandboxed)",
             prompt_template=CODE_INSTRUCTION + "\n\n```python\n{prompt}```"),
        Task("ppl", ("ppl/test.jsonl",), _load_ppl, None, kind="perplexity", description="perplexity"),
    ]
}  # fmt: skip


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
    return TASKS[name]


def describe_tasks() -> str:
    """One block per task: its files, what it reports and its default prompt template (for `--list-tasks`)."""
    blocks = []
    for task in TASKS.values():
        lines = [f"{task.name}: {task.description}", f"  files:  {' | '.join(task.files)}"]
        if task.prompt_template is not None:
            lines.append(f"  prompt: {task.prompt_template!r}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


__all__ = ["TASKS", "EvalSample", "PromptOptions", "Task", "describe_tasks", "get_task"]
