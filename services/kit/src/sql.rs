//! Enums in PostgreSQL by name.
//!
//! Stored enums are `TEXT` columns holding the value's label, the one
//! spelling the command line, JSON labels and storage share (see
//! [`wardline_proto::enums::ProtoEnum`]: `TicketStatus::InProgress` is
//! `'in-progress'`), each column with a `CHECK` listing the labels, so SQL
//! reads `status = 'in-progress'`, never `status = 4`. [`Named`] is the one
//! mapping: bind `Named(status)` (or a `Vec<Named<_>>` as `text[]`), read a
//! column into `Named<TicketStatus>`; an unknown label (or the unspecified
//! value, which has none) is an error naming the enum, never a silent
//! default.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};
use wardline_proto::enums::ProtoEnum;

/// A protobuf enum stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Named<E>(pub E);

impl<E> Named<E> {
    /// The enum value.
    pub fn get(self) -> E {
        self.0
    }
}

impl<E: ProtoEnum> Type<Postgres> for Named<E> {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<E: ProtoEnum> PgHasArrayType for Named<E> {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }

    fn array_compatible(ty: &PgTypeInfo) -> bool {
        <&str as PgHasArrayType>::array_compatible(ty)
    }
}

impl<E: ProtoEnum> Encode<'_, Postgres> for Named<E> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let label = label(self.0).ok_or_else(|| format!("{} is unspecified", E::NAME))?;
        <&str as Encode<Postgres>>::encode(label, buf)
    }
}

/// The stored label of `value` (`None` for the unspecified value).
pub fn label<E: ProtoEnum>(value: E) -> Option<&'static str> {
    let n: i32 = value.into();
    E::LABELS.iter().find(|(v, _)| *v == n).map(|(_, l)| *l)
}

/// The value stored as `label` (exactly: storage is never ambiguous).
pub fn from_label<E: ProtoEnum>(label: &str) -> Option<E> {
    E::LABELS
        .iter()
        .find(|(_, l)| *l == label)
        .and_then(|(n, _)| E::try_from(*n).ok())
}

impl<'r, E: ProtoEnum> Decode<'r, Postgres> for Named<E> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let stored = <&str as Decode<Postgres>>::decode(value)?;
        from_label(stored)
            .map(Named)
            .ok_or_else(|| format!("{} has no value labelled {stored:?}", E::NAME).into())
    }
}

/// The `CHECK` list of a column holding `E`, e.g. `'new', 'assigned'`: what
/// a migration writes, and what a test compares it with.
pub fn check_list<E: ProtoEnum>() -> String {
    E::LABELS
        .iter()
        .map(|(_, l)| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::common::TicketStatus;

    #[test]
    fn labels_come_from_the_proto() {
        assert_eq!(label(TicketStatus::InProgress), Some("in-progress"));
        assert_eq!(from_label("on-hold"), Some(TicketStatus::OnHold));
        assert_eq!(from_label::<TicketStatus>("ON-HOLD"), None);
        assert_eq!(label(TicketStatus::Unspecified), None);
        assert_eq!(
            check_list::<TicketStatus>(),
            "'new', 'assigned', 'acknowledged', 'in-progress', 'on-hold', 'resolved', 'closed'"
        );
    }
}
