//! Names of the protobuf enums' values for people: the label of a value is
//! its name without the enum's prefix, lowercase with dashes
//! (`TICKET_STATUS_IN_PROGRESS` is `in-progress`, `PRIORITY_P1` is `p1`).
//! build.rs derives every label from the descriptor set, so a new value
//! gets its label with no code written; the unspecified value (0) has none.

use std::borrow::Cow;

/// A protobuf enum of Wardline's contracts (every one implements it).
pub trait ProtoEnum: Copy + Eq + Into<i32> + TryFrom<i32> + 'static {
    /// Full name, e.g. `wardline.common.v1.TicketStatus`.
    const NAME: &'static str;
    /// `(number, label)` of every value but the unspecified one, in
    /// declaration order.
    const LABELS: &'static [(i32, &'static str)];

    /// The value's name in the proto file (`TICKET_STATUS_IN_PROGRESS`).
    fn proto_name(self) -> &'static str;

    /// The value named `name` in the proto file.
    fn from_proto_name(name: &str) -> Option<Self>;

    /// The label (`in-progress`); `-` for the unspecified value.
    fn label(self) -> &'static str {
        let n: i32 = self.into();
        Self::LABELS
            .iter()
            .find(|(v, _)| *v == n)
            .map_or("-", |(_, l)| l)
    }

    /// The value labelled `label` (any case), or named so in the proto file.
    fn from_label(label: &str) -> Option<Self> {
        let label = label.trim();
        Self::LABELS
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(label))
            .and_then(|(n, _)| Self::try_from(*n).ok())
            .or_else(|| Self::from_proto_name(label).filter(|v| (*v).into() != 0))
    }

    /// Every value but the unspecified one.
    fn values() -> impl Iterator<Item = Self> {
        Self::LABELS
            .iter()
            .filter_map(|(n, _)| Self::try_from(*n).ok())
    }
}

/// The label of the value `n` of `E` as a field carries it: `-` when
/// unspecified, `unknown(n)` for a number this build does not know.
pub fn label<E: ProtoEnum>(n: i32) -> Cow<'static, str> {
    match E::try_from(n) {
        Ok(e) => Cow::Borrowed(e.label()),
        Err(_) => Cow::Owned(format!("unknown({n})")),
    }
}

/// Reads an enum value from its proto name, its label or its number.
pub(crate) fn deserialize<'de, E, D>(d: D) -> Result<E, D::Error>
where
    E: ProtoEnum,
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize as _;
    use serde::de::Error as _;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i32),
        Name(String),
    }
    let found = match Raw::deserialize(d)? {
        Raw::Number(n) => E::try_from(n).ok(),
        Raw::Name(s) => E::from_label(&s),
    };
    found.ok_or_else(|| {
        let labels: Vec<&str> = E::LABELS.iter().map(|(_, l)| *l).collect();
        D::Error::custom(format!("not a {}: one of {}", E::NAME, labels.join(", ")))
    })
}

impl crate::common::Priority {
    /// `P1`..`P4` (`-` when unspecified): how people write priorities.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "-",
            p => p.as_str_name().trim_start_matches("PRIORITY_"),
        }
    }
}

/// `P1`..`P4` of a priority field (`-` when unspecified or unknown).
pub fn priority(n: i32) -> &'static str {
    crate::common::Priority::try_from(n).map_or("-", |p| p.short_name())
}
