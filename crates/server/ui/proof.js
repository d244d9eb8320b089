// Checks a record's integrity in the browser, trusting nothing but the verifier key:
// the checkpoint's Ed25519 signature (C2SP signed note), the record's leaf hash from its
// entry, the RFC 9162 inclusion path up to the signed root, that the record shown is the
// record logged, and its content against the entry's salted commitments (docs/FORMAT.md).
// WebCrypto does the hashing and signature checks (Ed25519 in current browsers).

const utf8 = new TextEncoder();
const ENTRY_PREFIX = "aitrail.entry.v1\n";

export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(parts) {
  const bytes = parts.map((p) => (typeof p === "string" ? utf8.encode(p) : Uint8Array.from(p)));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(parts)));
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A verifier key `name+keyid+base64(0x01 ‖ public key)`, its key id checked. */
export async function parseVerifierKey(text) {
  // As Go's note.NewVerifier: the key's base64 may hold "+" too.
  const t = text.trim();
  const first = t.indexOf("+");
  const second = t.indexOf("+", first + 1);
  if (first < 1 || second < 0) throw new Error("the verifier key is not name+id+key");
  const [name, idHex, keyText] = [t.slice(0, first), t.slice(first + 1, second), t.slice(second + 1)];
  if (!/^[0-9a-f]{8}$/i.test(idHex)) throw new Error("the verifier key's id is not 8 hex digits");
  const raw = fromBase64(keyText);
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("the verifier key is not an Ed25519 key");
  const keyId = (await sha256(name, [0x0a], raw)).slice(0, 4);
  if (toHex(keyId) !== idHex.toLowerCase()) throw new Error("the verifier key's id does not match its key");
  const publicKey = raw.slice(1);
  return { name, keyId, publicKey, fingerprint: toHex(await sha256(publicKey)) };
}

/** The body of a signed note if `key` signed it; throws saying why not. */
export async function verifyNote(note, key) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint has no signature block");
  const body = note.slice(0, split + 1);
  const lines = note.slice(split + 2).split("\n").filter((l) => l !== "");
  const mine = lines
    .map((line) => line.match(/^\u2014 (\S+) (\S+)$/))
    .filter((m) => m && m[1] === key.name)
    .map((m) => fromBase64(m[2]))
    .filter((sig) => sig.length === 68 && equalBytes(sig.slice(0, 4), key.keyId));
  if (mine.length === 0) throw new Error(`the checkpoint carries no signature by ${key.name}`);
  const publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, mine[0].slice(4), utf8.encode(body));
  if (!ok) throw new Error("the checkpoint's signature does not verify with the log key");
  return body;
}

/** Origin, size and root of a checkpoint body (C2SP tlog-checkpoint). */
export function parseCheckpoint(body) {
  const [origin, size, root] = body.split("\n");
  if (!/^\d+$/.test(size || "")) throw new Error("the checkpoint has no tree size");
  const rootBytes = fromBase64(root || "");
  if (rootBytes.length !== 32) throw new Error("the checkpoint has no 32-byte root");
  return { origin, size: BigInt(size), root: rootBytes };
}

export const leafHash = (entry) => sha256([0], entry);
const nodeHash = (left, right) => sha256([1], left, right);

/** The root an RFC 9162 §2.1.3.2 inclusion proof leads to; throws if it is malformed. */
export async function rootFromInclusion(index, size, leaf, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) throw new Error("the leaf index is outside the tree");
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new Error("the inclusion proof is too long");
    if (fn % 2n === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2n === 0n && fn !== 0n) {
        fn /= 2n;
        sn /= 2n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn /= 2n;
    sn /= 2n;
  }
  if (sn !== 0n) throw new Error("the inclusion proof is too short");
  return r;
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).filter((k) => value[k] !== null).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// Fields a record shows that its entry holds otherwise (content: as commitments) or not at all.
const NOT_IN_ENTRY = new Set(["id", "seq", "recorded_at", "prompt", "response", "prompt_variables", "prompt_hash", "response_hash"]);

