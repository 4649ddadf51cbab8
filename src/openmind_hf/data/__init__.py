"""The data path: record formats, loaders, media decoding, the bad-data policy, synthetic and public datasets.

    from openmind_hf.data import OpenMindDataset, SkipReport
    dataset = OpenMindDataset("data/demo/instruct_train.jsonl", on_error="skip", run_dir="outputs/run")

The torch datasets are imported on first use, so `import openmind_hf.data` stays cheap.
"""

from .errors import DataError
from .formats import messages_with_media, normalize_record
from .loading import RecordFilter, iter_records, iter_samples
from .media import decode_sample_media, load_audio, load_image, load_video_frames
from .policy import SkipReport
from .synthetic import SYNTHETIC_VOCABULARY, write_faulty_dataset, write_synthetic_dataset

_LAZY = {
    "OpenMindDataset": "dataset",
    "OpenMindIterableDataset": "dataset",
    "PreferenceDataset": "preference",
    "normalize_preference_record": "preference",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SYNTHETIC_VOCABULARY",
    "DataError",
    "OpenMindDataset",
    "OpenMindIterableDataset",
    "PreferenceDataset",
    "RecordFilter",
    "SkipReport",
    "decode_sample_media",
    "iter_records",
    "iter_samples",
    "load_audio",
    "load_image",
    "load_video_frames",
    "messages_with_media",
    "normalize_preference_record",
    "normalize_record",
    "write_faulty_dataset",
    "write_synthetic_dataset",
]
