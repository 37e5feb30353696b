"""SDK overhead: what `infersight.instrument()` costs the host app per call, and what it loses.

Per-call CPU. The real `openai` and `anthropic` clients call a mock transport (the
`MockTransport` of the httpx package each client uses) that returns realistic bodies built once
(the loopback fake provider's wire format: a chat completion, or 20 content chunks streamed),
so there is no socket noise.
Three ways are timed in interleaved rounds, with process CPU (`time.process_time_ns`, which
includes the span processor's worker thread) and `force_flush()` inside the timed region, so
each round pays for the export of its own spans:
- bare: no instrumentation;
- floor: the bare call inside one plain OTel span (no attributes);
- infersight: `infersight.instrument()`.
Floor and infersight share one TracerProvider with a BatchSpanProcessor (the SDK's queue size,
512-span batches) over an exporter that encodes each batch to OTLP protobuf and discards the
bytes: the encoding is paid, the socket is not. The encoder is the one the instrumentation
under test exports with: the SDK's own (`infersight._otlp`, whose bytes its exporter sends
as they are) for infersight and its floor, the OTel exporter's (a message, serialised) for
each peer and its floor. Overhead = the median over rounds of (way - bare
in the same round); the figure that matters is infersight's overhead over the floor's.
On this shared machine a streamed call's CPU time varies by more than that overhead from round
to round, so the same three ways are also timed with the provider call stubbed (the wrapper
`instrument()` installed, fed the real client's own result objects): infersight's own cost
per call, to a microsecond. These rows count the garbage collector's full collections apart
(`measure_stubbed`): with both clients imported a full collection walks about 200k objects,
once every 8-10k traced calls, and took 40 to 190 ms here as this machine's speed drifted
from minute to minute; a 20k-call round held two, up to a third of its CPU. The calls are
timed in short interleaved rounds with full collections held off, and each way's full
collections per call are counted in one long run of it, at their median cost in this run.
Peers are timed the same ways in their own virtualenvs, one child process per round (bare and
floor first, then instrumented), because an instrumentor's `uninstrument()` may leave work
behind that would otherwise be counted in their bare calls.

Spans dropped in a burst: a child process calls the real client as fast as it can with
`instrument()` at default settings, exporting to a real `infersight collector`; dropped =
calls - spans found in the store afterwards. Memory: RSS over many instrumented calls (no leak),
and with the collector unreachable (the queue stays bounded).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

from . import report

MESSAGES = [{"role": "system", "content": "You are a support assistant. Answer briefly."},
            {"role": "user", "content": "My order 1234 arrived damaged; what can I do?"}]
STREAM_CHUNKS = 20
TARGETS = {"sync": 1.25, "stream": 1.5}  # infersight overhead / floor overhead, at most


# ---- the clients ----------------------------------------------------------------------------

def _wire(path: str, body: dict) -> tuple[bytes, bytes]:
    """(JSON body, SSE body) for `path`, in the fake provider's wire format, built once."""
    from infersight_collector import fake_provider

    reply = fake_provider.Reply(content=" ".join(["token"] * STREAM_CHUNKS),
                                prompt_tokens=420, completion_tokens=STREAM_CHUNKS,
                                cached_tokens=128)
    whole, events, done = fake_provider._route(path)
    sse = "".join((f"event: {name}\n" if name else "") + f"data: {json.dumps(event)}\n\n"
                  for name, event in events(
                      {**body, "stream": True, "stream_options": {"include_usage": True}}, reply))
    if done:
        sse += "data: [DONE]\n\n"
    return json.dumps(whole(body, reply)).encode(), sse.encode()


def _responder(client_module: str, path: str, body: dict):
    """An http client for `client_module` (openai, anthropic) whose transport answers from
    memory; it is built from the httpx package that client uses (httpx or httpx2)."""
    import importlib

    base = importlib.import_module(f"{client_module}._base_client")
    httpx_module = getattr(base, "httpx2", None) or base.httpx
    whole, sse = _wire(path, body)
    json_headers = {"content-type": "application/json"}
    sse_headers = {"content-type": "text/event-stream"}

    def handle(request):
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx_module.Response(200, headers=sse_headers, content=sse)
        return httpx_module.Response(200, headers=json_headers, content=whole)

    return httpx_module.Client(transport=httpx_module.MockTransport(handle))


OPENAI_CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
OPENAI_STREAM = {**OPENAI_CHAT, "stream": True, "stream_options": {"include_usage": True}}


