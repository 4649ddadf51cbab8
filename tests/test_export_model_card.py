"""The model card records the training: built from what a real (tiny, 2-step) `openmind train` run leaves in its
output folder, it shows the stage, its steps, learning rate and metrics, and replaces TRL's generic README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from training_data import write_training_data

from openmind_hf.cli import main
from openmind_hf.export.hub import checkpoint_files
from openmind_hf.export.model_card import build_model_card, run_stages, write_model_card

TINY = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "tiny"
QUICK = ["--max_steps", "2", "--disable_tqdm", "true", "--per_device_train_batch_size", "2", "--save_steps", "2"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("card-run")
    data = write_training_data(root / "data", num_train=8, num_test=2)
    out = root / "sft"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "--stage", "sft", "--config", str(TINY / "sft.yaml"), "--dataset_name",
                     str(data / "instruct_train.jsonl"), "--output_dir", str(out), *QUICK])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and (out / "run_summary.json").is_file()
    return out


def test_the_card_of_a_real_run_records_stage_steps_and_metrics(sft_run):
    summary = json.loads((sft_run / "run_summary.json").read_text())
    card = build_model_card(sft_run, "me/tiny-sft")
    assert "No training record" not in card
    training = card[card.index("## Training") : card.index("## Usage")]
    loss = summary["metrics"]["train_loss"]
    row = f"| sft | instruct_train.jsonl (local file) | 2 | {summary['metrics']['epoch']:.4g} | 0.001 | {loss:.4g} |"
    assert row in training
    assert str(sft_run.parent) not in card  # a local dataset is named by its file, the user's folders stay home
    assert "datasets:" not in card.split("---")[1]  # Hub metadata lists Hub datasets only
    assert f"`train_loss` {loss:.4g}" in training and "`train_runtime`" in training
    assert "llm " in training and "vision " in training  # trainable parameters per tower
    assert "```python" in card and 'from_pretrained("me/tiny-sft"' in card  # usage
    assert "run_summary.json" not in checkpoint_files(sft_run)  # local paths and skipped records stay home


def test_our_card_replaces_trls_readme(sft_run, tmp_path):
    run = tmp_path / "sft"
    shutil.copytree(sft_run, run)
    readme = run / "README.md"
    if not readme.is_file():  # TRL writes its generic card when it saves a checkpoint, unless the trainer stops it
        readme.write_text("This model is a fine-tuned version of [None](https://huggingface.co/None).\n")
    assert write_model_card(run) == readme
    text = readme.read_text()
    assert "fine-tuned version" not in text and "| sft |" in text and text.startswith("---\n")


def test_stages_are_followed_back_through_the_checkpoint_each_started_from(sft_run, tmp_path):
    """When a stage records its data and starting checkpoint (`datasets`, `model_name_or_path`), the card lists
    every stage, oldest first, and names the data."""
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    shutil.copytree(sft_run, first)
    shutil.copytree(sft_run, second)
    for folder, stage, extra in ((first, "pretrain", {}), (second, "sft", {"model_name_or_path": str(first)})):
        summary = json.loads((folder / "run_summary.json").read_text())
        summary.update(stage=stage, datasets=[f"{stage}.jsonl"], **extra)
        (folder / "run_summary.json").write_text(json.dumps(summary))
    assert [s["stage"] for s in run_stages(second / "merged")] == ["pretrain", "sft"]  # LoRA's merged/ too
    card = build_model_card(second, "me/tiny")
    assert card.index("| pretrain | pretrain.jsonl | 2 |") < card.index("| sft | sft.jsonl | 2 |")
    assert "datasets:\n- pretrain.jsonl\n- sft.jsonl" in card
