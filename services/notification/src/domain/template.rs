//! Message templates: shipped defaults per event kind and channel, tenant
//! overrides, and rendering with minijinja.
//!
//! PHI-free by construction: a template renders against [`Vars`], whose
//! keys can only be the names in [`VARIABLES`] (ids, the ticket number,
//! priority, status and category codes, links, escalation and invoice
//! codes). The consumer builds `Vars` from event fields that are ids and
//! codes; a ticket's description and notes are in no event and in no
//! variable, so no template can reach them. An override naming anything
//! else is refused when it is set, and rendering is strict (an unknown name
//! fails rather than rendering empty).
//!
//! Under a budget, because a tenant admin writes the overrides and every
//! hospital shares the renderer: templates substitute values and may branch
//! and loop, but do not compute (`~`, `+`, `*`, `**` and `{% set %}` are
//! refused, so no expression grows a string beyond the values it names);
//! only a few non-growing filters exist (`json` refuses inputs over
//! [`VALUE_MAX`]); a render has [`FUEL`] instructions, a recursion limit and
//! at most [`OUTPUT_MAX`] bytes of output, and the sender renders on a
//! blocking thread with a time limit. An override that exceeds the budget on
//! the kind's longest example values is refused when it is saved.

use std::collections::BTreeMap;
use std::io;

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use super::{EventKind, NotificationChannel};

/// A variable a template may use.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Dotted name, e.g. `ticket.number`.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// A realistic, longest-case example value.
    pub example: &'static str,
}

const fn var(name: &'static str, description: &'static str, example: &'static str) -> Variable {
    Variable {
        name,
        description,
        example,
    }
}

/// Every variable any template may use; which ones an event kind offers is
/// [`variables`].
pub const VARIABLES: &[Variable] = &[
    var(
        "event.id",
        "Id of the event (UUIDv7)",
        "0190b3c2-7a1e-7cc0-9d0a-3f1f2e4d5c6b",
    ),
    var("event.kind", "Event kind code", "ticket_public_note"),
    var("tenant.id", "Tenant slug", "stmarys-health-system-north"),
    var(
        "ticket.id",
        "Id of the ticket (UUIDv7)",
        "0190b3c2-7a1e-7cc0-9d0a-3f1f2e4d5c6b",
    ),
    var("ticket.number", "Per-tenant ticket number", "STM-000042"),
    var(
        "ticket.priority",
        "Priority code: P1 (most urgent) to P4",
        "P1",
    ),
    var(
        "ticket.status",
        "Status code after the change",
        "ACKNOWLEDGED",
    ),
    var(
        "ticket.category",
        "Category code",
        "MEDICATION_ADMINISTRATION",
    ),
    var(
        "ticket.url",
        "Link to the ticket in the help desk",
        "https://wardline.example.org/t/stmarys-health-system-north/tickets/STM-000042",
    ),
    var(
        "recipient.role",
        "Who the message is for: caller, analyst, supervisor, on_call, custom or webhook",
        "supervisor",
    ),
    var(
        "analyst.id",
        "Analyst assigned or escalated to",
        "analyst.with-a-long-id",
    ),
    var("escalation.level", "Escalation level code", "SUPERVISOR"),
    var(
        "escalation.reason",
        "Escalation reason code",
        "resolution_target_missed",
    ),
    var(
        "sla.target",
        "Missed SLA target code (INTERNAL_RESPONSE or INTERNAL_RESOLUTION for the tenant's own internal targets)",
        "RESOLUTION",
    ),
    var(
        "invoice.id",
        "Id of the invoice",
        "0190b3c2-7a1e-7cc0-9d0a-3f1f2e4d5c6b",
    ),
    var("invoice.period", "Invoice period (YYYY-MM)", "2026-01"),
    var("invoice.total", "Total due with currency", "USD 123456.78"),
    var("invoice.calls", "Number of billed calls", "123456"),
];

