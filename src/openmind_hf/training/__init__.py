"""Training: what every recipe shares (arguments, model building, freezing / LoRA, safe checkpoints, the trainers,
the run summary) and one `run_stage` per stage, used by `recipes/*.py` and `openmind train`.

Submodules are imported where they are used, so `import openmind_hf.training` stays cheap.
"""
