"""Stage 3a: preference optimisation with TRL's `DPOTrainer` on image/audio pairs
(`{"prompt", "chosen", "rejected", "images" | "audios"}`). The OpenMind collator passes each prompt's images AND
audio for both sides of the pair; the reference model is a frozen copy of the start (or the adapter switched off).

    python recipes/dpo.py --config recipes/configs/tiny/dpo.yaml \
        --dataset_name data/demo/preference_train.jsonl --model_name_or_path outputs/tiny-sft

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml recipes/dpo.py \
        --config recipes/configs/openmind-7b/dpo.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindDPOConfig
from openmind_hf.training.stages import run_stage


def main(argv=None):
    parser = TrlParser((ModelArguments, DataArguments, OpenMindDPOConfig))
    model_args, data_args, training_args = parser.parse_args_and_config(args=argv)
    return run_stage("dpo", model_args, data_args, training_args)


if __name__ == "__main__":
    main()
