"""Stage 3 reward model: TRL's `RewardTrainer` on image/audio preference pairs, with OpenMind plus a scalar head
(`OpenMindForSequenceClassification`, registered with `AutoModelForSequenceClassification`). The result can score
GRPO completions: `recipes/grpo.py --reward_model DIR`.

    python recipes/reward.py --config recipes/configs/tiny/reward.yaml \
        --dataset_name data/demo/preference_train.jsonl

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/reward.py \
        --config recipes/configs/openmind-7b/reward.yaml

Any field of the three dataclasses can be given as a flag; flags override the YAML; unknown keys are an error.
"""

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindRewardConfig
from openmind_hf.training.stages import run_stage


def main(argv=None):
    parser = TrlParser((ModelArguments, DataArguments, OpenMindRewardConfig))
    model_args, data_args, training_args = parser.parse_args_and_config(args=argv)
    return run_stage("reward", model_args, data_args, training_args)


if __name__ == "__main__":
    main()
