"""A stand-in for a peer in the SDK benchmark's harness test (the real peers install into
their own virtualenvs, minutes per run): an OTel-style `OpenAIInstrumentor` that wraps
`Completions.create` with wrapt, one span per call, and whose `uninstrument()` leaves the
wrapper behind, as OpenLLMetry's does. The test removes it."""

from __future__ import annotations

import wrapt


class OpenAIInstrumentor:
    def instrument(self, tracer_provider) -> None:
        tracer = tracer_provider.get_tracer("peer")

        def wrapper(wrapped, _instance, args, kwargs):
            with tracer.start_as_current_span("chat"):
                return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper("openai.resources.chat.completions", "Completions.create",
                                    wrapper)

    def uninstrument(self) -> None:
        pass
