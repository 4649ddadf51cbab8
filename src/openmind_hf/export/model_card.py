"""The model card (README.md) that `openmind push` uploads with a checkpoint, and that [`write_model_card`] puts in
a training output folder in place of TRL's generic one.

Everything in it is read from the checkpoint directory, never typed by hand:
- architecture and parameter counts from `config.json` (the model is built on the `meta` device to count);
- quantization from `openmind_quantization.json` (written by `openmind quantize`);
- training stages, data and metrics from `run_summary.json` (what every OpenMind training stage writes), following
  the chain of stages back through the checkpoints each one started from; else a hand-written
  `training_summary.json`, else `trainer_state.json` (see [`training_section`]);
- metrics from an `openmind eval` report (`results/benchmarks.json`) when one is given;
- a usage snippet that runs as written (the tests execute it against a Hub server).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..building.inference import is_quanto_checkpoint
from .quantize import RECORD_FILE

# Parameter groups of OpenMindForConditionalGeneration, by name prefix.
COMPONENTS = (
    ("language model", "model.language_model."),
    ("vision tower", "model.vision_tower."),
    ("vision projector", "model.multi_modal_projector."),
    ("audio tower", "model.audio_tower."),
    ("audio projector", "model.audio_projector."),
    ("LM head", "lm_head."),
)


def count_parameters(config) -> dict[str, int]:
    """Parameters per component (tied weights counted once), from the config alone: built on the meta device."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    counts = {name: 0 for name, _ in COMPONENTS}
    seen = set()
    for key, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        group = next((name for name, prefix in COMPONENTS if key.startswith(prefix)), None)
        if group is not None:
            counts[group] += param.numel()
    return {name: n for name, n in counts.items() if n}


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def architecture_rows(config) -> list[tuple[str, str, str]]:
    """(component, type, details) for each part the config has."""
    text = config.text_config
    rows = [
        (
            "language model",
            text.model_type,
            f"hidden {text.hidden_size}, {text.num_hidden_layers} layers, {text.num_attention_heads} heads, "
            f"vocab {text.vocab_size}",
        )
    ]
    if config.vision_config is not None:
        v = config.vision_config
        rows.append(
            (
                "vision tower",
                v.model_type,
                f"{v.image_size} px, patch {v.patch_size}, hidden {v.hidden_size}, {v.num_hidden_layers} layers; "
                f"{config.num_image_tokens} tokens per image",
            )
        )
        rows.append(("vision projector", config.vision_projector_type, f"feature layer {config.vision_feature_layer}"))
    if config.audio_config is not None:
        a = config.audio_config
        layers = getattr(a, "encoder_layers", None) or getattr(a, "num_hidden_layers", "?")
        window = 2 * a.max_source_positions / 100  # mel frames are 10 ms; the encoder halves them
        rows.append(
            (
                "audio tower",
                f"{a.model_type} encoder",
                f"{a.num_mel_bins} mel bins, d_model {a.d_model}, {layers} layers, {window:g} s window",
            )
        )
        rows.append(("audio projector", "mlp", f"average pooling stride {config.audio_pool_stride}"))
    return rows


def architecture_section(config) -> str:
    counts = count_parameters(config)
    lines = [
        "## Architecture",
        "",
        "LLaVA-style: the vision and audio towers feed projectors whose outputs fill the `<image>` / `<audio>` "
        "placeholder tokens of a causal language model. Thinking is switchable (`enable_thinking` in the chat "
        "template); `generate(..., thinking_budget=N)` closes an open `<think>` block after N tokens.",
        "",
        "| component | type | details | parameters |",
        "|---|---|---|---|",
    ]
    for name, kind, details in architecture_rows(config):
        lines.append(f"| {name} | {kind} | {details} | {_human(counts.get(name, 0))} |")
    if "LM head" in counts:
        lines.append(f"| LM head | linear | untied | {_human(counts['LM head'])} |")
    lines += ["", f"Total: {_human(sum(counts.values()))} parameters."]
    return "\n".join(lines)


def quantization_section(model_dir: Path) -> str | None:
    path = model_dir / RECORD_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    lines = [
        "## Quantization",
        "",
        f"Weights quantized with {record['method']} ({record['bits']}-bit); kept in full precision: "
        f"{', '.join(f'`{m}`' for m in record['kept_full_precision'])}.",
    ]
    if record.get("max_abs_logit_diff") is not None:
        lines.append(
            f"On a fixed image + audio + text probe batch: max |logit diff| vs the original "
            f"{record['max_abs_logit_diff']:.4g}, greedy-token agreement {record['greedy_token_agreement']:.3f}."
        )
    return "\n".join(lines)


