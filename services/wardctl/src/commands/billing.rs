//! `wardctl contract | usage | charges | unbilled | invoice`: billing's view
//! of `--tenant`: the contract versions that price its calls, what a month
//! used and was charged, calls nobody can bill yet, and the invoices.
//! A contract version comes from a file in the proto's own JSON (or YAML)
//! shape; billing validates it (INVALID_ARGUMENT names the field), so
//! wardctl holds no copy of billing's rules.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use tonic::Code;
use wardline_proto::billing::{
    Charge, Contract, CreateContractVersionRequest, ExportInvoiceRequest, ExportInvoiceResponse,
    GetContractRequest, GetDraftInvoiceRequest, GetInvoiceRequest, GetUsageRequest, Invoice,
    IssueInvoiceRequest, ListChargesRequest, ListContractVersionsRequest, ListInvoicesRequest,
    ListUnbilledRequest, RebuildCheckRequest, UnbilledCall,
};

use super::routing::{tenant_zone, ticket_id};
use super::{Context, print_json};
use crate::cli::{
    ChargesArgs, ContractCommand, CreateContractArgs, InvoiceCommand, ListInvoicesArgs,
    UnbilledArgs, UsageArgs, is_period,
};
use crate::grpc::Session;
use crate::render::Zone;
use crate::render::billing as render;

/// `wardctl contract create|get|list`.
pub async fn contract(ctx: &Context, cmd: ContractCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose contract to use")?;
    match cmd {
        ContractCommand::Create(args) => {
            let contract = contract_of(&args)?;
            let session = ctx.billing_session(tenant).await?;
            let req = CreateContractVersionRequest {
                request_id: ctx.request_id(),
                contract: Some(contract),
                expected_latest_version: args.expected_latest_version,
            };
            let created = match session.contracts().create_contract_version(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == Code::Aborted => {
                    return Err(anyhow::Error::new(s).context(
                        "the contract has other versions than you expected (see wardctl contract list; \
                         give the latest as --expected-latest-version)",
                    ));
                }
                Err(s) => return Err(s.into()),
            };
            show_contract(ctx, &created).await;
        }
        ContractCommand::Get { version } => {
            let session = ctx.billing_session(tenant).await?;
            let req = GetContractRequest {
                at: None,
                version: version.unwrap_or(0),
            };
            let c = session.contracts().get_contract(req).await?.into_inner();
            show_contract(ctx, &c).await;
        }
        ContractCommand::List => {
            let session = ctx.billing_session(tenant).await?;
            let versions = list_versions(&session).await?;
            if ctx.json {
                print_json(&versions);
            } else if versions.is_empty() {
                println!(
                    "no contract yet: its calls are unbilled (add one with: wardctl contract create --file CONTRACT.yaml --effective-from YYYY-MM-DD)"
                );
            } else {
                let zone = tenant_zone(ctx, versions.first().map(|c| c.tenant_id.as_str())).await;
                print!("{}", render::contract_table(&versions, zone).render());
            }
        }
    }
    Ok(())
}

/// Reads a contract version from a file: JSON when its name ends in
/// `.json`, else YAML, in the proto3 JSON mapping of
/// `wardline.billing.v1.Contract`; `--effective-from` replaces the file's.
pub fn contract_of(args: &CreateContractArgs) -> Result<Contract> {
    let path = &args.file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the contract file {}", path.display()))?;
    let mut contract = parse_contract(&text, path.extension().is_some_and(|e| e == "json"))
        .with_context(|| format!("{} is not a wardline.billing.v1.Contract", path.display()))?;
    if let Some(from) = &args.effective_from {
        contract.effective_from = from.clone();
    }
    Ok(contract)
}

/// A contract from JSON or YAML text in the proto3 JSON mapping.
pub fn parse_contract(text: &str, json: bool) -> Result<Contract> {
    Ok(if json {
        serde_json::from_str(text)?
    } else {
        serde_norway::from_str(text)?
    })
}

async fn show_contract(ctx: &Context, c: &Contract) {
    if ctx.json {
        print_json(c);
    } else {
        let zone = tenant_zone(ctx, Some(c.tenant_id.as_str()).filter(|t| !t.is_empty())).await;
        print!("{}", render::contract_details(c, zone));
    }
}

/// Every contract version of the session's tenant, newest first.
pub async fn list_versions(session: &Session) -> Result<Vec<Contract>> {
    let req = ListContractVersionsRequest::default();
    paged!(
        usize::MAX,
        session.contracts(),
        list_contract_versions,
        req,
        contracts
    )
}

