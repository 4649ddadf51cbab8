"""FSDP2 at model level on 2 CPU processes (torchrun, gloo). accelerate cannot shard on CPU without patching it
(an FSDP config becomes `DistributedType.NO`, or gloo DDP with `use_cpu`: it only turns GPU-type states into FSDP;
the recipes refuse both), so this applies the recipes' wrap plan (`training.distributed.apply_fsdp2`: decoder layers,
tower layers, towers, projectors, root) with `fully_shard` directly. Rank 0 trains on an image sample, rank 1 on
audio, then a text-only sample, then audio: the gradients of the first step and the weights after 3 AdamW steps equal
one unsharded model trained on both samples (the loss normalised by the global count of labelled tokens), and
nothing hangs on the towers a rank leaves idle. (lr 1e-4: Adam's first steps are ~lr * sign(grad), so a 1e-8 float
difference in a near-zero gradient moves a weight by up to lr; 1e-3 gave 9.6e-6 here, 1e-4 stays well inside 1e-5.)"""

from __future__ import annotations

import json
import sys
import textwrap

from scaleout import child_env, free_port, run

DRIVER = textwrap.dedent(
    """
    import copy, json, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from PIL import Image

    from openmind_hf import build_tiny_preset
    from openmind_hf.training.distributed import apply_fsdp2, fsdp2_units

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, processor = build_tiny_preset(seed=0)
    reference = copy.deepcopy(model).train()
    model.train()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    clip = rng.standard_normal(16000).astype(np.float32) * 0.1

    def encode(kind):
        if kind == "image":
            enc = processor(text="<image> The picture shows red squares.", images=[image], return_tensors="pt")
        elif kind == "audio":
            enc = processor(text="<audio> The clip is a beep.", audio=[clip], return_tensors="pt")
        else:
            enc = processor(text="Hello there, how are you?", return_tensors="pt")
        labels = enc["input_ids"].clone()
        for token in (model.config.image_token_id, model.config.audio_token_id):
            labels[labels == token] = -100
        return {**enc, "labels": labels}

    steps = {0: ["image", "image", "image"], 1: ["audio", "text", "audio"]}
    batches = {r: [encode(k) for k in kinds] for r, kinds in steps.items()}

    def count(batch):
        return int((batch["labels"][:, 1:] != -100).sum())

    units = fsdp2_units(model)
    apply_fsdp2(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ref_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-4)
    report = {"units": len(units)}
    for step in range(3):
        total = sum(count(batches[r][step]) for r in (0, 1))
        # sharded: each rank its own sample; x world because FSDP2 averages the gradients over ranks
        loss = model(**batches[rank][step], num_items_in_batch=total).loss * world
        loss.backward()
        # one process: both samples, the same global normalisation
        ref_loss = sum(reference(**batches[r][step], num_items_in_batch=total).loss for r in (0, 1))
        ref_loss.backward()
        summed = loss.detach().clone() / world
        dist.all_reduce(summed)
        if step == 0:
            worst = 0.0
            for (name, p), q in zip(model.named_parameters(), reference.parameters()):
                if q.grad is None:
                    continue
                g = p.grad.full_tensor()
                worst = max(worst, (g - q.grad).abs().max().item())
            report["grad_max_abs_diff"] = worst
        report.setdefault("losses", []).append([summed.item(), ref_loss.item()])
        optimizer.step(); optimizer.zero_grad()
        ref_optimizer.step(); ref_optimizer.zero_grad()
    worst = 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        worst = max(worst, (p.full_tensor() - q).abs().max().item())
    report["weight_max_abs_diff"] = worst
    report["sharded"] = type(next(model.parameters())).__name__
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(report, f)
    dist.destroy_process_group()
    """
)


def test_fsdp2_wrap_plan_matches_one_process(tmp_path):
    driver = tmp_path / "fsdp2_driver.py"
    driver.write_text(DRIVER)
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(driver), str(report_path)]  # fmt: skip
    proc = run(command, child_env(tmp_path), timeout=240)
    assert proc.returncode == 0, proc.stdout[-6000:]
    report = json.loads(report_path.read_text())
    print(f"FSDP2: {report}")
    assert report["sharded"] == "DTensor" and report["units"] >= 4
    assert report["grad_max_abs_diff"] <= 1e-5
    for sharded, single in report["losses"]:
        assert abs(sharded - single) <= 1e-5 * abs(single), report["losses"]
    assert report["weight_max_abs_diff"] <= 1e-5