RUN_SUMMARY = "run_summary.json"  # training.summary.SUMMARY_NAME (export does not import training)
# Keys of run_summary.json that name the data and the checkpoint a stage started from, in order of preference.
DATA_KEYS = ("datasets", "dataset_name", "dataset", "data", "train_files")
START_KEYS = ("model_name_or_path", "init_from", "base_model")


def _stages(summary) -> list[dict]:
    if isinstance(summary, dict) and isinstance(summary.get("stages"), list):
        return [s for s in summary["stages"] if isinstance(s, dict)]
    return [summary] if isinstance(summary, dict) else []


STAGE_FIELDS = (
    ("stage", ("stage", "name")),
    ("data", DATA_KEYS),
    ("samples", ("num_samples", "train_samples")),
    ("epochs", ("epochs", "num_train_epochs", "epoch")),
    ("steps", ("global_step", "steps", "max_steps")),
    ("learning rate", ("learning_rate", "lr")),
    ("final loss", ("final_loss", "train_loss", "loss")),
)


def _field(stage: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = stage.get(key)
        if value is not None:
            if isinstance(value, (list, tuple)):
                return ", ".join(map(str, value))
            return f"{value:.4g}" if isinstance(value, float) else str(value)
    return "-"


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the stage or delete the file.") from None
    return value if isinstance(value, dict) else {}


def _summary_dir(model_dir: Path) -> Path | None:
    # A LoRA run saves the merged model in `output_dir/merged`; its summary sits one level up.
    for folder in (model_dir, model_dir.parent):
        if (folder / RUN_SUMMARY).is_file():
            return folder
    return None


def _run_stage(folder: Path) -> dict:
    """One stage's row from `run_summary.json`, with the optimiser settings from `training_args.json` beside it."""
    summary = _read_json(folder / RUN_SUMMARY)
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if isinstance(v, (int, float))}
    args = _read_json(folder / "training_args.json") if (folder / "training_args.json").is_file() else {}
    stage = {key: summary[key] for key in START_KEYS if summary.get(key)}
    stage.update({key: _public_data(summary[key]) for key in DATA_KEYS if summary.get(key)})
    stage.update(
        stage=summary.get("stage"),
        global_step=summary.get("global_step"),
        epoch=metrics.get("epoch"),
        learning_rate=args.get("learning_rate"),
        final_loss=metrics.get("train_loss"),
        metrics=metrics,
        trainable=summary.get("trainable_parameters") or {},
        skipped=(summary.get("skipped") or {}).get("count", 0),
        wall_seconds=summary.get("wall_seconds"),
    )
    return stage


def run_stages(model_dir: str | Path) -> list[dict]:
    """The stages that produced `model_dir`, oldest first: its `run_summary.json`, then, while a stage names the
    checkpoint it started from (`model_name_or_path`) and that folder has a summary too, the earlier ones."""
    stages, seen = [], set()
    folder = _summary_dir(Path(model_dir))
    while folder is not None and folder.resolve() not in seen:
        seen.add(folder.resolve())
        stage = _run_stage(folder)
        stages.append(stage)
        start = next((stage[k] for k in START_KEYS if stage.get(k)), None)
        folder = _summary_dir(Path(start)) if isinstance(start, str) and Path(start).is_dir() else None
    return stages[::-1]


def _trainable(counts: dict) -> str:
    parts = [f"{name} {_human(v['trainable'])}/{_human(v['total'])}" for name, v in sorted(counts.items())]
    return ", ".join(parts) or "-"


