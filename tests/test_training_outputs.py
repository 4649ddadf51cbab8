"""What a finished recipe leaves next to its model (issue 14 items 4 and 10): OpenMind's model card as README.md (TRL's
"fine-tuned version of [None]" card is never written, not even at checkpoint saves), a run summary naming the data and
the checkpoint the stage started from, and `loss_curve.png` drawn from `loss_history.jsonl` by the function the demo
uses too. Two tiny SFT stages, in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image
from training_data import write_training_data
from transformers import TrainerCallback

from openmind_hf.training.plots import LOSS_CURVE, save_loss_curve

REPO = Path(__file__).resolve().parents[1]
SFT_YAML = REPO / "recipes" / "configs" / "tiny" / "sft.yaml"
TRL_CARD = "fine-tuned version of"


class _ReadmeAtEachSave(TrainerCallback):
    """Records the run folder's README.md (if any) right after each checkpoint save."""

    def __init__(self):
        self.seen: list[str | None] = []

    def on_save(self, args, state, control, **kwargs):
        readme = Path(args.output_dir) / "README.md"
        self.seen.append(readme.read_text() if readme.exists() else None)


def _run_sft(data: Path, output_dir: Path, *extra: str, callbacks=None):
    spec = importlib.util.spec_from_file_location("sft_recipe_outputs", REPO / "recipes" / "sft.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = [
        "--config", str(SFT_YAML), "--dataset_name", str(data / "instruct_train.jsonl"), "--output_dir", str(output_dir),
        "--max_train_samples", "8", "--per_device_train_batch_size", "4", "--max_steps", "2", "--save_strategy",
        "steps", "--save_steps", "1", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    return recipe.main(*recipe.make_parser().parse_args_and_config(argv), callbacks=callbacks)


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory):
    """Stage A from the tiny preset, then stage B from A's output."""
    root = tmp_path_factory.mktemp("outputs")
    data = write_training_data(root / "data", num_train=16)
    saves = _ReadmeAtEachSave()
    _run_sft(data, root / "a", callbacks=[saves])
    _run_sft(data, root / "b", "--model_name_or_path", str(root / "a"))
    return data, root / "a", root / "b", saves


def test_no_trl_card_is_written_at_checkpoint_saves(two_stages):
    _, _, _, saves = two_stages
    assert len(saves.seen) == 2 and all(text is None or TRL_CARD not in text for text in saves.seen), saves.seen


def test_the_readme_is_our_card_with_stage_steps_and_data(two_stages):
    data, a, b, _ = two_stages
    for folder in (a, b):
        card = (folder / "README.md").read_text()
        assert TRL_CARD not in card and "[None]" not in card
        assert "## Training" in card and "| sft |" in card and "| 2 |" in card, card
        assert "instruct_train.jsonl (local file)" in card and str(data) not in card, card  # no local folders
    card_b = (b / "README.md").read_text()
    assert card_b.count("| sft |") == 2, card_b  # B's card follows model_name_or_path back to stage A


def test_run_summary_names_the_data_and_the_starting_checkpoint(two_stages):
    data, a, b, _ = two_stages
    summary_a = json.loads((a / "run_summary.json").read_text())
    summary_b = json.loads((b / "run_summary.json").read_text())
    assert summary_a["datasets"] == summary_b["datasets"] == [str(data / "instruct_train.jsonl")]
    assert summary_a["model_name_or_path"] is None  # the tiny preset
    assert summary_b["model_name_or_path"] == str(a)


def test_every_run_saves_a_loss_curve_png(two_stages, tmp_path):
    _, a, b, _ = two_stages
    for folder in (a, b):
        path = folder / LOSS_CURVE
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 200 and image.size[1] > 200
    # The demo's multi-stage figure is the same function, one panel per stage.
    both = save_loss_curve(tmp_path / "both.png", {"stage A": a, "stage B": b})
    with Image.open(both) as image, Image.open(a / LOSS_CURVE) as single:
        assert image.size[0] > 1.5 * single.size[0]
