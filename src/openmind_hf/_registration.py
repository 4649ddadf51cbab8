"""Registering the OpenMind classes with the transformers Auto classes, without paying for transformers up front.

`import openmind_hf` must register the classes (so `AutoModelForImageTextToText.from_pretrained(dir)` works right
after it) but must not import torch and transformers itself: that costs seconds and `openmind --help` imports the
package too. So registration runs at the first moment it is both needed and cheap:

- at `import openmind_hf` when transformers is already imported;
- otherwise right after transformers (or any `openmind_hf` module, e.g. `openmind_hf.modeling.modeling_openmind`)
  finishes importing, once no `openmind_hf` module is half-initialised (registration imports them);
- on first access to a public name of `openmind_hf` (`openmind_hf.OpenMindConfig`).

Two dependencies log warnings while they import, on every command, about nothing the user did: torchao (which
transformers imports whenever it is installed) prints "Failed to load ... .so" for its CUDA-only kernels and torch
`_pytree` Enum deprecations; deepspeed (which accelerate imports in `save_pretrained` when it is installed) prints
"Setting accelerator to CPU". Their loggers are quieted while those packages' modules execute, and only then.

transformers' torchao quantizer module imports torchao at module level whenever it is installed (0.7 s and the noise
above, on every model load). It runs here with torchao reported absent, then gets the one torchao name it imports
(`flatten_tensor_state_dict`, used when saving a torchao model) as a wrapper that imports it on first call: torchao
loads when a torchao checkpoint is quantized, saved or loaded, and not otherwise (tests/test_cli_startup.py).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import sys

# package imported -> loggers that warn while it imports on a CPU machine (see the module docstring).
_NOISY_IMPORTS = {"torchao": ("torchao", "torch.utils._pytree"), "deepspeed": ("DeepSpeed",)}
_NOISY_IMPORT_LOGGERS = tuple(name for names in _NOISY_IMPORTS.values() for name in names)
_TORCHAO_QUANTIZER = "transformers.quantizers.quantizer_torchao"
_registered = False


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_ERRORS_ONLY = _ErrorsOnly()


@contextlib.contextmanager
def quiet_dependency_imports():
    """Lets only errors through the loggers in `_NOISY_IMPORT_LOGGERS` for the duration of the block. A level covers
    their child loggers; a filter covers a logger the package re-levels while importing (deepspeed does)."""
    loggers = [logging.getLogger(name) for name in _NOISY_IMPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
        logger.addFilter(_ERRORS_ONLY)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeFilter(_ERRORS_ONLY)
            if logger.level == logging.ERROR:  # unless the package set its own level meanwhile
                logger.setLevel(level)


def register_auto_classes() -> None:
    """Registers the OpenMind config, models and processor with the Auto classes and for `trust_remote_code` export
    (`save_pretrained` then writes the code files and `auto_map`). Idempotent."""
    global _registered
    if _registered:
        return
    _registered = True  # first: the imports below come back through `_RegisterAfterImport`
    try:
        with quiet_dependency_imports():
            _register()
    except BaseException:
        _registered = False
        raise


def _register() -> None:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForImageTextToText,
        AutoModelForMultimodalLM,
        AutoModelForSequenceClassification,
        AutoProcessor,
    )

    from .modeling.configuration_openmind import OpenMindConfig
    from .modeling.modeling_openmind import (
        OpenMindForConditionalGeneration,
        OpenMindForSequenceClassification,
        OpenMindModel,
    )
    from .processing.processing_openmind import OpenMindProcessor

    AutoConfig.register("openmind", OpenMindConfig, exist_ok=True)
    AutoModel.register(OpenMindConfig, OpenMindModel, exist_ok=True)
    AutoModelForImageTextToText.register(OpenMindConfig, OpenMindForConditionalGeneration, exist_ok=True)
    AutoModelForMultimodalLM.register(OpenMindConfig, OpenMindForConditionalGeneration, exist_ok=True)
    AutoModelForSequenceClassification.register(OpenMindConfig, OpenMindForSequenceClassification, exist_ok=True)
    AutoProcessor.register(OpenMindConfig, OpenMindProcessor, exist_ok=True)

    OpenMindConfig.register_for_auto_class()
    OpenMindModel.register_for_auto_class("AutoModel")
    OpenMindForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    OpenMindForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    OpenMindProcessor.register_for_auto_class()


def _flatten_tensor_state_dict(*args, **kwargs):
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    return flatten_tensor_state_dict(*args, **kwargs)


def _exec_torchao_quantizer(run_module, module) -> None:
    """Runs transformers' torchao quantizer module without importing torchao (see the module docstring)."""
    import transformers.utils as hf_utils

    is_torchao_available = hf_utils.is_torchao_available
    hf_utils.is_torchao_available = lambda *args, **kwargs: False
    try:
        run_module(module)
    finally:
        hf_utils.is_torchao_available = is_torchao_available
    module.is_torchao_available = is_torchao_available  # its runtime checks see the real answer
    if is_torchao_available() and not hasattr(module, "flatten_tensor_state_dict"):
        module.flatten_tensor_state_dict = _flatten_tensor_state_dict


def _half_initialised_openmind_module(except_name: str) -> bool:
    # `__spec__._initializing` is what the import system itself sets while a module's code runs (importlib._bootstrap).
    for name, module in list(sys.modules.items()):
        if name.startswith("openmind_hf.") and name != except_name:
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return True
    return False


def _after_import(name: str) -> None:
    if _registered or "transformers" not in sys.modules or _half_initialised_openmind_module(name):
        return
    register_auto_classes()


_PER_MODULE_LOADERS = (
    importlib.machinery.SourceFileLoader,
    importlib.machinery.SourcelessFileLoader,
    importlib.machinery.ExtensionFileLoader,
)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the finders after it, and makes the loader of `transformers`, of `openmind_hf`
    modules and of the noisy packages' modules run [`_after_import`] (or the quiet import) around the module's code."""

    def find_spec(self, fullname, path, target=None):
        # Submodules too: transformers imports `torchao.prototype.*` after `torchao`.
        quiet = fullname.split(".")[0] in _NOISY_IMPORTS
        lazy_torchao = fullname == _TORCHAO_QUANTIZER
        if not (quiet or lazy_torchao) and (
            _registered or not (fullname == "transformers" or fullname.startswith("openmind_hf."))
        ):
            return None
        spec = self._find_with_the_others(fullname, path, target)
        loader = getattr(spec, "loader", None)
        # Only per-module file loaders (a zipimporter, say, is shared by many modules); never wrap twice.
        if not isinstance(loader, _PER_MODULE_LOADERS) or "exec_module" in vars(loader):
            return spec
        run_module = loader.exec_module

        def exec_module(module):
            if lazy_torchao:
                return _exec_torchao_quantizer(run_module, module)
            if quiet:
                with quiet_dependency_imports():
                    return run_module(module)
            run_module(module)
            _after_import(fullname)

        loader.exec_module = exec_module  # this module's own loader object: nothing else is affected
        return spec

    def _find_with_the_others(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


# Stays on `sys.meta_path` after registering, for the noisy packages and the torchao quantizer only (a string check or
# two per import).
_FINDER = _RegisterAfterImport()


def register_when_cheap() -> None:
    """Registers now if transformers is already imported, else as soon as it is (see the module docstring)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    if "transformers" in sys.modules:
        register_auto_classes()


__all__ = ["quiet_dependency_imports", "register_auto_classes", "register_when_cheap"]