/// The variables `kind` offers.
pub fn variables(kind: EventKind) -> Vec<&'static Variable> {
    let groups: &[&str] = match kind {
        EventKind::InvoiceIssued => &["event", "tenant", "invoice"],
        EventKind::TicketReceived => &["event", "tenant", "ticket", "recipient"],
        EventKind::TicketAssigned => &["event", "tenant", "ticket", "analyst", "recipient"],
        EventKind::TicketEscalated => &["event", "tenant", "ticket", "analyst", "escalation"],
        EventKind::SlaBreached => &["event", "tenant", "ticket", "sla"],
        EventKind::Unspecified => &[],
        _ => &["event", "tenant", "ticket"],
    };
    VARIABLES
        .iter()
        .filter(|v| groups.iter().any(|g| v.name.split('.').next() == Some(*g)))
        .collect()
}

/// Values for one message. Only names from [`VARIABLES`] can be set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (ignored, and a bug, when it is not a known variable).
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        debug_assert!(VARIABLES.iter().any(|v| v.name == name), "{name}");
        if VARIABLES.iter().any(|v| v.name == name) {
            self.0.insert(name.to_owned(), value.into());
        }
        self
    }

    /// A value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The pairs (stored with the delivery).
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// From stored pairs, dropping any name that is not a variable.
    pub fn from_pairs(pairs: BTreeMap<String, String>) -> Self {
        Self(
            pairs
                .into_iter()
                .filter(|(k, _)| VARIABLES.iter().any(|v| v.name == k))
                .collect(),
        )
    }

    /// The example values of `kind` (longest case), for checking overrides.
    pub fn examples(kind: EventKind) -> Self {
        let mut v = Self::new();
        for x in variables(kind) {
            v.set(x.name, x.example);
        }
        v
    }

    fn context(&self) -> Value {
        let mut groups: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (k, v) in &self.0 {
            if let Some((group, field)) = k.split_once('.') {
                groups
                    .entry(group.to_owned())
                    .or_default()
                    .insert(field.to_owned(), Value::from(v.as_str()));
            }
        }
        Value::from(
            groups
                .into_iter()
                .map(|(g, m)| (g, Value::from(m)))
                .collect::<BTreeMap<String, Value>>(),
        )
    }
}

/// A template: subject (email only) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Subject line; empty except for email.
    pub subject: String,
    /// Body; for webhooks a JSON document.
    pub body: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject (email only).
    pub subject: String,
    /// Body.
    pub body: String,
}

/// Why a template is refused or could not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Syntax error in `field`.
    #[error("{field}: syntax error: {reason}")]
    Syntax {
        /// `subject` or `body`.
        field: &'static str,
        /// Parser's message (about the template text, never ticket text).
        reason: String,
    },
    /// A name that is not a variable of the kind.
    #[error("{field}: unknown variable {name} (available: {available})")]
    UnknownVariable {
        /// `subject` or `body`.
        field: &'static str,
        /// The name.
        name: String,
        /// The kind's variables.
        available: String,
    },
    /// Too long after rendering with the longest values.
    #[error("body: at most {max} characters after rendering (the longest values give {len})")]
    TooLong {
        /// Limit.
        max: usize,
        /// Rendered length.
        len: usize,
    },
    /// A webhook body that does not render to JSON.
    #[error("body: a webhook template must render to a JSON document: {reason}")]
    NotJson {
        /// Parser's message.
        reason: String,
    },
    /// An operator or statement templates may not use.
    #[error("{field}: {what} is not allowed (templates substitute values; they do not compute)")]
    Forbidden {
        /// `subject` or `body`.
        field: &'static str,
        /// The construct.
        what: String,
    },
    /// The render ran out of its budget (instructions or output size).
    #[error("{field}: exceeds the rendering budget ({reason})")]
    Budget {
        /// `subject` or `body`.
        field: &'static str,
        /// Which limit.
        reason: String,
    },
    /// Rendering failed.
    #[error("render failed: {0}")]
    Render(String),
}

