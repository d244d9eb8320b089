//! What an export may decode to, judged on its bytes before anything is decoded. A body
//! limit alone bounds nothing: protobuf's smallest span is 2 bytes on the wire and over
//! 200 in memory, so a 10 MB export of empty spans once took the server to 3 GB. The
//! protobuf walk weighs every message as prost will allocate it; the JSON walk weighs
//! every value as serde_json will.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::otlp::OtlpError;

/// How much an export may hold once decoded.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub spans: usize,
    /// Bytes its decoded form may take (structs, strings and lists, estimated).
    pub decoded: usize,
}

/// Nesting deeper than prost's own recursion limit is refused by prost too.
const MAX_DEPTH: u32 = 100;

/// The messages of an ExportTraceServiceRequest that prost decodes (other fields are
/// skipped without allocating).
#[derive(Clone, Copy)]
enum Kind {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Kind {
    /// The message field `number` of this kind holds, if any, and whether it is a list
    /// (each element a new allocation) or held inline in this kind's struct (its size
    /// already counted).
    fn child(self, number: u32) -> Option<(Kind, bool)> {
        use Kind::*;
        let (listed, inline) = (true, false);
        Some(match (self, number) {
            (Request, 1) => (ResourceSpans, listed),
            (ResourceSpans, 1) => (Resource, inline),
            (ResourceSpans, 2) => (ScopeSpans, listed),
            (Resource, 1) => (KeyValue, listed),
            (Resource, 3) => (EntityRef, listed),
            (ScopeSpans, 1) => (Scope, inline),
            (ScopeSpans, 2) => (Span, listed),
            (Scope, 3) => (KeyValue, listed),
            (Span, 9) => (KeyValue, listed),
            (Span, 11) => (Event, listed),
            (Span, 13) => (Link, listed),
            (Span, 15) => (Status, inline),
            (Event, 3) | (Link, 4) | (KeyValueList, 1) => (KeyValue, listed),
            (KeyValue, 2) => (AnyValue, inline),
            (ArrayValue, 1) => (AnyValue, listed),
            (AnyValue, 5) => (ArrayValue, inline),
            (AnyValue, 6) => (KeyValueList, inline),
            _ => return None,
        })
    }

    /// What one decoded message of this kind takes, besides its strings and lists.
    fn size(self) -> usize {
        use Kind::*;
        match self {
            Request => size_of::<ExportTraceServiceRequest>(),
            ResourceSpans => size_of::<trace::ResourceSpans>(),
            Resource => size_of::<resource::Resource>(),
            EntityRef => size_of::<common::EntityRef>(),
            ScopeSpans => size_of::<trace::ScopeSpans>(),
            Scope => size_of::<common::InstrumentationScope>(),
            Span => size_of::<trace::Span>(),
            Event => size_of::<trace::span::Event>(),
            Link => size_of::<trace::span::Link>(),
            Status => size_of::<trace::Status>(),
            KeyValue => size_of::<common::KeyValue>(),
            AnyValue => size_of::<common::AnyValue>(),
            ArrayValue => size_of::<common::ArrayValue>(),
            KeyValueList => size_of::<common::KeyValueList>(),
        }
    }
}

/// What a walk has found so far, checked against the bounds as it grows.
struct Tally {
    bounds: Bounds,
    spans: usize,
    decoded: usize,
}

impl Tally {
    fn new(bounds: Bounds) -> Self {
        Tally { bounds, spans: 0, decoded: 0 }
    }

    fn add(&mut self, bytes: usize) -> Result<(), OtlpError> {
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.bounds.decoded {
            return Err(OtlpError::DecodesTooLarge(self.bounds.decoded));
        }
        Ok(())
    }

    fn span(&mut self) -> Result<(), OtlpError> {
        self.spans += 1;
        if self.spans > self.bounds.spans {
            return Err(OtlpError::TooManySpans(self.bounds.spans));
        }
        Ok(())
    }
}

/// Check a protobuf export against `bounds` without decoding it.
pub fn check_protobuf(bytes: &[u8], bounds: Bounds) -> Result<(), OtlpError> {
    walk(bytes, Kind::Request, 0, &mut Tally::new(bounds))
}

fn walk(mut buf: &[u8], kind: Kind, depth: u32, tally: &mut Tally) -> Result<(), OtlpError> {
    if depth > MAX_DEPTH {
        return Err(OtlpError::TooDeep(MAX_DEPTH));
    }
    while !buf.is_empty() {
        let (number, wire) = decode_key(&mut buf).map_err(OtlpError::Protobuf)?;
        if wire != WireType::LengthDelimited {
            skip_field(wire, number, &mut buf, DecodeContext::default())
                .map_err(OtlpError::Protobuf)?;
            continue;
        }
        let len = decode_varint(&mut buf).map_err(OtlpError::Protobuf)?;
        let len =
            usize::try_from(len).ok().filter(|&n| n <= buf.len()).ok_or(OtlpError::Truncated)?;
        let (field, rest) = buf.split_at(len);
        buf = rest;
        match kind.child(number) {
            Some((child, listed)) => {
                if listed {
                    // A list grows by doubling: an element may take twice its size.
                    tally.add(2 * child.size())?;
                }
                if matches!(child, Kind::Span) {
                    tally.span()?;
                }
                walk(field, child, depth + 1, tally)?;
            }
            // A string or bytes (an unknown field weighs as one: at most the body again);
            // one of a list of strings (EntityRef's keys) is a String of its own.
            None => tally.add(len + size_of::<String>())?,
        }
    }
    Ok(())
}

/// Check a JSON export against `bounds` without building it: every value weighs what a
/// `serde_json::Value` of it takes. (Its spans are counted once it is parsed.)
pub fn check_json(bytes: &[u8], bounds: Bounds) -> Result<(), OtlpError> {
    let mut tally = Tally::new(bounds);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let weighed = Weigh(&mut tally).deserialize(&mut de).and_then(|()| de.end());
    match weighed {
        Ok(()) => Ok(()),
        // The tally's own error, carried through serde's.
        Err(_) if tally.decoded > tally.bounds.decoded => {
            Err(OtlpError::DecodesTooLarge(tally.bounds.decoded))
        }
        Err(e) => Err(OtlpError::Json(e)),
    }
}

/// The spans of a parsed JSON export, checked against the bound.
pub fn check_json_spans(value: &serde_json::Value, bounds: Bounds) -> Result<(), OtlpError> {
    let list = |v: &serde_json::Value, key: &str| -> usize {
        v.get(key).and_then(|l| l.as_array()).map_or(0, Vec::len)
    };
    let empty = Vec::new();
    let mut spans = 0usize;
    for rs in value.get("resourceSpans").and_then(|l| l.as_array()).unwrap_or(&empty) {
        for ss in rs.get("scopeSpans").and_then(|l| l.as_array()).unwrap_or(&empty) {
            spans += list(ss, "spans");
        }
    }
    if spans > bounds.spans {
        return Err(OtlpError::TooManySpans(bounds.spans));
    }
    Ok(())
}

struct Weigh<'t>(&'t mut Tally);

