"""One chat call through the proxy with the openai package; prints the HTTP status and how
long it took. Env: AITRAIL_URL, AITRAIL_KEY, MODEL."""

import json
import os
import sys
import time

import openai

client = openai.OpenAI(base_url=f"{os.environ['AITRAIL_URL']}/proxy/openai/v1", api_key="sk-test-0000-not-a-real-key",
                       default_headers={"X-Aitrail-Key": os.environ["AITRAIL_KEY"]}, max_retries=0, timeout=60)
started = time.monotonic()
try:
    answer = client.chat.completions.create(model=os.environ["MODEL"], messages=[{"role": "user", "content": "hi"}])
    status, detail = 200, answer.choices[0].message.content
except openai.APIStatusError as e:
    status, detail = e.status_code, str(e.body)
json.dump({"status": status, "detail": detail, "seconds": time.monotonic() - started}, sys.stdout)
