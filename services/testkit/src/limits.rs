//! The walk every service's `tests/limits.rs` makes along its API's edges
//! (`docs/limits.md`): for each bounded field, the maximum is accepted (or
//! answers `at_max`, e.g. NOT_FOUND for a lookup of a well-formed key
//! nobody holds), one past it and a NUL byte are INVALID_ARGUMENT naming the
//! field, and nothing refused was stored. The services write their edges;
//! this module walks them, the same way for all four.

use std::future::Future;

use tonic::{Code, Status};

/// How a field is filled: a value `n` long, or `n` list entries.
pub enum Size {
    /// Text made by the function, `n` long.
    Text(fn(usize) -> String),
    /// `n` entries.
    Count,
}

/// Where the NUL byte goes in a text at its maximum (some fields check a
/// prefix or suffix first, and the NUL must reach the character check).
#[derive(Debug, Clone, Copy)]
pub enum Nul {
    /// The second character.
    Second,
    /// The second to last character.
    SecondToLast,
}

/// One bounded field of one RPC.
pub struct Edge<X, C> {
    /// The RPC, for messages.
    pub rpc: &'static str,
    /// The field as the error names it (the message starts `<field>:`).
    pub field: &'static str,
    /// The largest value or count accepted.
    pub max: usize,
    /// How the field is filled.
    pub size: Size,
    /// The request with the field at `value` (text) or `n` entries (count).
    pub make: fn(&X, String, usize) -> C,
    /// What the maximum answers.
    pub at_max: Code,
}

impl<X, C> Edge<X, C> {
    /// The requests: at the maximum, one past it, and (text) with a NUL.
    fn calls(&self, ctx: &X, nul: Nul) -> (C, C, Option<C>) {
        match self.size {
            Size::Text(fill) => {
                let mut with_nul = fill(self.max);
                let i = match nul {
                    Nul::Second => 1,
                    Nul::SecondToLast => with_nul.len() - 2,
                };
                with_nul.replace_range(i..i + 1, "\0");
                (
                    (self.make)(ctx, fill(self.max), 0),
                    (self.make)(ctx, fill(self.max + 1), 0),
                    Some((self.make)(ctx, with_nul, 0)),
                )
            }
            Size::Count => (
                (self.make)(ctx, String::new(), self.max),
                (self.make)(ctx, String::new(), self.max + 1),
                None,
            ),
        }
    }
}

/// Walks `edges`: `send` makes a call, `stored` counts the rows a refused
/// call must not add. Returns how many refusals were checked.
pub async fn walk<X, C, S, SF, W, WF, N>(
    ctx: &X,
    edges: Vec<Edge<X, C>>,
    nul: Nul,
    mut send: S,
    mut stored: W,
) -> usize
where
    S: FnMut(C) -> SF,
    SF: Future<Output = Result<(), Status>>,
    W: FnMut() -> WF,
    WF: Future<Output = N>,
    N: PartialEq + std::fmt::Debug,
{
    let mut refused = 0;
    for edge in edges {
        let case = format!("{} {} (max {})", edge.rpc, edge.field, edge.max);
        let (at, past, control) = edge.calls(ctx, nul);
        let answer = send(at).await;
        let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
        assert_eq!(
            code, edge.at_max,
            "{case}: the maximum is accepted: {answer:?}"
        );
        let before = stored().await;
        for (what, call) in [
            ("one past the maximum", Some(past)),
            ("a NUL byte", control),
        ] {
            let Some(call) = call else { continue };
            let e = send(call)
                .await
                .expect_err(&format!("{case}: {what} is refused"));
            assert_eq!(e.code(), Code::InvalidArgument, "{case}: {what}: {e:?}");
            assert!(
                e.message().starts_with(&format!("{}:", edge.field)),
                "{case}: {what} names the field: {}",
                e.message()
            );
            refused += 1;
        }
        assert_eq!(stored().await, before, "{case}: nothing refused was stored");
    }
    refused
}
