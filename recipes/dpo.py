"""Stage 3a: preference optimisation with TRL's `DPOTrainer` on image/audio pairs
(`{"prompt", "chosen", "rejected", "images" | "audios"}`). The OpenMind collator passes each prompt's images AND
audio for both sides of the pair; the reference model is a frozen copy of the start (or the adapter switched off).

    python recipes/dpo.py --config recipes/configs/tiny/dpo.yaml \
        --dataset_name data/demo/preference_train.jsonl --model_name_or_path outputs/tiny-sft

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml recipes/dpo.py \
        --config recipes/configs/openmind-7b/dpo.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

import time

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindDPOConfig
from openmind_hf.training.collators import PreferenceCollator
from openmind_hf.training.data import indexed_inputs, load_preference_store, load_train_and_eval
from openmind_hf.training.model_setup import prepare_model
from openmind_hf.training.run import (
    finish_run,
    one_line_data_errors,
    reference_model,
    save_final_model,
    start_run,
    tower_lrs,
)
from openmind_hf.training.trainers import OpenMindDPOTrainer


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, OpenMindDPOConfig))


def build_trainer(model_args, data_args, training_args, callbacks=None):
    """The DPO trainer, ready to `train()`, with the processor and the run's bad-data report."""
    report = start_run(training_args)

    model, processor, _ = prepare_model(
        model_args,
        "dpo",
        seed=training_args.seed,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
    )

    # Data: preference pairs, checked up front, media decoded per batch.
    train_store, eval_store = load_train_and_eval(load_preference_store, data_args, report)

    # Collator: prompt + chosen / prompt + rejected, with the prompt's images AND audio for both sides.
    collator = PreferenceCollator(processor, training_args.max_length, bool(data_args.enable_thinking))

    trainer = OpenMindDPOTrainer(
        model=model,
        ref_model=reference_model(model, model_args),
        args=training_args,
        processing_class=processor,
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
    summary = finish_run("dpo", trainer, train_output, report, started, merged_dir, model_args, data_args)

    if training_args.push_to_hub:
        trainer.push_to_hub()
    return summary


if __name__ == "__main__":
    with one_line_data_errors("recipes/dpo.py"):
        parser = make_parser()
        model_args, data_args, training_args = parser.parse_args_and_config()
        main(model_args, data_args, training_args)
