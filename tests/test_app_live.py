"""The app as users run it: `python app.py` in a subprocess, called through
`gradio_client` (sequentially, concurrently and with bad input)."""

import concurrent.futures

import numpy as np
import pytest
from gradio_client import Client

from tests.app_fixtures import TINY_MODEL, serve_app

pytestmark = pytest.mark.slow
SENTENCE = "Where is the train station?"


@pytest.fixture(scope="module")
def url():
    with serve_app() as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def test_api_lists_translate_and_attention(client):
    endpoints = client.view_api(print_info=False, return_format="dict")
    assert {"/translate", "/attention"} <= set(endpoints["named_endpoints"])


def test_translate(client):
    text, stats = client.predict(
        SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert isinstance(text, str)
    assert stats["model"] == TINY_MODEL and stats["decoding"] == "greedy"
    assert len(stats["token_probs"]) == len(stats["target_tokens"])
    _, stats = client.predict(SENTENCE, TINY_MODEL, "beam", 3, api_name="/translate")
    assert stats["decoding"] == "beam search, beam 3"


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_attention(client, kind):
    out = client.predict(SENTENCE, TINY_MODEL, kind, 1, 1, api_name="/attention")
    matrix = np.array(out["attention"])
    assert matrix.shape == (len(out["row_tokens"]), len(out["column_tokens"]))
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-3)


def test_sixteen_concurrent_calls(url):
    sentences = [f"Where is the train station number {i}?" for i in range(16)]

    def call(sentence):
        return Client(url, verbose=False).predict(
            sentence, TINY_MODEL, "greedy", 4, api_name="/translate"
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, sentences))
    assert len(results) == 16
    for text, stats in results:
        assert isinstance(text, str) and stats["source_tokens"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The cat sleeps. " * 320,  # 5,120 characters.
        "I ❤️ Tokyo 東京 🚄! مرحبا",
        "<script>alert('x')</script>",
        "bell\x07null\x00escape\x1b[31m",
    ],
    ids=["empty", "5120-chars", "emoji-cjk-rtl", "script-tag", "control-chars"],
)
def test_bad_input_is_answered(client, text):
    translation, stats = client.predict(
        text, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert isinstance(translation, str)
    if not text:
        assert "Empty input" in stats["message"]
    if len(text) > 5000:
        assert stats["truncated"]


@pytest.mark.parametrize(
    "args",
    [
        (SENTENCE, "no-such-model", "cross", 0, 0),
        (SENTENCE, TINY_MODEL, "sideways", 0, 0),
        (SENTENCE, TINY_MODEL, "cross", 99, 0),
    ],
)
def test_bad_arguments_are_errors_and_the_server_survives(client, args):
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name="/attention")
    assert "Traceback" not in str(info.value)
    text, _ = client.predict(SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate")
    assert isinstance(text, str)
