"""Safetensors only, as promised (issue 15 item 6): a checkpoint whose weights are only pickled
(`pytorch_model.bin`) is refused with a message naming the file, the reason and the way out, on every loading path
(`from_pretrained`, `load_model_for_inference`, `openmind serve`, `openmind quantize`), unless the caller opts in."""

from __future__ import annotations

import shutil

import pytest
import torch

import openmind_hf  # noqa: F401  (registers the Auto classes)
from openmind_hf.building import load_model_for_inference
from openmind_hf.cli import main


@pytest.fixture(scope="module")
def pickled_checkpoint(tmp_path_factory, tiny_checkpoint, tiny_model_and_processor):
    """The tiny preset with its weights as `pytorch_model.bin` (torch.save of the state dict) and no safetensors."""
    path = tmp_path_factory.mktemp("pickled")
    shutil.copytree(tiny_checkpoint, path, dirs_exist_ok=True)
    model, _ = tiny_model_and_processor
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    for weights in path.glob("*.safetensors*"):
        weights.unlink()
    return path


def _assert_refusal(err: BaseException, path) -> None:
    message = str(err)
    assert str(path / "pytorch_model.bin") in message  # which file
    assert "pickled" in message and "run arbitrary code" in message  # why
    assert "allow_pickled_weights=True" in message and "safetensors" in message  # what to do


def test_from_pretrained_refuses_pickled_weights(pickled_checkpoint):
    from transformers import AutoModelForImageTextToText, AutoModelForSequenceClassification

    for auto_class in (AutoModelForImageTextToText, AutoModelForSequenceClassification):
        with pytest.raises(ValueError) as err:
            auto_class.from_pretrained(pickled_checkpoint)
        _assert_refusal(err.value, pickled_checkpoint)
    with pytest.raises(ValueError, match="use_safetensors=False loads pickled weights"):
        AutoModelForImageTextToText.from_pretrained(pickled_checkpoint, use_safetensors=False)


def test_load_model_for_inference_refuses_then_opts_in(pickled_checkpoint, tiny_model_and_processor):
    with pytest.raises(ValueError) as err:
        load_model_for_inference(pickled_checkpoint)
    _assert_refusal(err.value, pickled_checkpoint)

    model = load_model_for_inference(pickled_checkpoint, allow_pickled_weights=True)
    original = tiny_model_and_processor[0].state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(original)
    for name, tensor in original.items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0, msg=name)


def test_safetensors_checkpoint_still_loads_by_default(tiny_checkpoint):
    model = load_model_for_inference(tiny_checkpoint)
    assert not model.training


def test_serve_command_refuses_pickled_weights(pickled_checkpoint, capsys):
    # The single-worker path loads before uvicorn starts, so a refused checkpoint never opens a port.
    code = main(["serve", "--model", str(pickled_checkpoint), "--no-api-key", "--port", "1"])
    assert code == 1
    _assert_refusal(capsys.readouterr().err, pickled_checkpoint)


def test_quantize_command_refuses_then_opts_in(pickled_checkpoint, tmp_path, capsys):
    pytest.importorskip("torchao", reason="int8 quantization needs torchao (pip install 'openmind-hf[quant]')")
    command = ["quantize", "--model", str(pickled_checkpoint), "--bits", "8", "--output", str(tmp_path / "int8"),
               "--probe-tokens", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as err:
        main(command)
    _assert_refusal(err.value.code, pickled_checkpoint)

    assert main([*command, "--allow-pickled-weights"]) == 0
    written = {p.name for p in (tmp_path / "int8").iterdir()}
    assert not any(name.endswith(".bin") for name in written), written  # the output is safetensors either way
    assert load_model_for_inference(tmp_path / "int8") is not None


def test_eval_command_refuses_then_opts_in(pickled_checkpoint, tmp_path):
    data = tmp_path / "no-tasks"  # no task files: every task is skipped, so only the loading is exercised
    data.mkdir()
    command = ["eval", "--model", str(pickled_checkpoint), "--data", str(data), "--device", "cpu",
               "--output", str(tmp_path / "report.json")]  # fmt: skip
    with pytest.raises(SystemExit) as err:
        main(command)
    _assert_refusal(err.value.code, pickled_checkpoint)

    assert main([*command, "--allow-pickled-weights"]) == 0
    assert (tmp_path / "report.json").is_file()
