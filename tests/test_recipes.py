"""Every recipe runs with its tiny YAML; `openmind train` runs the same code; YAML + flags parse the way the recipes
promise (flags override, unknown keys fail); the shared arguments do what they say (freezing, per-tower learning
rates, LoRA on the LM only, QLoRA refused on CPU, packing, bad-data skipping, logging, a reward model as a GRPO
reward)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_data import build_recipe_trainer, run_recipe, write_training_data

from openmind_hf.training.arguments import ModelArguments
from openmind_hf.training.model_setup import prepare_model, tower_of
from openmind_hf.training.recipe_loader import parse_stage_args

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny"
DATA_FILE = {
    "pretrain": "pretrain_train.jsonl",
    "sft": "instruct_train.jsonl",
    "dpo": "preference_train.jsonl",
    "reward": "preference_train.jsonl",
    "grpo": "instruct_train.jsonl",
}
QUICK = ["--max_steps", "2", "--disable_tqdm", "true", "--per_device_train_batch_size", "2"]
GRPO_QUICK = ["--max_completion_length", "6", "--num_generations", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("recipe-data"), num_train=16)


def _recipe(stage: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{stage}", REPO / "recipes" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo", "reward", "grpo"])
def test_recipe_runs_with_its_tiny_yaml(stage, data, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoModelForSequenceClassification, AutoProcessor

    recipe = _recipe(stage)
    assert "accelerate launch" in recipe.__doc__  # the launch commands live in the docstring
    out = tmp_path / stage
    argv = ["--config", str(TINY / f"{stage}.yaml"), "--dataset_name", str(data / DATA_FILE[stage]),
            "--output_dir", str(out), *QUICK, *(GRPO_QUICK if stage == "grpo" else [])]  # fmt: skip
    summary = recipe.main(*recipe.make_parser().parse_args_and_config(args=argv))

    assert summary.global_step == 2
    saved = json.loads((out / "run_summary.json").read_text())
    assert saved["model_dir"] == str(out) and saved["skipped"]["count"] == 0
    assert len((out / "loss_history.jsonl").read_text().splitlines()) == 2
    auto = AutoModelForSequenceClassification if stage == "reward" else AutoModelForImageTextToText
    model = auto.from_pretrained(out)
    assert AutoProcessor.from_pretrained(out).image_token == "<image>"
    if stage == "pretrain":  # stage 1 defaults: projectors train, towers and LM stay frozen
        from openmind_hf import build_tiny_preset

        before = build_tiny_preset(seed=0)[0].state_dict()
        after = model.state_dict()
        moved = {tower_of(k) for k in after if k in before and not torch.equal(before[k], after[k])}
        assert moved == {"projectors"}, moved


def test_openmind_train_cli_runs_the_same_stage(data, tmp_path):
    from openmind_hf.cli import main

    out = tmp_path / "cli"
    code = main(["train", "--stage", "sft", "--config", str(TINY / "sft.yaml"),
                 "--dataset_name", str(data / "instruct_train.jsonl"), "--output_dir", str(out), *QUICK])  # fmt: skip
    assert code == 0
    assert json.loads((out / "run_summary.json").read_text())["global_step"] == 2
    with pytest.raises((SystemExit, ValueError)):
        main(["train", "--stage", "sft", "--config", str(TINY / "sft.yaml"), "--no_such_flag", "1"])


def test_flags_override_the_yaml_and_unknown_keys_fail(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("preset: tiny\nlearning_rate: 0.25\nfreeze_vision: false\nvision_lr: 0.5\n")
    model_args, _, training_args = parse_stage_args("sft", ["--config", str(config), "--output_dir", str(tmp_path)])
    assert training_args.learning_rate == 0.25 and model_args.vision_lr == 0.5 and model_args.freeze_vision is False
    _, _, training_args = parse_stage_args("sft", ["--config", str(config), "--learning_rate", "0.125"])
    assert training_args.learning_rate == 0.125
    assert training_args.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())

    config.write_text("preset: tiny\nlearning_rte: 0.25\n")
    with pytest.raises(ValueError, match="learning_rte"):
        parse_stage_args("sft", ["--config", str(config)])
    with pytest.raises((SystemExit, ValueError), match="learning_rte"):
        parse_stage_args("sft", ["--preset", "tiny", "--learning_rte", "0.1"])
    with pytest.raises(ValueError, match="packing"):
        parse_stage_args("dpo", ["--preset", "tiny", "--packing", "true"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error; on a GPU QLoRA is allowed")
def test_qlora_on_cpu_is_a_clear_error(tiny_checkpoint):
    args = ModelArguments(model_name_or_path=str(tiny_checkpoint), use_lora=True, load_in_4bit=True)
    with pytest.raises(RuntimeError, match="QLoRA .*needs a CUDA GPU"):
        prepare_model(args, "sft")
    with pytest.raises(ValueError, match="needs --use_lora"):
        ModelArguments(preset="tiny", load_in_4bit=True)


def test_lora_adapts_only_the_language_model_and_trains_unfrozen_towers_fully():
    model, _, frozen = prepare_model(ModelArguments(preset="tiny", use_lora=True, freeze_vision=False), "sft")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all(".language_model." in n for n in lora)
    assert any("vision_tower.modules_to_save" in n for n in trainable)  # unfrozen tower: saved with the adapter
    assert any("multi_modal_projector.modules_to_save" in n for n in trainable)
    assert not any("audio_tower" in n for n in trainable) and frozen["audio"]
    assert not any(".language_model." in n and "lora_" not in n for n in trainable)


def test_per_tower_learning_rates_become_optimizer_groups(data, tmp_path):
    argv = ["--preset", "tiny", "--dataset_name", str(data / "instruct_train.jsonl"), "--output_dir", str(tmp_path),
            "--freeze_vision", "false", "--freeze_audio", "false", "--learning_rate", "1e-3",
            "--vision_lr", "1e-5", "--audio_lr", "2e-5", "--projector_lr", "3e-4", "--report_to", "none"]  # fmt: skip
    trainer, _, _ = build_recipe_trainer("sft", *parse_stage_args("sft", argv))
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    expected = {"vision": 1e-5, "audio": 2e-5, "projectors": 3e-4, "llm": 1e-3}
    seen = set()
    for group in optimizer.param_groups:
        towers = {tower_of(names[id(p)]) for p in group["params"]}
        assert len(towers) == 1 and group["lr"] == expected[towers.pop()]
        seen.add(group["lr"])
    assert seen == set(expected.values())


def test_packing_checkpointing_attention_and_bad_records_under_skip(data, tmp_path):
    records = (data / "instruct_train.jsonl").read_text().splitlines()[:8]
    broken = json.loads(records[0]) | {"id": "broken", "image": "images/missing.png"}
    broken.pop("audio", None)
    broken["conversations"][0]["value"] = "<image>\nWhat color is it?"
    (data / "with_bad.jsonl").write_text("\n".join([*records, json.dumps(broken), "{not json"]) + "\n")
    argv = ["--config", str(TINY / "sft.yaml"), "--dataset_name", str(data / "with_bad.jsonl"), "--output_dir",
            str(tmp_path), "--on_error", "skip", "--packing", "true", "--gradient_checkpointing", "true",
            "--attn_implementation", "eager", *QUICK]  # fmt: skip
    model_args, data_args, training_args = parse_stage_args("sft", argv)
    trainer, _, report = build_recipe_trainer("sft", model_args, data_args, training_args)
    assert trainer.data_collator.collator.packing and not trainer.args.packing
    batch = trainer.data_collator([{"index": 0}, {"index": 1}])
    assert "attention_mask" not in batch and batch["position_ids"][0, 0] == 0 and batch["input_ids"].shape[0] == 1
    assert trainer.model.config._attn_implementation == "eager"
    summary = run_recipe("sft", argv)  # packed rows + activation checkpointing + eager attention train
    assert summary.global_step == 2
    assert summary.skipped["count"] == 2  # the invalid JSON line and the missing picture
    assert {r["sample_id"] for r in summary.skipped["records"]} >= {"broken"}


def test_tensorboard_and_offline_wandb_logging(data, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    report_to = ["tensorboard"]
    try:
        import wandb  # noqa: F401

        report_to.append("wandb")
    except ImportError:
        pass
    config = tmp_path / "logging.yaml"
    config.write_text(
        (TINY / "sft.yaml").read_text().replace("report_to: none", f"report_to: [{', '.join(report_to)}]")
    )
    argv = ["--config", str(config), "--dataset_name", str(data / "instruct_train.jsonl"),
            "--output_dir", str(tmp_path / "run"), *QUICK]  # fmt: skip
    run_recipe("sft", argv)
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))
    if "wandb" in report_to:
        assert list((tmp_path / "wandb").rglob("offline-run-*"))


def test_reward_model_scores_grpo_completions_with_media(data, tmp_path):
    from openmind_hf import build_tiny_preset
    from openmind_hf.building import to_reward_model

    model, processor = build_tiny_preset(seed=1)
    reward_dir = tmp_path / "reward-model"
    reward = to_reward_model(model)
    torch.nn.init.normal_(reward.score.weight, std=1.0)
    reward.save_pretrained(reward_dir)
    processor.save_pretrained(reward_dir)
    argv = ["--config", str(TINY / "grpo.yaml"), "--dataset_name", str(data / "instruct_train.jsonl"),
            "--output_dir", str(tmp_path / "grpo"), "--reward_funcs", "think_format", "--reward_model",
            str(reward_dir), *QUICK, *GRPO_QUICK]  # fmt: skip
    parsed = parse_stage_args("grpo", argv)
    trainer, _, _ = build_recipe_trainer("grpo", *parsed)
    scorer = trainer.reward_funcs[-1]
    calls = []
    scorer.model.model.vision_tower.register_forward_hook(lambda *a: calls.append("vision"))
    scorer.model.model.audio_tower.register_forward_hook(lambda *a: calls.append("audio"))
    trainer.train()
    logged = [log for log in trainer.state.log_history if "rewards/reward_model/mean" in log]
    assert logged and any(log["rewards/reward_model/std"] > 0 for log in logged)
    assert calls, "the reward model never saw the prompts' media"


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo", "reward", "grpo"])
def test_reference_7b_configs_parse(stage):
    """The full-size configs hold only known keys (nothing is downloaded: parsing builds no model)."""
    model_args, data_args, *_, training_args = parse_stage_args(
        stage, ["--config", str(REPO / "recipes" / "configs" / "openmind-7b" / f"{stage}.yaml")]
    )
    assert model_args.has_source and data_args.dataset_name
    assert training_args.learning_rate <= 5e-5
    if stage == "pretrain":
        assert (
            model_args.text_model == "Qwen/Qwen2-7B-Instruct"
            and "clip-vit-large-patch14-336" in model_args.vision_model
        )
        assert 1e-5 <= training_args.learning_rate <= 5e-5
    if stage == "sft":
        assert training_args.learning_rate == 5e-6


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {
        "single_gpu": "NO", "multi_gpu": "MULTI_GPU", "cpu_ddp": "MULTI_GPU", "fsdp2": "FSDP",
        "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "zero3_offload": "DEEPSPEED", "multi_node": "MULTI_GPU",
    }  # fmt: skip
    for name, kind in expected.items():
        config = load_config_from_file(str(REPO / "recipes" / "accelerate_configs" / f"{name}.yaml"))
        assert config.distributed_type.value == kind, name
    assert load_config_from_file(str(REPO / "recipes" / "accelerate_configs" / "multi_node.yaml")).num_machines == 2
    zero3_offload = load_config_from_file(str(REPO / "recipes" / "accelerate_configs" / "zero3_offload.yaml"))
    assert zero3_offload.deepspeed_config["offload_param_device"] == "cpu"


def test_stage_1_composes_a_new_model_from_pretrained_towers(data, tmp_path):
    """`--text_model/--vision_model/--audio_model`: a NEW OpenMind from local towers; stage 1 trains only its fresh
    projectors, so the towers and the LM come out exactly as they went in."""
    from transformers import (
        Qwen2Config,
        Qwen2ForCausalLM,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
        SiglipVisionModel,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    from openmind_hf.building import load_tiny_tokenizer, tiny_config

    torch.manual_seed(0)
    vision = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                  num_attention_heads=4, image_size=32, patch_size=8))  # fmt: skip
    vision.save_pretrained(tmp_path / "siglip")
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "siglip")
    WhisperModel(tiny_config().audio_config).save_pretrained(tmp_path / "whisper")
    WhisperFeatureExtractor(feature_size=40, chunk_length=2).save_pretrained(tmp_path / "whisper")
    tokenizer = load_tiny_tokenizer()
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))  # fmt: skip
    lm.save_pretrained(tmp_path / "qwen2")
    tokenizer.save_pretrained(tmp_path / "qwen2")

    out = tmp_path / "stage1"
    summary = run_recipe("pretrain", [
        "--text_model", str(tmp_path / "qwen2"), "--vision_model", str(tmp_path / "siglip"),
        "--audio_model", str(tmp_path / "whisper"), "--dataset_name", str(data / "pretrain_train.jsonl"),
        "--output_dir", str(out), "--learning_rate", "1e-2", "--report_to", "none", *QUICK,
    ])  # fmt: skip
    assert summary.global_step == 2
    trained = _state(out)
    for name, tensor in vision.state_dict().items():
        assert torch.equal(trained[f"model.vision_tower.{name}"], tensor), name
    for name, tensor in lm.model.layers.state_dict().items():
        assert torch.equal(trained[f"model.language_model.layers.{name}"], tensor), name


def test_min_quality_score_and_tasks_filter_what_every_recipe_loads(tmp_path):
    from openmind_hf.data.policy import SkipReport
    from openmind_hf.training.data import load_chat_store, load_preference_store

    chats, pairs = tmp_path / "chats.jsonl", tmp_path / "pairs.jsonl"
    scores = {"low": 0.2, "high": 0.9, "unscored": None}
    with chats.open("w") as c, pairs.open("w") as p:
        for name, score in scores.items():
            metadata = {"task": "math" if name != "high" else "chat", **({"quality_score": score} if score else {})}
            turns = [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]
            c.write(json.dumps({"id": name, "conversations": turns, "metadata": metadata}) + "\n")
            p.write(
                json.dumps({"id": name, "prompt": "2+2?", "chosen": "4", "rejected": "5", "metadata": metadata}) + "\n"
            )

    def ids(stage, data_file, loader, *flags):
        argv = ["--preset", "tiny", "--dataset_name", str(data_file), "--output_dir", str(tmp_path), *flags]
        store = loader(parse_stage_args(stage, argv)[1], SkipReport())
        return sorted(store[i]["id"] for i in range(len(store)))

    assert ids("sft", chats, load_chat_store, "--min_quality_score", "0.5") == ["high", "unscored"]
    assert ids("dpo", pairs, load_preference_store, "--min_quality_score", "0.5") == ["high", "unscored"]
    assert ids("reward", pairs, load_preference_store) == ["high", "low", "unscored"]
    assert ids("grpo", chats, load_chat_store, "--min_quality_score", "0.5", "--tasks", "math") == ["unscored"]


def test_think_format_is_the_config_name_of_the_evaluation_reward():
    from openmind_hf.evaluation.rewards import thinking_format_reward
    from openmind_hf.training.rewards import accuracy_reward, get_reward_functions

    assert get_reward_functions(["accuracy", "think_format"]) == [accuracy_reward, thinking_format_reward]
    assert get_reward_functions(["thinking_format"]) == [thinking_format_reward]