impl<'de> DeserializeSeed<'de> for Weigh<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// What a `serde_json::Map` (a BTreeMap) allocates per node: 11 keys and 11 values, with
/// its links. A non-empty object takes one, and one more per 11 entries.
const MAP_NODE: usize = 11 * (size_of::<String>() + size_of::<serde_json::Value>()) + 32;

/// The key under which serde_json (`arbitrary_precision`) hands a number's literal over.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl Weigh<'_> {
    fn add<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        self.0.add(size_of::<serde_json::Value>() + bytes).map_err(|e| E::custom(e.to_string()))
    }
}

impl<'de> Visitor<'de> for Weigh<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.add(0)
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.add(0)
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.add(0)
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.add(0)
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        self.add(s.len())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.add(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.add(0)?;
        // A list grows by doubling: each element may take twice its slot.
        while seq.next_element_seed(Weigh(&mut *self.0))?.is_some() {
            self.add(0)?;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut entries = 0usize;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if entries == 0 && key == NUMBER_TOKEN {
                // A number, its literal handed over as a string: a scalar.
                let literal = map.next_value::<std::borrow::Cow<'de, str>>()?;
                return self.add(literal.len());
            }
            if entries.is_multiple_of(11) {
                self.add(MAP_NODE)?;
            }
            entries += 1;
            self.add(key.len())?;
            map.next_value_seed(Weigh(&mut *self.0))?;
        }
        self.add(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    const ROOMY: Bounds = Bounds { spans: usize::MAX, decoded: usize::MAX };

    fn export(spans: Vec<trace::Span>) -> Vec<u8> {
        let scope = trace::ScopeSpans { spans, ..Default::default() };
        let resource = trace::ResourceSpans { scope_spans: vec![scope], ..Default::default() };
        ExportTraceServiceRequest { resource_spans: vec![resource] }.encode_to_vec()
    }

    #[test]
    fn the_walk_counts_what_prost_decodes() {
        let attributes = vec![common::KeyValue::default(); 1000];
        let spans = vec![trace::Span { attributes, ..Default::default() }; 30];
        let bytes = export(spans);
        let mut tally = Tally::new(ROOMY);
        walk(&bytes, Kind::Request, 0, &mut tally).unwrap();
        assert_eq!(tally.spans, 30);
        assert!(tally.decoded >= 30 * 1000 * size_of::<common::KeyValue>(), "{}", tally.decoded);
        let tight = Bounds { spans: 29, decoded: usize::MAX };
        assert!(matches!(check_protobuf(&bytes, tight), Err(OtlpError::TooManySpans(29))));
        let tight = Bounds { spans: 30, decoded: 30_000 * size_of::<common::KeyValue>() };
        assert!(matches!(check_protobuf(&bytes, tight), Err(OtlpError::DecodesTooLarge(_))));
    }

    /// The bound must leave real exports alone: one of spans with a score of string
    /// attributes, as SDKs send, weighs well under the budget per byte.
    #[test]
    fn a_real_looking_export_weighs_a_few_times_its_size() {
        let attribute = |k: &str, v: &str| common::KeyValue {
            key: k.into(),
            value: Some(common::AnyValue {
                value: Some(common::any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let attributes: Vec<_> = (0..20)
            .map(|i| attribute(&format!("gen_ai.attribute.{i}"), "a value of some length"))
            .collect();
        let span = trace::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "chat gpt-4o".into(),
            attributes,
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                resource: Some(resource::Resource::default()),
                scope_spans: vec![trace::ScopeSpans {
                    spans: vec![span; 512],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let mut tally = Tally::new(ROOMY);
        walk(&bytes, Kind::Request, 0, &mut tally).unwrap();
        // Under the budget per byte: an export as large as the body limit passes.
        let per_byte = tally.decoded as f64 / bytes.len() as f64;
        assert!(per_byte < crate::otlp::DECODED_PER_BODY_BYTE as f64, "{per_byte}");
        // The same batch in OTLP/JSON (whose objects are BTreeMaps, over 600 bytes each)
        // passes the default bounds too.
        let json = crate::otlp_json::tests::to_json(&request).to_string();
        let limit = 10 << 20;
        let bounds = Bounds { spans: 50_000, decoded: limit * crate::otlp::DECODED_PER_BODY_BYTE };
        check_json(json.as_bytes(), bounds).unwrap();
    }
}
