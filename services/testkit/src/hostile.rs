//! Hostile events for the consumers' property tests (issue 12, part 7):
//! envelopes a service really consumes, mutated the way a broken or
//! malicious producer would send them (huge strings, NUL and control
//! characters, invalid UTF-8, ids that are no UUIDs, parts of the payload
//! missing, an envelope naming another tenant than its subject), published
//! to JetStream so they take the real consumer path into the real
//! database; and the check that each ended as applied (or skipped: in the
//! inbox) or as a dead letter, with no delivery left retrying.

use std::time::Duration;

use async_nats::jetstream;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;

/// One hostile message: where it goes and its bytes.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// The seed's subject (the tenant a consumer's filter and permissions see).
    pub subject: String,
    /// `Nats-Msg-Id`, also the envelope's event id unless a mutation broke it.
    pub msg_id: Uuid,
    /// What was done, for failure messages.
    pub what: String,
    /// The encoded (and possibly no longer decodable) envelope.
    pub bytes: Vec<u8>,
}

/// What a mutation writes into a length-delimited field.
fn hostile_value() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        Just(("a 64 KiB string".to_owned(), vec![b'x'; 64 * 1024])),
        Just(("a NUL byte".to_owned(), b"a\0b".to_vec())),
        Just((
            "a control character".to_owned(),
            "bell \u{7}".as_bytes().to_vec()
        )),
        Just(("invalid UTF-8".to_owned(), vec![0xff, 0xfe, 0x00])),
        Just(("an empty value".to_owned(), Vec::new())),
        Just(("no UUID".to_owned(), b"not-a-uuid".to_vec())),
        Just((
            "a canary of free text".to_owned(),
            b"CANARY patient Jane Doe".to_vec()
        )),
        "[\\PC]{0,40}".prop_map(|s| ("arbitrary text".to_owned(), s.into_bytes())),
    ]
}

/// A mutation of one envelope.
#[derive(Debug, Clone)]
enum Mutation {
    /// The `n`-th length-delimited field (depth first) gets `value`.
    Field(usize, String, Vec<u8>),
    /// The `n`-th field is dropped (a missing part of the payload).
    Drop(usize),
    /// The envelope names another tenant than its subject.
    OtherTenant,
    /// The payload is gone.
    NoPayload,
    /// The bytes are cut at the `n`-th (modulo length) byte.
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), hostile_value()).prop_map(|(n, (w, v))| Mutation::Field(n, w, v)),
        2 => any::<usize>().prop_map(Mutation::Drop),
        1 => Just(Mutation::OtherTenant),
        1 => Just(Mutation::NoPayload),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// `cases` hostile messages from `seeds` (valid envelopes the service
/// consumes), one to three mutations each, reproducible from `seed`.
pub fn envelopes(seeds: &[EventEnvelope], cases: usize, seed: u8) -> Vec<Hostile> {
    assert!(!seeds.is_empty());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..=3));
    (0..cases)
        .map(|_| {
            let (i, mutations) = strategy.new_tree(&mut runner).expect("a case").current();
            let msg_id = Uuid::now_v7();
            let mut env = seeds[i].clone();
            let subject = wardline_kit::events::subject(&env).expect("a seed has a payload");
            env.event_id = msg_id.to_string();
            let mut what = Vec::new();
            let mut bytes = None;
            for m in &mutations {
                match m {
                    Mutation::OtherTenant => {
                        env.tenant_id = format!("{}-other", env.tenant_id);
                        what.push("another tenant".to_owned());
                    }
                    Mutation::NoPayload => {
                        env.payload = None;
                        what.push("no payload".to_owned());
                    }
                    _ => {}
                }
            }
            let mut fields = parse(&env.encode_to_vec()).unwrap_or_default();
            for m in &mutations {
                match m {
                    Mutation::Field(n, w, v) => {
                        let mut k = *n % count_delimited(&fields).max(1);
                        set_delimited(&mut fields, &mut k, v);
                        what.push(w.clone());
                    }
                    Mutation::Drop(n) => {
                        let mut k = *n % count_delimited(&fields).max(1);
                        drop_delimited(&mut fields, &mut k);
                        what.push("a missing field".to_owned());
                    }
                    Mutation::Truncate(n) => {
                        let mut b = write(&fields);
                        b.truncate(*n % b.len().max(1));
                        bytes = Some(b);
                        what.push("cut short".to_owned());
                    }
                    Mutation::OtherTenant | Mutation::NoPayload => {}
                }
            }
            Hostile {
                subject,
                msg_id,
                what: what.join(", "),
                bytes: bytes.unwrap_or_else(|| write(&fields)),
            }
        })
        .collect()
}

/// `seed` as it is, under a fresh event id: what must still be applied
/// after the hostile ones.
pub fn intact(seed: &EventEnvelope) -> Hostile {
    let msg_id = Uuid::now_v7();
    let mut env = seed.clone();
    env.event_id = msg_id.to_string();
    Hostile {
        subject: wardline_kit::events::subject(&env).expect("a seed has a payload"),
        msg_id,
        what: "intact".into(),
        bytes: env.encode_to_vec(),
    }
}

/// Publishes hostile `messages`, waits until each settled (see
/// [`settled`]), checks that no handler panicked and no dead letter's
/// reason quotes a value (the canary among the hostile values), then
/// that an intact event after them is still applied: the consumer did not
/// wedge. Returns how they ended.
pub async fn survive(
    js: &jetstream::Context,
    pool: &PgPool,
    messages: &[Hostile],
    after: &EventEnvelope,
) -> Outcome {
    publish(js, messages).await;
    let outcome = settled(pool, messages, 30).await;
    for reason in &outcome.dead {
        assert!(!reason.contains("panicked"), "a handler panicked: {reason}");
        assert!(
            !reason.contains("CANARY"),
            "a dead letter quotes the event's text: {reason}"
        );
    }
    let good = intact(after);
    publish(js, std::slice::from_ref(&good)).await;
    let last = settled(pool, std::slice::from_ref(&good), 30).await;
    assert_eq!(
        last.applied, 1,
        "the intact event after them: {:?}",
        last.dead
    );
    outcome
}

