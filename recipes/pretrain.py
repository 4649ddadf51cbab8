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

The flow is `recipes/sft.py`'s (collator, trainer, save, summary); only the stage, which sets the default
freezing, differs.
"""

import importlib.util
from pathlib import Path

from trl import TrlParser

from openmind_hf.training.arguments import DataArguments, ModelArguments, OpenMindSFTConfig
from openmind_hf.training.run import one_line_data_errors


def _sft_recipe():
    # Loaded by path: this file also runs as a script (`python recipes/pretrain.py`, `accelerate launch`), where
    # recipes/ is no package.
    spec = importlib.util.spec_from_file_location("openmind_recipe_sft", Path(__file__).with_name("sft.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, OpenMindSFTConfig))


def build_trainer(model_args, data_args, training_args, callbacks=None):
    """The stage-1 trainer, ready to `train()`, with the processor and the run's bad-data report."""
    return _sft_recipe().build_trainer(model_args, data_args, training_args, callbacks, stage="pretrain")


def main(model_args, data_args, training_args, callbacks=None):
    return _sft_recipe().main(model_args, data_args, training_args, callbacks, stage="pretrain")


if __name__ == "__main__":
    with one_line_data_errors("recipes/pretrain.py"):
        parser = make_parser()
        model_args, data_args, training_args = parser.parse_args_and_config()
        main(model_args, data_args, training_args)