def _run_section(stages: list[dict]) -> str:
    lines = ["## Training", "", "Recorded by OpenMind's trainer in `run_summary.json` after each stage:", ""]
    lines.append("| stage | data | steps | epochs | learning rate | final train loss | trainable | skipped records |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for stage in stages:
        cells = [_field(stage, keys) for _, keys in (STAGE_FIELDS[0], STAGE_FIELDS[1], STAGE_FIELDS[4])]
        cells += [_field(stage, ("epoch",)), _field(stage, ("learning_rate",)), _field(stage, ("final_loss",))]
        cells += [_trainable(stage["trainable"]), str(stage["skipped"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Metrics at the end of each stage:", ""]
    for stage in stages:
        shown = ", ".join(f"`{k}` {_field(stage['metrics'], (k,))}" for k in sorted(stage["metrics"]))
        lines.append(f"- {stage['stage']}: {shown or 'none recorded'}")
    if not any(stage.get(k) for stage in stages for k in DATA_KEYS):
        lines += ["", "The training data is not named in the run record."]
    return "\n".join(lines)


LOCAL = " (local file)"


def _public_data(value):
    """A published card names local data by its file name only (the user's folders stay home); Hub ids stay."""
    if isinstance(value, (list, tuple)):
        return [_public_data(v) for v in value]
    text = str(value)
    if Path(text).is_absolute() or text.startswith((".", "~")) or Path(text).exists():
        return Path(text).name + LOCAL
    return text


def _data_names(stages: list[dict]) -> list[str]:
    """Dataset names for the card's metadata: Hub ids only (local files are not datasets anyone can look up)."""
    names: list[str] = []
    for stage in stages:
        data = next((stage[k] for k in DATA_KEYS if stage.get(k)), [])
        names += [data] if isinstance(data, str) else [str(d) for d in data]
    return [name for name in dict.fromkeys(names) if not name.endswith(LOCAL)]


def training_section(model_dir: Path) -> tuple[str, list[str]]:
    r"""The training section and the dataset names it mentions.

    Reads, in this order:
    - `run_summary.json` (written by every OpenMind training stage; also looked for one level up, for a LoRA run's
      `merged/` model) with the learning rate from `training_args.json` beside it, following earlier stages through
      the summary's `model_name_or_path`; the data is named when the summary has `datasets` (or `dataset_name`);
    - `training_summary.json`, hand-written: `{"stages": [{...}, ...]}` or one stage's dict, each stage with any of
      `stage`, `datasets` (list or str), `num_samples`, `epochs`, `global_step`, `learning_rate`, `final_loss`
      (and the synonyms in `STAGE_FIELDS`);
    - `trainer_state.json`: steps, epochs and the last loss.
    """
    model_dir = Path(model_dir)
    stages = run_stages(model_dir)
    if stages:
        return _run_section(stages), _data_names(stages)
    summary_path, state_path = model_dir / "training_summary.json", model_dir / "trainer_state.json"
    if summary_path.is_file():
        stages = _stages(_read_json(summary_path))
        source = "training_summary.json"
    elif state_path.is_file():
        state = _read_json(state_path)
        losses = [entry["loss"] for entry in state.get("log_history", []) if "loss" in entry]
        stages = [{"stage": "trainer", "global_step": state.get("global_step"), "epoch": state.get("epoch")}]
        stages[0]["final_loss"] = losses[-1] if losses else None
        source = "trainer_state.json"
    else:
        return (
            f"## Training\n\nNo training record (`{RUN_SUMMARY}`, `training_summary.json` or `trainer_state.json`) "
            "was found beside the weights.",
            [],
        )
    lines = ["## Training", "", f"From `{source}`:", ""]
    lines.append("| " + " | ".join(name for name, _ in STAGE_FIELDS) + " |")
    lines.append("|" + "---|" * len(STAGE_FIELDS))
    for stage in stages:
        lines.append("| " + " | ".join(_field(stage, keys) for _, keys in STAGE_FIELDS) + " |")
    return "\n".join(lines), _data_names(stages)


def evaluation_section(benchmarks: dict | None) -> str | None:
    """A table from an `openmind eval` report: `{"tasks": {task: {"metrics": {...}, "num_samples": n}}}`."""
    if not benchmarks or not benchmarks.get("tasks"):
        return None
    lines = ["## Evaluation", "", "| task | metric | value | samples |", "|---|---|---|---|"]
    for task, result in benchmarks["tasks"].items():
        for metric, value in result.get("metrics", {}).items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {task} | {metric} | {shown} | {result.get('num_samples', '-')} |")
    created = benchmarks.get("created")
    if created:
        lines += ["", f"Report created {created} by `openmind eval`."]
    return "\n".join(lines)


# What a user must install to load weights of each quantization backend (the OpenMind code itself ships in the repo).
BACKEND_REQUIREMENTS = {
    "torchao": "# torchao-quantized weights: pip install torchao\n",
    "bnb": "# bitsandbytes weights: a CUDA GPU and pip install bitsandbytes\n",
}


def usage_snippet(repo_id: str, quanto: bool = False, backend: str | None = None) -> str:
    """Python that loads the model by repo id and answers about an image and an audio clip, with thinking on and off."""
    if quanto:
        load = (
            "# optimum-quanto int4/int8 weights need OpenMind's loader: pip install openmind-hf[quant]\n"
            "from openmind_hf.building import load_model_for_inference\n\n"
            f'model = load_model_for_inference("{repo_id}")\n'
            f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)'
        )
        pipe = 'pipe = pipeline("image-text-to-text", model=model, processor=processor)'
    else:
        load = BACKEND_REQUIREMENTS.get(backend, "") + (
            f'model = AutoModelForImageTextToText.from_pretrained("{repo_id}", trust_remote_code=True)\n'
            f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)'
        )
        pipe = f'pipe = pipeline("image-text-to-text", model="{repo_id}", trust_remote_code=True)'
    return f"""```python
import numpy as np
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

{load}

image = Image.new("RGB", (224, 224), "orange")
audio = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)  # 1 s, 16 kHz
messages = [{{"role": "user", "content": [
    {{"type": "image", "image": image}},
    {{"type": "audio", "audio": audio}},
    {{"type": "text", "text": "What do you see and hear?"}},
]}}]
for thinking in (False, True):
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        enable_thinking=thinking,
    ).to(model.device)
    output = model.generate(**inputs, max_new_tokens=32, thinking_budget=16 if thinking else None)
    print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))

# The same through the pipeline (image + text):
{pipe}
chat = [{{"role": "user", "content": [{{"type": "image", "image": image}}, {{"type": "text", "text": "Describe it."}}]}}]
print(pipe(text=chat, max_new_tokens=32)[0]["generated_text"][-1]["content"])
```"""


def front_matter(datasets: list[str], license: str, quantized: bool) -> str:
    meta = {
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text",
        "license": license,
        "tags": ["openmind", "multimodal", "vision", "audio", "reasoning", "custom_code"]
        + (["quantized"] if quantized else []),
    }
    if datasets:
        meta["datasets"] = datasets
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def build_model_card(
    model_dir: str | Path, repo_id: str, benchmarks: dict | str | Path | None = None, license: str = "apache-2.0"
) -> str:
    """The README.md text for the checkpoint at `model_dir`, published as `repo_id`.

    Args:
        model_dir (`str` or `Path`): the checkpoint directory.
        repo_id (`str`): `org/name`, used in the title and the usage snippet.
        benchmarks (`dict` or path, *optional*): an `openmind eval` report (e.g. `results/benchmarks.json`).
        license (`str`, *optional*, defaults to `"apache-2.0"`): the license tag.
    """
    from transformers import AutoConfig

    import openmind_hf  # noqa: F401  (registers OpenMindConfig)

    model_dir = Path(model_dir)
    if isinstance(benchmarks, (str, Path)):
        benchmarks = json.loads(Path(benchmarks).read_text())
    config = AutoConfig.from_pretrained(model_dir)
    quanto = is_quanto_checkpoint(model_dir)
    record = json.loads((model_dir / RECORD_FILE).read_text()) if (model_dir / RECORD_FILE).is_file() else {}
    quantization = quantization_section(model_dir)
    training, datasets = training_section(model_dir)
    sections = [
        f"# {repo_id.split('/')[-1]}",
        "A vision + audio + text chat model with a switchable thinking mode, built with OpenMind (`openmind_hf`). "
        "The model code ships with the checkpoint (`trust_remote_code=True`), so it loads without installing OpenMind.",
        architecture_section(config),
        quantization,
        training,
        evaluation_section(benchmarks),
        "## Usage\n\n" + usage_snippet(repo_id, quanto=quanto, backend=record.get("backend")),
    ]
    return (
        front_matter(datasets, license, quantization is not None) + "\n" + "\n\n".join(s for s in sections if s) + "\n"
    )


def write_model_card(
    model_dir: str | Path, repo_id: str | None = None, benchmarks: dict | str | Path | None = None
) -> Path:
    """Writes our card as `model_dir/README.md`, replacing whatever is there (TRL's generic card names no base
    model, data or metrics). `repo_id` defaults to the folder's path, so the usage snippet loads it as it is."""
    model_dir = Path(model_dir)
    card = build_model_card(model_dir, repo_id or str(model_dir), benchmarks)
    path = model_dir / "README.md"
    path.write_text(card)
    return path


def extract_python_snippet(card: str) -> str:
    """The first ```python block of a card (the tests run it)."""
    start = card.index("```python\n") + len("```python\n")
    return card[start : card.index("```", start)]


__all__ = [
    "build_model_card",
    "run_stages",
    "write_model_card",
    "count_parameters",
    "architecture_section",
    "training_section",
    "evaluation_section",
    "usage_snippet",
    "extract_python_snippet",
]
