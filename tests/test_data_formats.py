"""Record formats -> the one canonical sample, and the errors for records that cannot be used."""

from __future__ import annotations

import pytest

from openmind_hf.data.errors import DataError
from openmind_hf.data.formats import messages_with_media, normalize_record, split_placeholders


def test_pretraining_record_becomes_media_user_turn_and_caption_assistant_turn():
    record = {"text": "a red circle", "image": "a.png", "metadata": {"source": "x", "quality_score": 0.9}}
    sample = normalize_record(record, source="pre.jsonl", line=3)
    assert sample["kind"] == "pretrain"
    assert sample["id"] == "pre.jsonl:3"
    assert sample["messages"] == [
        {"role": "user", "content": [{"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a red circle"}]},
    ]
    assert sample["images"] == ["a.png"] and sample["audios"] == [] and sample["videos"] == []
    assert sample["metadata"] == {"source": "x", "quality_score": 0.9}


def test_pretraining_with_image_list_audio_and_video_orders_blocks_by_kind():
    record = {"id": 7, "text": "t", "images": ["a.png", "b.png"], "audio": "c.wav", "video": "d.mp4"}
    sample = normalize_record(record)
    assert sample["id"] == "7"
    assert [b["type"] for b in sample["messages"][0]["content"]] == ["image", "image", "audio", "video"]
    assert sample["images"] == ["a.png", "b.png"] and sample["audios"] == ["c.wav"] and sample["videos"] == ["d.mp4"]


def test_llava_conversation_maps_roles_and_placeholders_in_order():
    record = {
        "id": "s1",
        "image": ["a.png", "b.png"],
        "audios": ["c.wav"],
        "model": "",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "<image>\nCompare with <image> and <audio>."},
            {"from": "gpt", "value": "Same."},
        ],
    }
    sample = normalize_record(record)
    assert sample["kind"] == "instruct"
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant"]
    assert sample["messages"][1]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "Compare with"},
        {"type": "image"},
        {"type": "text", "text": "and"},
        {"type": "audio"},
        {"type": "text", "text": "."},
    ]
    assert sample["metadata"] == {"model": ""}  # unknown top-level fields are kept for evaluation


def test_inline_think_moves_to_reasoning_content_and_explicit_key_wins():
    record = {
        "conversations": [
            {"from": "user", "value": "2+2?"},
            {"from": "gpt", "value": "<think>\n2 plus 2\n</think>\n\n4"},
        ]
    }
    assistant = normalize_record(record)["messages"][1]
    assert assistant["reasoning_content"] == "2 plus 2"
    assert assistant["content"] == [{"type": "text", "text": "4"}]
    record["conversations"][1] = {"from": "assistant", "value": "4", "reasoning_content": "trace"}
    assert normalize_record(record)["messages"][1]["reasoning_content"] == "trace"


def test_hf_messages_with_images_column_and_inline_payloads():
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
            {"role": "assistant", "content": "A cat.", "reasoning_content": "fur"},
        ],
        "images": ["cat.png"],
    }
    sample = normalize_record(record)
    assert sample["images"] == ["cat.png"]
    assert sample["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "A cat."}],
        "reasoning_content": "fur",
    }
    inline = {
        "messages": [
            {"role": "user", "content": [{"type": "audio", "path": "x.wav"}, {"type": "image", "url": "y.png"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
    }
    sample = normalize_record(inline)
    assert sample["audios"] == ["x.wav"] and sample["images"] == ["y.png"]
    assert sample["messages"][0]["content"] == [{"type": "audio"}, {"type": "image"}]


def test_messages_with_media_binds_items_to_blocks():
    sample = normalize_record(
        {
            "conversations": [{"from": "user", "value": "<image><image>"}, {"from": "gpt", "value": "x"}],
            "images": ["a", "b"],
        }
    )
    blocks = messages_with_media(sample)[0]["content"]
    assert blocks == [{"type": "image", "image": "a"}, {"type": "image", "image": "b"}]
    assert sample["messages"][0]["content"] == [{"type": "image"}, {"type": "image"}]  # the sample is untouched


def test_split_placeholders_keeps_plain_text_verbatim():
    assert split_placeholders("  hello  ") == [{"type": "text", "text": "  hello  "}]
    assert split_placeholders("") == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"conversations": [], "image": "a.png"}, "conversation is empty"),
        ({"conversations": [{"from": "robot", "value": "hi"}]}, "unknown role 'robot'"),
        ({"conversations": [{"from": "user", "value": "hi"}]}, "no assistant turn"),
        (
            {
                "conversations": [{"from": "user", "value": "<image> <image>"}, {"from": "gpt", "value": "x"}],
                "image": "a.png",
            },
            "2 <image> placeholder(s) but 1 image(s)",
        ),
        (
            {"conversations": [{"from": "user", "value": "hi"}, {"from": "gpt", "value": "x"}], "audio": "a.wav"},
            "0 <audio> placeholder(s) but 1 audio(s)",
        ),
        (
            {"conversations": [{"from": "user", "value": "<video>"}, {"from": "gpt", "value": "x"}]},
            "1 <video> placeholder(s) but 0 video(s)",
        ),
        (
            {"conversations": [{"from": "user", "value": "q"}, {"from": "gpt", "value": "see <image>"}], "image": "a"},
            "assistant) contains a media placeholder",
        ),
        ({"text": "", "image": "a.png"}, "'text' is empty"),
        ({"text": "<image> cat", "image": "a.png"}, "pretraining 'text' contains a media placeholder"),
        ({"caption": "x"}, "none of 'text', 'conversations', 'messages'"),
        ({"text": "x", "image": ""}, "image #1 is empty"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "image": "a"}]},
                    {"role": "assistant", "content": "x"},
                ],
                "images": ["b"],
            },
            "both inside the content blocks",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "unknown role 'tool'"),
        ({"conversations": [{"from": "user", "value": 3}, {"from": "gpt", "value": "x"}]}, "int value, not text"),
    ],
)
def test_bad_records_raise_data_error_naming_file_line_and_sample(record, expected):
    record = {"id": "bad-1", **record}
    with pytest.raises(DataError) as info:
        normalize_record(record, source="data/train.jsonl", line=12)
    message = str(info.value)
    assert expected in message
    assert message.startswith("data/train.jsonl:12 (sample 'bad-1'): ")
    assert info.value.sample_id == "bad-1" and info.value.line == 12


def test_data_error_pickles_with_its_location():
    import pickle

    err = DataError("broken", source="f.jsonl", line=2, sample_id="x", hint="fix it")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "f.jsonl:2 (sample 'x'): broken. fix it"
