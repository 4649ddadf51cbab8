"""FLOP accounting for MFU: the work a training step NEEDS, counted per part of the model, and a measured matmul peak.

Why not `Trainer`'s `total_flos`: it charges `6 * all parameters` to every position, padding included, so a padded
batch looks as "efficient" as a packed one, the embedding table counts as compute, and a frozen tower is charged a
backward pass it never runs.

Here the useful FLOPs of a step are (all matmul FLOPs, 2 per multiply-add):

- vision / audio tower: measured once per image / clip with `torch.utils.flop_counter.FlopCounterMode`, forward only
  when the tower is frozen (it runs under `no_grad`: no backward at all), forward + backward when it trains;
- projectors: measured the same way, forward + backward (they always train; their first layer's input needs no
  gradient when the tower is frozen, and the counter sees that);
- LM body, per sample of real length `T` (padding excluded): `2 * P_linear * T` for the linear layers and
  `4 * T^2 * heads * head_dim` per layer for attention scores and values (the non-causal PaLM / nanoGPT
  convention), x3 for forward + backward;
- LM head: `2 * hidden * vocab` per LABELLED position, x3: the loss needs nothing else.

Both sides of the benchmark process the same samples, so they are credited with the same useful FLOPs and their MFU
ratio equals their speed ratio; what a side executes on top (padding, unlabelled head rows) is reported separately as
`executed` FLOPs, measured with the same counter on a real step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


# PyTorch's counter knows the CUDA attention kernels but not the CPU flash kernel SDPA dispatches to here (it would
# count attention as 0): same formulas as the CUDA kernels. Nor does it count the in-place `addmm_` (gradient
# accumulation, e.g. in OpenMind's fused head loss): same formula as `addmm`.
_EXTRA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
    torch.ops.aten.addmm_: _addmm_flops,
}


def count_flops(fn) -> int:
    """Matmul/conv/attention FLOPs of `fn()` as PyTorch's dispatcher sees them (forward and any backward inside)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def _image_input(tower: nn.Module) -> torch.Tensor:
    cfg, weight = tower.config, next(tower.parameters())
    return torch.randn(1, cfg.num_channels, cfg.image_size, cfg.image_size, dtype=weight.dtype, device=weight.device)


def _tower_item_flops(tower: nn.Module, projector: nn.Module, inputs: torch.Tensor, trained: bool, select) -> dict:
    """FLOPs of one item (image or clip) through `tower` then `projector`, as a training step runs them."""

    def features():
        return select(tower(inputs))

    if trained:
        tower_flops = count_flops(lambda: features().float().sum().backward())
        with torch.no_grad():
            feats = features()
        projector_flops = count_flops(lambda: projector(feats.detach().requires_grad_(True)).sum().backward())
    else:
        with torch.no_grad():
            tower_flops = count_flops(features)
            feats = features()
        projector_flops = count_flops(lambda: projector(feats).sum().backward())
    for module in (tower, projector):
        module.zero_grad(set_to_none=True)
    return {"tower": tower_flops, "projector": projector_flops}


@dataclass
class StepFlops:
    """Useful FLOPs of one training step, by part."""

    vision: float = 0.0
    vision_projector: float = 0.0
    audio: float = 0.0
    audio_projector: float = 0.0
    lm_body: float = 0.0
    lm_head: float = 0.0

    @property
    def total(self) -> float:
        return self.vision + self.vision_projector + self.audio + self.audio_projector + self.lm_body + self.lm_head

    def as_dict(self) -> dict:
        return {**self.__dict__, "total": self.total}


