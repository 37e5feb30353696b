"""Span attribute names of the Infersight contract (DESIGN section 3), defined once.

OpenTelemetry GenAI semantic-convention names are used where they exist (a test checks them
against `opentelemetry-semantic-conventions`); `infersight.*` only where they have no name.
"""

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"

INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"

COST = "gen_ai.usage.cost"
COST_SOURCE = "infersight.cost.source"
CONFIDENCE = "infersight.confidence"
CONFIDENCE_METHOD = "infersight.confidence.method"
MODEL_VERSION = "infersight.model.version"

FEATURE = "infersight.feature"
USER = "user.id"
SESSION = "gen_ai.conversation.id"
TENANT = "infersight.tenant.id"

ERROR_TYPE = "error.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"

# LLM request and response details beyond the contract table.
EMBEDDING_DIMENSIONS = "gen_ai.embeddings.dimension.count"
TOOL_CALL_COUNT = "infersight.tool_call.count"  # tool calls the model asked for (no arguments)
TOOL_CALL_NAMES = "infersight.tool_call.names"

# Values of COST_SOURCE.
COST_FROM_SDK = "sdk"
COST_FROM_COLLECTOR = "collector"
COST_UNKNOWN_MODEL = "unknown_model"

# Tags carried in baggage (context.py) and copied onto every span the SDK starts.
TAG_KEYS = (FEATURE, USER, SESSION, TENANT)

# Classic models (sklearn, transformers, torch, @observe): batch size, the confidence
# distribution over the batch's rows, and which method of the model was called.
BATCH_ROWS = "infersight.batch.rows"
CONFIDENCE_P10 = "infersight.confidence.p10"
CONFIDENCE_P50 = "infersight.confidence.p50"
CONFIDENCE_P90 = "infersight.confidence.p90"
MODEL_METHOD = "infersight.model.method"
MODEL_TASK = "infersight.model.task"
