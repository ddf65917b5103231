"""The app as users run it: `python app.py` in a subprocess (with Gradio's
MCP server on), called through `gradio_client` for every public endpoint,
concurrently, with bad input, and through the MCP schema."""

import ast
import asyncio
import concurrent.futures
import json
import urllib.request

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from explorer.service import MAX_WAITING_PER_MODEL
from keras_mha import alignment
from keras_mha.alignment import from_pharaoh
from tests.app_fixtures import TINY_MODEL, serve_app

pytestmark = pytest.mark.slow
SENTENCE = "Where is the train station?"
ENDPOINTS = {"/translate", "/score", "/align", "/attention", "/attribute", "/head"}


@pytest.fixture(scope="module")
def url():
    with serve_app(env={"GRADIO_MCP_SERVER": "True"}) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def test_api_lists_the_public_endpoints_only(client):
    endpoints = client.view_api(print_info=False, return_format="dict")
    assert set(endpoints["named_endpoints"]) == ENDPOINTS
    translate = endpoints["named_endpoints"]["/translate"]["parameters"]
    assert [p["parameter_name"] for p in translate] == [
        "text",
        "model",
        "decoding",
        "beam_size",
        "top_k",
        "prefix",
    ]


def test_translate(client):
    text, facts = client.predict(
        SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert isinstance(text, str)
    assert facts["model"] == TINY_MODEL and facts["decoding"] == "greedy"
    assert len(facts["token_probs"]) == len(facts["target_tokens"])
    assert len(facts["alternatives"]) == len(facts["target_tokens"])
    for step, piece in zip(facts["alternatives"], facts["target_tokens"]):
        assert len(step) == 5 and step[0][0] == piece  # Greedy takes the best.
    _, facts = client.predict(SENTENCE, TINY_MODEL, "beam", 3, api_name="/translate")
    assert facts["decoding"] == "beam search, beam 3"


def test_translate_with_a_prefix_and_top_k(client):
    _, facts = client.predict(
        SENTENCE, TINY_MODEL, "greedy", 4, 2, "la estación", api_name="/translate"
    )
    assert facts["prefix_length"] > 0
    forced = "".join(facts["target_tokens"][: facts["prefix_length"]])
    assert forced.replace("▁", " ").strip() == "la estación"
    assert all(len(step) == 2 for step in facts["alternatives"])


def test_score(client):
    out = client.predict(
        SENTENCE, "¿Dónde está la estación?", TINY_MODEL, api_name="/score"
    )
    assert set(out) == {"target_tokens", "token_probs", "score", "alternatives"}
    assert out["target_tokens"][-1] == "</s>"
    assert (
        len(out["token_probs"]) == len(out["alternatives"]) == len(out["target_tokens"])
    )
    assert out["score"] == pytest.approx(np.sum(np.log(out["token_probs"])), rel=0.01)


def test_align(client):
    out = client.predict(
        SENTENCE, "¿Dónde está la estación?", TINY_MODEL, "shift-att", api_name="/align"
    )
    assert out["source_words"] == ["Where", "is", "the", "train", "station?"]
    assert out["target_words"] == ["¿Dónde", "está", "la", "estación?"]
    links, _ = from_pharaoh(out["links"])
    assert sorted(j for _, j in links) == [0, 1, 2, 3]
    # An empty target aligns the model's own translation.
    own = client.predict(SENTENCE, "", TINY_MODEL, "average", api_name="/align")
    text, _ = client.predict(SENTENCE, TINY_MODEL, api_name="/translate")
    assert own["target"] == text


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_attention(client, kind):
    out = client.predict(SENTENCE, TINY_MODEL, kind, 1, 1, api_name="/attention")
    matrix = np.array(out["attention"])
    assert matrix.shape == (len(out["row_tokens"]), len(out["column_tokens"]))
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-3)


def test_mcp_tools_are_the_endpoints_with_their_docstrings(url):
    with urllib.request.urlopen(f"{url}gradio_api/mcp/schema", timeout=30) as answer:
        tools = {tool["name"]: tool for tool in json.load(answer)}
    assert set(tools) == {
        "translate",
        "score",
        "align",
        "attention",
        "attribute",
        "head",
    }
    assert tools["translate"]["description"].startswith(
        "Translates a text with one of the app's models."
    )
    properties = tools["align"]["inputSchema"]["properties"]
    assert set(properties) == {"source", "target", "model", "method"}
    assert "model's own translation" in properties["target"]["description"]
    assert "Pharaoh" in tools["align"]["description"]
    assert properties["method"]["default"] == alignment.DEFAULT_METHOD