class UsefulFlops:
    """Counts the useful training FLOPs of LLaVA-layout models (`model.model.{vision_tower, multi_modal_projector,
    audio_tower, audio_projector, language_model}` + `model.lm_head`): OpenMind and transformers' LLaVA alike.

    Args:
        model: the model (its weights are not changed; gradients it accumulates while counting are cleared).
        vision_layer_select (`callable`, *optional*): tower output -> the features fed to the projector.
    """

    def __init__(self, model: nn.Module, vision_layer_select=None):
        inner = model.model
        text = model.config.get_text_config()
        self.hidden, self.vocab = text.hidden_size, model.lm_head.out_features
        self.layers = text.num_hidden_layers
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.attention_width = text.num_attention_heads * head_dim
        body = inner.language_model
        self.linear_params = sum(m.weight.numel() for m in body.modules() if isinstance(m, nn.Linear))
        self.per_image = self.per_clip = None
        self.vision_trained = self.audio_trained = False
        vision = getattr(inner, "vision_tower", None)
        if vision is not None:
            self.vision_trained = any(p.requires_grad for p in vision.parameters())
            select = vision_layer_select or (lambda out: out.last_hidden_state)
            self.per_image = _tower_item_flops(
                vision, inner.multi_modal_projector, _image_input(vision), self.vision_trained, select
            )
        audio = getattr(inner, "audio_tower", None)
        if audio is not None:
            self.audio_trained = any(p.requires_grad for p in audio.parameters())
            cfg = audio.config
            weight = next(audio.parameters())
            mels = torch.randn(
                1, cfg.num_mel_bins, 2 * cfg.max_source_positions, dtype=weight.dtype, device=weight.device
            )
            self.per_clip = _tower_item_flops(
                audio, inner.audio_projector, mels, self.audio_trained, lambda out: out.last_hidden_state
            )

    def lm_forward(self, length: int) -> float:
        """Forward FLOPs of the LM body on one unpadded sample of `length` tokens."""
        return 2 * self.linear_params * length + 4 * length * length * self.attention_width * self.layers

    def step(
        self, sample_lengths: list[int], num_labelled: int, num_images: int = 0, num_audio_clips: int = 0
    ) -> StepFlops:
        """Useful FLOPs of a training step over samples of these real lengths (any padding or packing)."""
        flops = StepFlops()
        if num_images:
            flops.vision = num_images * self.per_image["tower"]
            flops.vision_projector = num_images * self.per_image["projector"]
        if num_audio_clips:
            flops.audio = num_audio_clips * self.per_clip["tower"]
            flops.audio_projector = num_audio_clips * self.per_clip["projector"]
        flops.lm_body = 3 * sum(self.lm_forward(t) for t in sample_lengths)
        flops.lm_head = 3 * 2 * self.hidden * self.vocab * num_labelled
        return flops

    def describe(self) -> dict:
        return {
            "vision_trained": self.vision_trained,
            "audio_trained": self.audio_trained,
            "per_image": self.per_image,
            "per_audio_clip": self.per_clip,
            "lm_linear_params": self.linear_params,
            "lm_attention_width": self.attention_width,
            "lm_head_flops_per_labelled_token": 6 * self.hidden * self.vocab,
        }


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5, dtype=torch.float32) -> dict:
    """The best FLOP/s of square fp32 matmuls at the current thread count: the denominator of MFU on this machine."""
    best, best_cpu = {}, {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)
        torch.mm(a, b, out=out)  # warm-up
        times, cpu_times = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        best[n] = 2 * n**3 / min(times)
        best_cpu[n] = 2 * n**3 / max(min(cpu_times), 1e-9)
    # Per CPU-second: the peak while the process has its core(s), the denominator for CPU-time MFU on a shared machine.
    return {"flops_per_s": max(best.values()), "by_size": {str(k): v for k, v in best.items()}, "dtype": str(dtype),
            "flops_per_cpu_s": max(best_cpu.values())}  # fmt: skip


def memory_bandwidth(sizes_mib: tuple[int, ...] = (64, 1024), repeats: int = 5) -> dict:
    """The machine's memory bandwidth at the current thread count, from a plain large-array copy (`dst.copy_(src)`:
    every byte read once and written once, so 2 x size bytes move) and a read-only pass (`src.sum()`), best of
    `repeats`. Two sizes: 64 MiB is the order of a small model's decode working set (weights + KV cache) and may be
    served from the last-level cache; 1 GiB is far beyond any cache (DRAM). Bytes per second."""
    by_size = {}
    for mib in sizes_mib:
        src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
        dst = torch.empty_like(src)
        dst.copy_(src)  # warm-up: both arrays' pages are mapped before timing
        copy_times, read_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            dst.copy_(src)
            copy_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            src.sum()
            read_times.append(time.perf_counter() - start)
        by_size[str(mib)] = {
            "copy_bytes_per_s": 2 * src.nbytes / min(copy_times),
            "read_bytes_per_s": src.nbytes / min(read_times),
        }
        del src, dst
    largest = by_size[str(max(sizes_mib))]
    return {"copy_bytes_per_s": largest["copy_bytes_per_s"], "read_bytes_per_s": largest["read_bytes_per_s"],
            "by_size_mib": by_size}  # fmt: skip


__all__ = ["UsefulFlops", "StepFlops", "count_flops", "matmul_peak", "memory_bandwidth"]
