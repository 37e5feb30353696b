"""`infersight demo`: realistic AI traffic through the real SDK, so every page has data.

A loopback fake OpenAI server answers; the real `openai` client calls it with
`infersight.instrument()` on, from several product features. `gpt-4o-mini` is served as two
snapshots while a rollout of the newer one progresses, and the newer one is less confident;
a few calls fail the way providers do (429, 500).
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .fake_provider import FakeOpenAI, Reply

OLD_SNAPSHOT = "gpt-4o-mini-2024-07-18"
NEW_SNAPSHOT = "gpt-4o-mini-2025-06-01"


@dataclass(frozen=True)
class DemoFeature:
    name: str
    model: str
    weight: int
    prompt_tokens: tuple[int, int]
    completion_tokens: tuple[int, int]
    stream: bool


FEATURES = (
    DemoFeature("ticket-summary", "gpt-4o-mini", 5, (800, 2500), (80, 250), False),
    DemoFeature("search-answer", "gpt-4.1-mini", 4, (1500, 4000), (150, 400), True),
    DemoFeature("code-review", "gpt-4o", 2, (3000, 9000), (300, 1200), True),
    DemoFeature("translate", "gpt-4o-mini", 3, (200, 900), (200, 900), False),
    DemoFeature("agent-planner", "o4-mini", 1, (2000, 6000), (400, 1500), False),
)


class _Responder:
    """Decides each fake reply; the share of the new snapshot grows over the run."""

    def __init__(self, duration_s: float, seed: int):
        self.started = time.monotonic()
        self.duration_s = max(duration_s, 1.0)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        with self.lock:
            rng = self.rng
            progress = min((time.monotonic() - self.started) / self.duration_s, 1.0)
            model = body.get("model", "")
            feature = next((f for f in FEATURES if f.model == model), FEATURES[0])
            roll = rng.random()
            if roll < 0.02:
                return Reply(status=429, error_type="rate_limit_error", delay_s=0.01)
            if roll < 0.03:
                return Reply(status=500, error_type="server_error", delay_s=0.2)
            served, logprob = model, -0.06
            if model == "gpt-4o-mini":
                newer = rng.random() < 0.2 + 0.6 * progress
                served = NEW_SNAPSHOT if newer else OLD_SNAPSHOT
                logprob = rng.uniform(-0.55, -0.25) if newer else rng.uniform(-0.12, -0.03)
            prompt = rng.randint(*feature.prompt_tokens)
            return Reply(
                content=" ".join(["token"] * rng.randint(8, 40)),
                model=served,
                prompt_tokens=prompt,
                completion_tokens=rng.randint(*feature.completion_tokens),
                cached_tokens=int(prompt * rng.choice((0, 0, 0.5))),
                reasoning_tokens=rng.randint(100, 600) if model.startswith("o") else 0,
                token_logprob=logprob,
                delay_s=rng.uniform(0.02, 0.25),
            )


def run(endpoint: str, duration_s: float = 180.0, rate_per_s: float = 10.0,
        service_name: str = "demo-support-bot", seed: int = 7) -> int:
    """Send traffic for `duration_s` at about `rate_per_s` calls; return the calls made."""
    import openai

    import infersight

    infersight.instrument(service_name=service_name, endpoint=endpoint)
    rng = random.Random(seed)
    weights = [f.weight for f in FEATURES]
    calls = 0
    with FakeOpenAI(responder=_Responder(duration_s, seed)) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="demo", max_retries=0)

        def one(feature: DemoFeature, user_id: str) -> None:
            with infersight.feature(feature.name), infersight.user(user_id):
                try:
                    kwargs = dict(model=feature.model, logprobs=True,
                                  messages=[{"role": "user", "content": "demo request"}])
                    if feature.stream:
                        stream = client.chat.completions.create(
                            stream=True, stream_options={"include_usage": True}, **kwargs)
                        for _ in stream:
                            pass
                    else:
                        client.chat.completions.create(**kwargs)
                except openai.APIError:
                    pass  # recorded on the span; the demo goes on

        deadline = time.monotonic() + duration_s
        with ThreadPoolExecutor(max_workers=8) as pool:
            while time.monotonic() < deadline:
                feature = rng.choices(FEATURES, weights)[0]
                pool.submit(one, feature, f"user-{rng.randint(1, 40)}")
                calls += 1
                time.sleep(rng.expovariate(rate_per_s))
    infersight.flush(timeout_s=30)
    return calls