/** The fields where the record shown differs from the record logged in `entry`. */
export function differences(record, entry) {
  const logged = entry.record;
  const fields = new Set([...Object.keys(logged), ...Object.keys(record)]);
  const differ = [];
  for (const field of fields) {
    if (field === "commitments" || NOT_IN_ENTRY.has(field)) continue;
    const a = record[field] ?? null;
    const b = logged[field] ?? null;
    if (canonical(a) !== canonical(b)) differ.push(field);
  }
  for (const field of ["id", "seq", "recorded_at"]) {
    if (String(record[field]) !== String(entry[field])) differ.push(field);
  }
  return differ;
}

/**
 * Check `record` against its inclusion proof and the log's verifier key. Returns the
 * steps checked, each `{ step, ok, detail }`; the record is verified when all are ok.
 */
export async function checkRecord(record, proof, verifierKeyText) {
  const steps = [];
  const step = async (name, run) => {
    try {
      steps.push({ step: name, ok: true, detail: await run() });
      return true;
    } catch (e) {
      steps.push({ step: name, ok: false, detail: e.message, unsupported: e.name === "NotSupportedError" });
      return false;
    }
  };
  let key, checkpoint, entry, leaf;
  await step("Log key", async () => {
    key = await parseVerifierKey(verifierKeyText);
    return `${key.name}, fingerprint SHA-256 ${key.fingerprint.slice(0, 16)}…`;
  });
  if (!key) return steps;
  await step("Checkpoint signature", async () => {
    checkpoint = parseCheckpoint(await verifyNote(proof.checkpoint, key));
    return `signed by ${key.name}: ${checkpoint.origin}, tree size ${checkpoint.size}`;
  });
  const entryBytes = fromBase64(proof.entry);
  await step("Entry", async () => {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(entryBytes);
    if (!text.startsWith(ENTRY_PREFIX)) throw new Error("not an aitrail.entry.v1 entry");
    entry = JSON.parse(text.slice(ENTRY_PREFIX.length));
    leaf = await leafHash(entryBytes);
    return `leaf hash ${toHex(leaf).slice(0, 16)}…`;
  });
  if (checkpoint && leaf) {
    await step("Inclusion", async () => {
      if (BigInt(proof.tree_size) !== checkpoint.size) throw new Error("the proof is for another tree size than the checkpoint");
      const path = proof.audit_path.map(fromBase64);
      const root = await rootFromInclusion(proof.leaf_index, proof.tree_size, leaf, path);
      if (!equalBytes(root, checkpoint.root)) throw new Error("the proof leads to another root than the signed one");
      return `leaf ${proof.leaf_index} of ${proof.tree_size}: the path gives the signed root`;
    });
  }
  if (entry) {
    await step("Record shown = record logged", async () => {
      const differ = differences(record, entry);
      if (differ.length) throw new Error(`differs from the log in: ${differ.join(", ")}`);
      if (checkpoint && checkpoint.origin !== `${key.name}/${entry.record.tenant_id}`) {
        throw new Error(`the checkpoint is of log ${checkpoint.origin}, not ${key.name}/${entry.record.tenant_id}`);
      }
      if (String(proof.leaf_index) !== String(entry.seq)) throw new Error("the proof is for another leaf than the entry's seq");
      return "every field matches the entry, in its tenant's log";
    });
    // Content shown must be content logged: each shown field needs its commitment and
    // the salt, or it is not verified.
    const commitments = entry.record.commitments || {};
    const shown = ["prompt", "response"].filter((f) => typeof record[f] === "string");
    if (shown.length) {
      await step("Content", async () => {
        const missing = shown.filter((f) => !commitments[f]);
        if (missing.length) throw new Error(`the ${missing.join(" and ")} shown ${missing.length > 1 ? "have" : "has"} no commitment in the log`);
        if (!proof.content_salt) throw new Error("the content shown cannot be checked: the proof carries no salt");
        const salt = fromBase64(proof.content_salt);
        for (const field of shown) {
          const c = await sha256("aitrail.commitment.v1", [0], salt, field, [0], record[field]);
          if (toHex(c) !== commitments[field]) throw new Error(`the ${field} shown is not the ${field} logged`);
        }
        const variables = record.prompt_variables ? "; prompt variables are not checked here (aitrail verify checks them)" : "";
        return `${shown.join(" and ")} match their commitments${variables}`;
      });
    }
  }
  return steps;
}
