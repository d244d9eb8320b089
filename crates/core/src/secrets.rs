//! Secret scanning: credentials that must never be stored (docs/SECRETS.md has the rules).
//!
//! Text (prompts, responses, error messages, string values anywhere) is matched against
//! token shapes that providers document (`sk-…`, `AKIA…`, `ghp_…`, PEM private keys, …)
//! and `name = value` assignments of credential-like names. JSON objects are also checked
//! by key: a non-empty value under a key named like a credential (`api_key`, `password`,
//! `access_token`, …) is a secret whatever it looks like.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// A rule's name (what `[REDACTED:<rule>]` and errors say) and its pattern.
pub const RULES: &[(&str, &str)] = &[
    (
        "pem_private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
    ),
    ("anthropic_api_key", r"\bsk-ant-(?:api|admin|oat)\d{2}-[A-Za-z0-9_\-]{32,}"),
    (
        "openai_api_key",
        r"\bsk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{32,}|[A-Za-z0-9]{32,}\b)",
    ),
    // A secret access key (40 characters of base64) written within 100 characters (line
    // breaks too) of its key id, on either side: the pair goes whole.
    (
        "aws_secret_access_key",
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b[\s\S]{0,100}?\b[A-Za-z0-9][A-Za-z0-9/+]{38}[A-Za-z0-9]\b|\b[A-Za-z0-9][A-Za-z0-9/+]{38}[A-Za-z0-9]\b[\s\S]{0,100}?\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    ),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[0-9A-Z]{16}\b"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})"),
    ("gitlab_token", r"\bgl(?:pat|dt|ptt|rt)-[A-Za-z0-9_\-]{20,}"),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9\-]{10,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("stripe_key", r"\b(?:sk|rk|whsec)_(?:live|test)_[A-Za-z0-9]{20,}|\bwhsec_[A-Za-z0-9]{24,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*"),
    (
        "assigned_secret",
        r#"(?i)(\b(?:[a-z0-9]+[_\-])*(?:api[_\-]?key|apikey|secret[_\-]?(?:access[_\-]?)?key|client[_\-]?secret|password|passwd|pwd|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|session[_\-]?token|private[_\-]?key)["']?\s*[:=]\s*["']?)[^\s"',;]{6,}"#,
    ),
];

/// The rule for `name = value` assignments of credential-like names.
const ASSIGNED: &str = "assigned_secret";

/// All rules as one pattern, a group per rule, so text is searched once. Word boundaries
/// are ASCII ones: a Unicode `\b` keeps the regex engine off its DFA, which made scanning
/// every prompt cost a fifth of ingest.
static COMBINED: LazyLock<Regex> = LazyLock::new(|| {
    let ascii = |p: &str| p.replace(r"\b", r"(?-u:\b)");
    let alternatives: Vec<String> = RULES.iter().map(|(_, p)| format!("({})", ascii(p))).collect();
    Regex::new(&alternatives.join("|")).expect("the rules are valid patterns")
});

/// The group of each rule in [`COMBINED`] (rules may have groups of their own).
static RULE_GROUPS: LazyLock<Vec<usize>> = LazyLock::new(|| {
    let mut group = 1;
    RULES
        .iter()
        .map(|(_, p)| {
            let at = group;
            group += 1 + Regex::new(p).expect("a valid pattern").captures_len() - 1;
            at
        })
        .collect()
});

/// The rule of a combined match, and what of the match to keep: for `name = value`, the
/// name (and the value's rule is a token rule's when the value has a known shape).
fn rule_of<'t>(caps: &regex::Captures<'t>) -> (&'static str, &'t str) {
    let i = RULE_GROUPS.iter().position(|&g| caps.get(g).is_some()).unwrap_or(0);
    if RULES[i].0 != ASSIGNED {
        return (RULES[i].0, "");
    }
    let whole = caps.get(RULE_GROUPS[i]).expect("the rule's group matched").as_str();
    let name = caps.get(RULE_GROUPS[i] + 1).map_or("", |m| m.as_str());
    let shaped = COMBINED.captures(&whole[name.len()..]).and_then(|c| {
        let j = RULE_GROUPS.iter().position(|&g| c.get(g).is_some())?;
        (RULES[j].0 != ASSIGNED).then_some(RULES[j].0)
    });
    (shaped.unwrap_or(ASSIGNED), name)
}

