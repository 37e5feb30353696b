"""AWS Bedrock Runtime through boto3: `converse`, `converse_stream`, and `invoke_model` with
Anthropic and Llama bodies.

Usage:
    infersight.instrument()   # patches botocore when it is imported, before or after

botocore generates client classes at run time, so the patch sits on the one method every
client call goes through, `BaseClient._make_api_call`; a call of any other service, or any
other Bedrock operation, passes straight through after one dictionary look-up by class.

Converse reports `inputTokens` without cache reads and writes; the span's input count adds
them, as the contract counts it. `invoke_model` bodies are read only for Anthropic and Meta
models with a JSON response, and the caller gets an unread body with the same bytes.
"""

from __future__ import annotations

import io
import json
from typing import Any

from .. import _state
from .. import attributes as A
from . import (Instrumentor, Operation, finish_attributes, tool_call_attributes,
               uncached_usage_attributes)

PROVIDER = "aws.bedrock"
_OPERATIONS = ("Converse", "ConverseStream", "InvokeModel")
_BODY_FAMILIES = ("anthropic.", "meta.")  # invoke_model bodies we read

_is_bedrock: dict[type, bool] = {}


class BedrockInstrumentor(Instrumentor):
    module = "botocore.client"

    def patches(self):
        return [("botocore.client", "BaseClient._make_api_call", CALL.wrapper())]


def _bedrock_client(instance: Any) -> bool:
    cls = type(instance)
    known = _is_bedrock.get(cls)
    if known is None:
        known = _is_bedrock[cls] = instance.meta.service_model.service_name == "bedrock-runtime"
    return known


# ---- pure extraction -------------------------------------------------------------------

def request_attributes(instance: Any, args: tuple, _kwargs: dict[str, Any]):
    """None for anything but the traced Bedrock operations, which are left untraced."""
    if len(args) < 2 or args[0] not in _OPERATIONS or not _bedrock_client(instance):
        return None
    params = args[1]
    attrs: dict[str, Any] = {A.OPERATION: "chat", A.PROVIDER: PROVIDER}
    if isinstance(params.get("modelId"), str):
        attrs[A.REQUEST_MODEL] = params["modelId"]
    config = params.get("inferenceConfig") or {}
    if isinstance(config.get("maxTokens"), int):
        attrs[A.REQUEST_MAX_TOKENS] = config["maxTokens"]
    if isinstance(config.get("temperature"), (int, float)):
        attrs[A.REQUEST_TEMPERATURE] = float(config["temperature"])
    if _state.capture_content:
        content = params.get("messages") if "messages" in params else params.get("body")
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        if content is not None:
            attrs[A.INPUT_MESSAGES] = content if isinstance(content, str) \
                else json.dumps(content, default=str)
    return attrs


def converse_usage(usage: dict[str, Any]) -> dict[str, int]:
    return uncached_usage_attributes(usage.get("inputTokens"), usage.get("outputTokens"),
                                     usage.get("cacheReadInputTokens"),
                                     usage.get("cacheWriteInputTokens"))


def _converse_attributes(result: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if result.get("stopReason"):
        attrs[A.FINISH_REASONS] = [result["stopReason"]]
    message = (result.get("output") or {}).get("message") or {}
    tool_call_attributes(attrs, [block["toolUse"].get("name", "") for block in
                                 message.get("content") or () if "toolUse" in block])
    if result.get("usage"):
        attrs.update(converse_usage(result["usage"]))
    if _state.capture_content and message:
        attrs[A.OUTPUT_MESSAGES] = json.dumps([message], default=str)
    return attrs


def invoke_body_attributes(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic (Messages API) or Meta Llama response body."""
    attrs: dict[str, Any] = {}
    usage = body.get("usage")
    if isinstance(usage, dict):  # Anthropic: input_tokens leaves out the cache, as Converse
        attrs.update(uncached_usage_attributes(
            usage.get("input_tokens"), usage.get("output_tokens"),
            usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")))
        if body.get("model"):
            attrs[A.RESPONSE_MODEL] = body["model"]
        if body.get("id"):
            attrs[A.RESPONSE_ID] = body["id"]
    elif "prompt_token_count" in body:  # Llama
        attrs[A.INPUT_TOKENS] = body.get("prompt_token_count") or 0
        attrs[A.OUTPUT_TOKENS] = body.get("generation_token_count") or 0
    if body.get("stop_reason"):
        attrs[A.FINISH_REASONS] = [body["stop_reason"]]
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(body.get("content") or body.get("generation"),
                                              default=str)
    return attrs


def _invoke_attributes(result: dict[str, Any], model: str | None) -> dict[str, Any]:
    if not (model and any(f in model for f in _BODY_FAMILIES)
            and "json" in str(result.get("contentType", ""))):
        return {}
    from botocore.response import StreamingBody  # botocore is loaded: this call came from it

    data = result["body"].read()
    result["body"] = StreamingBody(io.BytesIO(data), len(data))  # unread, for the caller
    return invoke_body_attributes(json.loads(data))


def response_attributes(result: dict[str, Any], request_model: str | None) -> dict[str, Any]:
    if "body" in result:
        attrs = _invoke_attributes(result, request_model)
    else:
        attrs = _converse_attributes(result)
    finish_attributes(attrs, request_model)
    return attrs


class ConverseStreamAccumulator:
    """ConverseStream events: messageStop has the stop reason, metadata the usage."""

    def __init__(self, request_model: str | None):
        self.request_model = request_model
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.tools: list[str] = []
        self.text: list[str] = []

    def add(self, event: dict[str, Any]) -> None:
        if "contentBlockDelta" in event:
            if _state.capture_content:
                self.text.append(event["contentBlockDelta"].get("delta", {}).get("text", ""))
        elif "metadata" in event:
            self.usage = event["metadata"].get("usage")
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "contentBlockStart" in event:
            tool = event["contentBlockStart"].get("start", {}).get("toolUse")
            if tool:
                self.tools.append(tool.get("name", ""))

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.stop_reason:
            attrs[A.FINISH_REASONS] = [self.stop_reason]
        tool_call_attributes(attrs, self.tools)
        if self.usage:
            attrs.update(converse_usage(self.usage))
        if _state.capture_content and self.text:
            attrs[A.OUTPUT_MESSAGES] = json.dumps([{"role": "assistant",
                                                    "content": "".join(self.text)}])
        finish_attributes(attrs, self.request_model)
        return attrs


def _accumulate(args: tuple, _kwargs: dict[str, Any], attrs: dict[str, Any]):
    if args[0] != "ConverseStream":
        return None
    return ConverseStreamAccumulator(attrs.get(A.REQUEST_MODEL))


def _attach(result: dict[str, Any], state: Any, proxy: type) -> dict[str, Any]:
    result["stream"] = proxy(result["stream"], state)
    return result


CALL = Operation("bedrock", request_attributes, response_attributes, _accumulate, _attach)
