"""The queue under load: a model with a queue of requests never holds the
workers that another model's requests need, and each model bounds its own
waiting requests."""

import threading

import pytest
from gradio_client import Client

from explorer import build_demo
from explorer.models import load_translator
from explorer.service import MAX_WAITING_PER_MODEL
from tests.app_fixtures import FIXTURE_MODELS, TINY_MODEL

pytestmark = pytest.mark.slow
SENTENCE = "Where is the train station?"


@pytest.fixture()
def two_models():
    """The app serving the fixture model twice, as "busy" and "free", with
    "busy" stopped in `translate` until `release` is set."""
    busy = load_translator(FIXTURE_MODELS / TINY_MODEL)
    free = load_translator(FIXTURE_MODELS / TINY_MODEL)
    release, entered = threading.Event(), threading.Event()
    translate = busy.translate

    def stuck(*args, **kwargs):
        entered.set()
        release.wait(timeout=120)
        return translate(*args, **kwargs)

    busy.translate = stuck
    demo = build_demo({"busy": busy, "free": free})
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield demo, release, entered
    finally:
        release.set()
        demo.close()


def test_a_busy_model_does_not_hold_the_others(two_models):
    demo, release, entered = two_models
    client = Client(demo.local_url, verbose=False)
    # More requests for the busy model than the queue had workers before.
    waiting = [
        client.submit(SENTENCE, "busy", "greedy", 4, api_name="/translate")
        for _ in range(MAX_WAITING_PER_MODEL)
    ]
    assert entered.wait(timeout=60)
    text, facts = client.submit(
        SENTENCE, "free", "greedy", 4, api_name="/translate"
    ).result(timeout=60)
    assert facts["model"] == "free" and facts["target_tokens"]
    assert not any(job.done() for job in waiting)  # Still stuck behind one.
    release.set()
    for job in waiting:
        assert job.result(timeout=120)[1]["model"] == "busy"


def test_a_model_refuses_requests_beyond_its_waiting_bound(two_models):
    demo, release, entered = two_models
    client = Client(demo.local_url, verbose=False)
    waiting = [
        client.submit(SENTENCE, "busy", "greedy", 4, api_name="/translate")
        for _ in range(MAX_WAITING_PER_MODEL)
    ]
    assert entered.wait(timeout=60)
    service = demo.service
    for _ in range(600):  # Every request reached the model's queue.
        if service._waiting["busy"] == MAX_WAITING_PER_MODEL:
            break
        threading.Event().wait(0.05)
    extra = client.submit(SENTENCE, "busy", "greedy", 4, api_name="/translate")
    with pytest.raises(Exception, match="busy"):
        extra.result(timeout=60)
    release.set()
    assert all(job.result(timeout=120)[1]["target_tokens"] for job in waiting)
