#!/usr/bin/env python
"""Download a public dataset and convert it to OpenMind's JSONL formats (same as `openmind data download`).

python scripts/download_datasets.py --dataset gsm8k --output data/gsm8k
python scripts/download_datasets.py --dataset coco-captions --input raw/coco --output data/coco  # offline
"""

import argparse
import sys

from openmind_hf.data.commands import add_download_arguments, run_download

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_download_arguments(parser)
    sys.exit(run_download(parser.parse_args()))