def openai_completions():
    """`client.chat.completions` of an openai client answered from memory."""
    import openai

    client = openai.OpenAI(api_key="bench", base_url="http://mock.invalid/v1", max_retries=0,
                           http_client=_responder("openai", "/chat/completions", OPENAI_CHAT))
    return client.chat.completions


def openai_calls() -> dict[str, Callable[[], None]]:
    completions = openai_completions()  # `.create` is looked up per call: it gets patched

    def sync() -> None:
        completions.create(**OPENAI_CHAT)

    def stream() -> None:
        for _ in completions.create(**OPENAI_STREAM):
            pass

    return {"openai sync": sync, "openai stream": stream}


ANTHROPIC_MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 256, "messages": MESSAGES[1:]}
ANTHROPIC_STREAM = {**ANTHROPIC_MESSAGE, "stream": True}


def anthropic_messages():
    """`client.messages` of an anthropic client answered from memory."""
    import anthropic

    client = anthropic.Anthropic(
        api_key="bench", base_url="http://mock.invalid", max_retries=0,
        http_client=_responder("anthropic", "/v1/messages", ANTHROPIC_MESSAGE))
    return client.messages


def anthropic_calls() -> dict[str, Callable[[], None]]:
    messages = anthropic_messages()

    def sync() -> None:
        messages.create(**ANTHROPIC_MESSAGE)

    def stream() -> None:
        for _ in messages.create(**ANTHROPIC_STREAM):
            pass

    return {"anthropic sync": sync, "anthropic stream": stream}


# ---- the pipeline -----------------------------------------------------------------------------

def provider_with_encoding_exporter(queue: int, encode: Callable | None = None):
    """A TracerProvider whose BatchSpanProcessor (queue of `queue` spans, 512-span batches)
    encodes every batch to an OTLP request with `encode` (default: the OTel exporter's
    encoder), serialises it unless it gave bytes, and drops the bytes."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class EncodeAndDiscard(SpanExporter):
        def export(self, spans):
            request = (encode or encode_spans)(spans)
            if not isinstance(request, bytes):
                request.SerializeToString()
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(
        EncodeAndDiscard(), max_queue_size=queue, max_export_batch_size=512))
    return provider


def cpu_per_call(ways: dict[str, tuple[Callable[[], None], Callable[[], None]]],
                 flush: Callable[[], None], calls: int, rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per call of each way in each round; `ways[name] = (setup, call)`.
    Rounds interleave the ways, in a rotating order, so drift on a shared machine hits them
    alike."""
    names = list(ways)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):  # round 0 warms up every way and is thrown away
        for name in names[r % len(names):] + names[:r % len(names)]:
            setup, call = ways[name]
            setup()
            gc.collect()
            t0 = time.process_time_ns()
            for _ in range(calls):
                call()
            flush()
            if r:
                samples[name].append((time.process_time_ns() - t0) / calls / 1000)
    return samples


def paired(samples: dict[str, list[float]], base: str = "bare") -> dict[str, float]:
    """Each way as median(base) + the median over rounds of (way - base in the same round):
    a round's ways run back to back, so the pairing cancels the drift between rounds, which
    on a 2.5 ms streamed call is larger than the overhead measured."""
    middle = statistics.median(samples[base])
    return {name: middle + statistics.median(w - b for w, b in zip(values, samples[base]))
            for name, values in samples.items()}


def _ways(provider, case: str, call: Callable[[], None], on: Callable[[], None],
          off: Callable[[], None]) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """The three ways `measure` times, as `cpu_per_call` takes them: (setup, call)."""
    return {"bare": (off, call), "floor": (off, floor_of(provider, case, call)),
            "instrumented": (on, call)}


def measure(cases: dict[str, Callable[[], None]], on: Callable[[], None],
            off: Callable[[], None], provider, calls: int, rounds: int) -> dict[str, dict]:
    """{case: {"bare", "floor", "instrumented"} median CPU-us per call, and "round ratios"
    (`round_ratios`)}; `on` / `off` switch the instrumentation under test."""
    out = {}
    for case, call in cases.items():
        samples = cpu_per_call(_ways(provider, case, call, on, off),
                               lambda: provider.force_flush(30_000), calls, rounds)
        out[case] = {**paired(samples), "round ratios": round_ratios(samples)}
        off()
    return out


