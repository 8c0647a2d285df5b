//! Billing as its integration tests run it: in process on port 0, against
//! a fresh database and a private nats-server.

#![allow(dead_code)] // each test binary uses its part

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use wardline_kit::config::Env;
use wardline_testkit::{TestDb, TestNats};

/// A running billing; stops when dropped.
pub struct Billing {
    pub nats: TestNats,
    pub db: TestDb,
    pub grpc: SocketAddr,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Billing {
    /// Stops billing and checks that it stopped cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("billing task")
                .expect("billing stopped cleanly");
        }
    }
}

impl Drop for Billing {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts billing on a fresh database named after `prefix`.
pub async fn start(prefix: &str) -> Billing {
    let nats = TestNats::start();
    let db = TestDb::create(prefix).await;
    let config = wardline_billing::Config::from_env(&Env::from_pairs(
        vec![
            ("BILLING_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("BILLING_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("BILLING_DATABASE_URL".to_owned(), db.url()),
            ("BILLING_MIGRATE_DATABASE_URL".to_owned(), db.owner_url()),
            ("BILLING_RELAY_POLL_MS".to_owned(), "200".to_owned()),
            ("WARDLINE_SHUTDOWN_TIMEOUT_MS".to_owned(), "5000".to_owned()),
        ]
        .into_iter()
        .chain(wardline_testkit::auth_env())
        .chain(nats.service_env("billing", &[]))
        .collect::<Vec<_>>(),
    ))
    .expect("billing accepts the test configuration");
    let shutdown = CancellationToken::new();
    let app = wardline_billing::Application::build(config, shutdown.clone())
        .await
        .expect("billing builds");
    let grpc = app.grpc_addr();
    let running = Some(tokio::spawn(app.run_until_stopped()));
    Billing {
        nats,
        db,
        grpc,
        shutdown,
        running,
    }
}
