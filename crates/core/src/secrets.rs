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

/// All rules as one pattern, a group per rule, so text is searched once.
static COMBINED: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = RULES.iter().map(|(_, p)| format!("({p})")).collect();
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

/// Where in a JSON object the first secret is: its path below `root` (`model_config.headers.Authorization`)
/// and the rule (`secret_named_key` for a credential-named key).
pub fn find_in_json(root: &str, value: &Value) -> Option<(String, &'static str)> {
    match value {
        Value::String(s) => find_in_text(s).map(|rule| (root.to_owned(), rule)),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_in_json(&format!("{root}[{i}]"), v))
        }
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = format!("{root}.{k}");
            if is_secret_key(k) && holds_a_value(v) {
                return Some((path, "secret_named_key"));
            }
            find_in_json(&path, v)
        }),
        _ => None,
    }
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

    /// Fake credentials in the shapes real ones have (none is a real key), each in some
    /// surrounding text, with the rule that must name it.
    const SECRETS: &[(&str, &str)] = &[
        (
            "openai_api_key",
            "use sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7 please",
        ),
        ("openai_api_key", "OPENAI_API_KEY=sk-svcacct-9aZ8bY7cX6dW5eV4fU3gT2hS1iR0jQ9kP8lO7mN6"),
        ("openai_api_key", "legacy key sk-4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a"),
        ("openai_api_key", "sk-admin-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7Mm6Ll5"),
        (
            "anthropic_api_key",
            "x-api-key: sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMn",
        ),
        ("anthropic_api_key", "key sk-ant-admin01-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210abcdef"),
        (
            "anthropic_api_key",
            "ANTHROPIC_API_KEY=sk-ant-api03-q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1",
        ),
        ("aws_access_key_id", "aws_access_key_id AKIAIOSFODNN7EXAMPLE in the config"),
        ("aws_access_key_id", "temporary creds ASIAY34FZKBOKMUTVV7A were leaked"),
        ("aws_access_key_id", "AKIA2E0A8F3B244C9986 is the user"),
        ("google_api_key", "maps key AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7 ok"),
        ("google_api_key", "?key=AIzaSyD-EXAMPLEexampleEXAMPLEexample123"),
        (
            "github_token",
            "git clone https://ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r@github.com/x/y",
        ),
        ("github_token", "token gho_16C7e42F292c6912E7710c838347Ae178B4a00"),
        ("github_token", "GH_TOKEN=ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789ab"),
        (
            "github_token",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
        ),
        ("gitlab_token", "glpat-xYz12AbC34dEf56GhI78 for CI"),
        ("gitlab_token", "deploy token gldt-Ab12Cd34Ef56Gh78Ij90Kl"),
        ("slack_token", "bot xoxb-2048-4096-AbCdEfGhIjKlMnOpQrStUv"),
        ("slack_token", "user token xoxp-1234567890-0987654321-ABCDEFGHIJ"),
        (
            "slack_webhook",
            "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        ),
        ("huggingface_token", "HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"),
        ("huggingface_token", "login with 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"),
        ("stripe_key", "stripe sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUv"),
        ("stripe_key", "test key sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
        ("stripe_key", "restricted rk_live_AbCdEfGhIjKlMnOpQrStUvWx"),
        ("stripe_key", "webhook whsec_AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
        (
            "jwt",
            "cookie: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
        (
            "jwt",
            "id_token eyJraWQiOiJhYmMxMjMifQ.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2lnbmF0dXJlLWJ5dGVz",
        ),
        ("bearer_token", "Authorization: Bearer abcdef0123456789ABCDEF0123456789"),
        ("bearer_token", "curl -H 'authorization: bearer Zm9vYmFyYmF6cXV4cXV1eA==' https://api"),
        ("bearer_token", "BEARER a1b2c3d4e5f6g7h8i9j0k1l2"),
        (
            "pem_private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n-----END RSA PRIVATE KEY-----",
        ),
        (
            "pem_private_key",
            "key:\n-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake\n-----END PRIVATE KEY-----\nthanks",
        ),
        (
            "pem_private_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ (truncated)",
        ),
        (
            "pem_private_key",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFake\n-----END EC PRIVATE KEY-----",
        ),
        ("assigned_secret", "db password=Tr0ub4dor&3 on prod"),
        ("assigned_secret", "PASSWORD: correct-horse-battery"),
        ("assigned_secret", "api_key = \"a8f5f167f44f4964e6c998dee827110c\""),
        ("assigned_secret", "set client_secret: 'Q2xpZW50U2VjcmV0VmFsdWU'"),
        ("assigned_secret", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("assigned_secret", "export DATADOG_API_KEY=0123456789abcdef0123456789abcdef"),
        ("assigned_secret", "{\"access_token\": \"ya29.a0AfH6SMBexample\"}"),
        ("assigned_secret", "refresh_token=1//0gExampleRefreshToken"),
        ("assigned_secret", "mysql -u root --password=hunter2hunter2"),
        ("assigned_secret", "SESSION_TOKEN: FwoGZXIvYXdzEXAMPLE"),
        ("assigned_secret", "private_key=5KJvsngHeMpm884wtkJNzQGaCErckhHJBGFsvd3VyK5qMZXj3hS"),
        ("assigned_secret", "pwd: s3cr3tP4ss"),
        (
            "openai_api_key",
            "error: Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz012345",
        ),
        ("aws_access_key_id", "AROAEXAMPLEROLEID123 assumed"),
        ("slack_token", "xoxa-2-AbCdEfGhIjKlMn"),
    ];

    /// Text that looks like credentials but is not, and must pass untouched.
    const LOOK_ALIKES: &[&str] = &[
        "Use scikit-learn (sk-learn) for the classifier",
        "the task-management-framework-for-teams is ready",
        "sk-short",
        "AKIA is a prefix AWS uses for access keys",
        "AKIA123",
        "the model gpt-4o-2024-08-06 answered",
        "commit 4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "request id 01a20852-c4ab-757e-8dee-9784ae693533",
        "max_tokens=4096 and tokens_input=400",
        "token_count: 1234",
        "The tokenizer splits words into tokens",
        "I reset my password yesterday",
        "the password policy requires twelve characters",
        "Password: (see the vault)",
        "secret sauce recipe: tomatoes, basil",
        "a bearer of bad news",
        "Bearer token authentication is described in RFC 6750",
        "eyJhbGciOiJIUzI1NiJ9 is just a JWT header",
        "ghp_ tokens start with ghp_",
        "ghp_short123",
        "xoxb is the Slack bot prefix",
        "hf_hub_download(repo_id='gpt2')",
        "sk_test_ keys are for Stripe's test mode",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----",
        "AIza is how Google API keys start",
        "arn:aws:iam::123456789012:role/Admin",
        "glpat- prefixes GitLab tokens",
        "https://hooks.slack.com/ is where webhooks go",
        "base64 of hello is aGVsbG8=",
        "Revenue grew 12% quarter on quarter; churn fell to 1.8%.",
        "api_key is the name of the parameter",
        "set api_key: <your key here>",
        "password: ****",
        "The secret to good code is simplicity",
        "token: none",
        "auth flow uses PKCE",
        "skills-matrix-for-engineering-managers-2024",
        "whsec is the prefix of Stripe webhook secrets",
        "a UUID: 123e4567-e89b-12d3-a456-426614174000",
        "MD5 d41d8cd98f00b204e9800998ecf8427e of the empty string",
        "my email is someone@example.com",
        "call +1 555 0100",
        "path /usr/local/bin/aitrail",
        "https://api.openai.com/v1/chat/completions",
        "x-api-key header carries the Anthropic key",
        "model claude-3-5-sonnet-20241022",
        "temperature=0.7 top_p=0.9",
        "passwordless login via magic links",
        "ASIA is a continent",
        "The JWT spec is RFC 7519; eyJ starts every JSON header in base64url",
    ];

    #[test]
    fn the_corpus_has_fifty_of_each() {
        assert!(SECRETS.len() >= 50, "{} secrets", SECRETS.len());
        assert!(LOOK_ALIKES.len() >= 50, "{} look-alikes", LOOK_ALIKES.len());
    }

    #[test]
    fn every_secret_is_found_by_its_rule_and_redacted_whole() {
        let misnamed: Vec<_> = SECRETS
            .iter()
            .filter(|(rule, text)| find_in_text(text) != Some(*rule))
            .map(|(rule, text)| format!("{text}: {:?}, not {rule}", find_in_text(text)))
            .collect();
        assert!(misnamed.is_empty(), "{misnamed:#?}");
        for (rule, text) in SECRETS {
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
        for text in LOOK_ALIKES {
            assert_eq!(find_in_text(text), None, "{text}");
            assert_eq!(redact_text(text), (text.to_string(), 0), "{text}");
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