def measure_stubbed(cases: dict[str, Callable[[], None]], on: Callable[[], None],
                    off: Callable[[], None], provider, calls: int, rounds: int,
                    long_calls: int) -> dict[str, dict]:
    """`measure`, with full collections apart: `rounds` interleaved rounds of `calls` calls a
    way with none, then, per way, the full collections of one run of `long_calls` calls
    (`full_collections`), added at the median cost of a full collection in this case's runs.
    Adds "before full collections" (the ways without them), "full collections per 10k calls"
    and "full collection ms"."""
    out = {}
    flush = functools.partial(provider.force_flush, 30_000)
    for case, call in cases.items():
        ways = _ways(provider, case, call, on, off)
        with _no_full_collections():
            samples = cpu_per_call(ways, flush, calls, rounds)
        rates, costs = full_collections(ways, flush, long_calls)
        off()
        cost = statistics.median(costs) if costs else 0.0
        before = paired(samples)
        out[case] = {**{way: us + rates[way] * cost for way, us in before.items()},
                     "before full collections": before, "round ratios": round_ratios(samples),
                     "full collections per 10k calls": {w: r * 1e4 for w, r in rates.items()},
                     "full collection ms": cost / 1000}
    return out


class _no_full_collections:
    """Holds off the collector's full (generation 2) collections; the younger ones run."""

    def __enter__(self):
        self.thresholds = gc.get_threshold()
        gc.collect()
        gc.set_threshold(self.thresholds[0], self.thresholds[1], 1 << 30)

    def __exit__(self, *_exc):
        gc.set_threshold(*self.thresholds)


def full_collections(ways: dict[str, tuple[Callable[[], None], Callable[[], None]]],
                     flush: Callable[[], None], calls: int
                     ) -> tuple[dict[str, float], list[float]]:
    """({way: full collections per call}, the CPU-us of each one seen), from one run of
    `calls` calls a way after a full collection. A way's rate is taken between its first and
    last full collection, so the run's edges do not round it."""
    seen: list[tuple[int, int]] = []  # (calls made, CPU ns) of each full collection
    at = [0, 0]  # calls made so far, the CPU clock when the collection started

    def timed(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                at[1] = time.process_time_ns()
            else:
                seen.append((at[0], time.process_time_ns() - at[1]))

    rates, costs = {}, []
    gc.callbacks.append(timed)
    try:
        for name, (setup, call) in ways.items():
            setup()
            gc.collect()
            seen.clear()
            for at[0] in range(calls):
                call()
            flush()
            costs += [ns / 1000 for _, ns in seen]
            first, last = (seen[0][0], seen[-1][0]) if seen else (0, 0)
            rates[name] = ((len(seen) - 1) / (last - first) if last > first
                           else len(seen) / calls)
    finally:
        gc.callbacks.remove(timed)
    return rates, costs


def round_ratios(samples: dict[str, list[float]]) -> list[float]:
    """Each round's instrumented overhead over its floor overhead, sorted: their spread says
    how far the median's verdict can be trusted on this machine."""
    return sorted((i - b) / (f - b) for i, f, b in zip(
        samples["instrumented"], samples["floor"], samples["bare"]) if f > b)


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def floor_of(provider, name: str, call: Callable[[], None]) -> Callable[[], None]:
    """`call` inside one plain OTel span of `provider`: the floor."""
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("bench-floor")

    def floor() -> None:
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT):
            call()

    return floor


def _overheads(us: dict[str, float]) -> tuple[float, float, float]:
    """(floor overhead, instrumented overhead, their ratio) of one case from `measure`."""
    floor_over = us["floor"] - us["bare"]
    ours_over = us["instrumented"] - us["bare"]
    return floor_over, ours_over, ours_over / floor_over if floor_over > 0 else float("nan")


def _peer_row(result: report.Result, case: str, name: str, us: dict[str, float]) -> float:
    """Adds a peer's overhead row for `case` (measured as `measure` does); returns it."""
    _, over, ratio = _overheads(us)
    result.add(f"{case}: {name} overhead", over, "CPU-us/call", baseline="its own run's floor",
               ratio=ratio)
    return over


