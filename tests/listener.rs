//! The listener's connection limits and graceful shutdown, over real sockets against the real
//! binary: slow headers, oversize headers, idle keep-alive connections, HTTP/2 pings and idle
//! GOAWAY (cleartext, prior knowledge), the connection cap, and draining on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn gateway(args: &[&str]) -> Gateway {
    Gateway::serve_with(&demo_config(), &temp_dir("data"), DemoApp::start(), args, &[], reqwest::Client::new())
}

/// Reads one HTTP/1.1 response with a `content-length` body; returns the head and body as text.
async fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (head, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string());
        }
        let n = s.read(&mut chunk).await.expect("read head");
        assert!(n > 0, "connection closed before a response; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `s` (EOF or reset), reading and discarding anything it sends;
/// returns how long that took, or `None` if it is still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let gw = gateway(&["--header-read-timeout", "1s"]);
    let mut slow = TcpStream::connect(gw.addr()).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("write");
    let start = Instant::now();
    // A byte every 200 ms keeps the socket busy but never finishes the head.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"a").await.is_err() {
                return start.elapsed();
            }
            let mut probe = [0u8; 256];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
                return start.elapsed();
            }
        }
    };
    let took = tokio::time::timeout(Duration::from_secs(8), trickle).await.expect("disconnected within 8 s");
    assert!(took >= Duration::from_millis(900), "not before the timeout: {took:?}");
    assert!(took < Duration::from_secs(4), "soon after the 1 s timeout: {took:?}");
    // Meanwhile a normal client is served.
    let mut ok = TcpStream::connect(gw.addr()).await.expect("connect");
    ok.write_all(HEALTHZ).await.expect("write");
    let (head, _) = read_response(&mut ok).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn oversize_headers_are_answered_431() {
    let gw = gateway(&[]);
    let http1 = reqwest::Client::builder().http1_only().build().expect("client");
    let url = format!("{}/healthz", gw.url);
    let fits = http1.get(&url).header("x-big", "a".repeat(20 * 1024)).send().await.expect("send");
    assert_eq!(fits.status(), 200, "20 KiB of headers fit the default 32 KiB");
    let big = http1.get(&url).header("x-big", "a".repeat(40 * 1024)).send().await.expect("send");
    assert_eq!(big.status(), 431);

    let gw = gateway(&["--max-header-bytes", "16384"]);
    let url = format!("{}/healthz", gw.url);
    let big = http1.get(&url).header("x-big", "a".repeat(20 * 1024)).send().await.expect("send");
    assert_eq!(big.status(), 431, "the flag lowers the limit");
    // HTTP/2 (prior knowledge here) has the same limit on its header list.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let ok = h2.get(&url).send().await.expect("send");
    assert_eq!((ok.status().as_u16(), ok.version()), (200, reqwest::Version::HTTP_2));
    let big = h2.get(&url).header("x-big", "a".repeat(20 * 1024)).send().await.expect("send");
    assert_eq!((big.status().as_u16(), big.version()), (431, reqwest::Version::HTTP_2));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = gateway(&["--idle-timeout", "1500ms"]);
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(HEALTHZ).await.expect("write");
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("ok"), "{body}");
    // Still open shortly after: keep-alive works, and a second request resets the clock.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(HEALTHZ).await.expect("write");
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "second request on the same connection: {head}");
    let idle = closed_within(&mut s, Duration::from_secs(6)).await.expect("closed after the idle timeout");
    assert!(idle >= Duration::from_millis(1300), "not before 1.5 s of idleness: {idle:?}");
}

/// Reads one HTTP/2 frame: (type, flags, payload).
async fn h2_frame(s: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok((head[3], head[4], payload))
}

