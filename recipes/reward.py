"""Stage 3 reward model: TRL's `RewardTrainer` on image/audio preference pairs, with OpenMind plus a scalar head
(`OpenMindForSequenceClassification`, registered with `AutoModelForSequenceClassification`). The result can score
GRPO completions: `recipes/grpo.py --reward_model DIR`.

    python recipes/reward.py --config recipes/configs/tiny/reward.yaml \
        --dataset_name data/demo/preference_train.jsonl

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/reward.py \
        --config recipes/configs/openmind-7b/reward.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

import time

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindRewardConfig
from openmind_hf.training.collators import RewardCollator
from openmind_hf.training.data import indexed_inputs, load_preference_store, load_train_and_eval
from openmind_hf.training.model_setup import prepare_model
from openmind_hf.training.run import finish_run, one_line_data_errors, save_final_model, start_run, tower_lrs
from openmind_hf.training.trainers import OpenMindRewardTrainer


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, OpenMindRewardConfig))


def build_trainer(model_args, data_args, training_args, callbacks=None):
    """The reward-model trainer, ready to `train()`, with the processor and the run's bad-data report."""
    report = start_run(training_args)

    # Model: OpenMind with a scalar head (the reward stage converts the checkpoint or preset).
    model, processor, _ = prepare_model(
        model_args,
        "reward",
        seed=training_args.seed,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
    )

    # Data: preference pairs, checked up front, media decoded per batch.
    train_store, eval_store = load_train_and_eval(load_preference_store, data_args, report)

    # Collator: renders and tokenizes chosen / rejected with their media per batch (TRL tokenizes text only).
    collator = RewardCollator(processor, training_args.max_length, bool(data_args.enable_thinking))

    trainer = OpenMindRewardTrainer(
        model=model,
        args=training_args,
        processing_class=processor.tokenizer,
        processor=processor,  # saved with every checkpoint: `processing_class` is only its tokenizer
        callbacks=callbacks,
        tower_lrs=tower_lrs(model_args),
        **indexed_inputs(train_store, eval_store, collator),
    )
    return trainer, processor, report


def main(model_args, data_args, training_args, callbacks=None):
    started = time.time()
    trainer, processor, report = build_trainer(model_args, data_args, training_args, callbacks)

    # Train (resuming from the newest complete checkpoint when asked), then save and summarise.
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    merged_dir = save_final_model(trainer, processor, model_args)
    summary = finish_run("reward", trainer, train_output, report, started, merged_dir, model_args, data_args)

    if training_args.push_to_hub:
        trainer.push_to_hub()
    return summary


if __name__ == "__main__":
    with one_line_data_errors("recipes/reward.py"):
        parser = make_parser()
        model_args, data_args, training_args = parser.parse_args_and_config()
        main(model_args, data_args, training_args)