def _overhead(result: report.Result, calls: int, rounds: int) -> None:
    import infersight
    from infersight import config

    from infersight._otlp import encode_spans

    queue = config.load().max_queue_size
    provider = provider_with_encoding_exporter(queue, encode_spans)
    cases = {**openai_calls(), **anthropic_calls(), **sklearn_calls()}
    ours = measure(cases, lambda: infersight.instrument(tracer_provider=provider),
                   infersight.uninstrument, provider, calls, rounds)
    theirs = _peers(result, calls, rounds, queue)
    series: dict[str, list[float]] = {"bare OTel span (floor)": [], "infersight": []}
    series.update({name: [] for name in theirs})
    for case, us in ours.items():
        floor_over, ours_over, ratio = _overheads(us)
        # The LLM calls' verdicts are given on their stubbed rows (`_isolated`), measured to a
        # microsecond: end to end, the round-to-round noise is larger than the overhead.
        llm = not case.startswith("sklearn")
        result.add(f"{case}: bare call", us["bare"], "CPU-us/call")
        result.add(f"{case}: floor (bare OTel span) overhead", floor_over, "CPU-us/call")
        result.add(f"{case}: infersight overhead", ours_over, "CPU-us/call",
                   baseline="floor overhead" + (" (verdict: the stubbed rows)" if llm else ""),
                   ratio=ratio)
        series["bare OTel span (floor)"].append(floor_over)
        series["infersight"].append(ours_over)
        for name, measured in theirs.items():
            peer = measured.get(case)
            if peer is None:
                series[name].append(float("nan"))
                continue
            series[name].append(_peer_row(result, case, name, peer))
    # Rounds of 2k calls pair the ways within a tenth of a second; with the long runs, about
    # as many calls as the 20k-call rounds these replaced.
    _isolated(result, provider, calls * 2, rounds * 4, calls * 200, theirs)
    result.plot = {"title": "Overhead per call over the bare call (CPU us, median of rounds)",
                   "ylabel": "CPU microseconds per call", "labels": list(ours),
                   "series": series}


# ---- the instrumentation alone ---------------------------------------------------------------

def _stubbed_calls(name: str, resource, cls, request: dict, stream_request: dict
                  ) -> dict[str, Callable[[], None]]:
    """Calls of the wrapper `instrument()` installed on `cls.create` (`resource`'s class), the
    provider call stubbed by one returning the real client's own result objects (a response,
    the chunks or events of a stream), captured once: the bare call costs under a
    microsecond, so what the machine's noise hides behind a 2.5 ms streamed call shows here."""
    response = resource.create(**request)
    chunks = list(resource.create(**stream_request))

    def provider(*_args, **kwargs):
        return iter(chunks) if kwargs.get("stream") else response

    def installed():  # what `instrument()` put on the class, else the plain call
        wrapper = getattr(cls.__dict__["create"], "_self_wrapper", None)
        return wrapper or (lambda wrapped, _instance, args, kwargs: wrapped(*args, **kwargs))

    def call() -> None:
        installed()(provider, resource, (), dict(request))

    def stream() -> None:
        for _ in installed()(provider, resource, (), dict(stream_request)):
            pass

    return {f"{name} sync, provider stubbed": call, f"{name} stream, provider stubbed": stream}


def openai_stubbed_calls() -> dict[str, Callable[[], None]]:
    from openai.resources.chat.completions import Completions

    return _stubbed_calls("openai", openai_completions(), Completions, OPENAI_CHAT,
                          OPENAI_STREAM)


def anthropic_stubbed_calls() -> dict[str, Callable[[], None]]:
    from anthropic.resources.messages import Messages

    return _stubbed_calls("anthropic", anthropic_messages(), Messages, ANTHROPIC_MESSAGE,
                          ANTHROPIC_STREAM)


def verdict(ratio: float, limit: float) -> bool:
    """A target is met by a measured ratio in [0, limit]: a negative (or undefined) one says
    the noise was larger than the overhead, not that the overhead was small."""
    return 0 <= ratio <= limit


