//! Where wardctl's token comes from in production: the OAuth 2.0
//! client-credentials flow (RFC 6749 §4.4) against the identity provider's
//! token endpoint. wardctl is registered at the provider as a confidential
//! client (Entra ID: an app registration with a client secret and the
//! Wardline app roles granted as application permissions; Keycloak: a
//! client with service accounts enabled and the roles assigned to its
//! service account).
//!
//! What must hold: the client secret is read from `WARDLINE_CLIENT_SECRET`
//! only (never argv, never printed), and the token endpoint is https unless
//! it is on this machine.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::Cli;

/// A client-credentials configuration.
#[derive(Clone)]
pub struct ClientCredentials {
    /// `--client-id` / `WARDLINE_CLIENT_ID`.
    pub client_id: String,
    /// `WARDLINE_CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// `--token-url` / `WARDLINE_TOKEN_URL`.
    pub token_url: Option<String>,
    /// `--scope` / `WARDLINE_TOKEN_SCOPE`.
    pub scope: Option<String>,
    /// `--audience` / `WARDLINE_TOKEN_AUDIENCE`.
    pub audience: Option<String>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The flow's settings when `--client-id` is given.
    pub fn from_cli(cli: &Cli) -> Option<Self> {
        let client_id = cli.client_id.clone().filter(|c| !c.is_empty())?;
        Some(Self {
            client_id,
            client_secret: std::env::var("WARDLINE_CLIENT_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            token_url: cli.token_url.clone(),
            scope: cli.scope.clone(),
            audience: cli.audience.clone(),
        })
    }

    /// The form body of the token request.
    fn body(&self, secret: &SecretString) -> String {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.expose_secret()),
        ];
        if let Some(s) = &self.scope {
            pairs.push(("scope", s));
        }
        if let Some(a) = &self.audience {
            pairs.push(("audience", a));
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Asks the token endpoint for an access token.
    pub async fn fetch(&self, timeout: Duration) -> Result<SecretString> {
        let url = self.token_url.as_deref().context(
            "--client-id needs the provider's token endpoint: --token-url or WARDLINE_TOKEN_URL",
        )?;
        let secret = self
            .client_secret
            .as_ref()
            .context("--client-id needs its secret in WARDLINE_CLIENT_SECRET")?;
        let host = wardline_kit::tls::url_host(url);
        if !url.starts_with("https://") && !wardline_kit::tls::is_local_host(host) {
            bail!("WARDLINE_TOKEN_URL: the client secret travels to {host}: use https://");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("HTTP client")?;
        let resp = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(self.body(secret))
            .send()
            .await
            .with_context(|| format!("token request to {url}"))?;
        let status = resp.status();
        let body = resp.bytes().await.context("token response")?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("token endpoint {url} answered HTTP {status} without JSON"))?;
        if !status.is_success() {
            // RFC 6749 §5.2: `error` is a code, safe to show; never the body.
            let code = json["error"].as_str().unwrap_or("unknown");
            bail!(
                "token endpoint {url} refused the client credentials: HTTP {status}, error {code}"
            );
        }
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .with_context(|| format!("token endpoint {url} returned no access_token"))?;
        Ok(SecretString::from(token.to_owned()))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A one-request token endpoint on loopback: answers `response` and
    /// hands back the request it got.
    async fn endpoint(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, task)
    }

    fn creds(url: String) -> ClientCredentials {
        ClientCredentials {
            client_id: "wardctl-ops".into(),
            client_secret: Some(SecretString::from("s3cret&=")),
            token_url: Some(url),
            scope: Some("api://wardline/.default".into()),
            audience: None,
        }
    }

    #[tokio::test]
    async fn the_client_credentials_flow_posts_the_form_and_takes_the_access_token() {
        let (url, got) = endpoint(
            "200 OK",
            r#"{"access_token":"eyJ.x.y","token_type":"Bearer"}"#,
        )
        .await;
        let token = creds(url).fetch(Duration::from_secs(5)).await.unwrap();
        assert_eq!(token.expose_secret(), "eyJ.x.y");
        let request = got.await.unwrap();
        assert!(request.starts_with("POST /oauth2/token"), "{request}");
        assert!(
            request.contains("grant_type=client_credentials"),
            "{request}"
        );
        assert!(request.contains("client_secret=s3cret%26%3D"), "{request}");
        assert!(
            request.contains("scope=api%3A%2F%2Fwardline%2F.default"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_refusal_names_the_error_code_only() {
        let (url, _got) = endpoint(
            "401 Unauthorized",
            r#"{"error":"invalid_client","error_description":"x"}"#,
        )
        .await;
        let e = creds(url).fetch(Duration::from_secs(5)).await.unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("invalid_client") && !e.contains("s3cret"), "{e}");
        let mut c = creds("http://idp.example.org/token".into());
        c.scope = None;
        let e = c
            .fetch(Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("https"), "{e}");
    }
}
