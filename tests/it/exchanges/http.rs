//! The exchanges' HTTPS client against a stand-in: answers, statuses,
//! deadlines, limits, and TLS that trusts only what it should.

use std::time::{Duration, Instant};

use hashfed::exchange::http::{Http, Request};
use hashfed::exchange::ExchangeError;

use super::standin::{handler, Reply, StandIn};

async fn standin(tmp: &tempfile::TempDir) -> StandIn {
    StandIn::start(
        tmp.path(),
        handler(|req| match req.route() {
            "/api/echo" => Reply::ok(
                "text/plain",
                format!(
                    "{} {} {}",
                    req.method,
                    req.path,
                    String::from_utf8_lossy(&req.body)
                ),
            ),
            "/api/whoami" => Reply::ok(
                "text/plain",
                format!(
                    "{} {}",
                    req.header("user-agent").unwrap_or("-"),
                    req.query("q").unwrap_or_default()
                ),
            ),
            "/api/big" => Reply::ok("text/plain", vec![b'x'; 2 << 20]),
            "/api/slow" => Reply::Stall,
            "/api/cut" => Reply::Cut,
            "/api/busy" => Reply::too_many(7),
            "/api/broken" => Reply::status(503, "down"),
            "/api/auth" => Reply::status(401, "bad token\u{7}\nsecret-free"),
            _ => Reply::status(404, "no such page"),
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_statuses_deadlines_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let s = standin(&tmp).await;
    let http = Http::new(
        &s.endpoint("/api"),
        Some(&s.ca_file),
        Duration::from_secs(2),
        1 << 20,
    )
    .unwrap();

    let echo = http
        .send(Request::with_body(
            hyper::Method::PUT,
            "echo?a=1",
            b"body".to_vec(),
        ))
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(&echo.body[..], b"PUT /api/echo?a=1 body");
    let who = http.send(Request::get("whoami?q=a%20b%2Fc")).await.unwrap();
    assert_eq!(
        std::str::from_utf8(&who.body).unwrap(),
        concat!("hashfed/", env!("CARGO_PKG_VERSION"), " a b/c")
    );
    // Absolute paths are taken as they are (APIs hand out next pages so).
    let abs = http.send(Request::get("/api/echo")).await.unwrap();
    assert_eq!(&abs.body[..], b"GET /api/echo ");

    match http.send(Request::get("busy")).await.unwrap().ok() {
        Err(ExchangeError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        http.send(Request::get("broken")).await.unwrap().ok(),
        Err(ExchangeError::Server { status: 503 })
    ));
    match http.send(Request::get("auth")).await.unwrap().ok() {
        Err(e @ ExchangeError::Refused { status: 401, .. }) => {
            assert!(!e.retryable());
            assert!(e.to_string().contains("bad token"), "{e}");
            assert!(!e.to_string().contains('\u{7}'), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        http.send(Request::get("big")).await,
        Err(ExchangeError::TooLarge { limit: 1_048_576 })
    ));
    let started = Instant::now();
    assert!(matches!(
        http.send(Request::get("slow")).await,
        Err(ExchangeError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    let cut = http.send(Request::get("cut")).await;
    assert!(matches!(cut, Err(ExchangeError::Transport(_))), "{cut:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_https_to_a_trusted_certificate_for_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let s = standin(&tmp).await;
    let port = s.addr.port();
    // Not trusted: the public roots alone do not know the stand-in's CA.
    let untrusted = Http::new(&s.endpoint("/api"), None, Duration::from_secs(2), 1 << 20).unwrap();
    assert!(matches!(
        untrusted.send(Request::get("echo")).await,
        Err(ExchangeError::Tls(_))
    ));
    // The certificate is for 127.0.0.1 and localhost, not another name.
    let renamed = Http::new(
        &format!("https://127.0.0.2:{port}/api"),
        Some(&s.ca_file),
        Duration::from_secs(2),
        1 << 20,
    )
    .unwrap();
    assert!(renamed.send(Request::get("echo")).await.is_err());
    for bad in [
        format!("http://127.0.0.1:{port}/api"),
        format!("https://user:pw@127.0.0.1:{port}/api"),
        format!("https://127.0.0.1:{port}/api?x=1"),
        "not a url".to_owned(),
    ] {
        assert!(
            matches!(
                Http::new(&bad, Some(&s.ca_file), Duration::from_secs(1), 1),
                Err(ExchangeError::Config(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn credentials_must_be_owner_only_and_never_print() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("creds.toml");
    std::fs::write(&path, "user = \"esp\"\npassword = \"hunter2\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = hashfed::exchange::Credentials::load(&path).unwrap_err();
    assert!(open.to_string().contains("chmod 600"), "{open}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds = hashfed::exchange::Credentials::load(&path).unwrap();
    assert_eq!(creds.get("password").unwrap().expose(), "hunter2");
    assert!(!format!("{creds:?}").contains("hunter2"));
    let missing = creds.get("token").unwrap_err().to_string();
    assert!(missing.contains("no `token` field"), "{missing}");
    std::fs::write(&path, "password = \"hunter2\" garbage").unwrap();
    let bad = hashfed::exchange::Credentials::load(&path)
        .unwrap_err()
        .to_string();
    assert!(!bad.contains("hunter2"), "{bad}");
}