/// `wardctl usage`.
pub async fn usage(ctx: &Context, args: &UsageArgs) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose usage to show")?;
    let session = ctx.billing_session(tenant).await?;
    let u = session
        .usage()
        .get_usage(GetUsageRequest {
            period: args.period.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    if ctx.json {
        print_json(&u);
    } else {
        let zone = tenant_zone(ctx, Some(u.tenant_id.as_str()).filter(|t| !t.is_empty())).await;
        print!("{}", render::usage_text(&u, zone));
    }
    Ok(())
}

/// The first request of `charges` (the ticket id resolved already).
pub fn charges_request(args: &ChargesArgs, ticket_id: String) -> ListChargesRequest {
    ListChargesRequest {
        period: args.period.clone().unwrap_or_default(),
        kinds: args.kinds.iter().map(|k| *k as i32).collect(),
        ticket_id,
        page_size: 0,
        page_token: String::new(),
    }
}

/// Up to `limit` charges matching `req`, following the pages.
pub async fn list_charges(
    session: &Session,
    req: ListChargesRequest,
    limit: usize,
) -> Result<Vec<Charge>> {
    paged!(limit, session.usage(), list_charges, req, charges)
}

/// `wardctl charges`.
pub async fn charges(ctx: &Context, args: &ChargesArgs) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose charges to show")?;
    let ticket = match &args.ticket {
        Some(key) => ticket_id(ctx, tenant, key).await?,
        None => String::new(),
    };
    let session = ctx.billing_session(tenant).await?;
    let list = list_charges(&session, charges_request(args, ticket), args.limit as usize).await?;
    if ctx.json {
        print_json(&list);
        return Ok(());
    }
    let period = args.period.as_deref().unwrap_or("the current period");
    if list.is_empty() {
        println!("no charges match in {period}");
        return Ok(());
    }
    let zone = tenant_zone(ctx, tenant).await;
    print!("{}", render::charge_table(&list, zone).render());
    println!(
        "\n{} charge(s) in {period}, together {} (the invoice adds any minimum top-up and caps the credits: wardctl invoice draft)",
        list.len(),
        render::charges_total(&list)
    );
    Ok(())
}

/// `wardctl unbilled`: `--tenant`'s, or every tenant's without one.
pub async fn unbilled(ctx: &Context, args: &UnbilledArgs) -> Result<()> {
    let tenant = ctx.tenant.as_deref();
    let session = ctx.billing_session(tenant).await?;
    let req = ListUnbilledRequest::default();
    let calls: Vec<UnbilledCall> = paged!(
        args.limit as usize,
        session.usage(),
        list_unbilled,
        req,
        calls
    )?;
    if ctx.json {
        print_json(&calls);
    } else if calls.is_empty() {
        println!("no unbilled calls: every call has a contract in force on its day");
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::unbilled_table(&calls, zone).render());
        println!(
            "\na contract version whose effective-from covers these days rates them (wardctl --tenant T contract create ...)"
        );
    }
    Ok(())
}

/// The first request of `invoice list`.
pub fn invoices_request(args: &ListInvoicesArgs) -> ListInvoicesRequest {
    ListInvoicesRequest {
        statuses: args.statuses.iter().map(|s| *s as i32).collect(),
        period_from: args.from.clone().unwrap_or_default(),
        period_to: args.to.clone().unwrap_or_default(),
        page_size: 0,
        page_token: String::new(),
    }
}

/// Up to `limit` invoices matching `req`, newest period first.
pub async fn list_invoices(
    session: &Session,
    req: ListInvoicesRequest,
    limit: usize,
) -> Result<Vec<Invoice>> {
    paged!(limit, session.invoices(), list_invoices, req, invoices)
}

/// The invoice id `key` names: an id as is, a period `YYYY-MM` looked up.
async fn invoice_id(session: &Session, key: &str) -> Result<String> {
    let key = key.trim();
    if !is_period(key) {
        return Ok(key.to_owned());
    }
    let req = ListInvoicesRequest {
        period_from: key.to_owned(),
        period_to: key.to_owned(),
        ..Default::default()
    };
    match list_invoices(session, req, 1).await?.into_iter().next() {
        Some(inv) => Ok(inv.invoice_id),
        None => bail!(
            "no invoice for period {key}: billing opens one when a call or breach of the period is recorded \
             (wardctl invoice draft --period {key} shows what it would hold)"
        ),
    }
}

/// Where `invoice export --out` writes: the path, or billing's suggested
/// name inside it when it is a directory.
pub fn export_path(out: &Path, suggested: &str) -> PathBuf {
    if out.is_dir() {
        // Only the file name of the suggestion: never a path billing chose.
        let name = Path::new(suggested)
            .file_name()
            .map_or_else(|| "invoice".into(), |n| n.to_owned());
        out.join(name)
    } else {
        out.to_owned()
    }
}

fn write_export(ctx: &Context, file: &ExportInvoiceResponse, out: Option<&Path>) -> Result<()> {
    let Some(out) = out else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&file.content)?;
        stdout.flush()?;
        return Ok(());
    };
    let path = export_path(out, &file.file_name);
    std::fs::write(&path, &file.content)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if ctx.json {
        print_json(&json!({
            "file": path.display().to_string(),
            "bytes": file.content.len(),
            "content_type": file.content_type,
            "suggested_name": file.file_name,
        }));
    } else {
        println!(
            "wrote {} ({} bytes, {})",
            path.display(),
            file.content.len(),
            file.content_type
        );
    }
    Ok(())
}