def _isolated(result: report.Result, provider, calls: int, rounds: int, long_calls: int,
              theirs: dict[str, dict]) -> None:
    """Infersight's own cost per call against the floor's, without the client's noise, and
    the peers' where their child measured it (`_peer_child`)."""
    import infersight

    cases = {**openai_stubbed_calls(), **anthropic_stubbed_calls()}
    measured = measure_stubbed(cases, lambda: infersight.instrument(tracer_provider=provider),
                               infersight.uninstrument, provider, calls, rounds, long_calls)
    spreads, collections = [], []
    for case, us in measured.items():
        floor_over, ours_over, ratio = _overheads(us)
        limit = TARGETS["stream" if "stream" in case else "sync"]
        short = case.split(",")[0]
        q1, q3 = quartiles(us["round ratios"])
        spreads.append(f"{short} {q1:.2f}-{q3:.2f}x")
        per_10k = us["full collections per 10k calls"]
        collections.append(f"{short}: floor {per_10k['floor']:.2f}, infersight "
                           f"{per_10k['instrumented']:.2f} at {us['full collection ms']:.0f} ms")
        result.add(f"{case}: floor (bare OTel span) overhead", floor_over, "CPU-us/call")
        result.add(f"{case}: infersight overhead", ours_over, "CPU-us/call",
                   baseline="floor overhead", ratio=ratio, target=f"<= {limit}x",
                   ok=verdict(ratio, limit))
        _, before, before_ratio = _overheads(us["before full collections"])
        result.add(f"{case}: infersight overhead before full collections", before,
                   "CPU-us/call", baseline="floor's, the same way", ratio=before_ratio)
        for name, measured in theirs.items():
            if case in measured:
                _peer_row(result, case, name, measured[case])
    result.notes.append(
        f"Provider-stubbed rows: {rounds} rounds of {calls:,} calls a way with full garbage "
        "collections held off (each round runs the bare call, the floor and infersight back "
        "to back); infersight's overhead over the floor's round by round, middle half: "
        + "; ".join(spreads) + f". Full collections per 10k calls, from {long_calls:,} calls "
        "a way, and the median one's CPU: " + "; ".join(collections) + ". The verdict is "
        "the ratio of the overheads, full collections included.")


# ---- peers, each in its own virtualenv ---------------------------------------------------------

# name: (pip requirements, module with an OTel BaseInstrumentor named OpenAIInstrumentor, or
# "openlit": `openlit.init()`)
PEERS = {
    # openai-v2 2.4b0 imports `opentelemetry.util.genai.instruments`, gone in util-genai 1.2b0,
    # and imports httpx, which openai 3 no longer pulls in.
    "OTel contrib openai-v2": ("opentelemetry-instrumentation-openai-v2 "
                               "opentelemetry-util-genai==1.1b0 httpx",
                               "opentelemetry.instrumentation.openai_v2"),
    "OpenLLMetry": ("opentelemetry-instrumentation-openai", "opentelemetry.instrumentation.openai"),
    "OpenLIT": ("openlit", "openlit"),
}
VENVS = report.ROOT / ".bench-venvs"


def _peer_python(requirement: str) -> str:
    """The python of a virtualenv with `requirement` and the same openai as ours."""
    from importlib import metadata

    wanted = [*requirement.split(), f"openai=={metadata.version('openai')}", "opentelemetry-sdk",
              "opentelemetry-exporter-otlp-proto-common"]
    venv = VENVS / requirement.split()[0]
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(wanted):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, timeout=300)
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *wanted],
                             capture_output=True, text=True, timeout=900)
        if pip.returncode != 0:
            raise RuntimeError("pip install failed: " + (pip.stderr.strip().splitlines() or
                                                         ["(no output)"])[-1])
        stamp.write_text(" ".join(wanted))
    return str(python)


TIKTOKEN_CACHE = VENVS / "tiktoken-cache"
# In tiktoken_ext/openai_public.py: an encoding's URL and the SHA-256 tiktoken expects of it.
_TIKTOKEN_BLOB = re.compile(r'"(https://\S+/(\w+)\.tiktoken)",\s*expected_hash="([0-9a-f]{64})"')


def tiktoken_file(bpe_ranks: str) -> bytes:
    """npm tiktoken's compressed ranks (`<char> <first rank> <base64 token> ...` a line) as
    tiktoken's file (`<base64 token> <rank>` a line, by rank)."""
    ranks: dict[int, str] = {}
    for line in bpe_ranks.splitlines():
        _, first, *tokens = line.split(" ")
        ranks.update((int(first) + i, token) for i, token in enumerate(tokens))
    return "".join(f"{ranks[r]} {r}\n" for r in sorted(ranks)).encode()