/// Instructions one render of a subject or body may execute.
pub const FUEL: u64 = 20_000;
/// Nesting depth of loops and conditions.
pub const RECURSION_LIMIT: usize = 16;
/// Bytes one rendered subject or body may have.
pub const OUTPUT_MAX: usize = 64 * 1024;
/// Longest input of the `json` filter.
pub const VALUE_MAX: usize = 8 * 1024;
/// Longest template source (subject or body).
pub const SOURCE_MAX: usize = 40_000;

/// Longest SMS or pager message.
pub const SHORT_MAX: usize = 480;

fn env() -> Environment<'static> {
    // Empty: none of the builtin filters, tests and functions (`replace`,
    // `range`, `join`... can each grow a value); only these.
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // JSON string escaping for webhook bodies; refuses a long input so that
    // `x|json|json|...` cannot double a value per step.
    env.add_filter("json", |v: String| {
        if v.len() > VALUE_MAX {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("json: input over {VALUE_MAX} bytes"),
            ));
        }
        Ok(serde_json::to_string(&v).unwrap_or_else(|_| "\"\"".to_owned()))
    });
    env.add_filter("upper", minijinja::filters::upper);
    env.add_filter("lower", minijinja::filters::lower);
    env.add_filter("title", minijinja::filters::title);
    env.add_filter("capitalize", minijinja::filters::capitalize);
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("length", minijinja::filters::length);
    env
}

/// Refuses the constructs that compute: string-building operators and
/// `{% set %}` (with them a few lines could double a value per line).
fn check_constructs(field: &'static str, src: &str) -> Result<(), TemplateError> {
    if src.len() > SOURCE_MAX {
        return Err(TemplateError::Budget {
            field,
            reason: format!("the template is over {SOURCE_MAX} bytes"),
        });
    }
    let mut after_block_start = false;
    for token in tokenize(src, false, SyntaxConfig::default()) {
        let (token, _) = token.map_err(|e| TemplateError::Syntax {
            field,
            reason: e.to_string(),
        })?;
        let what = match token {
            Token::Tilde => Some("`~`".to_owned()),
            Token::Plus => Some("`+`".to_owned()),
            Token::Mul => Some("`*`".to_owned()),
            Token::Pow => Some("`**`".to_owned()),
            Token::Ident(kw @ ("set" | "with" | "filter" | "call" | "macro"))
                if after_block_start =>
            {
                Some(format!("{{% {kw} %}}"))
            }
            _ => None,
        };
        if let Some(what) = what {
            return Err(TemplateError::Forbidden { field, what });
        }
        after_block_start = matches!(token, Token::BlockStart);
    }
    Ok(())
}

/// An `io::Write` that refuses to hold more than [`OUTPUT_MAX`] bytes.
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > OUTPUT_MAX {
            return Err(io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders one source under the budget.
fn render_one(
    env: &Environment<'_>,
    field: &'static str,
    src: &str,
    ctx: Value,
) -> Result<String, TemplateError> {
    check_constructs(field, src)?;
    let tmpl = env
        .template_from_str(src)
        .map_err(|e| TemplateError::Syntax {
            field,
            reason: e.to_string(),
        })?;
    let mut out = Capped(Vec::new());
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.0).into_owned()),
        Err(e) => Err(match e.kind() {
            ErrorKind::OutOfFuel => TemplateError::Budget {
                field,
                reason: format!("more than {FUEL} instructions"),
            },
            ErrorKind::WriteFailure => TemplateError::Budget {
                field,
                reason: format!("more than {OUTPUT_MAX} bytes of output"),
            },
            _ => TemplateError::Render(e.to_string()),
        }),
    }
}