fn show_invoice(ctx: &Context, inv: &Invoice, zone: Zone) {
    if ctx.json {
        print_json(inv);
    } else {
        print!("{}", render::invoice_details(inv, zone));
    }
}

/// `wardctl invoice draft|list|get|issue|export|rebuild-check`.
pub async fn invoice(ctx: &Context, cmd: InvoiceCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose invoices to use")?;
    let session = ctx.billing_session(tenant).await?;
    match cmd {
        InvoiceCommand::Draft { period } => {
            let req = GetDraftInvoiceRequest {
                period: period.clone().unwrap_or_default(),
            };
            let inv = match session.invoices().get_draft_invoice(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == Code::FailedPrecondition => {
                    let p = period.unwrap_or_default();
                    return Err(anyhow::Error::new(s).context(format!(
                        "the period is issued: see it with wardctl invoice get {p}"
                    )));
                }
                Err(s) => return Err(s.into()),
            };
            show_invoice(ctx, &inv, tenant_zone(ctx, tenant).await);
        }
        InvoiceCommand::List(args) => {
            let list =
                list_invoices(&session, invoices_request(&args), args.limit as usize).await?;
            if ctx.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no invoices match");
            } else {
                let zone = tenant_zone(ctx, tenant).await;
                print!("{}", render::invoice_table(&list, zone).render());
            }
        }
        InvoiceCommand::Get { invoice } => {
            let id = invoice_id(&session, &invoice).await?;
            let inv = session
                .invoices()
                .get_invoice(GetInvoiceRequest { invoice_id: id })
                .await?
                .into_inner();
            show_invoice(ctx, &inv, tenant_zone(ctx, tenant).await);
        }
        InvoiceCommand::Issue { period } => {
            let inv = session
                .invoices()
                .issue_invoice(IssueInvoiceRequest {
                    request_id: ctx.request_id(),
                    period,
                })
                .await?
                .into_inner();
            show_invoice(ctx, &inv, tenant_zone(ctx, tenant).await);
        }
        InvoiceCommand::Export {
            invoice,
            format,
            out,
        } => {
            let id = invoice_id(&session, &invoice).await?;
            let file = session
                .invoices()
                .export_invoice(ExportInvoiceRequest {
                    invoice_id: id,
                    format: format as i32,
                })
                .await?
                .into_inner();
            write_export(ctx, &file, out.as_deref())?;
        }
        InvoiceCommand::RebuildCheck { period } => {
            let r = session
                .invoices()
                .rebuild_check(RebuildCheckRequest {
                    period: period.clone(),
                })
                .await?
                .into_inner();
            if ctx.json {
                print_json(&r);
            } else {
                print!(
                    "{}",
                    render::rebuild_text(&r, tenant_zone(ctx, tenant).await)
                );
            }
            if !r.matches {
                bail!(
                    "rebuild check of {period}: {} difference(s) between the stored invoice and the rated events",
                    r.differences.len()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use wardline_proto::billing::{InvoiceStatus, LineKind};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn charge_filters_map_onto_the_request() {
        let Command::Charges(args) = parse(&[
            "charges",
            "--period",
            "2026-02",
            "--kind",
            "sla-credit",
            "--kind",
            "minimum-top-up",
        ]) else {
            panic!("not charges")
        };
        let req = charges_request(&args, "t-1".into());
        assert_eq!(req.period, "2026-02");
        assert_eq!(req.ticket_id, "t-1");
        assert_eq!(
            req.kinds,
            vec![LineKind::SlaCredit as i32, LineKind::MinimumTopUp as i32]
        );
        let Command::Charges(args) = parse(&["charges"]) else {
            panic!("not charges")
        };
        let req = charges_request(&args, String::new());
        assert_eq!(req.period, "", "empty: billing's current period");
        assert!(req.kinds.is_empty());
    }

    #[test]
    fn invoice_filters_map_onto_the_request() {
        let Command::Invoice(InvoiceCommand::List(args)) = parse(&[
            "invoice",
            "list",
            "--status",
            "draft,issued",
            "--from",
            "2026-01",
            "--to",
            "2026-06",
        ]) else {
            panic!("not invoice list")
        };
        let req = invoices_request(&args);
        assert_eq!(
            req.statuses,
            vec![InvoiceStatus::Draft as i32, InvoiceStatus::Issued as i32]
        );
        assert_eq!(
            (req.period_from.as_str(), req.period_to.as_str()),
            ("2026-01", "2026-06")
        );
    }

    #[test]
    fn exports_go_into_a_directory_under_the_suggested_name() {
        let dir = std::env::temp_dir();
        assert_eq!(
            export_path(&dir, "stmarys-2026-02.csv"),
            dir.join("stmarys-2026-02.csv")
        );
        assert_eq!(
            export_path(&dir, "../../etc/passwd"),
            dir.join("passwd"),
            "only the file name of the suggestion is used"
        );
        let file = dir.join("wardctl-no-such-dir").join("x.json");
        assert_eq!(export_path(&file, "ignored.json"), file);
    }
}
