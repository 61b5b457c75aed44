//! The playground page and the browser's way in: `/` and its files are
//! served without a key, with a strict Content-Security-Policy, the right
//! content types and caching; the API still wants a key; a browser's
//! WebSocket carries its key as a subprotocol, and the header still works.
//! As in requests.rs, the Kubernetes client points at a closed port.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use sandrun_gateway::web;
use tokio_tungstenite::tungstenite::{self, ClientRequestBuilder, Message};
use tower::ServiceExt;

mod common;

const TOKEN: &str = "web-token-0123456789";

fn app() -> axum::Router {
    common::app(&format!("keys:\n  - {{name: w, token: {TOKEN}, namespace: team-w}}\n"), vec![])
}

async fn get(uri: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// The `src` and `href` values of a page that point at the gateway itself.
fn local_references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let value = &rest[..rest.find('"').unwrap()];
            if value.starts_with('/') {
                found.push(value.to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_page_needs_no_key_and_is_locked_down() {
    let (status, headers, body) = get("/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "cache-control"), "no-cache", "the page is revalidated on every load");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    let csp = header(&headers, "content-security-policy");
    for directive in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = String::from_utf8(body).unwrap();
    // No inline script: every <script> names its file.
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/"), "inline script: {tag}");
    }
    assert!(!html.contains("style=\""), "inline styles need 'unsafe-inline'");
    if web::bundled() {
        assert!(html.contains("id=\"editor\""), "{html}");
        assert_eq!(local_references(&html).len(), 3, "favicon, stylesheet, script: {html}");
    } else {
        assert!(html.contains("web/build.sh"), "the placeholder says how to build the page: {html}");
    }

    // The API behind it still wants a key.
    let (status, _, _) = get("/v1/executions", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_file_the_page_names_is_served_with_its_type_and_caching() {
    let (_, _, body) = get("/", &[]).await;
    let html = String::from_utf8(body).unwrap();
    for reference in local_references(&html) {
        let (status, headers, plain) = get(&reference, &[]).await;
        assert_eq!(status, StatusCode::OK, "{reference}");
        let want = match reference.rsplit_once('.').unwrap().1 {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("{reference}: a page file of an unexpected kind {other}"),
        };
        assert_eq!(header(&headers, "content-type"), want, "{reference}");
        let cache = header(&headers, "cache-control");
        if reference.starts_with("/assets/") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{reference}");
        } else {
            assert_eq!(cache, "no-cache", "{reference}");
        }
        assert!(!plain.is_empty(), "{reference}");

        // Gzip to whoever takes it, the same bytes once unpacked.
        let (_, zipped_headers, zipped) = get(&reference, &[(header::ACCEPT_ENCODING, "gzip, br")]).await;
        if header(&zipped_headers, "content-encoding") == "gzip" {
            assert!(zipped.len() < plain.len(), "{reference}");
            assert_eq!(header(&zipped_headers, "vary"), "accept-encoding");
        } else {
            assert_eq!(zipped, plain, "{reference}");
        }

        // Revalidation: the same ETag is a 304 without a body.
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{reference}: {etag:?}");
        let (status, _, body) = get(&reference, &[(header::IF_NONE_MATCH, &etag)]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0), "{reference}");
    }
    let (status, _, body) = get("/", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
}

#[tokio::test]
async fn unknown_files_are_json_404s() {
    for uri in ["/assets/nope.js", "/index.htm", "/../Cargo.toml"] {
        let (status, headers, _) = get(uri, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(header(&headers, "content-type"), "application/json", "{uri}");
    }
}

mod websocket {
    use super::*;

    /// A gateway on a loopback port, and its `/v1/ws` URL.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app()).await });
        format!("ws://{addr}/v1/ws")
    }

    fn bearer_protocol(token: &str) -> String {
        format!("sandrun.bearer.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token))
    }

    /// The socket answers as the key's tenant: a subscribe to an id that
    /// cannot exist is refused by the gateway itself, as `not_found`.
    async fn answers_as_a_tenant(
        socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) {
        socket.send(Message::Text(r#"{"type": "subscribe", "id": "Not_A_Name"}"#.into())).await.unwrap();
        let text = loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await.unwrap();
            match frame {
                Some(Ok(Message::Text(text))) => break text,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected an answer, got {other:?}"),
            }
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (value["type"].as_str(), value["error"]["code"].as_str()),
            (Some("error"), Some("not_found")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_browser_carries_its_key_as_a_subprotocol_and_gets_sandrun_v1_back() {
        let url = serve().await;
        let request = ClientRequestBuilder::new(url.parse().unwrap())
            .with_sub_protocol("sandrun.v1")
            .with_sub_protocol(bearer_protocol(TOKEN));
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // Only the protocol, never the key, comes back.
        assert_eq!(header(response.headers(), "sec-websocket-protocol"), "sandrun.v1");
        answers_as_a_tenant(&mut socket).await;
    }

    #[tokio::test]
    async fn a_wrong_or_missing_key_is_refused_before_the_upgrade() {
        let url = serve().await;
        let cases: [(&str, Vec<String>); 3] = [
            ("wrong key", vec!["sandrun.v1".into(), bearer_protocol("not-the-key-0123456789")]),
            ("key not base64url", vec!["sandrun.v1".into(), format!("sandrun.bearer.{TOKEN}!")]),
            ("no key", vec!["sandrun.v1".into()]),
        ];
        for (name, protocols) in cases {
            let request = protocols
                .into_iter()
                .fold(ClientRequestBuilder::new(url.parse().unwrap()), |request, p| request.with_sub_protocol(p));
            match tokio_tungstenite::connect_async(request).await {
                Err(tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}")
                }
                other => panic!("{name}: expected a 401, got {:?}", other.map(|(_, r)| r.status())),
            }
        }
    }

    #[tokio::test]
    async fn the_authorization_header_still_works() {
        let url = serve().await;
        let request =
            ClientRequestBuilder::new(url.parse().unwrap()).with_header("Authorization", format!("Bearer {TOKEN}"));
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
        assert!(response.headers().get("sec-websocket-protocol").is_none(), "none asked, none given");
        answers_as_a_tenant(&mut socket).await;
    }
}