def _tiktoken_cache(python: str) -> dict[str, str]:
    """The environment that lets the peer's tiktoken (OpenLIT counts tokens with it) load its
    encodings here: tiktoken downloads them on first use from a host these machines cannot
    reach, but the npm `tiktoken` package bundles the same ranks, compressed as lines of
    `<char> <first rank> <base64 token> ...`. They are written out in tiktoken's own format
    (`<base64 token> <rank>` a line) into its cache (`TIKTOKEN_CACHE_DIR`, a file per URL
    named by the URL's SHA-1), each kept only if it hashes to what tiktoken expects, which
    tiktoken checks again when it reads it. {} when the peer has no tiktoken."""
    import hashlib
    import tarfile

    found = subprocess.run([python, "-c", "import tiktoken_ext.openai_public as m; "
                            "print(m.__file__)"], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        return {}
    with open(found.stdout.strip()) as f:
        blobs = _TIKTOKEN_BLOB.findall(f.read())
    TIKTOKEN_CACHE.mkdir(parents=True, exist_ok=True)
    package = None
    for url, name, expected in blobs:
        path = TIKTOKEN_CACHE / hashlib.sha1(url.encode()).hexdigest()
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == expected:
            continue
        if package is None:
            pack = subprocess.run(["npm", "pack", "tiktoken", "--silent", "--pack-destination",
                                   str(TIKTOKEN_CACHE)], capture_output=True, text=True,
                                  timeout=600)
            if pack.returncode != 0:
                raise RuntimeError("tiktoken would download its encodings, and `npm pack "
                                   "tiktoken` (which bundles them) failed: "
                                   + (pack.stderr.strip().splitlines() or ["?"])[-1])
            package = tarfile.open(TIKTOKEN_CACHE / pack.stdout.strip().splitlines()[-1])
        try:
            member = package.extractfile(f"package/encoders/{name}.json")
        except KeyError:
            continue  # an encoding npm tiktoken lacks (the peer may not need it)
        data = tiktoken_file(json.load(member)["bpe_ranks"])
        if hashlib.sha256(data).hexdigest() != expected:
            raise RuntimeError(f"npm tiktoken's {name} is not the file tiktoken expects")
        path.write_bytes(data)
    return {"TIKTOKEN_CACHE_DIR": str(TIKTOKEN_CACHE)}


def _peers(result: report.Result, calls: int, rounds: int, queue: int) -> dict[str, dict]:
    """Each peer's overheads, as `measure` gives ours, from one child process per round: an
    instrumentor's `uninstrument()` may leave work behind (OpenLLMetry's leaves its wrapper on
    `Completions.create`, which then costs a "bare" call about as much as an instrumented
    one), so each child times the bare and floor calls before anything is instrumented, then
    the instrumented ones."""
    measured = {}
    for name, (requirement, module) in PEERS.items():
        try:
            python = _peer_python(requirement)
            env = _tiktoken_cache(python)
            check = _peer_run(python, module, calls, queue, env, check=True)
            if check["spans"] < 2:  # e.g. a peer that does not support this openai
                raise RuntimeError(f"{module} recorded {check['spans']} spans for 2 calls on "
                                   f"openai {check['openai']}")
            if check["error"]:  # its spans would time a failure path
                raise RuntimeError(f"{module} logged an error on each call: {check['error']}")
            if check["stubbed spans"] < 2:
                result.notes.append(f"{name}: no provider-stubbed rows; its wrapper on "
                                    "Completions.create is not one the benchmark can call")
            samples = [_peer_run(python, module, calls, queue, env,
                                 stubbed=check["stubbed spans"] >= 2) for _ in range(rounds)]
            measured[name] = {case: paired({way: [s[case][way] for s in samples]
                                            for way in samples[0][case]})
                              for case in samples[0]}
        except Exception as exc:  # optional: say which peer was skipped and why
            result.skipped.append(f"{name} ({requirement}): {exc}")
    return measured


def _peer_run(python: str, module: str, calls: int, queue: int, env: dict[str, str],
              check: bool = False, stubbed: bool = False) -> dict:
    """One child in the peer's virtualenv (`_peer_child`, or `_peer_check` with `check`),
    with `env` added to ours."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, **env, "PYTHONPATH": str(report.ROOT / "collector")}
        proc = subprocess.run(
            [python, "-m", "benchmarks.sdk_overhead", "--peer", module, "--calls", str(calls),
             "--queue", str(queue), "--out", out.name]
            + (["--check"] if check else []) + (["--stubbed"] if stubbed else []),
            cwd=report.ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["failed"])[-1])
        return json.loads(open(out.name).read())


def _peer_instrumentor(module: str):
    import importlib
    import logging

    logging.getLogger("opentelemetry.instrumentation.instrumentor").setLevel(logging.ERROR)
    if module == "openlit":
        return _OpenLIT()
    return importlib.import_module(module).OpenAIInstrumentor()


class _OpenLIT:
    """`openlit.init()` as an instrumentor: its spans go to the given provider; its metrics
    are off (the floor and the others record no metrics); its price list is a local file
    holding the benchmark's model (by default it downloads one). It cannot be undone."""

    def instrument(self, tracer_provider) -> None:
        import openlit

        with tempfile.NamedTemporaryFile("w", suffix=".json") as prices:  # read by init()
            json.dump({"chat": {OPENAI_CHAT["model"]: {"promptPrice": 0.00015,
                                                       "completionPrice": 0.0006}}}, prices)
            prices.flush()
            openlit.init(tracer=tracer_provider.get_tracer("openlit"), disable_metrics=True,
                         pricing_json=prices.name)


def _peer_check(module: str) -> dict:
    """Spans the peer records for the two end-to-end calls and the two stubbed ones (which
    only reach it if its wrapper is a wrapt one on `Completions.create`, as OTel
    instrumentors install), and the first error it logged meanwhile (OpenLIT's spans failed
    here until its tiktoken got its encodings from `_tiktoken_cache`)."""
    import logging
    from importlib import metadata

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    instrumentor = _peer_instrumentor(module)
    provider, seen = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    calls, stubbed = openai_calls(), openai_stubbed_calls()
    instrumentor.instrument(tracer_provider=provider)
    errors: list[str] = []
    catch = logging.Handler(logging.ERROR)
    catch.emit = lambda record: errors.append(record.getMessage())
    logging.getLogger().addHandler(catch)
    counts = {}
    for label, cases in (("spans", calls), ("stubbed spans", stubbed)):
        seen.clear()
        for call in cases.values():
            call()
        counts[label] = len(seen.get_finished_spans())
    return {**counts, "openai": metadata.version("openai"), "error": (errors or [""])[0][:200]}


def _peer_child(module: str, calls: int, queue: int, stubbed: bool) -> dict:
    """One round in the peer's virtualenv: {case: {way: CPU-us per call}}, the bare and floor
    ways timed before the peer instruments anything, then the instrumented one."""
    instrumentor = _peer_instrumentor(module)
    provider = provider_with_encoding_exporter(queue)
    flush = functools.partial(provider.force_flush, 30_000)
    cases = {**openai_calls(), **(openai_stubbed_calls() if stubbed else {})}
    out: dict[str, dict[str, float]] = {}
    for case, call in cases.items():
        timed = cpu_per_call({"bare": (_nothing, call),
                              "floor": (_nothing, floor_of(provider, case, call))}, flush,
                             calls, 1)
        out[case] = {way: values[0] for way, values in timed.items()}
    instrumentor.instrument(tracer_provider=provider)
    for case, call in cases.items():
        out[case]["instrumented"] = cpu_per_call({"instrumented": (_nothing, call)}, flush,
                                                 calls, 1)["instrumented"][0]
    return out


def _nothing() -> None:
    pass


def sklearn_calls() -> dict[str, Callable[[], None]]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    model = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    row = x[:1]
    return {"sklearn predict_proba (1 row)": lambda: model.predict_proba(row)}


# ---- burst and memory: each in a child process with the SDK at its defaults ---------------------

def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _child(mode: str, calls: int, endpoint: str) -> dict:
    """Runs in a fresh process: `instrument()` as an app would, then `calls` sync calls."""
    import logging

    import infersight

    if mode == "unreachable":  # one "cannot connect" line per export attempt otherwise
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
    if mode == "memory":
        from infersight import config
        from infersight._otlp import encode_spans

        infersight.instrument(tracer_provider=provider_with_encoding_exporter(
            config.load().max_queue_size, encode_spans))
    else:
        infersight.instrument(service_name="bench-" + mode, endpoint=endpoint)
    call = openai_calls()["openai sync"]
    checkpoints, t0 = [], time.monotonic()
    step = max(calls // 10, 1)
    for i in range(calls):
        call()
        if (i + 1) % step == 0:
            if mode == "memory":  # an emptied queue, so growth is what is kept, not what waits
                infersight.flush(timeout_s=60)
            checkpoints.append(_rss_mb())
    seconds = time.monotonic() - t0
    if mode == "burst":
        infersight.flush(timeout_s=120)
    stats = infersight.stats() if hasattr(infersight, "stats") else {}
    return {"calls": calls, "seconds": seconds, "rss_mb": checkpoints, "stats": stats}


def _spawn(mode: str, calls: int, endpoint: str = "", env: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.sdk_overhead", "--child", mode,
                               "--calls", str(calls), "--endpoint", endpoint, "--out", out.name],
                              cwd=report.ROOT, timeout=3600,
                              env={**os.environ, "GRPC_VERBOSITY": "ERROR", **(env or {})})
        if proc.returncode != 0:
            raise RuntimeError(f"the {mode} child failed (exit {proc.returncode})")
        return json.loads(open(out.name).read())


def _burst(result: report.Result, calls: int, queue: int | None) -> None:
    """`queue`: a smaller SDK queue for the unreachable-collector run, so a quick run fills it."""
    from ._collector import Collector, count_spans, free_port

    with tempfile.TemporaryDirectory(prefix="bench-burst-") as data_dir:
        with Collector(data_dir) as collector:
            run = _spawn("burst", calls, f"http://{collector.grpc_endpoint}")
        stored = count_spans(data_dir)
    dropped = calls - stored
    result.add(f"spans dropped in a {calls:,}-call burst (defaults)", dropped, "spans",
               baseline=f"{stored:,} stored of {calls:,} calls ({calls / run['seconds']:,.0f} "
               "calls/s)", ratio=dropped / calls, target="0", ok=dropped == 0)
    if run["stats"]:
        result.notes.append(f"Burst: the SDK's own counts say {run['stats']}.")

    run = _spawn("memory", calls * 2)
    rss = run["rss_mb"]
    growth = rss[-1] - rss[0]
    per_call = growth * 2**20 / (run["calls"] * 0.9)
    result.add(f"RSS growth over {run['calls']:,} instrumented calls", growth, "MiB",
               baseline=f"{rss[0]:.0f} MiB after {run['calls'] // 10:,} calls",
               ratio=rss[-1] / rss[0], target="flat (< 1 KiB per call)", ok=per_call < 1024)

    unreachable = f"http://127.0.0.1:{free_port()}"
    run = _spawn("unreachable", calls, unreachable,
                 {"INFERSIGHT_MAX_QUEUE_SIZE": str(queue)} if queue else None)
    rss = run["rss_mb"]
    half = len(rss) // 2
    queue_text = f"queue {queue:,}" if queue else "default queue"
    result.add(f"RSS growth, last {calls // 2:,} of {calls:,} calls, collector unreachable, "
               f"{queue_text}",
               rss[-1] - rss[half - 1], "MiB", baseline=f"{rss[half - 1]:.0f} MiB at mid-run",
               ratio=rss[-1] / rss[half - 1], target="bounded (< 16 MiB)",
               ok=rss[-1] - rss[half - 1] < 16)
    if run["stats"]:
        result.notes.append(f"Collector unreachable: the SDK's own counts say {run['stats']}.")


def run(quick: bool) -> report.Result:
    calls, rounds = (200, 5) if quick else (1_000, 15)
    burst = 5_000 if quick else 50_000
    result = report.Result("sdk_overhead", "SDK overhead per call", settings={
        "calls per round": calls, "rounds": f"{rounds} (median) after one warm-up round",
        "provider-stubbed rows": f"{rounds * 4} rounds of {calls * 2:,} calls, full "
                                 f"collections from {calls * 200:,} calls a way",
        "stream": f"{STREAM_CHUNKS} content chunks", "burst": f"{burst:,} calls",
        "exporter": "BatchSpanProcessor -> OTLP protobuf encode, bytes discarded"})
    _overhead(result, calls, rounds)
    # The SDK queue (16,384 by default) must overflow during the unreachable run.
    _burst(result, burst, 1_024 if quick else None)
    return result


if __name__ == "__main__":
    if "--child" in sys.argv or "--peer" in sys.argv:
        p = argparse.ArgumentParser()
        p.add_argument("--child", choices=("burst", "memory", "unreachable"))
        p.add_argument("--peer", help="module of a peer's OpenAIInstrumentor")
        p.add_argument("--check", action="store_true", help="with --peer: count its spans")
        p.add_argument("--stubbed", action="store_true", help="with --peer: time stubbed calls")
        p.add_argument("--calls", type=int)
        p.add_argument("--queue", type=int)
        p.add_argument("--endpoint", default="")
        p.add_argument("--out")
        a = p.parse_args()
        if a.peer:
            measured = (_peer_check(a.peer) if a.check
                        else _peer_child(a.peer, a.calls, a.queue, a.stubbed))
        else:
            measured = _child(a.child, a.calls, a.endpoint)
        with open(a.out, "w") as f:
            json.dump(measured, f)
        os._exit(0)  # do not wait on exports to an unreachable collector at exit
    args = report.parse_args(__doc__.splitlines()[0])
    report.emit(run(args.quick), args.out)
