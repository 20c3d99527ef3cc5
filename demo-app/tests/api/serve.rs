use std::time::Duration;

use demo_app::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Sends one raw HTTP/1.1 request and returns the whole response text.
async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    response
}

#[tokio::test]
async fn serves_over_tcp_until_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let config = Config::new("k");
    let server = tokio::spawn(demo_app::serve(listener, config, async {
        let _ = stopped.await;
    }));

    let health = http(addr, "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");

    let body = r#"{"account":{"login":"tcp"}}"#;
    let created = http(
        addr,
        &format!(
            "POST /api/v1/accounts HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             x-api-key: k\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    assert!(created.to_ascii_lowercase().contains("location: /api/v1/accounts/1001"), "{created}");

    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after shutdown")
        .expect("server task");
    assert!(result.is_ok(), "{result:?}");
}