#[tokio::test]
async fn http2_connections_get_keepalive_pings_and_goaway_when_idle() {
    let gw = gateway(&["--h2-keepalive-interval", "300ms", "--idle-timeout", "2s"]);
    // Cleartext HTTP/2 by prior knowledge works (the same hyper builder serves TLS `h2`).
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let r = h2.get(format!("{}/healthz", gw.url)).send().await.expect("h2c");
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));

    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("empty SETTINGS");
    let start = Instant::now();
    let (mut pings, mut goaway) = (0, None);
    while start.elapsed() < Duration::from_secs(10) {
        let Ok(Ok((kind, flags, payload))) = tokio::time::timeout(Duration::from_secs(8), h2_frame(&mut s)).await
        else {
            break;
        };
        match kind {
            // SETTINGS (not ACK): acknowledge, as a real client would.
            4 if flags & 1 == 0 => s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await.expect("SETTINGS ACK"),
            // PING from the server: answer it so the keep-alive timeout never fires.
            6 if flags & 1 == 0 => {
                if goaway.is_none() {
                    pings += 1;
                }
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                s.write_all(&ack).await.expect("PING ACK");
            }
            7 => {
                goaway.get_or_insert(start.elapsed());
            }
            _ => {}
        }
    }
    let goaway = goaway.expect("GOAWAY for an idle HTTP/2 connection");
    assert!(pings >= 2, "keep-alive pings every 300 ms before the GOAWAY: {pings}");
    assert!(goaway >= Duration::from_millis(1800), "pings are not activity; idle after 2 s: {goaway:?}");
    assert!(goaway < Duration::from_secs(5), "{goaway:?}");
}

#[tokio::test]
async fn beyond_max_connections_clients_wait_for_a_free_slot() {
    let gw = gateway(&["--max-connections", "1"]);
    let mut first = TcpStream::connect(gw.addr()).await.expect("connect");
    first.write_all(HEALTHZ).await.expect("write");
    let (head, _) = read_response(&mut first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The second connection reaches the backlog but is not served while the first is open.
    let mut second = TcpStream::connect(gw.addr()).await.expect("connect (backlog)");
    second.write_all(HEALTHZ).await.expect("write");
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(1500), second.peek(&mut byte)).await;
    assert!(waited.is_err(), "no answer while the only slot is taken");
    drop(first);
    let (head, _) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second))
        .await
        .expect("served once the first connection closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// A create through the gateway that the demo app answers only after a delay.
fn slow_create(gw: &Gateway, user: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let body = serde_json::json!({"schemas": [USER], "userName": user, "externalId": format!("ext-{user}"),
        "active": true, "name": {"givenName": "Slow", "familyName": "Create"},
        "emails": [{"primary": true, "type": "work", "value": user}]});
    let req = reqwest::Client::new()
        .post(format!("{}/Users", gw.base()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(body.to_string());
    tokio::spawn(req.send())
}

#[tokio::test]
async fn sigterm_stops_accepting_and_lets_the_request_in_flight_finish() {
    let app = DemoApp::start_with(&["--create-delay-ms", "1500"]);
    let mut gw = Gateway::serve_with(&demo_config(), &temp_dir("data"), app, &[], &[], reqwest::Client::new());
    let create = slow_create(&gw, "drain@example.com");
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.proc.signal("TERM");
    assert!(gw.logs.wait_for(&["stopped accepting"], 1, Duration::from_secs(5)).await, "{}", gw.logs.text());
    assert!(TcpStream::connect(gw.addr()).await.is_err(), "no new connections after SIGTERM");
    let created = create.await.expect("task").expect("the in-flight request is answered");
    let status = created.status();
    assert_eq!(status, 201, "{}", created.text().await.unwrap_or_default());
    let exit = gw.proc.wait_exit(Duration::from_secs(10)).expect("exits after draining");
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(gw.logs.count(&["all connections finished"]), 1, "{}", gw.logs.text());
    // The user really exists in the app: the request was not cut short.
    let (_, v) = gw.app_get("/api/v1/accounts?login=drain%40example.com").await;
    assert_eq!(v["paging"]["total"], 1, "{v}");
}

#[tokio::test]
async fn the_drain_deadline_bounds_shutdown() {
    let app = DemoApp::start_with(&["--create-delay-ms", "6000"]);
    let mut gw = Gateway::serve_with(
        &demo_config(),
        &temp_dir("data"),
        app,
        &["--drain-timeout", "1s"],
        &[],
        reqwest::Client::new(),
    );
    let create = slow_create(&gw, "late@example.com");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    gw.proc.signal("TERM");
    let status = gw.proc.wait_exit(Duration::from_secs(5)).expect("exits at the drain deadline");
    let took = start.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    assert!(gw.logs.count(&["drain deadline passed"]) == 1, "{}", gw.logs.text());
    assert!(create.await.expect("task").is_err(), "the request outliving the deadline is cut");
}
