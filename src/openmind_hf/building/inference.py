"""Loading a checkpoint for inference: plain, torchao, bitsandbytes or optimum-quanto, local or on the Hub.

    from openmind_hf.building import load_model_for_inference
    model = load_model_for_inference("outputs/sft-int4")      # eval mode; load the processor with AutoProcessor

`openmind serve`, `openmind eval` and `openmind quantize` (its reload check) load through here. Weights must be
safetensors: a checkpoint holding only pickled weights (`pytorch_model.bin`) is refused unless the caller passes
`allow_pickled_weights=True` (unpickling can run code, and `weights_only=True` is a mitigation, not a guarantee).
Quantizing lives in `openmind_hf.export.quantize`; it writes what [`load_quantized`] reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

QUANTO_WEIGHTS_FILE = "quanto_model.safetensors"  # not `model.safetensors`: from_pretrained must not half-load it
QUANTO_MAP_FILE = "quantization_map.json"


def as_torch_dtype(dtype) -> torch.dtype | None:
    """`"bfloat16"` -> `torch.bfloat16`; `"auto"` and `None` -> `None` (keep the saved dtype)."""
    if dtype in ("auto", None):
        return None
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def resolve_file(path: str, filename: str, **hub_kwargs) -> str | None:
    """Local path of `filename` in a directory or Hub repo, or None when it has no such file."""
    if Path(path).is_dir():
        candidate = Path(path) / filename
        return str(candidate) if candidate.is_file() else None
    from transformers.utils.hub import cached_file

    return cached_file(path, filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)


def is_quanto_checkpoint(path: str | Path, **hub_kwargs) -> bool:
    """Whether `path` was written by `openmind quantize --backend quanto` (it holds `quantization_map.json`)."""
    return resolve_file(str(path), QUANTO_MAP_FILE, **hub_kwargs) is not None


# `from_pretrained` keywords [`load_quantized`] accepts besides `dtype`/`device_map`: where the files are, or what the
# Auto classes and `pipeline` pass along and which means nothing for a checkpoint whose weights are already quantized.
HUB_KWARGS = ("revision", "token", "cache_dir", "force_download", "proxies", "local_files_only")
IGNORED_KWARGS = (
    "trust_remote_code",
    "code_revision",
    "_commit_hash",
    "_from_auto",
    "_from_pipeline",
    "use_safetensors",
    "adapter_kwargs",  # the Auto classes always pass it (revision, token); a PEFT adapter dir has no quanto map
)


def load_quantized(
    path: str | Path,
    device: str | None = None,
    dtype: str | torch.dtype = "auto",
    model_class=None,
    config=None,
    **hub_kwargs,
):
    """Loads a directory (or Hub repo) written by `openmind_hf.export.quantize.save_quanto`: the model is built
    from its config without random init, quantized from `quantization_map.json` and filled by quanto's
    `requantize`. Every stored key must match the model (quanto itself loads with `strict=False`, so we check here).
    `OpenMindPreTrainedModel.from_pretrained` calls this for such directories, so the Auto classes and `pipeline`
    load them too.

    Args:
        path (`str` or `Path`): the quanto checkpoint directory or Hub repo id.
        device (`str`, *optional*): where to move the model; default CPU.
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"auto"`): must be the dtype it was quantized from.
        model_class (`type`, *optional*): the class to build; defaults to `AutoModelForImageTextToText`'s choice.
        config (`PretrainedConfig`, *optional*): the config to build from; defaults to the checkpoint's.
        hub_kwargs: `revision`, `token`, `cache_dir`, ... for Hub repos.
    """
    from optimum.quanto import requantize
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig
    from transformers.initialization import no_init_weights

    path = str(path)
    hub_kwargs = {k: v for k, v in hub_kwargs.items() if k in HUB_KWARGS and v is not None}
    weights_file = resolve_file(path, QUANTO_WEIGHTS_FILE, **hub_kwargs)
    map_file = resolve_file(path, QUANTO_MAP_FILE, **hub_kwargs)
    if weights_file is None or map_file is None:
        raise FileNotFoundError(
            f"{path} is not a quanto checkpoint: it needs {QUANTO_WEIGHTS_FILE} and {QUANTO_MAP_FILE}."
        )
    config = config if config is not None else AutoConfig.from_pretrained(path, **hub_kwargs)
    torch_dtype = _quanto_dtype(dtype, _saved_config(path, **hub_kwargs).get("dtype") or config.dtype, path)
    with no_init_weights():  # every weight comes from the file; non-persistent buffers are still computed
        if model_class is None:
            model = AutoModelForImageTextToText.from_config(config, dtype=torch_dtype)
        else:
            model = model_class._from_config(config, dtype=torch_dtype)
    state = load_file(weights_file)
    requantize(model, state, json.loads(Path(map_file).read_text()), device=torch.device("cpu"))
    _check_keys(model, state, weights_file)
    model.tie_weights()
    if model.can_generate() and resolve_file(path, "generation_config.json", **hub_kwargs) is not None:
        model.generation_config = GenerationConfig.from_pretrained(path, **hub_kwargs)
    return (model.to(device) if device else model).eval()


def load_quantized_from_pretrained(model_class, path, kwargs: dict):
    """[`load_quantized`] with `from_pretrained`'s keywords (`dtype`/`torch_dtype`, `device_map`, `config`, hub
    keywords); the hook `OpenMindPreTrainedModel.from_pretrained` calls. A keyword that would change how weights are
    quantized or placed (e.g. `quantization_config`, a multi-device `device_map`) is refused with what to do."""
    kwargs = dict(kwargs)
    subfolder = kwargs.pop("subfolder", None)
    path = os.path.join(str(path), subfolder) if subfolder else str(path)
    dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None) or "auto"
    device_map = kwargs.pop("device_map", None)
    if device_map is not None and not isinstance(device_map, (str, torch.device)):
        raise ValueError(
            f"{path} is an optimum-quanto checkpoint and loads on one device: pass device_map='cpu' / 'cuda' "
            f"(got {device_map!r}), or load it and call `.to(device)`."
        )
    device = None if device_map in (None, "auto") else str(device_map)
    wants_info = kwargs.pop("output_loading_info", False)
    config = kwargs.pop("config", None)
    # The Auto classes pass some keywords empty (e.g. `adapter_kwargs={}`): only ones that ask for something count.
    unknown = sorted(k for k, v in kwargs.items() if k not in HUB_KWARGS + IGNORED_KWARGS and v not in (None, {}))
    if unknown:
        raise ValueError(
            f"{path} is already quantized (optimum-quanto, written by `openmind quantize`); from_pretrained cannot "
            f"also apply {unknown}. Load it without them, or quantize the full-precision original instead."
        )
    config = config if hasattr(config, "to_dict") else None
    hub_kwargs = {k: v for k, v in kwargs.items() if k in HUB_KWARGS}
    model = load_quantized(path, device=device, dtype=dtype, model_class=model_class, config=config, **hub_kwargs)
    no_problems = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    return (model, no_problems) if wants_info else model


def _check_keys(model, state: dict, weights_file: str) -> None:
    expected = set(model.state_dict()) - set(model.all_tied_weights_keys)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{weights_file} does not match the model built from its config: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all). "
            "Re-run `openmind quantize` with the same OpenMind version."
        )


def _quanto_dtype(dtype, saved_dtype, path: str) -> torch.dtype:
    """quanto's int4 tensors cannot change dtype after quantization: they run in the dtype they were made from."""
    saved = as_torch_dtype(saved_dtype) or torch.float32  # the file's, not a `config` object a caller changed
    wanted = as_torch_dtype(dtype)
    if wanted is not None and wanted != saved:
        raise ValueError(
            f"{path} was quantized by optimum-quanto from {saved} weights and runs in {saved} only (asked: {wanted}). "
            f"Load it with dtype='auto', or quantize a {wanted} copy of the original."
        )
    return saved


def load_model_for_inference(
    path: str | Path,
    dtype: str | torch.dtype = "auto",
    device: str | None = None,
    allow_pickled_weights: bool = False,
    **hub_kwargs,
):
    """The model at `path` (directory or Hub id) in eval mode: plain, torchao or bitsandbytes checkpoints through
    `from_pretrained`, quanto checkpoints through [`load_quantized`]. Load the processor with `AutoProcessor`.

    Args:
        path (`str` or `Path`): checkpoint directory or Hub repo id.
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"auto"`): `"auto"` keeps the saved dtype; else e.g.
            `"bfloat16"`.
        device (`str`, *optional*): e.g. `"cpu"`, `"cuda"`; default: where `from_pretrained` puts it.
        allow_pickled_weights (`bool`, *optional*, defaults to `False`): also load a checkpoint whose weights are
            only pickled (`pytorch_model.bin`). Unpickling a file can run code: pass `True` only for files you trust,
            and prefer re-saving them as safetensors.
        hub_kwargs: `revision`, `token`, `cache_dir`, ... for Hub repos.
    """
    from transformers import AutoModelForImageTextToText

    import openmind_hf  # noqa: F401  (registers the OpenMind classes with the Auto classes)

    if is_quanto_checkpoint(path, **hub_kwargs):
        return load_quantized(path, device=device, dtype=dtype, **hub_kwargs)  # safetensors only, by construction
    wanted = as_torch_dtype(dtype)
    saved = _saved_config(path, **hub_kwargs)  # read once: for a Hub id each lookup may be a request
    quant_method = (saved.get("quantization_config") or {}).get("quant_method")
    # torchao tensor subclasses keep their scales' dtype through from_pretrained(dtype=...), but convert with .to().
    load_dtype = "auto" if wanted is None or quant_method == "torchao" else wanted
    kwargs = {"device_map": device} if device else {}  # bnb weights cannot be `.to()`-moved after loading
    kwargs.update(_pickle_policy(saved, allow_pickled_weights))
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=load_dtype, **kwargs, **hub_kwargs)
    if quant_method == "torchao" and wanted is not None and model.dtype != wanted:
        model = model.to(wanted)
    return model.eval()


def _saved_config(path, **hub_kwargs) -> dict:
    config_file = resolve_file(str(path), "config.json", **hub_kwargs)
    return json.loads(Path(config_file).read_text()) if config_file is not None else {}


def _pickle_policy(saved_config: dict, allow_pickled_weights: bool) -> dict:
    """`from_pretrained` kwargs for the weights format: OpenMind's own `from_pretrained` takes the opt-in (and
    explains a refusal); other architectures (e.g. a LLaVA under evaluation) get transformers' `use_safetensors`."""
    if saved_config.get("model_type") == "openmind":
        return {"allow_pickled_weights": allow_pickled_weights}
    return {} if allow_pickled_weights else {"use_safetensors": True}


__all__ = [
    "QUANTO_MAP_FILE",
    "QUANTO_WEIGHTS_FILE",
    "as_torch_dtype",
    "is_quanto_checkpoint",
    "load_model_for_inference",
    "load_quantized",
    "load_quantized_from_pretrained",
    "resolve_file",
]
