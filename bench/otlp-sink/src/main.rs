//! The benchmark's OTLP/HTTP receiver (`bench/run.py --telemetry`): it answers every export at
//! once, keeps nothing, and counts the spans it was sent, so the benchmark can show that none
//! were dropped on the way (a full export queue drops spans, which would flatter the gateway).
//!
//! ```text
//! otlp-sink                 # prints "otlp-sink listening on http://127.0.0.1:PORT"
//! GET /count                # {"spans": N, "exports": N}
//! ```
//!
//! It runs as a process of its own so its CPU time is measured apart from the gateway's (a
//! collector runs elsewhere in production, here it shares the cores). Compiled, where the Python
//! sink it replaces took 7–9 µs of CPU per exported change on the benchmark machine: only the
//! nesting down to the spans is read, one thread serves. Loopback only.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

static SPANS: AtomicU64 = AtomicU64::new(0);
static EXPORTS: AtomicU64 = AtomicU64::new(0);

/// `ExportTraceServiceRequest.resource_spans` (1), `ResourceSpans.scope_spans` (2),
/// `ScopeSpans.spans` (2).
const PATH_TO_SPANS: [u32; 3] = [1, 2, 2];

/// How many fields numbered as `path` says, one level after the other, `message` holds; `None`
/// if it is not protobuf.
fn count(message: &[u8], path: &[u32]) -> Option<u64> {
    let Some((&wanted, rest)) = path.split_first() else { return Some(1) };
    let mut buf = message;
    let mut n = 0;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if tag == wanted && wire == WireType::LengthDelimited {
            let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
            let inner = buf.get(..len)?;
            n += count(inner, rest)?;
            buf.advance(len);
        } else {
            skip_field(wire, tag, &mut buf, DecodeContext::default()).ok()?;
        }
    }
    Some(n)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let answer = |status: u16, kind: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
        r
    };
    Ok(match (&parts.method, parts.uri.path()) {
        (&Method::POST, path) if path.ends_with("/v1/traces") => match count(&body, &PATH_TO_SPANS) {
            Some(n) => {
                SPANS.fetch_add(n, Ordering::Relaxed);
                EXPORTS.fetch_add(1, Ordering::Relaxed);
                answer(200, "application/x-protobuf", Bytes::new())
            }
            None => answer(400, "text/plain", Bytes::from_static(b"not an ExportTraceServiceRequest")),
        },
        (&Method::POST, _) => answer(200, "application/x-protobuf", Bytes::new()),
        (&Method::GET, "/count") => {
            let (spans, exports) = (SPANS.load(Ordering::Relaxed), EXPORTS.load(Ordering::Relaxed));
            answer(200, "application/json", Bytes::from(format!("{{\"spans\": {spans}, \"exports\": {exports}}}")))
        }
        _ => answer(404, "text/plain", Bytes::new()),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("otlp-sink listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service_fn(handle)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field `number` holding `inner`, length-delimited.
    fn field(number: u32, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(number, WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    }

    #[test]
    fn spans_are_counted_through_every_resource_and_scope() {
        let span = [field(5, b"name"), vec![0x38, 0x01]].concat(); // a name and a varint field
        let scope = [field(1, b"scope"), field(2, &span), field(2, &span), field(3, b"url")].concat();
        let resource = [field(1, b"resource"), field(2, &scope), field(2, &field(2, &span))].concat();
        let request = [field(1, &resource), field(1, &field(2, &field(2, &span)))].concat();
        assert_eq!(count(&request, &PATH_TO_SPANS), Some(4));
        assert_eq!(count(&[], &PATH_TO_SPANS), Some(0));
        assert_eq!(count(&[0x0a, 0x05, 0x01], &PATH_TO_SPANS), None, "a length past the end");
    }
}
