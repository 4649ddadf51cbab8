"""`openmind --help` and every subcommand's `--help` start fast and quiet, and `import openmind_hf` still registers the
Auto classes.

Not timed (timings depend on the machine): what makes them slow is importing torch / transformers, so the tests
check that those are not imported, in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from openmind_hf.cli import SUBCOMMANDS

HEAVY = ("torch", "transformers", "torchao", "trl")  # seconds each; numpy (0.2 s) is allowed
# What a warning or a dependency's import noise looks like on stderr.
NOISE = ("Warning", "warning", "WARNING", "Failed to load", "W1", "Traceback")


def _python(code: str, *, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}  # show warnings a user would see
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def _assert_quiet(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what}: {result.stderr}"
    assert not any(n in result.stderr for n in NOISE), f"{what} printed on stderr:\n{result.stderr}"


@pytest.mark.parametrize("argv", [[]] + [[name] for name in SUBCOMMANDS], ids=lambda a: " ".join(a) or "openmind")
def test_help_imports_no_torch_and_prints_no_warnings(argv):
    code = (
        "import json, sys\n"
        "from openmind_hf.cli import main\n"
        f"try:\n    main({argv + ['--help']!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = _python(code)
    _assert_quiet(result, f"openmind {' '.join(argv)} --help")
    assert "usage: openmind" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], "heavy modules imported for --help"


def test_the_console_script_help_is_quiet():
    script = os.path.join(os.path.dirname(sys.executable), "openmind")
    if not os.path.exists(script):
        pytest.skip("the `openmind` console script is not installed in this environment (pip install -e .)")
    result = subprocess.run([script, "quantize", "--help"], capture_output=True, text=True, timeout=240)
    _assert_quiet(result, "openmind quantize --help")
    assert "--keep-towers-fp" in result.stdout


@pytest.mark.parametrize(
    "first_import",
    [
        "import openmind_hf\nfrom transformers import AutoModelForImageTextToText",
        "import transformers\nimport openmind_hf",
        "from openmind_hf.modeling.modeling_openmind import OpenMindForConditionalGeneration",
    ],
    ids=["openmind-then-transformers", "transformers-then-openmind", "modeling-module-first"],
)
def test_importing_openmind_registers_the_auto_classes_quietly(first_import, tmp_path):
    """Whichever comes first, the Auto classes know OpenMind (also for `trust_remote_code` export: the code files
    and `auto_map` are saved), and torchao's import noise (CUDA-only .so files, torch _pytree deprecations) does not
    reach the user."""
    code = (
        f"{first_import}\n"
        "from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor\n"
        "config = AutoConfig.for_model('openmind')\n"
        "assert type(config).__name__ == 'OpenMindConfig', type(config)\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING\n"
        "assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)].__name__ == 'OpenMindForConditionalGeneration'\n"
        "import openmind_hf\n"
        "assert openmind_hf.OpenMindConfig is type(config)\n"
        f"config.save_pretrained({str(tmp_path)!r})\n"
    )
    _assert_quiet(_python(code), first_import.replace("\n", "; "))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoConfig"] == "configuration_openmind.OpenMindConfig"
    assert (tmp_path / "configuration_openmind.py").is_file()


def test_choices_spelled_out_for_help_match_their_modules():
    """`--help` must not import the modules that own these lists, so the command modules repeat them."""
    from openmind_hf.building import commands as preset_commands
    from openmind_hf.building import presets
    from openmind_hf.export import quantize, quantize_commands
    from openmind_hf.training import arguments
    from openmind_hf.training import commands as train_commands

    assert preset_commands.PRESETS == presets.PRESETS
    assert train_commands.STAGES == arguments.STAGES
    assert quantize.BACKENDS is quantize_commands.BACKENDS


def test_a_real_command_prints_no_dependency_noise(tmp_path):
    """`openmind preset tiny` imports transformers (torchao with it) and saves (accelerate imports deepspeed there):
    none of their import-time warnings reach the user."""
    code = f"from openmind_hf.cli import main\nmain(['preset', 'tiny', '--output', {str(tmp_path / 'tiny')!r}])\n"
    result = _python(code)
    _assert_quiet(result, "openmind preset tiny")
    assert "Setting accelerator" not in result.stderr and "Saved the 'tiny' preset" in result.stdout


def test_torchao_is_imported_only_when_quantizing(tmp_path):
    """transformers imports torchao (0.7 s, CUDA-kernel noise) whenever it is installed; through openmind_hf it loads
    only for a torchao checkpoint: building, loading and running a plain model leave it out, and quantizing to
    int8, saving (transformers' torchao save path) and loading the int8 checkpoint back still work."""
    pytest.importorskip("torchao", reason="needs torchao (pip install 'openmind-hf[quant]')")
    plain, int8 = tmp_path / "tiny", tmp_path / "int8"
    code = (
        "import sys, torch\n"
        "from openmind_hf.cli import main\n"
        f"main(['preset', 'tiny', '--output', {str(plain)!r}])\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline\n"
        f"model = AutoModelForImageTextToText.from_pretrained({str(plain)!r})\n"
        f"pipe = pipeline('image-text-to-text', model=model, processor=AutoProcessor.from_pretrained({str(plain)!r}))\n"
        "pipe(text=[{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}], max_new_tokens=2)\n"
        "print('plain', 'torchao' in sys.modules)\n"
        "from openmind_hf.export.quantize import quantize_checkpoint\n"
        f"quantize_checkpoint({str(plain)!r}, {str(int8)!r}, bits=8, probe_new_tokens=2)\n"
        "print('quantized', 'torchao' in sys.modules)\n"
        f"reloaded = AutoModelForImageTextToText.from_pretrained({str(int8)!r})\n"
        "print('int8', type(reloaded.get_submodule('model.language_model.layers.0.self_attn.q_proj').weight).__name__)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "plain False" in lines, result.stdout
    assert "quantized True" in lines and "int8 Int8Tensor" in lines, result.stdout
    assert "Failed to load" not in result.stderr


def test_the_torchao_quantizer_imports_only_the_name_openmind_defers():
    """`_registration` runs transformers' torchao quantizer with torchao reported absent and supplies the one name its
    module-level `if is_torchao_available():` block imports; a transformers version importing more there would leave
    a name undefined: this names it."""
    import ast
    import importlib.util

    from openmind_hf._registration import _TORCHAO_QUANTIZER

    source = open(importlib.util.find_spec(_TORCHAO_QUANTIZER).origin).read()
    imported = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and "is_torchao_available" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    imported.update(alias.asname or alias.name for alias in inner.names)
    assert imported == {"flatten_tensor_state_dict"}, f"{_TORCHAO_QUANTIZER} now imports {sorted(imported)}"