/// Publishes each message as a producer's relay would.
pub async fn publish(js: &jetstream::Context, messages: &[Hostile]) {
    for m in messages {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.msg_id.to_string().as_str());
        js.publish_with_headers(m.subject.clone(), headers, m.bytes.clone().into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }
}

/// How the messages ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// In the inbox: applied, or skipped as not the service's concern.
    pub applied: usize,
    /// Dead-lettered, with these reasons.
    pub dead: Vec<String>,
}

/// Waits (up to `secs`) until every message is in the inbox or the dead
/// letters of `pool`, and none is still counting failures (a delivery
/// being retried); panics naming the ones that are not.
pub async fn settled(pool: &PgPool, messages: &[Hostile], secs: u64) -> Outcome {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.msg_id).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let applied: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM inbox WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_all(pool)
                .await
                .expect("inbox");
        let dead: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT event_id, reason FROM dead_letters WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_all(pool)
                .await
                .expect("dead letters");
        let retrying: i64 =
            sqlx::query_scalar("SELECT count(*) FROM consumer_failures WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_one(pool)
                .await
                .expect("consumer failures");
        let open: Vec<&Hostile> = messages
            .iter()
            .filter(|m| !applied.contains(&m.msg_id) && !dead.iter().any(|(d, _)| *d == m.msg_id))
            .collect();
        if open.is_empty() && retrying == 0 {
            return Outcome {
                applied: applied.len(),
                dead: dead.into_iter().map(|(_, r)| r).collect(),
            };
        }
        if tokio::time::Instant::now() > deadline {
            let open: Vec<String> = open
                .iter()
                .map(|m| format!("{} ({}, {})", m.msg_id, m.subject, m.what))
                .collect();
            panic!(
                "{} message(s) neither applied nor dead-lettered, {retrying} still retrying: {open:?}",
                open.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A protobuf field as the wire format has it (no schema needed).
#[derive(Debug, Clone)]
struct Field {
    key: u64,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    /// Bytes, and the fields inside when they parse as a message.
    Delimited(Vec<u8>, Option<Vec<Field>>),
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Parses `b` as a message; `None` when it is not one.
fn parse(b: &[u8]) -> Option<Vec<Field>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at)?;
        if key >> 3 == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => Value::Varint(varint(b, &mut at)?),
            1 => {
                let v = b.get(at..at + 8)?.try_into().ok()?;
                at += 8;
                Value::Fixed64(v)
            }
            5 => {
                let v = b.get(at..at + 4)?.try_into().ok()?;
                at += 4;
                Value::Fixed32(v)
            }
            2 => {
                let n = usize::try_from(varint(b, &mut at)?).ok()?;
                let v = b.get(at..at.checked_add(n)?)?.to_vec();
                at += n;
                let inner = if v.is_empty() { None } else { parse(&v) };
                Value::Delimited(v, inner)
            }
            _ => return None,
        };
        out.push(Field { key, value });
    }
    Some(out)
}

fn write(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        put_varint(&mut out, f.key);
        match &f.value {
            Value::Varint(v) => put_varint(&mut out, *v),
            Value::Fixed64(v) => out.extend_from_slice(v),
            Value::Fixed32(v) => out.extend_from_slice(v),
            Value::Delimited(raw, inner) => {
                let bytes = inner.as_ref().map_or_else(|| raw.clone(), |i| write(i));
                put_varint(&mut out, bytes.len() as u64);
                out.extend_from_slice(&bytes);
            }
        }
    }
    out
}

fn count_delimited(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| match &f.value {
            Value::Delimited(_, inner) => 1 + inner.as_deref().map_or(0, count_delimited),
            _ => 0,
        })
        .sum()
}

/// Replaces the `k`-th length-delimited field (depth first) with `v`.
fn set_delimited(fields: &mut [Field], k: &mut usize, v: &[u8]) -> bool {
    for f in fields {
        if let Value::Delimited(raw, inner) = &mut f.value {
            if *k == 0 {
                *raw = v.to_vec();
                *inner = None;
                return true;
            }
            *k -= 1;
            if let Some(inner) = inner
                && set_delimited(inner, k, v)
            {
                return true;
            }
        }
    }
    false
}

/// Removes the `k`-th length-delimited field (depth first).
fn drop_delimited(fields: &mut Vec<Field>, k: &mut usize) -> bool {
    for i in 0..fields.len() {
        if let Value::Delimited(_, inner) = &mut fields[i].value {
            if *k == 0 {
                fields.remove(i);
                return true;
            }
            *k -= 1;
            if let Some(inner) = inner
                && drop_delimited(inner, k)
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_parses_and_writes_back_byte_for_byte() {
        let env = crate::build::tenant_created("stmarys", "America/Chicago");
        let bytes = env.encode_to_vec();
        assert_eq!(write(&parse(&bytes).unwrap()), bytes);
    }

    #[test]
    fn the_cases_are_reproducible_and_mutated() {
        let seeds = [crate::build::tenant_created("stmarys", "America/Chicago")];
        let a = envelopes(&seeds, 20, 7);
        let b = envelopes(&seeds, 20, 7);
        assert_eq!(
            a.iter().map(|h| &h.what).collect::<Vec<_>>(),
            b.iter().map(|h| &h.what).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|h| !h.what.is_empty()));
    }
}
