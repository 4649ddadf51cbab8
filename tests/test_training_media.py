"""Media must reach the loss in every trainer: forward hooks on the vision and audio towers, a few real training
steps on image-only, audio-only and mixed (image AND audio in every sample) batches, then checks that the towers ran
in the LOSS forward (and in the reference / old-policy forwards where those exist) and that the trainable towers'
and projectors' weights changed."""

from __future__ import annotations

import contextlib

import pytest
import torch
from training_data import build_recipe_trainer, write_training_data

from openmind_hf.training.recipe_loader import parse_stage_args
from openmind_hf.training.trainers import unwrap_openmind

DATA_KIND = {
    "pretrain": "pretrain",
    "sft": "instruct",
    "dpo": "preference",
    "reward": "preference",
    "grpo": "instruct",
}
TOWERS = {"image": ("vision_tower",), "audio": ("audio_tower",), "mixed": ("vision_tower", "audio_tower")}
PROJECTORS = {"vision_tower": "multi_modal_projector", "audio_tower": "audio_projector"}


def length_reward(completions, **kwargs):
    """A dense reward with variance from the first step (a random model never earns the verifiable ones)."""
    return [len(str(c)) / 100.0 for c in completions]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("media-data"), num_train=24)


def _argv(stage: str, data_file, output_dir) -> list[str]:
    argv = [
        "--preset", "tiny", "--dataset_name", str(data_file), "--output_dir", str(output_dir),
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--seed", "0",
        "--freeze_vision", "false", "--freeze_audio", "false", "--freeze_llm", "false", "--freeze_projectors", "false",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    if stage == "dpo":
        argv += ["--beta", "0.1"]
    if stage == "grpo":
        argv += [
            "--num_generations", "2", "--max_completion_length", "6", "--beta", "0.1", "--num_iterations", "2",
            "--reward_funcs", "test_training_media:length_reward",
        ]  # fmt: skip
    return argv


class TowerSpy:
    """Records (phase, model, tower) for every tower forward; `phase` is set by wrapping trainer methods."""

    def __init__(self):
        self.calls: set[tuple[str, str, str]] = set()
        self.phase = "other"
        self.handles = []

    def watch(self, model, label: str) -> None:
        inner = unwrap_openmind(model).model
        for tower in ("vision_tower", "audio_tower"):
            module = getattr(inner, tower)
            self.handles.append(module.register_forward_hook(self._hook(label, tower)))

    def _hook(self, label, tower):
        def hook(module, args, output):
            self.calls.add((self.phase, label, tower))

        return hook

    @contextlib.contextmanager
    def in_phase(self, name):
        previous, self.phase = self.phase, name
        try:
            yield
        finally:
            self.phase = previous

    def wrap(self, trainer, method: str, phase: str) -> None:
        original = getattr(trainer, method)

        def wrapped(*args, **kwargs):
            with self.in_phase(phase):
                return original(*args, **kwargs)

        setattr(trainer, method, wrapped)


def _snapshot(model) -> dict[str, torch.Tensor]:
    inner = unwrap_openmind(model).model
    return {
        f"{name}.{p_name}": p.detach().clone()
        for name in ("vision_tower", "audio_tower", "multi_modal_projector", "audio_projector")
        for p_name, p in getattr(inner, name).named_parameters()
    }


def _changed(before, model, module: str) -> bool:
    after = _snapshot(model)
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(module + "."))


@pytest.mark.parametrize("modality", ["image", "audio", "mixed"])
@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo", "reward", "grpo"])
def test_media_reach_the_loss(stage, modality, data, tmp_path):
    parsed = parse_stage_args(stage, _argv(stage, data / f"{DATA_KIND[stage]}_{modality}.jsonl", tmp_path))
    trainer, _, _ = build_recipe_trainer(stage, *parsed)
    spy = TowerSpy()
    spy.watch(trainer.model, "policy")
    if getattr(trainer, "ref_model", None) is not None:
        spy.watch(trainer.ref_model, "reference")
    if stage == "grpo":
        spy.wrap(trainer, "_generate_and_score_completions", "scoring")  # old-policy and reference log-probs
        spy.wrap(trainer, "_generate_single_turn", "generation")
        spy.wrap(trainer, "_compute_loss", "loss")
    else:
        spy.wrap(trainer, "compute_loss", "loss")  # DPO's reference forward runs inside it too
    before = _snapshot(trainer.model)

    trainer.train()

    for tower in TOWERS[modality]:
        assert ("loss", "policy", tower) in spy.calls, f"{tower} did not run in the {stage} loss forward"
        if stage == "dpo":
            assert ("loss", "reference", tower) in spy.calls, f"{tower} did not run in DPO's reference forward"
        if stage == "grpo":
            assert ("generation", "policy", tower) in spy.calls
            assert ("scoring", "policy", tower) in spy.calls, f"{tower} did not run in GRPO's old-policy forward"
            assert ("scoring", "reference", tower) in spy.calls, f"{tower} did not run in GRPO's reference forward"
        assert _changed(before, trainer.model, tower), f"{stage}: the trainable {tower} did not change"
        assert _changed(before, trainer.model, PROJECTORS[tower]), f"{stage}: {PROJECTORS[tower]} did not change"


def test_grpo_reads_and_encodes_each_prompt_once_per_round(data, tmp_path):
    """TRL's sampler repeats each prompt `num_generations` times: its media are read, decoded and encoded once, and
    every repeat still carries them."""
    parsed = parse_stage_args("grpo", _argv("grpo", data / "instruct_image.jsonl", tmp_path))
    trainer, _, _ = build_recipe_trainer("grpo", *parsed)
    rounds, encoded, reads = [], [], []
    store, encode, generate = trainer.store, trainer.encode_prompts, trainer._generate_and_score_completions

    class CountingStore:
        def __len__(self):
            return len(store)

        def __getitem__(self, index):
            reads.append(index)
            return store[index]

    def counting_encode(samples):
        encoded.append(len(samples))
        return encode(samples)

    def recording_generate(inputs):
        rounds.append([int(row["index"]) for row in inputs])
        output = generate(inputs)
        assert len(output["media"]) == len(inputs) and all("pixel_values" in m for m in output["media"])
        return output

    trainer.store, trainer.encode_prompts = CountingStore(), counting_encode
    trainer._generate_and_score_completions = recording_generate
    trainer.train()
    assert rounds and all(len(rows) == 2 * len(set(rows)) for rows in rounds)  # each prompt twice (2 generations)
    assert encoded == [len(set(rows)) for rows in rounds]
    assert len(reads) == sum(len(set(rows)) for rows in rounds)
