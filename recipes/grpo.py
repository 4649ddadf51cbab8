"""Stage 3b: RL with verifiable rewards, TRL's `GRPOTrainer`: answer accuracy plus a thinking-format reward, with
the thinking mode on. Image and audio prompts keep their media through generation, the reference and the loss.
A trained reward model can be one of the rewards (`--reward_model DIR`).

    python recipes/grpo.py --config recipes/configs/tiny/grpo.yaml \
        --dataset_name data/demo/instruct_train.jsonl --model_name_or_path outputs/tiny-sft

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/grpo.py \
        --config recipes/configs/openmind-7b/grpo.yaml --reward_model outputs/openmind-7b-reward

Any field of the four dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, GRPOScriptArguments, ModelArguments, OpenMindGRPOConfig
from openmind_hf.training.stages import run_stage


def main(argv=None):
    parser = TrlParser((ModelArguments, DataArguments, GRPOScriptArguments, OpenMindGRPOConfig))
    model_args, data_args, script_args, training_args = parser.parse_args_and_config(args=argv)
    return run_stage("grpo", model_args, data_args, training_args, script_args=script_args)


if __name__ == "__main__":
    main()
