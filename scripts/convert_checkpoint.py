"""Convert a transformers LLaVA checkpoint to OpenMind (same as `openmind convert --from-llava SRC --output DST`)."""

import sys

from openmind_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
