"""The collator on the tiny preset: assistant-only labels, exact packing, the length policy, fault injection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from openmind_hf.data.dataset import OpenMindDataset, RecordCollator
from openmind_hf.data.errors import DataError
from openmind_hf.data.synthetic import write_faulty_dataset, write_synthetic_dataset
from openmind_hf.processing.collator import IGNORE_INDEX, OpenMindCollator
from openmind_hf.processing.errors import ProcessingError


@pytest.fixture(scope="module")
def tiny():
    from openmind_hf import build_tiny_preset

    model, processor = build_tiny_preset(seed=0)
    return model.float().eval(), processor


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, seed=1, num_train=16, num_test=0)
    return root


@pytest.fixture(scope="module")
def samples(synthetic):
    dataset = OpenMindDataset(synthetic / "instruct_train.jsonl")
    picked = [dataset[i] for i in range(len(dataset))]
    kinds = {("image" if s["images"] else "audio", bool(s["messages"][-1].get("reasoning_content"))) for s in picked}
    assert {("image", False), ("audio", False)} <= kinds and any(r for _, r in kinds)  # the mix the tests rely on
    return picked[:8]


def _labelled_text(processor, batch, row=0) -> str:
    ids = batch["input_ids"][row][batch["labels"][row] != IGNORE_INDEX]
    return processor.tokenizer.decode(ids)


def test_labels_cover_only_the_assistant_answer(tiny, samples, synthetic):
    _, processor = tiny
    collator = OpenMindCollator(processor)
    for sample in samples:
        batch = collator([sample])
        answer = sample["messages"][-1]["content"][0]["text"]
        reasoning = sample["messages"][-1].get("reasoning_content")
        expected = f"<think>\n{reasoning}\n</think>\n\n{answer}<|im_end|>" if reasoning else f"{answer}<|im_end|>"
        assert _labelled_text(processor, batch) == expected
    pretrain = OpenMindDataset(synthetic / "pretrain_train.jsonl")[0]
    batch = collator([pretrain])
    assert _labelled_text(processor, batch) == pretrain["messages"][1]["content"][0]["text"] + "<|im_end|>"


def test_raw_hf_messages_records_with_paths_are_accepted(tiny, synthetic):
    _, processor = tiny
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which shape is shown?"}]},
            {"role": "assistant", "content": "circle"},
        ],
        "images": [str(next((synthetic / "images").glob("*.png")))],
    }
    batch = RecordCollator(processor)([record])
    assert batch["pixel_values"].shape[0] == 1
    assert _labelled_text(processor, batch) == "circle<|im_end|>"
    # processing's collator takes canonical, decoded samples only, and says where raw records go
    with pytest.raises(ProcessingError, match="not a canonical sample.*RecordCollator"):
        OpenMindCollator(processor)([record])
    with pytest.raises(DataError, match=r"sample .record:None.\): 1 <image> placeholder\(s\) but 2"):  # data's own
        RecordCollator(processor)([{**record, "images": record["images"] * 2}])


def test_undecoded_media_are_refused_by_name(tiny, samples, synthetic):
    _, processor = tiny
    image_sample = next(s for s in samples if s["images"])
    with_path = {**image_sample, "images": [str(next((synthetic / "images").glob("*.png")))]}
    with pytest.raises(ProcessingError, match=f"sample '{image_sample['id']}'.*undecoded str"):
        OpenMindCollator(processor)([with_path])
    decoded = OpenMindCollator(processor)([RecordCollator(processor).prepare(with_path)])
    assert decoded["pixel_values"].shape[0] == 1


def _loss(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).loss


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_padded_loss(tiny, samples, attn):
    model, processor = tiny
    model.set_attn_implementation(attn)
    padded = OpenMindCollator(processor)(samples)
    one_row = OpenMindCollator(processor, packing=True)(samples)
    rows = OpenMindCollator(processor, packing=True, max_length=160)(samples)  # several rows, padded at the end
    assert one_row["input_ids"].shape[0] == 1 and "attention_mask" not in one_row
    assert one_row["use_cache"] is False  # with a KV cache transformers would not build per-sample masks
    assert rows["input_ids"].shape[0] > 1
    reference = _loss(model, padded)
    assert torch.allclose(_loss(model, one_row), reference, atol=1e-5, rtol=0)
    assert torch.allclose(_loss(model, rows), reference, atol=1e-5, rtol=0)
    model.set_attn_implementation("sdpa")


def _sample_logits(model, batch, sample_index, collator_items) -> torch.Tensor:
    with torch.no_grad():
        logits = model(**batch).logits[0]
    start = sum(n for n in collator_items[:sample_index])
    return logits[start : start + collator_items[sample_index]]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_attention_crosses_packed_samples(tiny, samples, attn):
    model, processor = tiny
    model.set_attn_implementation(attn)
    collator = OpenMindCollator(processor, packing=True)
    image_index = next(i for i, s in enumerate(samples) if s["images"])
    perturbed = [dict(s) for s in samples]
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    perturbed[image_index]["images"] = [Image.fromarray(noise)]
    lengths = [collator.encode(s)["input_ids"].numel() for s in samples]
    base, changed = collator(samples), collator(perturbed)
    for i in range(len(samples)):
        a = _sample_logits(model, base, i, lengths)
        b = _sample_logits(model, changed, i, lengths)
        if i == image_index:
            assert not torch.allclose(a, b, atol=1e-4)  # the perturbation is visible where it should be
        else:
            assert torch.allclose(a, b, atol=1e-6, rtol=0), f"sample {i} saw sample {image_index}"
    model.set_attn_implementation("sdpa")


def test_length_policy_never_cuts_placeholders(tiny, samples):
    model, processor = tiny
    lengths = [OpenMindCollator(processor).encode(s)["input_ids"].numel() for s in samples]
    limit = sorted(lengths)[len(lengths) // 2]
    too_long = sum(n > limit for n in lengths)
    assert 0 < too_long < len(samples)

    from openmind_hf.data.policy import SkipReport

    report = SkipReport()
    drop = OpenMindCollator(processor, max_length=limit, truncation_policy="drop", skip_report=report)
    batch = drop(samples)
    assert batch["input_ids"].shape[0] == len(samples) - too_long and batch["input_ids"].shape[1] <= limit
    assert drop.stats["dropped_too_long"] == too_long == report.count
    keep = OpenMindCollator(processor, max_length=limit, truncation_policy="keep")
    kept = keep(samples)
    assert kept["input_ids"].shape == (len(samples), max(lengths)) and keep.stats["kept_too_long"] == too_long
    for b in (
        batch,
        kept,
        OpenMindCollator(processor, max_length=limit, packing=True, truncation_policy="keep")(samples),
    ):
        # every run of placeholders is whole: token counts match the features, so the forward accepts the batch
        n_images = int((b["input_ids"] == processor.image_token_id).sum())
        assert n_images == b.get("pixel_values", torch.empty(0)).shape[0] * processor.num_image_tokens
        assert torch.isfinite(_loss(model, b))


def test_video_samples_collate_and_run(tiny, tmp_path):
    import av

    model, processor = tiny
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 30 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    record = {
        "conversations": [{"from": "user", "value": "<video>\nHow many?"}, {"from": "gpt", "value": "2"}],
        "video": str(path),
    }
    batch = RecordCollator(processor, packing=True)([record, record])
    assert batch["video_num_frames"].tolist() == [processor.video_max_frames] * 2
    assert torch.isfinite(_loss(model, batch))


def test_fault_injection_run_skips_exactly_the_bad_records_and_trains(tmp_path):
    from openmind_hf import build_tiny_preset
    from openmind_hf.data.policy import SkipReport

    model, processor = build_tiny_preset(seed=0)
    faulty = write_faulty_dataset(tmp_path / "data", num_good=12, seed=5)
    run_dir = tmp_path / "run"
    dataset = OpenMindDataset(faulty["path"], on_error="skip", run_dir=run_dir)
    collator = OpenMindCollator(processor, packing=True, on_error="skip", skip_report=SkipReport(run_dir))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collator, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert len(losses) == -(-len(dataset) // 4) and all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    report = dataset.skip_report.collect()
    assert report.count == faulty["num_bad"]
    assert sorted(report.ids) == sorted(faulty["bad_ids"])
    assert f"skipped {faulty['num_bad']} record(s)" in report.summary()


def test_a_sample_the_processor_rejects_is_named_or_skipped_alone(tiny, samples):
    from openmind_hf.data.policy import SkipReport

    _, processor = tiny
    audio_index = next(i for i, s in enumerate(samples) if s["audios"])
    broken = [dict(s) for s in samples]
    broken[audio_index]["audios"] = [np.full(16_000, np.nan, np.float32)]
    bad_id = broken[audio_index]["id"]
    with pytest.raises(ProcessingError, match=f"sample '{bad_id}'.*NaN"):
        OpenMindCollator(processor)(broken)
    report = SkipReport()
    collator = OpenMindCollator(processor, on_error="skip", skip_report=report)
    batch = collator(broken)
    assert batch["input_ids"].shape[0] == len(samples) - 1
    assert report.ids == [bad_id] and collator.stats["rejected"] == 1
    good = OpenMindCollator(processor)([s for i, s in enumerate(samples) if i != audio_index])
    assert torch.equal(batch["input_ids"], good["input_ids"]) and torch.equal(batch["labels"], good["labels"])