/// The first secret in `text`: its rule.
pub fn find_in_text(text: &str) -> Option<&'static str> {
    if !COMBINED.is_match(text) {
        return None;
    }
    COMBINED.captures(text).map(|c| rule_of(&c).0)
}

/// `text` with every secret replaced by `[REDACTED:<rule>]` (after the name, in
/// `name = value`), and how many were.
pub fn redact_text(text: &str) -> (String, u64) {
    if !COMBINED.is_match(text) {
        return (text.to_owned(), 0);
    }
    let mut count = 0;
    let redacted = COMBINED.replace_all(text, |caps: &regex::Captures<'_>| {
        count += 1;
        let (rule, kept) = rule_of(caps);
        format!("{kept}[REDACTED:{rule}]")
    });
    (redacted.into_owned(), count)
}

/// Whether a JSON key names a credential, so that any value under it is one.
pub fn is_secret_key(key: &str) -> bool {
    // Most keys (`max_tokens` aside) contain none of these: decided without allocating.
    let has =
        |word: &[u8]| key.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    let words: [&[u8]; 9] =
        [b"pass", b"pwd", b"secret", b"token", b"key", b"auth", b"cred", b"bearer", b"cookie"];
    if !words.iter().any(|w| has(w)) {
        return false;
    }
    let k = key.to_ascii_lowercase().replace(['-', ' ', '.'], "_");
    let exact = [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "authorization",
        "proxy_authorization",
        "auth",
        "credentials",
        "credential",
        "bearer",
        "cookie",
        "set_cookie",
    ];
    let suffixes = [
        "_password",
        "_passwd",
        "_secret",
        "_token",
        "_apikey",
        "_api_key",
        "_key_secret",
        "_private_key",
        "_secret_key",
        "_access_key",
        "_credentials",
    ];
    exact.contains(&k.as_str())
        || suffixes.iter().any(|s| k.ends_with(s))
        || ["api_key", "apikey", "private_key", "secret_key", "client_secret"]
            .iter()
            .any(|s| k.starts_with(s))
}

/// Where in a JSON object's members the first secret is (see [`find_in_json`]).
pub fn find_in_object(
    root: &str,
    map: &serde_json::Map<String, Value>,
) -> Option<(String, &'static str)> {
    let mut path = root.to_owned();
    members(map, &mut path).map(|rule| (path, rule))
}

/// Where in a JSON value the first secret is: its path below `root`
/// (`model_config.headers.Authorization`) and the rule (`secret_named_key` for a
/// credential-named key).
pub fn find_in_json(root: &str, value: &Value) -> Option<(String, &'static str)> {
    let mut path = root.to_owned();
    within(value, &mut path).map(|rule| (path, rule))
}

/// The rule of the first secret in `value`; `path` then leads to it (one buffer for the
/// whole walk: most values hold no secret and need no path of their own).
fn within(value: &Value, path: &mut String) -> Option<&'static str> {
    match value {
        Value::String(s) => find_in_text(s),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = within(v, path);
            if found.is_none() {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => members(map, path),
        _ => None,
    }
}

fn members(map: &serde_json::Map<String, Value>, path: &mut String) -> Option<&'static str> {
    map.iter().find_map(|(k, v)| {
        let len = path.len();
        path.push('.');
        path.push_str(k);
        let found = if is_secret_key(k) && holds_a_value(v) {
            Some("secret_named_key")
        } else {
            within(v, path)
        };
        if found.is_none() {
            path.truncate(len);
        }
        found
    })
}

/// A value under a credential-named key that is a secret: non-empty text, or a number
/// (a numeric PIN or password); not null, false or an empty string or object.
fn holds_a_value(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.trim().is_empty(),
        Value::Number(_) => true,
        Value::Array(items) => items.iter().any(holds_a_value),
        Value::Object(map) => map.values().any(holds_a_value),
        Value::Null | Value::Bool(_) => false,
    }
}