fn title(kind: EventKind) -> &'static str {
    match kind {
        // Each audience its own words: the caller's acknowledgement is not
        // what a supervisor following new calls should read.
        EventKind::TicketReceived => {
            "{% if recipient.role == \"caller\" %}We received your request {{ ticket.number }}{% else %}New {{ ticket.priority }} call {{ ticket.number }} was received{% endif %}"
        }
        EventKind::TicketAssigned => {
            "{% if recipient.role == \"analyst\" %}Ticket {{ ticket.number }} was assigned to you{% else %}Ticket {{ ticket.number }} was assigned to an analyst{% endif %}"
        }
        EventKind::TicketResolved => "Ticket {{ ticket.number }} was resolved",
        EventKind::TicketEscalated => {
            "Escalation: {{ ticket.priority }} ticket {{ ticket.number }} ({{ escalation.level }})"
        }
        EventKind::SlaBreached => {
            "SLA breached: {{ ticket.priority }} ticket {{ ticket.number }} missed its {{ sla.target }} target"
        }
        EventKind::InvoiceIssued => "Invoice for {{ invoice.period }} issued",
        EventKind::TicketAcknowledged => "Ticket {{ ticket.number }} was acknowledged",
        EventKind::TicketQueued => "Ticket {{ ticket.number }} is waiting for an analyst",
        EventKind::TicketOnHold => "Ticket {{ ticket.number }} is on hold",
        EventKind::TicketReopened => "Ticket {{ ticket.number }} was reopened",
        EventKind::TicketClosed => "Ticket {{ ticket.number }} was closed",
        EventKind::TicketPublicNote => "Ticket {{ ticket.number }} has a new note for you",
        EventKind::Unspecified => "Wardline notification",
    }
}

fn details(kind: EventKind) -> &'static str {
    match kind {
        EventKind::InvoiceIssued => {
            "Invoice {{ invoice.id }} for {{ invoice.period }}: {{ invoice.calls }} calls, total {{ invoice.total }}."
        }
        EventKind::TicketEscalated => {
            "Priority {{ ticket.priority }}, category {{ ticket.category }}, status {{ ticket.status }}. Escalated to {{ escalation.level }} ({{ escalation.reason }})."
        }
        EventKind::TicketPublicNote => {
            "Priority {{ ticket.priority }}, status {{ ticket.status }}. Open the ticket to read the note."
        }
        _ => {
            "Priority {{ ticket.priority }}, category {{ ticket.category }}, status {{ ticket.status }}."
        }
    }
}

fn link(kind: EventKind) -> &'static str {
    if kind == EventKind::InvoiceIssued {
        ""
    } else {
        "{{ ticket.url }}"
    }
}

/// The shipped template of `kind` on `channel`.
pub fn default_template(kind: EventKind, channel: NotificationChannel) -> Template {
    let (title, details, link) = (title(kind), details(kind), link(kind));
    match channel {
        NotificationChannel::Email => Template {
            subject: format!("[Wardline] {title}"),
            body: format!(
                "{title}.\n\n{details}\n{}\nThis message was sent by Wardline; it never contains patient information.\n",
                if link.is_empty() {
                    String::new()
                } else {
                    format!("\nFollow it at {link}\n")
                }
            ),
        },
        NotificationChannel::Sms | NotificationChannel::Pager => Template {
            subject: String::new(),
            body: if link.is_empty() {
                format!("Wardline: {title}.")
            } else {
                format!("Wardline: {title}. {link}")
            },
        },
        NotificationChannel::Webhook | NotificationChannel::Unspecified => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for v in variables(kind) {
                if let Some((g, f)) = v.name.split_once('.') {
                    groups.entry(g).or_default().push(f);
                }
            }
            let body = groups
                .iter()
                .map(|(g, fields)| {
                    let inner = fields
                        .iter()
                        .map(|f| format!("\"{f}\": {{{{ {g}.{f} | json }}}}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("  \"{g}\": {{{inner}}}")
                })
                .collect::<Vec<_>>()
                .join(",\n");
            Template {
                subject: String::new(),
                body: format!("{{\n{body}\n}}\n"),
            }
        }
    }
}