def test_an_mcp_client_calls_a_tool(url):
    mcp = pytest.importorskip("mcp")
    from mcp.client.streamable_http import streamable_http_client

    async def session():
        async with streamable_http_client(f"{url}gradio_api/mcp/") as streams:
            async with mcp.ClientSession(streams[0], streams[1]) as client:
                await client.initialize()
                tools = await client.list_tools()
                result = await client.call_tool(
                    "align",
                    {
                        "source": SENTENCE,
                        "target": "¿Dónde está?",
                        "model": TINY_MODEL,
                        "method": "average",
                    },
                )
                return {tool.name for tool in tools.tools}, result

    names, result = asyncio.run(session())
    assert names == {"translate", "score", "align", "attention", "attribute", "head"}
    assert not result.isError
    answer = ast.literal_eval(result.content[0].text)  # The dict's repr.
    assert answer["target_words"] == ["¿Dónde", "está?"]
    assert len(from_pharaoh(answer["links"])[0]) == 2


def test_sixteen_concurrent_calls_are_answered_or_refused_politely(url):
    """One model keeps at most `MAX_WAITING_PER_MODEL` requests waiting; a
    call beyond that is refused with a message a visitor can act on, and
    the server goes on answering."""
    sentences = [f"Where is the train station number {i}?" for i in range(16)]

    def call(sentence):
        try:
            return Client(url, verbose=False).predict(
                sentence, TINY_MODEL, "greedy", 4, api_name="/translate"
            )
        except AppError as error:
            return str(error)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, sentences))
    answered = [r for r in results if not isinstance(r, str)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(answered) >= MAX_WAITING_PER_MODEL
    for message in refused:
        assert "busy with other requests" in message
    for text, facts in answered:
        assert isinstance(text, str) and facts["source_tokens"]
    text, facts = Client(url, verbose=False).predict(
        SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert facts["source_tokens"]


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
def test_unusual_input_is_answered(client, text):
    translation, facts = client.predict(
        text, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert isinstance(translation, str)
    if not text:
        assert "Type a sentence" in facts["message"]
    if len(text) > 5000:
        assert facts["truncated"]


@pytest.mark.parametrize(
    "endpoint, args, message",
    [
        ("/attention", (SENTENCE, "no-such-model", "cross", 0, 0), "Unknown model"),
        ("/attention", (SENTENCE, TINY_MODEL, "sideways", 0, 0), "Unknown kind"),
        ("/attention", (SENTENCE, TINY_MODEL, "cross", 99, 0), "does not exist"),
        ("/translate", (SENTENCE, TINY_MODEL, "beam", 99, 5, ""), "beam_size"),
        ("/translate", (SENTENCE, TINY_MODEL, "greedy", 4, 5, "x " * 200), "at most"),
        ("/score", (SENTENCE, "", TINY_MODEL), "Type your translation"),
        ("/align", (SENTENCE, "", TINY_MODEL, "diagonal"), "invalid value"),
        ("/align", (SENTENCE, "", TINY_MODEL, "head:0:99"), "head 99"),
    ],
)
def test_bad_arguments_are_errors_and_the_server_survives(
    client, endpoint, args, message
):
    with pytest.raises(AppError, match=message) as info:
        client.predict(*args, api_name=endpoint)
    assert "Traceback" not in str(info.value)
    text, _ = client.predict(SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate")
    assert isinstance(text, str)


def test_attribute_and_head_through_gradio_client(client):
    out = client.predict(
        SENTENCE, "", TINY_MODEL, "grad_x_input", 16, api_name="/attribute"
    )
    assert len(out["source"]) == len(out["target_tokens"])
    assert len(out["source"][0]) == len(out["source_tokens"])
    head = client.predict(SENTENCE, "", TINY_MODEL, "cross", 1, 0, 2, api_name="/head")
    assert abs(sum(head["weights"]) - 1.0) < 1e-3
    assert len(head["weights"]) == len(head["key_tokens"]) == len(head["dots"])
    assert {s["key"] for s in head["stages"]} >= {"q", "keys", "weights", "output"}
