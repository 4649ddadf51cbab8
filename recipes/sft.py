"""Stage 2: instruction tuning with TRL's `SFTTrainer` and the OpenMind collator (assistant-only loss, images and
audio in every batch, optional padding-free packing).

    # CPU, tiny model, synthetic data (`openmind data synthetic --output data/demo` or `make demo`)
    python recipes/sft.py --config recipes/configs/tiny/sft.yaml --dataset_name data/demo/instruct_train.jsonl

    # one GPU / one node with 8 GPUs / DeepSpeed ZeRO-3
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/sft.py \
        --config recipes/configs/openmind-7b/sft.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/sft.py \
        --config recipes/configs/openmind-7b/sft.yaml
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft.py \
        --config recipes/configs/openmind-7b/sft.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
`recipes/pretrain.py` runs this same flow with stage 1's freezing defaults.
"""

import time

from trl import TrlParser

from openmind_hf.processing.collator import OpenMindCollator
from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindSFTConfig
from openmind_hf.training.collators import CachedChatCollator
from openmind_hf.training.data import indexed_inputs, load_chat_store, load_train_and_eval
from openmind_hf.training.model_setup import prepare_model
from openmind_hf.training.run import finish_run, one_line_data_errors, save_final_model, start_run, tower_lrs
from openmind_hf.training.trainers import OpenMindSFTTrainer


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, OpenMindSFTConfig))


def build_trainer(model_args, data_args, training_args, callbacks=None, stage="sft"):
    """The SFT trainer, ready to `train()`, with the processor and the run's bad-data report."""
    report = start_run(training_args)

    # Model: a checkpoint, pretrained towers or a preset; the stage picks the default freezing.
    model, processor, _ = prepare_model(
        model_args,
        stage,
        seed=training_args.seed,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
    )

    # Data: records checked up front, media decoded per batch.
    train_store, eval_store = load_train_and_eval(load_chat_store, data_args, report)

    # Collator: chat template, assistant-only labels, media features and (with --packing) padding-free packing.
    collator_cls = CachedChatCollator if data_args.cache_encoded_samples else OpenMindCollator
    collator = collator_cls(
        processor,
        max_length=training_args.max_length,
        packing=training_args.openmind_packing,
        enable_thinking=data_args.enable_thinking,
        on_error=data_args.on_error,
        skip_report=report,
    )

    trainer = OpenMindSFTTrainer(
        model=model,
        args=training_args,
        processing_class=processor,
        callbacks=callbacks,
        tower_lrs=tower_lrs(model_args),
        **indexed_inputs(train_store, eval_store, collator),
    )
    return trainer, processor, report


def main(model_args, data_args, training_args, callbacks=None, stage="sft"):
    started = time.time()
    trainer, processor, report = build_trainer(model_args, data_args, training_args, callbacks, stage)

    # Train (resuming from the newest complete checkpoint when asked), then save and summarise.
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    merged_dir = save_final_model(trainer, processor, model_args)
    summary = finish_run(stage, trainer, train_output, report, started, merged_dir, model_args, data_args)

    if training_args.push_to_hub:
        trainer.push_to_hub()
    return summary


if __name__ == "__main__":
    with one_line_data_errors("recipes/sft.py"):
        parser = make_parser()
        model_args, data_args, training_args = parser.parse_args_and_config()
        main(model_args, data_args, training_args)
