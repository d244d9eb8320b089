"""The Python client against a running aitrail server (run by crates/cli/tests/cli/capture.rs):
record, query, export, and verify — including that verification fails, naming the step,
for each way a record, its proof or the key can be wrong.

Env: AITRAIL_URL, INGEST_KEY, AUDITOR_KEY (both of tenant acme), LOG_KEY, EXPORT_PATH.
Prints a JSON summary; any failed expectation raises (exit 1)."""

import base64
import copy
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aitrail import AuditConfig, AuditError, AuditTrail, loads, verify_record

url = os.environ["AITRAIL_URL"]
writer = AuditTrail(AuditConfig(url=url, api_key=os.environ["INGEST_KEY"], tenant_id="acme"))
auditor = AuditTrail(AuditConfig(url=url, api_key=os.environ["AUDITOR_KEY"], log_key=os.environ["LOG_KEY"]))
summary = {}

ids = [
    writer.record(model_provider="anthropic", model_name="claude-sonnet-4", temperature=0.7,
                  prompt="Write a persona for a rural nurse.", response="Maria, 44, works nights.",
                  tokens_input=120, tokens_output=48, model_config={"max_tokens": 4096, "top_p": 0.90},
                  prompt_variables={"role": "nurse", "years": 12, "ratio": 2e3, "note": "caf\u00e9 / \u2028"},
                  attributes={"input.data_hash": "sha256:abc"}),
    writer.record(model_provider="openai", model_name="gpt-4o", prompt="Summarise.", response="Done."),
    AuditTrail(AuditConfig(url=url, api_key=os.environ["INGEST_KEY"], tenant_id="acme", include_prompts=False))
    .record(model_provider="openai", model_name="gpt-4o-mini", prompt="never sent", response="kept"),
]
summary["ids"] = ids

# A record is provable once a checkpoint covers it (signed within the interval).
for _ in range(100):
    try:
        auditor.verification(ids[-1])
        break
    except AuditError as e:
        if e.status != 409:
            raise
        time.sleep(0.05)

for audit_id in ids:
    v = auditor.verification(audit_id)
    assert v.ok, (audit_id, v.steps)
assert [name for name, _, _ in auditor.verification(ids[0]).steps] == [
    "log key", "checkpoint signature", "entry", "inclusion", "record = entry", "content"]
assert auditor.verify(audit_id=ids[0]) is True

# Without a pinned key the server's own is used, and that alone is not trusted.
unpinned = AuditTrail(AuditConfig(url=url, api_key=os.environ["AUDITOR_KEY"]))
v = unpinned.verification(ids[0])
assert not v.ok and v.failed == ["key pinned"], v.steps
assert "key not pinned: taken from the server" in v.steps[-1][2], v.steps
assert unpinned.verify(audit_id=ids[0]) is False
trusting = AuditTrail(AuditConfig(url=url, api_key=os.environ["AUDITOR_KEY"], trust_server_key=True))
v = trusting.verification(ids[0])
assert v.ok and "key not pinned" in v.steps[-1][2], v.steps

unsent = auditor.get(ids[2])
assert "prompt" not in unsent and unsent["response"] == "kept", unsent

found = auditor.query(start_date="2020-01-01", model="claude-sonnet-4")
assert [r["id"] for r in found] == [ids[0]], found
assert len(auditor.query(provider="openai")) == 2
assert len(auditor.query(limit=1)) == 1

data = auditor.export(audit_ids=ids[:2], format="json", output=os.environ["EXPORT_PATH"])
exported = json.loads(data)
exported = exported if isinstance(exported, list) else exported.get("records", exported)
summary["exported"] = len(exported)

try:
    writer.record(model_provider="openai", temperature="hot")
    raise AssertionError("a bad record was accepted")
except AuditError as e:
    assert e.status == 422 and "temperature" in e.detail, e.detail
    summary["refused"] = e.detail

# Each way of being wrong fails, named by its step.
record = loads(auditor._request("GET", f"/v1/records/{ids[0]}", raw=True))
proof = auditor._request("GET", f"/v1/records/{ids[0]}/proof")
key = os.environ["LOG_KEY"]


def failed(r=record, p=proof, k=key):
    return verify_record(r, p, k).failed


def flip(b64, at=-3):
    b = bytearray(base64.b64decode(b64))
    b[at] ^= 1
    return base64.b64encode(bytes(b)).decode()


def with_proof(**changes):
    p = copy.deepcopy(proof)
    p.update(changes)
    return p


other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
name = key.split("+")[0]
other_raw = b"\x01" + other
other_id = hashlib.sha256(name.encode() + b"\n" + other_raw).digest()[:4].hex()
other_key = f"{name}+{other_id}+{base64.b64encode(other_raw).decode()}"
size_line = proof["checkpoint"].split("\n")[1]


def signed_by_another_key(origin):
    """The proof's checkpoint re-signed for `origin` by a key made here, and that key."""
    private = Ed25519PrivateKey.generate()
    raw = b"\x01" + private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    lines = proof["checkpoint"].split("\n")
    body = f"{origin}\n{lines[1]}\n{lines[2]}\n"
    sig = base64.b64encode(key_id + private.sign(body.encode())).decode()
    note = f"{body}\n\u2014 {name} {sig}\n"
    return with_proof(checkpoint=note), f"{name}+{key_id.hex()}+{base64.b64encode(raw).decode()}"


own_log = proof["checkpoint"].split("\n")[0]
resigned, resigned_key = signed_by_another_key(own_log)
moved, moved_key = signed_by_another_key(own_log.rsplit("/", 1)[0] + "/another-tenant")
unsent_proof = auditor._request("GET", f"/v1/records/{ids[2]}/proof")
cases = {
    "untouched": failed(),
    "field": failed(r={**record, "model_name": "gpt-4o"}),
    "content": failed(r={**record, "prompt": record["prompt"] + "!"}),
    "variables": failed(r={**record, "prompt_variables": {**record["prompt_variables"], "years": 13}}),
    "entry": failed(p=with_proof(entry=flip(proof["entry"]))),
    "path": failed(p=with_proof(audit_path=[flip(proof["audit_path"][0])] + proof["audit_path"][1:])) if proof["audit_path"] else ["inclusion"],
    "size": failed(p=with_proof(checkpoint=proof["checkpoint"].replace(f"\n{size_line}\n", f"\n{int(size_line) + 1}\n", 1))),
    "other key": failed(k=other_key),
    # Checks are relative to the key given: the same tree re-signed by another key passes
    # with that key, and fails when the checkpoint is of another tenant's log.
    "re-signed": failed(p=resigned, k=resigned_key),
    "other tenant's log": failed(p=moved, k=moved_key),
    "content without commitment": verify_record({**unsent, "prompt": "never sent"}, unsent_proof, key).failed,
}
assert cases["untouched"] == [], cases
assert cases["field"] == ["record = entry"], cases
assert cases["content"] == ["content"], cases
assert cases["variables"] == ["content"], cases
assert "inclusion" in cases["entry"] or "entry" in cases["entry"], cases
assert cases["path"] == ["inclusion"], cases
assert cases["size"] == ["checkpoint signature"], cases
assert cases["other key"] == ["checkpoint signature"], cases
assert cases["re-signed"] == [], cases
assert cases["other tenant's log"] == ["record = entry"], cases
assert cases["content without commitment"] == ["content"], cases
summary["tampered"] = cases
json.dump(summary, sys.stdout)
