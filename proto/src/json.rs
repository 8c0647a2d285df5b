//! The proto3 JSON mapping of every Wardline message, as `serde`
//! implementations on the generated types: lowerCamelCase field names,
//! enums by value name (`"PRIORITY_P1"`), 64-bit integers as strings,
//! timestamps as RFC 3339 in UTC, fields at their default value left out
//! (the canonical encoding). Deserializing accepts the same, plus the
//! original field names and enum numbers, and refuses unknown fields, so a
//! typo in a scenario or contract file is an error naming the field.
//!
//! Why through the descriptor set (prost-reflect) and not pbjson: pbjson's
//! generated code needs the well-known types to implement serde, so it
//! compiles `google.protobuf.Timestamp` as `pbjson_types::Timestamp`. That
//! would change the type of every timestamp field that every service
//! builds from `prost_types::Timestamp`. prost-build's `type_attribute`
//! serde derives would write enums as numbers and need a hand-written
//! adapter per timestamp, oneof and 64-bit field. prost-reflect, already
//! protox's own dependency, implements the whole mapping over the
//! descriptor set this crate embeds anyway; a message is transcoded
//! (encoded and decoded) through it, which costs nothing that matters for
//! the files and command-line output it is used for. Services' hot paths
//! never serialize protos as JSON.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde::de::Error as _;
use serde::ser::Error as _;

/// Every Wardline message's descriptor (and google.protobuf's they import).
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set compiled by build.rs decodes")
});

fn descriptor<M: prost::Name>() -> Option<MessageDescriptor> {
    POOL.get_message_by_name(&M::full_name())
}

/// Serializes `m` with the canonical proto3 JSON mapping.
pub fn serialize<M, S>(m: &M, serializer: S) -> Result<S::Ok, S::Error>
where
    M: prost::Message + prost::Name,
    S: serde::Serializer,
{
    let desc = descriptor::<M>()
        .ok_or_else(|| S::Error::custom(format!("no descriptor for {}", M::full_name())))?;
    let mut dynamic = DynamicMessage::new(desc);
    dynamic.transcode_from(m).map_err(S::Error::custom)?;
    dynamic.serialize_with_options(serializer, &SerializeOptions::new())
}

/// Deserializes a message from its proto3 JSON mapping.
pub fn deserialize<'de, M, D>(deserializer: D) -> Result<M, D::Error>
where
    M: prost::Message + prost::Name + Default,
    D: serde::Deserializer<'de>,
{
    let desc = descriptor::<M>()
        .ok_or_else(|| D::Error::custom(format!("no descriptor for {}", M::full_name())))?;
    DynamicMessage::deserialize(desc, deserializer)?
        .transcode_to::<M>()
        .map_err(D::Error::custom)
}

/// `serde` for a generated message, through [`serialize`] and [`deserialize`].
macro_rules! json_message {
    ($ty:path) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::json::serialize(self, s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::json::deserialize(d)
            }
        }
    };
}

/// [`crate::ProtoEnum`] and `serde` (by value name; a label or a number
/// is read too) for a generated enum.
macro_rules! proto_enum {
    ($ty:path, $name:literal, [$(($n:literal, $label:literal)),* $(,)?]) => {
        impl $crate::ProtoEnum for $ty {
            const NAME: &'static str = $name;
            const LABELS: &'static [(i32, &'static str)] = &[$(($n, $label)),*];

            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }

            fn from_proto_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str_name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::enums::deserialize(d)
            }
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/wardline_json.rs"));

#[cfg(test)]
mod tests {
    use crate::ProtoEnum as _;
    use crate::common::{Category, Money, Priority, TicketStatus};
    use crate::intake::{Caller, CreateTicketRequest, Ticket};

    #[test]
    fn messages_read_and_write_the_canonical_mapping() {
        let ticket = Ticket {
            ticket_id: "t-1".into(),
            number: "STM-000001".into(),
            caller: Some(Caller {
                caller_id: "rn.alvarez".into(),
                ..Default::default()
            }),
            priority: Priority::P1 as i32,
            status: TicketStatus::InProgress as i32,
            version: 3,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_736_931_780,
                nanos: 250_000_000,
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&ticket).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ticketId": "t-1",
                "number": "STM-000001",
                "caller": {"callerId": "rn.alvarez"},
                "priority": "PRIORITY_P1",
                "status": "TICKET_STATUS_IN_PROGRESS",
                "version": "3",
                "createdAt": "2025-01-15T09:03:00.250Z",
            })
        );
        let back: Ticket = serde_json::from_value(v).unwrap();
        assert_eq!(back, ticket);
    }

    #[test]
    fn input_may_use_field_names_and_numbers_but_not_unknown_fields() {
        let req: CreateTicketRequest = serde_norway::from_str(
            "facility_id: main\ncategory: 2\nurgency: URGENCY_HIGH\npatientCareBlocked: true\n",
        )
        .unwrap();
        assert_eq!(req.facility_id, "main");
        assert_eq!(req.category, Category::MedicationAdministration as i32);
        assert!(req.patient_care_blocked);
        let err = serde_json::from_str::<Money>(r#"{"currency": "USD", "minorUnit": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("minorUnit"), "{err}");
    }

    #[test]
    fn enums_carry_their_labels() {
        assert_eq!(TicketStatus::InProgress.label(), "in-progress");
        assert_eq!(Category::RegistrationAdt.label(), "registration-adt");
        assert_eq!(Priority::P2.label(), "p2");
        assert_eq!(Priority::P2.short_name(), "P2");
        assert_eq!(
            TicketStatus::from_label("In-Progress"),
            Some(TicketStatus::InProgress)
        );
        assert_eq!(TicketStatus::from_label("unspecified"), None);
        assert_eq!(crate::label::<TicketStatus>(0), "-");
        assert_eq!(crate::label::<TicketStatus>(99), "unknown(99)");
        let every: Vec<Category> = Category::values().collect();
        assert_eq!(every.len(), 12);
        assert_eq!(
            serde_json::from_value::<Category>(serde_json::json!("printing")).unwrap(),
            Category::Printing
        );
        assert_eq!(
            serde_json::to_value(Category::Printing).unwrap(),
            "CATEGORY_PRINTING"
        );
    }
}
