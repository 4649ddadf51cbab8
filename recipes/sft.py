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
"""

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindSFTConfig
from openmind_hf.training.stages import run_stage


def main(argv=None):
    parser = TrlParser((ModelArguments, DataArguments, OpenMindSFTConfig))
    model_args, data_args, training_args = parser.parse_args_and_config(args=argv)
    return run_stage("sft", model_args, data_args, training_args)


if __name__ == "__main__":
    main()
