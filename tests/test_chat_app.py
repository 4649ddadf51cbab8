"""The web chat (`openmind chat`) driven for real: `gradio_client` and a headless Chromium (selenium) against the
Gradio app, which talks to `openmind serve`'s app in-process (`LocalModelServer`, the `--model` mode).

The tiny preset is first taught four answers (an image question, an audio question, and a text question with and
without a `<think>` block), so the page's answers can be checked exactly: "red", "a tone", "four" with the
reasoning "add two and two" in its own block. Set `OPENMIND_CHAT_SCREENSHOT=docs/chat.png` to also write the
browser test's screenshot there (it is always saved under the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client", reason="the `chat` extra is not installed")

from openmind_hf.chat.app import ERROR_PREFIX, THINKING_TITLE, build_chat_app, launch_chat_app  # noqa: E402
from openmind_hf.chat.local import LocalModelServer  # noqa: E402
from openmind_hf.serving import ServeSettings  # noqa: E402

QUESTION, REASONING, ANSWER = "What is two plus two?", "add two and two", "four"
IMAGE_QUESTION, AUDIO_QUESTION = "What color is this?", "What do you hear?"
RED = (200, 30, 30)
AUDIO_RATE = 16000


def red_png(path: Path) -> Path:
    Image.new("RGB", (48, 40), RED).save(path)
    return path


def tone_wav(path: Path) -> Path:
    sf.write(path, (np.sin(np.arange(AUDIO_RATE) * 0.05) * 0.3).astype(np.float32), AUDIO_RATE, format="WAV")
    return path


def lessons(tmp: Path) -> list[tuple[list, bool, str]]:
    """(user content as the chat sends it after the server decoded it, enable_thinking, answer)."""
    image = Image.open(red_png(tmp / "lesson.png")).convert("RGB")
    audio, _ = sf.read(tone_wav(tmp / "lesson.wav"), dtype="float32")
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    return [
        ([{"type": "image", "image": image}, text(IMAGE_QUESTION)], False, "red"),
        ([{"type": "audio", "audio": audio}, text(AUDIO_QUESTION)], False, "a tone"),
        ([text(QUESTION)], True, f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"),
        ([text(QUESTION)], False, ANSWER),
    ]


def teach(model, processor, tmp: Path, steps: int = 60) -> None:
    """Overfits the model on `lessons` (prompt tokens unlabelled), one example per forward (media differ)."""
    tokenizer = processor.tokenizer
    batches = []
    for content, thinking, answer in lessons(tmp):
        inputs = processor.apply_chat_template(
            [[{"role": "user", "content": content}]], add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", enable_thinking=thinking,
        )  # fmt: skip
        target = torch.tensor([tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
        inputs = {k: v for k, v in inputs.items() if v is not None}
        inputs["labels"] = torch.cat([torch.full_like(inputs["input_ids"], -100), target], dim=1)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], target], dim=1)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        batches.append(inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        losses = [model(**batch).loss for batch in batches]
        optimizer.zero_grad()
        sum(losses).backward()
        optimizer.step()
    model.eval()
    worst = max(loss.item() for loss in losses)
    assert worst < 0.05, f"the tiny model did not memorise its lessons (worst loss {worst:.3f})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """(page URL, tmp dir, model): the taught tiny model behind `LocalModelServer`, the page on a free loopback
    port."""
    from openmind_hf import build_tiny_preset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model runs ~10x slower with 2 threads per op on a shared 2-core machine
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("chat")
    model, processor = build_tiny_preset(seed=0)
    started = time.perf_counter()
    teach(model, processor, tmp)
    print(f"taught the tiny model in {time.perf_counter() - started:.1f} s")
    processor.tokenizer.padding_side = "left"
    settings = ServeSettings(model_name="openmind-tiny", max_tokens_cap=64)
    local = LocalModelServer(model, processor, settings, source="tiny preset (taught)")
    backend = local.start()
    demo = build_chat_app(backend, local.card, max_tokens_cap=64, temperature=0.0)
    _, url = launch_chat_app(demo, port=free_port(), block=False)
    yield url, tmp, model
    demo.close()
    local.stop()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(chat):
    return gradio_client.Client(chat[0], verbose=False)


def send(client, text, files=(), thinking=False, max_tokens=48, budget=0, hear=True, silence=False):
    """Submits one message; returns (every streamed output, the final chatbot messages, the status line)."""
    message = {"text": text, "files": [gradio_client.handle_file(str(f)) for f in files]}
    job = client.submit(message, thinking, budget, 0.0, max_tokens, hear, silence, api_name="/send")
    shown, _, status = job.result(timeout=120)
    return job.outputs(), shown, status


def texts(message) -> str:
    content = message["content"]
    return "".join(part.get("text") or "" for part in content) if isinstance(content, list) else str(content)


def last_turn(shown):
    """The assistant messages after the last user message: (reasoning block, answer, error) texts or None."""
    tail = []
    for message in reversed(shown):
        if message["role"] == "user":
            break
        tail.insert(0, message)
    titled = {(m.get("metadata") or {}).get("title"): texts(m) for m in tail}
    answer = titled.get(None)
    if answer is not None and answer.startswith(ERROR_PREFIX):
        return titled.get(THINKING_TITLE), None, answer.removeprefix(ERROR_PREFIX)
    return titled.get(THINKING_TITLE), answer, None


def test_image_question_streams_the_answer(client, chat):
    client.predict(api_name="/clear")
    outputs, shown, status = send(client, IMAGE_QUESTION, [red_png(chat[1] / "red.png")])
    assert status == "Done."
    reasoning, answer, error = last_turn(shown)
    assert (reasoning, answer, error) == (None, "red", None)
    assert any(m["role"] == "user" and "file" in str(m["content"]) for m in shown), "the image is shown"
    streamed = [last_turn(o[0])[1] for o in outputs if o[2] == "Generating…"]
    assert streamed[-1] and len(streamed) >= 2, f"the answer arrived in one piece, not streamed: {streamed}"


def test_audio_question(client, chat):
    client.predict(api_name="/clear")
    _, shown, status = send(client, AUDIO_QUESTION, [tone_wav(chat[1] / "tone.wav")])
    assert status == "Done."
    assert last_turn(shown) == (None, "a tone", None)


def test_thinking_arrives_in_its_own_block(client):
    client.predict(api_name="/clear")
    outputs, shown, status = send(client, QUESTION, thinking=True)
    assert status == "Done."
    reasoning, answer, error = last_turn(shown)
    assert (reasoning, answer, error) == (REASONING, ANSWER, None)
    # While the reasoning streamed, the answer was not there yet: two separate streams, not one split at the end.
    early = [last_turn(o[0]) for o in outputs if o[2] == "Generating…"]
    assert any(r and a is None for r, a, _ in early), early
    _, shown, _ = send(client, QUESTION, thinking=False)  # the same question without thinking: no block
    assert last_turn(shown)[:2] == (None, ANSWER)


def test_thinking_budget_cuts_the_reasoning(client):
    client.predict(api_name="/clear")
    _, shown, status = send(client, QUESTION, thinking=True, budget=2)
    reasoning = last_turn(shown)[0]
    assert status == "Done." and reasoning and reasoning != REASONING and REASONING.startswith(reasoning), reasoning


def test_corrupt_image_shows_an_error_and_the_next_request_works(client, chat):
    client.predict(api_name="/clear")
    bad = chat[1] / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    _, shown, status = send(client, IMAGE_QUESTION, [bad])
    _, answer, error = last_turn(shown)
    assert answer is None and "not a readable" in error and "broken.png" in error, error
    assert status.startswith("Error:")
    _, shown, status = send(client, IMAGE_QUESTION, [red_png(chat[1] / "again.png")])
    assert status == "Done." and last_turn(shown) == (None, "red", None)
    # Retry re-sends the last message and replaces its answer.
    shown, status = client.predict(False, 0, 0.0, 48, True, False, api_name="/retry")
    assert status == "Done." and last_turn(shown) == (None, "red", None)
    assert sum("again.png" in str(m["content"]) for m in shown) == 1


def test_a_crafted_request_cannot_make_the_page_read_other_files(chat, tmp_path):
    import httpx

    secret = tmp_path / "secret.png"
    red_png(secret)
    url = chat[0]
    message = {"text": "x", "files": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}]}
    for endpoint, data in (("send", [message, False, 0, 0, 8, True, False]), ("probe", [message])):
        event = httpx.post(url + f"gradio_api/call/{endpoint}", json={"data": data}).json()["event_id"]
        answer = httpx.get(url + f"gradio_api/call/{endpoint}/{event}", timeout=60).text
        assert "event: error" in answer and "not uploaded by a user" in answer, (endpoint, answer)
    assert httpx.get(url + f"gradio_api/file={secret}").status_code == 403


def red_video(path: Path, sound: bool) -> Path:
    """A 1 s, 4 fps red MP4 (PyAV), with a 440 Hz AAC tone when `sound` (the tiny model hears at most 2 s)."""
    from openmind_hf.data.synthetic import write_video

    tone = (np.sin(2 * np.pi * 440 * np.arange(AUDIO_RATE) / AUDIO_RATE) * 0.3).astype(np.float32)
    write_video(path, [np.full((32, 32, 3), RED, dtype=np.uint8)] * 4, fps=4, audio=tone if sound else None)
    return path


@pytest.fixture
def tower_calls(chat):
    """Counts forward passes of the model's vision and audio towers while a test runs."""
    model, calls, hooks = chat[2], {"vision": 0, "audio": 0}, []
    for tower in calls:

        def count(*_, tower=tower):
            calls[tower] += 1

        hooks.append(model.get_submodule(f"model.{tower}_tower").register_forward_hook(count))
    yield calls
    for hook in hooks:
        hook.remove()


