"""Checks a record against its inclusion proof and the log's verifier key, in Python:
a second implementation of docs/FORMAT.md, independent of the server's Rust.

1. the verifier key (`name+keyid+base64(0x01 ‖ Ed25519 public key)`) and its key id,
   SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4];
2. the checkpoint, a C2SP signed note, carries a valid Ed25519 signature by that key;
3. the leaf hash, SHA-256(0x00 ‖ entry);
4. the RFC 9162 §2.1.3.2 inclusion path from that leaf gives the checkpoint's root;
5. the record shown equals the record in the entry, field by field;
6. each content field shown (prompt, response, prompt variables as canonical JSON) matches
   its commitment, SHA-256("aitrail.commitment.v1" ‖ 0x00 ‖ salt ‖ field ‖ 0x00 ‖ content);
   content shown without a commitment or a salt fails.

Entries are read strictly: duplicate member names are refused, and the entry must be in
canonical form (re-encoding it gives its bytes). Records must be parsed with `loads`
(number literals kept) for their numbers to compare exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, List, Tuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ENTRY_PREFIX = b"aitrail.entry.v1\n"
# Fields a record shows that its entry holds otherwise (content, as commitments) or not at all.
NOT_IN_ENTRY = {"id", "seq", "recorded_at", "prompt", "response", "prompt_variables", "prompt_hash", "response_hash"}


@dataclass
class Verification:
    """The checks made, each (name, passed, what it found)."""

    steps: List[Tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(passed for _, passed, _ in self.steps)

    @property
    def failed(self) -> List[str]:
        return [name for name, passed, _ in self.steps if not passed]

    def check(self, name: str, run: Callable[[], str]) -> bool:
        try:
            self.steps.append((name, True, run()))
            return True
        except Exception as e:  # each failure is a finding, named by its step
            self.steps.append((name, False, str(e) or type(e).__name__))
            return False


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def parse_verifier_key(text: str):
    text = text.strip()
    name, _, rest = text.partition("+")
    key_id_hex, _, key_b64 = rest.partition("+")
    if not name or len(key_id_hex) != 8 or not key_b64:
        raise ValueError("the verifier key is not name+keyid+key")
    raw = base64.b64decode(key_b64, validate=True)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("the verifier key is not an Ed25519 key")
    key_id = sha256(name.encode(), b"\n", raw)[:4]
    if key_id.hex() != key_id_hex.lower():
        raise ValueError("the verifier key's id does not match its key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def verify_note(note: str, name: str, key_id: bytes, public_key: Ed25519PublicKey) -> str:
    """The body of a signed note that `public_key` signed, or an error saying why not."""
    split = note.find("\n\n")
    if split < 0:
        raise ValueError("the checkpoint has no signature block")
    body = note[: split + 1]
    for line in note[split + 2:].split("\n"):
        if not line.startswith("\u2014 "):
            continue
        signer, _, sig_b64 = line[2:].partition(" ")
        if signer != name:
            continue
        sig = base64.b64decode(sig_b64)
        if len(sig) != 68 or sig[:4] != key_id:
            continue
        try:
            public_key.verify(sig[4:], body.encode())
        except InvalidSignature:
            raise ValueError("the checkpoint's signature does not verify with the log key") from None
        return body
    raise ValueError(f"the checkpoint carries no signature by {name}")


def root_from_inclusion(index: int, size: int, leaf: bytes, path: List[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        raise ValueError("the leaf index is outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("the inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01", p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01", r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the inclusion proof is too short")
    return r


class Number(str):
    """A JSON number kept as the literal it was written with (docs/FORMAT.md: numbers are
    written exactly as the client sent them)."""


def _unique(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member names in JSON")
    return dict(pairs)


def loads(text) -> Any:
    """JSON with number literals kept and duplicate member names refused."""
    return json.loads(text, parse_float=Number, parse_int=Number, object_pairs_hook=_unique)


def _number(literal: str) -> str:
    # An exponent without a sign gets "+": 2e3 → 2e+3.
    for i, c in enumerate(literal):
        if c in "eE" and i + 1 < len(literal) and literal[i + 1].isdigit():
            return literal[: i + 1] + "+" + literal[i + 1:]
    return literal


def canonical(value: Any) -> str:
    """docs/FORMAT.md's canonical JSON: members sorted by their UTF-8 bytes, no whitespace,
    strings minimally escaped, numbers as their literals."""
    if isinstance(value, Number):
        return _number(value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def differences(record: dict, entry: dict) -> List[str]:
    logged = entry["record"]
    differ = []
    for name in sorted(set(logged) | set(record)):
        if name == "commitments" or name in NOT_IN_ENTRY:
            continue
        if canonical(record.get(name)) != canonical(logged.get(name)):
            differ.append(name)
    for name in ("id", "seq", "recorded_at"):
        if str(record.get(name)) != str(entry.get(name)):
            differ.append(name)
    return differ


def verify_record(record: dict, proof: dict, verifier_key: str) -> Verification:
    v = Verification()
    found: dict = {}

    def key():
        found["key"] = parse_verifier_key(verifier_key)
        return f"{found['key'][0]}, key id {found['key'][1].hex()}"

    if not v.check("log key", key):
        return v
    name, key_id, public_key = found["key"]

    def checkpoint():
        body = verify_note(proof["checkpoint"], name, key_id, public_key)
        lines = body.split("\n")
        root = base64.b64decode(lines[2])
        if not lines[1].isdigit() or len(root) != 32:
            raise ValueError("the checkpoint has no size and root")
        found["checkpoint"] = (lines[0], int(lines[1]), root)
        return f"{lines[0]}, size {lines[1]}"

    v.check("checkpoint signature", checkpoint)
    entry_bytes = base64.b64decode(proof["entry"])

    def entry():
        if not entry_bytes.startswith(ENTRY_PREFIX):
            raise ValueError("not an aitrail.entry.v1 entry")
        text = entry_bytes[len(ENTRY_PREFIX):].decode("utf-8")
        parsed = loads(text)
        if canonical(parsed) != text:
            raise ValueError("the entry is not in canonical form")
        found["entry"] = parsed
        found["leaf"] = sha256(b"\x00", entry_bytes)
        return f"leaf hash {found['leaf'].hex()}"

    v.check("entry", entry)
    if "checkpoint" in found and "leaf" in found:
        def inclusion():
            _, size, root = found["checkpoint"]
            if proof["tree_size"] != size:
                raise ValueError("the proof is for another tree size than the checkpoint")
            path = [base64.b64decode(h) for h in proof["audit_path"]]
            if root_from_inclusion(proof["leaf_index"], size, found["leaf"], path) != root:
                raise ValueError("the proof leads to another root than the signed one")
            return f"leaf {proof['leaf_index']} of {size}"

        v.check("inclusion", inclusion)
    if "entry" in found:
        def same():
            entry = found["entry"]
            differ = differences(record, entry)
            if differ:
                raise ValueError("differs from the log in: " + ", ".join(differ))
            tenant_log = f"{name}/{entry['record'].get('tenant_id')}"
            if "checkpoint" in found and found["checkpoint"][0] != tenant_log:
                raise ValueError(f"the checkpoint is of log {found['checkpoint'][0]}, not {tenant_log}")
            if int(proof.get("leaf_index", -1)) != int(entry.get("seq", -2)):
                raise ValueError("the proof is for another leaf than the entry's seq")
            return "every field matches the entry, in its tenant's log"

        v.check("record = entry", same)
        commitments = found["entry"]["record"].get("commitments", {})
        # Content shown must be content logged: each shown field needs its commitment and the salt.
        shown = [f for f in ("prompt", "response", "prompt_variables") if record.get(f) is not None]
        if shown:
            def content():
                missing = [f for f in shown if f not in commitments]
                if missing:
                    raise ValueError(" and ".join(missing) + " shown without a commitment in the log")
                if not proof.get("content_salt"):
                    raise ValueError("the content shown cannot be checked: the proof carries no salt")
                salt = base64.b64decode(proof["content_salt"])
                for f in shown:
                    content = record[f] if isinstance(record[f], str) else canonical(record[f])
                    c = sha256(b"aitrail.commitment.v1\x00", salt, f.encode(), b"\x00", content.encode())
                    if c.hex() != commitments[f]:
                        raise ValueError(f"the {f} shown is not the {f} logged")
                return " and ".join(shown) + " match their commitments"

            v.check("content", content)
    return v
