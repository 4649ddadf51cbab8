"""Stage 1: cross-modal alignment on caption data. By default only the projectors train (towers and LM frozen);
each caption is the assistant turn that follows its image or audio, so the loss is on the caption tokens.

    # CPU, tiny model, synthetic captions
    python recipes/pretrain.py --config recipes/configs/tiny/pretrain.yaml \
        --dataset_name data/demo/pretrain_train.jsonl

    # 8 GPUs, new model from pretrained Qwen2-7B + CLIP ViT-L/14-336 + Whisper towers
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/pretrain.py \
        --config recipes/configs/openmind-7b/pretrain.yaml
    # several nodes: run on each node (see recipes/accelerate_configs/multi_node.yaml)
    accelerate launch --config_file recipes/accelerate_configs/multi_node.yaml --machine_rank $RANK \
        recipes/pretrain.py --config recipes/configs/openmind-7b/pretrain.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindSFTConfig
from openmind_hf.training.stages import run_stage


def main(argv=None):
    parser = TrlParser((ModelArguments, DataArguments, OpenMindSFTConfig))
    model_args, data_args, training_args = parser.parse_args_and_config(args=argv)
    return run_stage("pretrain", model_args, data_args, training_args)


if __name__ == "__main__":
    main()
