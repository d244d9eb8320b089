"""Sends gen_ai spans to aitrail with the OpenTelemetry Python SDK and its OTLP/HTTP
exporter (protobuf, gzip), as an instrumented application would. Run by
crates/cli/tests/cli/capture.rs; prints what it sent as JSON for the test to check field by field.

Env: AITRAIL_URL, AITRAIL_KEY (an ingest key bound to a tenant)."""

import json
import os
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

url, key = os.environ["AITRAIL_URL"], os.environ["AITRAIL_KEY"]
results = []


class Recording(OTLPSpanExporter):
    """The exporter, keeping each export's result so the test can see it succeeded."""

    def export(self, spans):
        result = super().export(spans)
        results.append(result == SpanExportResult.SUCCESS)
        return result


exporter = Recording(
    endpoint=f"{url}/v1/traces",
    headers={"Authorization": f"Bearer {key}"},
    compression=Compression.Gzip,
)
provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("aitrail-capture-test")

T0 = 1_763_900_000_000_000_000  # 2025-11-23T12:13:20Z
sent = {}

chat = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, start_time=T0, attributes={
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.request.top_p": 0.95,
    "gen_ai.request.max_tokens": 200,
    "gen_ai.request.seed": 7,
    "gen_ai.request.stop_sequences": ["###"],
    "gen_ai.request.frequency_penalty": 0.5,
    "gen_ai.request.presence_penalty": 0.25,
    "gen_ai.usage.input_tokens": 21,
    "gen_ai.usage.output_tokens": 9,
    "gen_ai.conversation.id": "conv-42",
    "gen_ai.response.id": "chatcmpl-abc",
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "stop"}]),
    "enduser.id": "alice",
})
chat.end(end_time=T0 + 842_000_000)
sent["chat"] = format(chat.get_span_context().span_id, "016x")

failed = tracer.start_span("chat claude-3-haiku", start_time=T0 + 10**9, attributes={
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-3-haiku",
    "error.type": "overloaded_error",
})
failed.set_status(Status(StatusCode.ERROR, "upstream overloaded"))
failed.end(end_time=T0 + 2 * 10**9)
sent["failed"] = format(failed.get_span_context().span_id, "016x")

# OpenLLMetry's older names.
legacy = tracer.start_span("anthropic.chat", start_time=T0 + 3 * 10**9, attributes={
    "gen_ai.system": "anthropic",
    "gen_ai.request.model": "claude-3-sonnet",
    "gen_ai.usage.prompt_tokens": 5,
    "gen_ai.usage.completion_tokens": 8,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "Say hi",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "Hi!",
})
legacy.end(end_time=T0 + 4 * 10**9)
sent["legacy"] = format(legacy.get_span_context().span_id, "016x")

# Not a model call: skipped and counted.
plain = tracer.start_span("GET /health", attributes={"http.request.method": "GET"})
plain.end()

provider.shutdown()
sent["trace_id"] = format(chat.get_span_context().trace_id, "032x")
sent["exports_succeeded"] = results
json.dump(sent, sys.stdout)