/// Renders `t` with `vars`, under the budget (see the module doc). CPU
/// bound for up to [`FUEL`] instructions: async callers run it on a
/// blocking thread.
pub fn render(t: &Template, vars: &Vars) -> Result<Rendered, TemplateError> {
    let env = env();
    let ctx = vars.context();
    let subject = if t.subject.is_empty() {
        String::new()
    } else {
        render_one(&env, "subject", &t.subject, ctx.clone())?
    };
    let body = render_one(&env, "body", &t.body, ctx)?;
    Ok(Rendered {
        subject: subject.replace(['\r', '\n'], " "),
        body,
    })
}

/// Checks an override of `kind` on `channel`: syntax, only the kind's
/// variables, length (SMS and pager) or JSON (webhook) with the longest values.
pub fn validate(
    kind: EventKind,
    channel: NotificationChannel,
    t: &Template,
) -> Result<(), TemplateError> {
    let env = env();
    let allowed: Vec<&str> = variables(kind).iter().map(|v| v.name).collect();
    for (field, src) in [("subject", &t.subject), ("body", &t.body)] {
        if src.is_empty() {
            continue;
        }
        check_constructs(field, src)?;
        let tmpl = env
            .template_from_str(src)
            .map_err(|e| TemplateError::Syntax {
                field,
                reason: e.to_string(),
            })?;
        let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
        used.sort();
        for name in used {
            if !allowed.contains(&name.as_str()) {
                return Err(TemplateError::UnknownVariable {
                    field,
                    name,
                    available: allowed.join(", "),
                });
            }
        }
    }
    let rendered = render(t, &Vars::examples(kind))?;
    match channel {
        NotificationChannel::Sms | NotificationChannel::Pager => {
            let len = rendered.body.chars().count();
            if len > SHORT_MAX {
                return Err(TemplateError::TooLong {
                    max: SHORT_MAX,
                    len,
                });
            }
        }
        NotificationChannel::Webhook => {
            serde_json::from_str::<serde_json::Value>(&rendered.body).map_err(|e| {
                TemplateError::NotJson {
                    reason: e.to_string(),
                }
            })?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CHANNELS, EVENT_KINDS};

    #[test]
    fn every_default_is_valid_and_renders_with_the_longest_values() {
        for kind in EVENT_KINDS {
            for channel in CHANNELS {
                let t = default_template(*kind, *channel);
                validate(*kind, *channel, &t)
                    .unwrap_or_else(|e| panic!("{kind:?} {channel:?}: {e}"));
            }
        }
    }

    #[test]
    fn rendering_uses_only_the_given_values() {
        let mut v = Vars::new();
        v.set("ticket.number", "STM-000042")
            .set("ticket.priority", "P2")
            .set("ticket.category", "PRINTING")
            .set("ticket.status", "RESOLVED")
            .set("ticket.url", "https://desk/t/STM-000042")
            .set("ticket.id", "t-1")
            .set("event.id", "e-1")
            .set("event.kind", "ticket_resolved")
            .set("tenant.id", "stmarys");
        let email = render(
            &default_template(EventKind::TicketResolved, NotificationChannel::Email),
            &v,
        )
        .unwrap();
        assert_eq!(email.subject, "[Wardline] Ticket STM-000042 was resolved");
        assert!(email.body.contains("https://desk/t/STM-000042"));
        let hook = render(
            &default_template(EventKind::TicketResolved, NotificationChannel::Webhook),
            &v,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
        assert_eq!(json["ticket"]["number"], "STM-000042");
        assert_eq!(json["event"]["kind"], "ticket_resolved");
        // A missing value fails instead of rendering empty.
        let e = render(
            &default_template(EventKind::TicketEscalated, NotificationChannel::Sms),
            &v,
        );
        assert!(matches!(e, Err(TemplateError::Render(_))));
    }

    #[test]
    fn each_audience_reads_its_own_words() {
        let mut v = Vars::new();
        v.set("ticket.number", "STM-000042")
            .set("ticket.priority", "P2")
            .set("ticket.category", "PRINTING")
            .set("ticket.status", "NEW")
            .set("ticket.url", "https://desk/t/STM-000042")
            .set("ticket.id", "t-1")
            .set("event.id", "e-1")
            .set("event.kind", "ticket_received")
            .set("tenant.id", "stmarys")
            .set("analyst.id", "an.ruiz");
        let subject = |kind, role: &str| {
            let mut v = v.clone();
            v.set("recipient.role", role);
            render(&default_template(kind, NotificationChannel::Email), &v)
                .unwrap()
                .subject
        };
        let received = EventKind::TicketReceived;
        assert_eq!(
            subject(received, "caller"),
            "[Wardline] We received your request STM-000042"
        );
        for role in ["supervisor", "custom", "on_call", ""] {
            assert_eq!(
                subject(received, role),
                "[Wardline] New P2 call STM-000042 was received",
                "{role:?}"
            );
        }
        let assigned = EventKind::TicketAssigned;
        assert_eq!(
            subject(assigned, "analyst"),
            "[Wardline] Ticket STM-000042 was assigned to you"
        );
        assert_eq!(
            subject(assigned, "caller"),
            "[Wardline] Ticket STM-000042 was assigned to an analyst"
        );
    }

    #[test]
    fn overrides_may_only_name_the_kinds_variables() {
        let t = |body: &str| Template {
            subject: String::new(),
            body: body.into(),
        };
        let ok = t("{{ ticket.number }} {{ ticket.priority }} {{ ticket.url }}");
        validate(EventKind::TicketReceived, NotificationChannel::Sms, &ok).unwrap();
        for bad in [
            "{{ ticket.description }}",
            "{{ notes }}",
            "{{ invoice.total }}",
        ] {
            let e =
                validate(EventKind::TicketReceived, NotificationChannel::Sms, &t(bad)).unwrap_err();
            assert!(
                matches!(e, TemplateError::UnknownVariable { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().starts_with("body: unknown variable"), "{e}");
        }
        let e = validate(
            EventKind::TicketReceived,
            NotificationChannel::Sms,
            &t("{{ ticket.number "),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("body: syntax error"), "{e}");
        let long = t(&"{{ ticket.url }} ".repeat(8));
        assert!(matches!(
            validate(EventKind::TicketReceived, NotificationChannel::Pager, &long),
            Err(TemplateError::TooLong { .. })
        ));
        validate(EventKind::TicketReceived, NotificationChannel::Email, &long).unwrap();
        assert!(matches!(
            validate(
                EventKind::TicketReceived,
                NotificationChannel::Webhook,
                &t("not json {{ ticket.id }}")
            ),
            Err(TemplateError::NotJson { .. })
        ));
    }

    fn email(body: &str) -> Template {
        Template {
            subject: String::new(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn templates_may_not_compute() {
        for (src, what) in [
            ("{{ ticket.number ~ ticket.number }}", "`~`"),
            ("{{ ticket.number + ticket.number }}", "`+`"),
            ("{{ ticket.number * 100000000 }}", "`*`"),
            ("{{ 10 ** 10 }}", "`**`"),
            ("{% set x = ticket.number %}{{ x }}", "{% set %}"),
            ("{%- set x = 1 %}", "{% set %}"),
            (
                "{% with x = ticket.number %}{{ x }}{% endwith %}",
                "{% with %}",
            ),
        ] {
            let e = validate(
                EventKind::TicketReceived,
                NotificationChannel::Email,
                &email(src),
            )
            .unwrap_err();
            assert_eq!(
                e,
                TemplateError::Forbidden {
                    field: "body",
                    what: what.to_owned()
                },
                "{src}"
            );
        }
        // Text outside expressions may say anything.
        validate(
            EventKind::TicketReceived,
            NotificationChannel::Email,
            &email("Call 1+1 ~ set * {{ ticket.number }}"),
        )
        .unwrap();
    }

    #[test]
    fn a_template_over_the_budget_is_refused_with_its_field() {
        // Nested loops over the longest URL: millions of iterations.
        let loops = "{% for a in ticket.url %}{% for b in ticket.url %}{% for c in ticket.url %}x{% endfor %}{% endfor %}{% endfor %}";
        let e = validate(
            EventKind::TicketReceived,
            NotificationChannel::Email,
            &Template {
                subject: loops.to_owned(),
                body: "ok".to_owned(),
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::Budget {
                    field: "subject",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("subject: exceeds the rendering budget")
        );
        // json of json of ...: refused before it doubles past the limit.
        let chain = format!("{{{{ ticket.number{} }}}}", "|json".repeat(40));
        let e = validate(
            EventKind::TicketReceived,
            NotificationChannel::Email,
            &email(&chain),
        )
        .unwrap_err();
        assert!(matches!(e, TemplateError::Render(_)), "{e:?}");
        // Not found at save time (a branch on data), cut off at render time.
        let sneaky = format!("{{% if ticket.number == \"STM-000666\" %}}{loops}{{% endif %}}ok");
        validate(
            EventKind::TicketReceived,
            NotificationChannel::Email,
            &email(&sneaky),
        )
        .unwrap();
        let mut vars = Vars::examples(EventKind::TicketReceived);
        vars.set("ticket.number", "STM-000666");
        let started = std::time::Instant::now();
        let e = render(&email(&sneaky), &vars).unwrap_err();
        assert!(
            matches!(e, TemplateError::Budget { field: "body", .. }),
            "{e:?}"
        );
        eprintln!("cut off after {:?}", started.elapsed());
    }

    #[test]
    fn output_is_capped() {
        // 16 x 16 x 16 x ~80-byte URL = over 300 KiB of output within the fuel.
        let t = "{% for a in 'abcdefghijklmnop' %}{% for b in 'abcdefghijklmnop' %}{% for c in 'abcdefghijklmnop' %}{{ ticket.url }}{% endfor %}{% endfor %}{% endfor %}";
        let e = render(&email(t), &Vars::examples(EventKind::TicketReceived)).unwrap_err();
        assert!(matches!(e, TemplateError::Budget { .. }), "{e:?}");
    }

    #[test]
    fn stored_pairs_cannot_smuggle_other_names() {
        let mut pairs = BTreeMap::new();
        pairs.insert("ticket.number".to_owned(), "STM-1".to_owned());
        pairs.insert("ticket.description".to_owned(), "free text".to_owned());
        let v = Vars::from_pairs(pairs);
        assert_eq!(v.pairs().len(), 1);
        assert_eq!(v.get("ticket.number"), Some("STM-1"));
    }

    fn fragment() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[ -~]{0,12}",
            Just("{{ ticket.number }}".to_owned()),
            Just("{{ ticket.url|upper }}".to_owned()),
            Just("{{ ticket.number|json|json }}".to_owned()),
            Just("{% for c in ticket.url %}".to_owned()),
            Just("{% endfor %}".to_owned()),
            Just("{% if ticket.priority == 'P1' %}".to_owned()),
            Just("{% endif %}".to_owned()),
            Just("{{ ".to_owned()),
            Just(" }}".to_owned()),
            Just("{% set x = 1 %}".to_owned()),
            Just("{{ ticket.number ~ ticket.url }}".to_owned()),
            Just("{{ range(100000) }}".to_owned()),
            Just("{{ nothing.here }}".to_owned()),
            Just("{# comment #}".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Hostile templates built from real pieces: refused with a reason
        /// or rendered within the budget, never a panic.
        #[test]
        fn any_template_is_refused_or_rendered_within_the_budget(
            parts in proptest::collection::vec(fragment(), 0..24),
        ) {
            let t = Template { subject: String::new(), body: parts.concat() };
            if validate(EventKind::TicketReceived, NotificationChannel::Email, &t).is_ok() {
                let out = render(&t, &Vars::examples(EventKind::TicketReceived));
                if let Ok(r) = out {
                    proptest::prop_assert!(r.body.len() <= OUTPUT_MAX);
                }
            }
        }
    }
}
