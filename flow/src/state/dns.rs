//! DNS `request` / `response` (`DNSMessage.get_state()`, spec 5.7).

use flowtap_proto::v1::{DnsMessage, DnsQuestion, DnsResourceRecord};

use super::StateError;
use super::fields::Fields;
use crate::tnetstring::{Dict, Value};

pub(crate) fn to_state(m: &DnsMessage) -> Value {
    let mut d = Dict::new();
    d.set("id", i64::from(m.id));
    d.set("query", m.query);
    d.set("op_code", i64::from(m.op_code));
    d.set("authoritative_answer", m.authoritative_answer);
    d.set("truncation", m.truncation);
    d.set("recursion_desired", m.recursion_desired);
    d.set("recursion_available", m.recursion_available);
    d.set("reserved", i64::from(m.reserved));
    d.set("response_code", i64::from(m.response_code));
    d.set(
        "questions",
        Value::List(m.questions.iter().map(question_to_state).collect()),
    );
    d.set("answers", records_to_state(&m.answers));
    d.set("authorities", records_to_state(&m.authorities));
    d.set("additionals", records_to_state(&m.additionals));
    d.set("timestamp", m.timestamp);
    Value::Dict(d)
}

fn question_to_state(q: &DnsQuestion) -> Value {
    let mut d = Dict::new();
    d.set("name", q.name.clone());
    d.set("type", i64::from(q.r#type));
    d.set("class_", i64::from(q.class));
    Value::Dict(d)
}

fn records_to_state(records: &[DnsResourceRecord]) -> Value {
    Value::List(
        records
            .iter()
            .map(|r| {
                let mut d = Dict::new();
                d.set("name", r.name.clone());
                d.set("type", i64::from(r.r#type));
                d.set("class_", i64::from(r.class));
                d.set("ttl", i64::from(r.ttl));
                d.set("data", r.data.clone());
                Value::Dict(d)
            })
            .collect(),
    )
}

pub(crate) fn from_state(f: &Fields<'_>) -> Result<DnsMessage, StateError> {
    Ok(DnsMessage {
        id: f.uint("id")?,
        query: f.bool("query")?,
        op_code: f.uint("op_code")?,
        authoritative_answer: f.bool("authoritative_answer")?,
        truncation: f.bool("truncation")?,
        recursion_desired: f.bool("recursion_desired")?,
        recursion_available: f.bool("recursion_available")?,
        reserved: f.uint("reserved")?,
        response_code: f.uint("response_code")?,
        questions: dicts(f, "questions")?
            .iter()
            .map(|q| {
                Ok(DnsQuestion {
                    name: q.string("name")?,
                    r#type: q.uint("type")?,
                    class: q.uint("class_")?,
                })
            })
            .collect::<Result<_, StateError>>()?,
        answers: records_from_state(f, "answers")?,
        authorities: records_from_state(f, "authorities")?,
        additionals: records_from_state(f, "additionals")?,
        timestamp: f.opt_float("timestamp")?,
    })
}

fn dicts<'a>(f: &Fields<'a>, key: &str) -> Result<Vec<Fields<'a>>, StateError> {
    f.list(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| Fields::of(v, f.item_path(key, i)))
        .collect()
}

fn records_from_state(f: &Fields<'_>, key: &str) -> Result<Vec<DnsResourceRecord>, StateError> {
    dicts(f, key)?
        .iter()
        .map(|r| {
            Ok(DnsResourceRecord {
                name: r.string("name")?,
                r#type: r.uint("type")?,
                class: r.uint("class_")?,
                ttl: r.uint("ttl")?,
                data: r.bytes("data")?,
            })
        })
        .collect()
}
