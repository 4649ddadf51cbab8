"""The correctness gate: before anything is timed, both sides must compute the same thing.

On the first batch of the workload it checks that
1. both data paths (TRL's vision collator on the LLaVA processor, and OpenMind's collator, padded) give identical
   `input_ids`, `attention_mask`, `labels` and `pixel_values`;
2. the two models give the same logits on the real positions (max |diff| <= `logits_atol`, fp32);
3. the loss the OpenMind side trains on (packed batch, labelled-positions loss) equals the loss TRL's fused head
   computes for the baseline on the padded batch (relative diff <= `loss_rtol`).

`run_all.py` refuses to compare speeds when any check fails.
"""

from __future__ import annotations

import copy
import os

import torch


def _baseline_trl_loss(model, batch: dict) -> torch.Tensor:
    """The loss exactly as TRL 1.16's SFTTrainer computes it: its fused LM head patched onto the model."""
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs",))
    return model(**batch, fused_lm_head=True).loss


def run_gate(
    workdir: str,
    logits_atol: float = 1e-4,
    loss_rtol: float = 1e-4,
    num_rows: int | None = None,
    pack_length: int | None = None,
) -> dict:
    """Runs the three checks on the workspace `workdir` (packing rows of `pack_length` tokens, as the benchmark
    does); returns a report with `passed`."""
    from datasets import load_from_disk
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling
    from worker import load_side
    from workload import load_config

    from openmind_hf.data.dataset import RecordCollator as OpenMindCollator  # HF rows: normalised first

    config = load_config(workdir)
    dataset = load_from_disk(os.path.join(workdir, "dataset"))
    rows = [dataset[i] for i in range(num_rows or config.batch_size)]
    llava, llava_processor = load_side("baseline", workdir)
    openmind, processor = load_side("openmind", workdir)
    llava.eval()
    openmind.eval()

    baseline_batch = DataCollatorForVisionLanguageModeling(llava_processor, assistant_only_loss=True)(
        copy.deepcopy(rows)
    )
    padded = OpenMindCollator(processor)(copy.deepcopy(rows))
    packed = OpenMindCollator(processor, packing=True, max_length=pack_length, truncation_policy="keep")(
        copy.deepcopy(rows)
    )
    same_inputs = {
        key: bool(torch.equal(baseline_batch[key], padded[key]))
        for key in ("input_ids", "attention_mask", "labels", "pixel_values")
    }

    real = baseline_batch["attention_mask"].bool()
    no_labels = {k: v for k, v in baseline_batch.items() if k != "labels"}
    with torch.no_grad():
        expected = llava(**no_labels).logits[real]
        got = openmind(**{k: v for k, v in padded.items() if k != "labels"}).logits[real]
        logits_diff = (got - expected).abs().max().item()
        baseline_loss = _baseline_trl_loss(llava, baseline_batch).item()
        openmind.loss_only_when_labelled = True
        openmind_loss = openmind(**packed).loss.item()
    loss_rel = abs(openmind_loss - baseline_loss) / abs(baseline_loss)
    report = {
        "same_inputs": same_inputs,
        "logits_max_abs_diff": logits_diff,
        "logits_atol": logits_atol,
        "baseline_trl_loss": baseline_loss,
        "openmind_packed_loss": openmind_loss,
        "loss_rel_diff": loss_rel,
        "loss_rtol": loss_rtol,
        "rows": len(rows),
        "packed_rows": int(packed["input_ids"].shape[0]),
        "real_positions": int(real.sum()),
    }
    report["passed"] = all(same_inputs.values()) and logits_diff <= logits_atol and loss_rel <= loss_rtol
    return report


__all__ = ["run_gate"]
