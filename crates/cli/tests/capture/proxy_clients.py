"""Calls the logging proxy with the official openai and anthropic Python packages, streaming
and not, as an application would after changing only its base URL. Run by
crates/cli/tests/cli/capture.rs; prints what the clients received as JSON.

Env: AITRAIL_URL (the aitrail server), AITRAIL_KEY (an ingest key)."""

import json
import os
import sys
import time

import anthropic
import openai

url, key = os.environ["AITRAIL_URL"], os.environ["AITRAIL_KEY"]
headers = {"X-Aitrail-Key": key, "X-Aitrail-User": "bob", "X-Aitrail-Session": "sess-7"}
got = {}

oa = openai.OpenAI(base_url=f"{url}/proxy/openai/v1", api_key="sk-test-0000-not-a-real-key", default_headers=headers, max_retries=0)
chat = oa.chat.completions.create(model="gpt-4o", temperature=0.2, seed=5, max_tokens=50,
                                  messages=[{"role": "user", "content": "What is the capital of France?"}])
got["chat"] = {"text": chat.choices[0].message.content, "tokens": chat.usage.total_tokens}

started = time.monotonic()
first = None
text = ""
usage = None
stream = oa.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                    messages=[{"role": "user", "content": "Capital of France, streamed?"}])
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        first = first if first is not None else time.monotonic() - started
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.total_tokens
got["chat_stream"] = {"text": text, "tokens": usage, "first_chunk_s": first, "total_s": time.monotonic() - started}

emb = oa.embeddings.create(model="text-embedding-3-small", input="hello")
got["embeddings"] = {"dims": len(emb.data[0].embedding)}

try:
    oa.chat.completions.create(model="rate-limited", messages=[{"role": "user", "content": "hi"}])
    got["rate_limited"] = "no error"
except openai.RateLimitError as e:
    got["rate_limited"] = e.status_code

an = anthropic.Anthropic(base_url=f"{url}/proxy/anthropic", api_key="sk-ant-test-0000-not-a-real-key", default_headers=headers, max_retries=0)
msg = an.messages.create(model="claude-3-haiku", max_tokens=64, system="Answer in French.", extra_body={"temperature": 0.5},
                         messages=[{"role": "user", "content": "Hello"}])
got["messages"] = {"text": msg.content[0].text, "output_tokens": msg.usage.output_tokens}

started = time.monotonic()
first = None
text = ""
with an.messages.stream(model="claude-3-sonnet", max_tokens=64, messages=[{"role": "user", "content": "Hello, streamed"}]) as s:
    for t in s.text_stream:
        first = first if first is not None else time.monotonic() - started
        text += t
    final = s.get_final_message()
got["messages_stream"] = {"text": text, "output_tokens": final.usage.output_tokens, "first_chunk_s": first, "total_s": time.monotonic() - started}

json.dump(got, sys.stdout)
