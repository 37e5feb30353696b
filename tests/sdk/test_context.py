"""Feature / user / session / tenant tags across threads, asyncio tasks and services."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

import infersight
from infersight import attributes as A


@infersight.observe(name="ranker")
def rank(x):
    return [x]


def features(exporter):
    return sorted(s.attributes.get(A.FEATURE, "-") for s in exporter.get_finished_spans())


def test_tags_follow_work_into_executors_and_threads(spans):
    with infersight.feature("search"), infersight.user("u-1"):
        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(rank, 1).result()
        worker = threading.Thread(target=rank, args=(2,))
        worker.start()
        worker.join()
    with ThreadPoolExecutor(max_workers=1) as pool:  # no tags here, none leak from before
        pool.submit(rank, 3).result()
    assert features(spans) == ["-", "search", "search"]
    users = [s.attributes.get(A.USER) for s in spans.get_finished_spans()]
    assert users.count("u-1") == 2


def test_threads_are_not_carried_after_uninstrument(spans):
    infersight.uninstrument()
    infersight.instrument(tracer_provider=None)  # re-instrument: patched once again
    infersight.uninstrument()
    with infersight.feature("search"):
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(infersight.context.current_tags).result() == {}


def test_tags_follow_asyncio_tasks_and_async_decorators(spans):
    @infersight.observe(name="embedder")
    async def embed(x):
        await asyncio.sleep(0)
        return [x]

    @infersight.session("s-9")
    async def handler(name):
        with infersight.feature(name):
            await asyncio.gather(embed(1), asyncio.create_task(embed(2)))

    async def main():
        await asyncio.gather(handler("chat"), handler("search"))

    asyncio.run(main())
    assert features(spans) == ["chat", "chat", "search", "search"]
    assert {s.attributes[A.SESSION] for s in spans.get_finished_spans()} == {"s-9"}


class _Service:
    """A loopback HTTP service whose handler runs `handle(headers)`."""

    def __init__(self, handle):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                handle(self.headers)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("propagate", [True, False])
def test_feature_reaches_a_model_call_two_services_away(spans, fake_openai, propagate):
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="x", max_retries=0)

    def headers():
        return infersight.inject() if propagate else {}

    def service_b(incoming):
        with infersight.extract(incoming):
            client.chat.completions.create(model="gpt-4o-mini", messages=[])

    b = _Service(service_b)

    def service_a(incoming):
        with infersight.extract(incoming):
            urllib.request.urlopen(urllib.request.Request(b.url, headers=headers())).read()

    a = _Service(service_a)
    try:
        with infersight.feature("ticket-summary"), infersight.tenant("acme"):
            urllib.request.urlopen(urllib.request.Request(a.url, headers=headers())).read()
    finally:
        a.close()
        b.close()
    [span] = [s for s in spans.get_finished_spans() if s.attributes[A.PROVIDER] == "openai"]
    if propagate:
        assert span.attributes[A.FEATURE] == "ticket-summary"
        assert span.attributes[A.TENANT] == "acme"
    else:  # the control: only the headers carry the tags between services
        assert A.FEATURE not in span.attributes


def test_inject_writes_w3c_baggage():
    with infersight.feature("search"):
        headers = infersight.inject({"x-other": "1"})
    assert headers["x-other"] == "1"
    assert "infersight.feature=search" in headers["baggage"]
