"""Stage 3b: RL with verifiable rewards, TRL's `GRPOTrainer`: answer accuracy plus a thinking-format reward, with
the thinking mode on. Image and audio prompts keep their media through generation, the reference and the loss.
A trained reward model can be one of the rewards (`--reward_model DIR`).

    python recipes/grpo.py --config recipes/configs/tiny/grpo.yaml \
        --dataset_name data/demo/instruct_train.jsonl --model_name_or_path outputs/tiny-sft

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/grpo.py \
        --config recipes/configs/openmind-7b/grpo.yaml --reward_model outputs/openmind-7b-reward

Any field of the four dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

import time

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, GRPOScriptArguments, ModelArguments, OpenMindGRPOConfig
from openmind_hf.training.data import PromptStore, index_dataset, load_chat_store
from openmind_hf.training.model_setup import prepare_model
from openmind_hf.training.rewards import get_reward_functions
from openmind_hf.training.run import (
    finish_run,
    one_line_data_errors,
    reference_model,
    save_final_model,
    start_run,
    tower_lrs,
)
from openmind_hf.training.trainers import OpenMindGRPOTrainer


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, GRPOScriptArguments, OpenMindGRPOConfig))


def _generation_settings(training_args, data_args, processor) -> None:
    if data_args.enable_thinking:
        training_args.chat_template_kwargs = {**(training_args.chat_template_kwargs or {}), "enable_thinking": True}
    # TRL suppresses only the image token while sampling; a sampled <audio>/<video> would break the next forward.
    suppress = {processor.image_token_id, processor.audio_token_id, processor.video_token_id}
    generation_kwargs = dict(training_args.generation_kwargs or {})
    generation_kwargs["suppress_tokens"] = sorted(set(generation_kwargs.get("suppress_tokens", [])) | suppress)
    training_args.generation_kwargs = generation_kwargs


def build_trainer(model_args, data_args, script_args, training_args, callbacks=None):
    """The GRPO trainer, ready to `train()`, with the processor and the run's bad-data report."""
    report = start_run(training_args)

    model, processor, _ = prepare_model(
        model_args,
        "grpo",
        seed=training_args.seed,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
    )

    # Data: chats -> prompts (the turns before the reference answer) + `answer` and `task` for the rewards.
    store = PromptStore(load_chat_store(data_args, report))
    _generation_settings(training_args, data_args, processor)

    # No collator: the trainer takes each row's sample from `store`, encodes the prompt with its media and keeps
    # the media with the row through generation, the reference and the loss.
    trainer = OpenMindGRPOTrainer(
        model=model,
        ref_model=reference_model(model, model_args) if training_args.beta != 0.0 else None,
        reward_funcs=get_reward_functions(script_args.reward_funcs, script_args.reward_model),
        args=training_args,
        train_dataset=index_dataset(store),
        processing_class=processor,
        store=store,
        callbacks=callbacks,
        tower_lrs=tower_lrs(model_args),
    )
    return trainer, processor, report


def main(model_args, data_args, script_args, training_args, callbacks=None):
    started = time.time()
    trainer, processor, report = build_trainer(model_args, data_args, script_args, training_args, callbacks)

    # Train (resuming from the newest complete checkpoint when asked), then save and summarise.
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    merged_dir = save_final_model(trainer, processor, model_args)
    summary = finish_run("grpo", trainer, train_output, report, started, merged_dir, model_args, data_args)

    if training_args.push_to_hub:
        trainer.push_to_hub()
    return summary


if __name__ == "__main__":
    with one_line_data_errors("recipes/grpo.py"):
        parser = make_parser()
        model_args, data_args, script_args, training_args = parser.parse_args_and_config()
        main(model_args, data_args, script_args, training_args)
