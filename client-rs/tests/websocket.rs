//! `wss://` with a certificate generated at test time, bearer tokens, and the CLI over
//! WebSockets, against the real server binary.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pixl_ipc_client::{Client, Error, ReconnectPolicy};
use pixl_ipc_test_utils::ServerProcess;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(15);

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.as_ref().pem()).unwrap();
    std::fs::write(&pki.cert, server_cert.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    pki
}

/// The server binary with a `wss://` listener using `pki`'s certificate.
fn start_wss(dir: &Path, pki: &Pki, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--ws",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&dir.join("wss.sock"), &args)
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("took longer than the test limit")
}

#[tokio::test]
async fn wss_with_a_private_ca_and_the_right_name_works_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = start_wss(dir.path(), &pki, &[]);
    let url = server.ws_url().unwrap();
    let client = bounded(Client::builder().tls_ca_file(&pki.ca).connect(url.as_str()))
        .await
        .unwrap();
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!({"secure": true})))
            .await
            .unwrap(),
        json!({"secure": true})
    );

    // `localhost` is also on the certificate: a different host name checked via tls_domain.
    let by_name = bounded(
        Client::builder()
            .tls_ca_file(&pki.ca)
            .tls_domain("localhost")
            .connect(url.as_str()),
    )
    .await;
    assert!(by_name.is_ok(), "{:?}", by_name.err());

    // Without our CA the certificate is not trusted; with a wrong name it does not match.
    let untrusted = bounded(
        Client::builder()
            .reconnect(ReconnectPolicy::Off)
            .connect(url.as_str()),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(untrusted, Error::Connect { .. }), "{untrusted:?}");
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    let wrong_name = bounded(
        Client::builder()
            .tls_ca_file(&pki.ca)
            .tls_domain("other.example")
            .connect(url.as_str()),
    )
    .await
    .err()
    .unwrap();
    assert!(
        wrong_name
            .to_string()
            .to_lowercase()
            .contains("certificate"),
        "{wrong_name}"
    );

    // Plain ws:// to a TLS listener fails cleanly, and the server keeps serving.
    let plain = url.replacen("wss://", "ws://", 1);
    assert!(bounded(Client::connect(plain.as_str())).await.is_err());
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!(2)))
            .await
            .unwrap(),
        json!(2)
    );
}

#[tokio::test]
async fn the_bearer_token_is_sent_with_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let server = ServerProcess::start(
        &dir.path().join("tok.sock"),
        &[
            "--ws",
            "127.0.0.1:0",
            "--ws-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let url = server.ws_url().unwrap();
    let refused = bounded(Client::connect(url.as_str())).await.err().unwrap();
    let text = refused.to_string();
    assert!(text.contains("401"), "the refusal says why: {text}");
    let client = bounded(
        Client::builder()
            .bearer_token("t0ken")
            .connect(url.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!("in")))
            .await
            .unwrap(),
        json!("in")
    );
}

#[tokio::test]
async fn wss_applies_the_uid_allow_list_and_says_why_it_refuses() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    // The temp dir is ours: its owner is this process's uid.
    let ours = std::fs::metadata(dir.path()).unwrap().uid();
    let other = if ours == 4242 { 4343 } else { 4242 };

    let refusing = start_wss(dir.path(), &pki, &["--allow-uid", &other.to_string()]);
    let url = refusing.ws_url().unwrap();
    let refused = bounded(
        Client::builder()
            .tls_ca_file(&pki.ca)
            .reconnect(ReconnectPolicy::Off)
            .connect(url.as_str()),
    )
    .await
    .err()
    .unwrap();
    let text = refused.to_string();
    assert!(text.contains("403"), "the refusal says why: {text}");
    let log = refusing.stop().1;
    assert!(
        log.contains(&format!("uid {ours} may not use this server")),
        "{log}"
    );

    let serving = start_wss(dir.path(), &pki, &["--allow-uid", &ours.to_string()]);
    let client = bounded(
        Client::builder()
            .tls_ca_file(&pki.ca)
            .connect(serving.ws_url().unwrap().as_str()),
    )
    .await
    .unwrap();
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!("over wss")))
            .await
            .unwrap(),
        json!("over wss")
    );
}

#[test]
fn the_cli_reaches_a_wss_server_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "cli-token\n").unwrap();
    let server = start_wss(
        dir.path(),
        &pki,
        &["--ws-token-file", token_file.to_str().unwrap()],
    );
    let url = server.ws_url().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args([
            "--url",
            &url,
            "--ca-file",
            pki.ca.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .args(["call", "/ipcserver/test/echo", r#"{"over":"wss"}"#])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"over\":\"wss\"}\n"
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args([
            "--url",
            &url,
            "--ca-file",
            pki.ca.to_str().unwrap(),
            "stats",
        ])
        .env_remove("PIXL_IPC_WS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "connect failure exit code");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}
