"""The private transformers / TRL methods OpenMind's trainers hook (all in `training/trl_internals.py`) still have the
signatures the hooks were written against, the installed versions are the tested ones, and no private upstream
method is overridden outside that module."""

from __future__ import annotations

import importlib
import inspect

import pytest

from openmind_hf.training import trainers, trl_internals


def _resolve(module: str, qualname: str):
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def test_installed_versions_are_the_tested_ones():
    untested = trl_internals.untested_versions()
    assert not untested, (
        f"Installed {', '.join(untested)}: training/trl_internals.py overrides private methods of these packages. "
        "Run tests/test_training_*.py, update the hooks and UPSTREAM_SIGNATURES, then widen TESTED_VERSIONS and the "
        "bounds in pyproject.toml."
    )


@pytest.mark.parametrize(
    ("module", "qualname"), sorted(trl_internals.UPSTREAM_SIGNATURES), ids=lambda v: v if "." in v else None
)
def test_hooked_upstream_signature_is_unchanged(module, qualname):
    expected = trl_internals.UPSTREAM_SIGNATURES[(module, qualname)]
    try:
        target = _resolve(module, qualname)
    except AttributeError:
        pytest.fail(f"{module}.{qualname} no longer exists; training/trl_internals.py hooks it. Port the hook.")
    found = tuple(inspect.signature(target).parameters)
    assert found == expected, (
        f"{module}.{qualname} changed its signature: expected parameters {expected}, found {found}. "
        "training/trl_internals.py overrides or calls it; check the hook against the new upstream code, then update "
        "UPSTREAM_SIGNATURES."
    )


def _private_overrides(cls, upstream: list[type]) -> set[str]:
    """`_name` methods `cls` itself defines that one of the `upstream` classes defines too."""
    return {
        name
        for name, value in vars(cls).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
        and any(name in vars(base) for base in upstream)
    }  # fmt: skip


@pytest.mark.parametrize(
    "trainer_cls",
    [
        trainers.OpenMindSFTTrainer,
        trainers.OpenMindDPOTrainer,
        trainers.OpenMindRewardTrainer,
        trainers.OpenMindGRPOTrainer,
    ],  # fmt: skip
    ids=lambda c: c.__name__,
)
def test_private_overrides_live_only_in_trl_internals(trainer_cls):
    upstream = [b for b in trainer_cls.__mro__ if b.__module__.split(".")[0] in ("transformers", "trl")]
    hooked = {qualname.split(".")[-1] for _, qualname in trl_internals.UPSTREAM_SIGNATURES}
    in_adapter = set()
    for cls in trainer_cls.__mro__:
        if not cls.__module__.startswith("openmind_hf"):
            continue
        overrides = _private_overrides(cls, upstream)
        if cls.__module__ != trl_internals.__name__:
            assert not overrides, (
                f"{cls.__name__} overrides private upstream methods {overrides}: move them to trl_internals.py"
            )
        in_adapter |= overrides
    assert {"_save_checkpoint", "_load_from_checkpoint"} <= in_adapter  # the check sees the hooks it should
    assert in_adapter <= hooked, f"{in_adapter - hooked} are hooked but missing from UPSTREAM_SIGNATURES"
