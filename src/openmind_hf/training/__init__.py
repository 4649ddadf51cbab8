"""Training: what every recipe shares. The flow of each stage is its recipe, `recipes/<stage>.py`.

- `arguments.py`: the dataclasses a recipe parses (`ModelArguments`, `DataArguments`, the TRL configs).
- `data.py`: the stores (decoded samples under the bad-data policy) and the trainer's index rows.
- `collators.py`: preference and reward batches with media; cached chat encodings.
- `model_setup.py`: building the model of a stage (checkpoint, towers, preset), freezing and LoRA.
- `trainers.py`: the TRL trainers with per-tower learning rates and the loss history.
- `trl_internals.py`: every hook into private TRL / `Trainer` methods, with the tested versions.
- `checkpointing.py`: the checkpoint files (staging, marker, safetensors + JSON state) and resume resolution.
- `run.py`: the steps around the trainer (seed, reference model, final save, run summary).
- `summary.py`, `rewards.py`, `recipe_loader.py`, `commands.py`, `demo.py`.

Submodules are imported where they are used, so `import openmind_hf.training` stays cheap.
"""