/// Redact every secret in a JSON value's strings (and every value under a
/// credential-named key); how many.
pub fn redact_json(value: &mut Value) -> u64 {
    match value {
        Value::String(s) => {
            let (redacted, n) = redact_text(s);
            if n > 0 {
                *s = redacted;
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(redact_json).sum(),
        Value::Object(map) => map
            .iter_mut()
            .map(|(k, v)| {
                if is_secret_key(k) && holds_a_value(v) {
                    *v = Value::String("[REDACTED:secret_named_key]".into());
                    1
                } else {
                    redact_json(v)
                }
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corpus (crates/core/tests/data): rule and text of each fake secret.
    fn secrets_corpus() -> Vec<(String, String)> {
        lines(include_str!("../tests/data/secrets.tsv"))
            .map(|l| {
                let (rule, text) = l.split_once('\t').expect("rule<TAB>text");
                (rule.to_owned(), text.to_owned())
            })
            .collect()
    }

    fn look_alikes() -> Vec<String> {
        lines(include_str!("../tests/data/look-alikes.txt")).collect()
    }

    fn lines(file: &str) -> impl Iterator<Item = String> + '_ {
        file.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.replace("\\n", "\n"))
    }

    #[test]
    fn the_corpus_has_fifty_of_each() {
        assert!(secrets_corpus().len() >= 50, "{} secrets", secrets_corpus().len());
        assert!(look_alikes().len() >= 50, "{} look-alikes", look_alikes().len());
    }

    #[test]
    fn every_secret_is_found_by_its_rule_and_redacted_whole() {
        let corpus = secrets_corpus();
        let misnamed: Vec<_> = corpus
            .iter()
            .filter(|(rule, text)| find_in_text(text) != Some(rule.as_str()))
            .map(|(rule, text)| format!("{text}: {:?}, not {rule}", find_in_text(text)))
            .collect();
        assert!(misnamed.is_empty(), "{misnamed:#?}");
        for (rule, text) in &corpus {
            let (redacted, n) = redact_text(text);
            assert!(n >= 1, "{text}");
            assert!(redacted.contains(&format!("[REDACTED:{rule}]")), "{text} -> {redacted}");
            // No run of 12 characters of the secret survives.
            let secret_part = text.split_whitespace().max_by_key(|w| w.len()).unwrap();
            if secret_part.len() >= 24 {
                let middle = &secret_part[secret_part.len() / 2 - 6..secret_part.len() / 2 + 6];
                assert!(!redacted.contains(middle), "{text} -> {redacted}");
            }
        }
    }

    #[test]
    fn look_alikes_pass_untouched() {
        for text in look_alikes() {
            assert_eq!(find_in_text(&text), None, "{text}");
            assert_eq!(redact_text(&text), (text.clone(), 0), "{text}");
        }
    }

    #[test]
    fn json_secrets_are_found_by_path_and_key_names_count() {
        let config = serde_json::json!({
            "top_p": 0.9, "max_tokens": 4096, "tokens": 3, "token_count": 1,
            "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
        });
        assert_eq!(
            find_in_json("model_config", &config),
            Some(("model_config.headers.Authorization".into(), "secret_named_key"))
        );
        let attrs = serde_json::json!({"calls": [{"url": "x"}, {"note": "key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-Ab"}]});
        assert_eq!(
            find_in_json("attributes", &attrs),
            Some(("attributes.calls[1].note".into(), "anthropic_api_key"))
        );
        let harmless = serde_json::json!({
            "max_tokens": 10, "password_min_length": 12, "token": null, "api_key": "",
            "secret": false, "tokenizer": "cl100k", "auth_method": "oauth"
        });
        assert_eq!(find_in_json("model_config", &harmless), None);
        let mut vars = serde_json::json!({"name": "Ada", "db": {"password": "p4ss"}, "k": "AKIAIOSFODNN7EXAMPLE"});
        assert_eq!(redact_json(&mut vars), 2);
        assert_eq!(vars["db"]["password"], "[REDACTED:secret_named_key]");
        assert_eq!(vars["k"], "[REDACTED:aws_access_key_id]");
        assert_eq!(vars["name"], "Ada");
    }
}