def test_a_video_is_heard_when_asked(client, chat, tower_calls):
    tone, silent = red_video(chat[1] / "tone.mp4", True), red_video(chat[1] / "silent.mp4", False)

    def probe(path):  # what attaching the file does to the "hear" box: (its value, the status line)
        return client.predict({"text": "", "files": [gradio_client.handle_file(str(path))]}, api_name="/probe")

    assert probe(tone)[0] is True and probe(silent)[0] is False, "the hear box follows the file's audio stream"
    for hear, heard in ((True, 1), (False, 0)):  # each on a cleared page: one video per request
        client.predict(api_name="/clear")
        before = dict(tower_calls)
        _, shown, status = send(client, IMAGE_QUESTION, [tone], max_tokens=4, hear=hear)
        assert status == "Done.", status
        assert (tower_calls["vision"] - before["vision"], tower_calls["audio"] - before["audio"]) == (1, heard)

    client.predict(api_name="/clear")
    _, shown, status = send(client, IMAGE_QUESTION, [silent], max_tokens=4)
    _, answer, error = last_turn(shown)
    assert status.startswith("Error:") and answer is None, status
    assert "has no audio track" in error and "silent.mp4" in error and "untick" in error, error
    # the failed turn is not re-sent; with silence allowed, the silent video is heard (as silence)
    before = dict(tower_calls)
    _, shown, status = send(client, IMAGE_QUESTION, [silent], max_tokens=4, silence=True)
    assert status == "Done." and tower_calls == {"vision": before["vision"] + 1, "audio": before["audio"] + 1}


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    """Debian's headless Chromium through its own chromedriver (Selenium Manager cannot download one here).
    Host names other than 127.0.0.1 resolve to nothing, so the page cannot fetch anything from outside."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium / chromedriver not found: `make test-deps` installs Debian's chromium + chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the `chat` extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1100",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a synthetic microphone
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := condition():
                return value
        except Exception:  # the page re-renders elements while streaming; look again
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def requested_hosts(driver) -> set[str]:
    from urllib.parse import urlsplit

    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = urlsplit(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):
                hosts.add(url.hostname)
    return hosts


def test_in_a_real_browser(chat, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, tmp, _ = chat
    browser.get(url)
    box = wait_for(lambda: browser.find_element(By.ID, "chat-input"), "the page to load")
    assert "openmind-tiny" in browser.find_element(By.ID, "model-card").text
    assert "siglip_vision_model" in browser.find_element(By.ID, "model-card").text
    status = lambda: browser.find_element(By.ID, "chat-status").text  # noqa: E731
    chatbot = lambda: browser.find_element(By.ID, "chatbot")  # noqa: E731

    # 1. An image and a question: the thumbnail appears, the answer streams in.
    box.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(red_png(tmp / "browser.png")))
    wait_for(lambda: box.find_elements(By.CSS_SELECTOR, "img.thumbnail-image"), "the upload's thumbnail")
    box.find_element(By.TAG_NAME, "textarea").send_keys(IMAGE_QUESTION)
    box.find_element(By.CSS_SELECTOR, "button.submit-button").click()
    wait_for(lambda: status() == "Done.", "the streamed answer")
    bot_rows = lambda: chatbot().find_elements(By.CSS_SELECTOR, ".message-row.bot-row")  # noqa: E731
    assert [row.text.strip() for row in bot_rows()][-1].startswith("red")
    assert chatbot().find_elements(By.CSS_SELECTOR, ".user-row img"), "the uploaded image is shown in the chat"

    # 2. Record from the (fake) microphone and send: the clip is longer than the tiny model's 2 s audio window, so
    #    the server refuses it from the header and the page shows the error in the conversation.
    box.find_element(By.CSS_SELECTOR, "button.microphone-button").click()
    wait_for(lambda: box.find_element(By.CSS_SELECTOR, "button.record-button"), "the recorder").click()
    time.sleep(2.5)
    box.find_element(By.CSS_SELECTOR, "button.stop-button").click()
    wait_for(lambda: box.find_element(By.CSS_SELECTOR, "[aria-label='Attach audio']"), "the recording").click()
    wait_for(lambda: box.find_elements(By.CSS_SELECTOR, ".thumbnail-item"), "the recording's thumbnail")
    box.find_element(By.TAG_NAME, "textarea").send_keys(AUDIO_QUESTION)
    box.find_element(By.CSS_SELECTOR, "button.submit-button").click()
    wait_for(lambda: status().startswith("Error:"), "the audio-length error")
    assert "the limit is 2 s per clip" in bot_rows()[-1].text and "audio.wav" in bot_rows()[-1].text

    # 3. Clear, switch thinking on, ask: the reasoning shows in its own block, apart from the answer.
    browser.find_element(By.ID, "clear").click()
    wait_for(lambda: not bot_rows(), "the conversation to clear")
    browser.find_element(By.CSS_SELECTOR, "#thinking input[type=checkbox]").click()
    box.find_element(By.TAG_NAME, "textarea").send_keys(QUESTION)
    box.find_element(By.CSS_SELECTOR, "button.submit-button").click()
    wait_for(lambda: status() == "Done.", "the answer with thinking")
    block = wait_for(
        lambda: chatbot().find_element(By.XPATH, f".//*[contains(text(), '{THINKING_TITLE}')]"), "the reasoning block"
    )
    if REASONING not in chatbot().text:  # collapsed: open it
        block.click()
        wait_for(lambda: REASONING in chatbot().text, "the reasoning text")
    messages = [m.text for m in chatbot().find_elements(By.CSS_SELECTOR, ".bot-row .message")]
    assert any(REASONING in m and ANSWER not in m.replace(THINKING_TITLE, "") for m in messages), messages
    assert any(m.strip() == ANSWER for m in messages), f"the answer is not in a message of its own: {messages}"

    shot = tmp_path / "chat.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if target := os.environ.get("OPENMIND_CHAT_SCREENSHOT"):
        shutil.copyfile(shot, target)
    print(f"screenshot: {shot}")

    # 4. Attach a silent video: the "hear" box unticks itself. Tick it again and send: the server's error is shown.
    hear = lambda: browser.find_element(By.CSS_SELECTOR, "#hear-video input[type=checkbox]")  # noqa: E731
    assert hear().is_selected(), "the hear box starts ticked"
    box.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(red_video(tmp / "mute.mp4", sound=False)))
    wait_for(lambda: not hear().is_selected() and "no audio track" in status(), "the probe to untick the hear box")
    hear().click()
    box.find_element(By.TAG_NAME, "textarea").send_keys(IMAGE_QUESTION)
    box.find_element(By.CSS_SELECTOR, "button.submit-button").click()
    wait_for(lambda: status().startswith("Error:"), "the silent-video error")
    assert "has no audio track" in bot_rows()[-1].text and "mute.mp4" in bot_rows()[-1].text
    assert requested_hosts(browser) <= {"127.0.0.1"}, requested_hosts(browser)
