//! REST calls to the gateway, and where its WebSocket is.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use sandrun_api::{ErrorBody, ExecutionList, ExecutionView, SubmitRequest};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result};
use crate::tls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Gateway {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tls: Arc<ClientConfig>,
    base: Url,
    key: Option<String>,
}

/// The gateway's base URL, normalized so paths join beneath it (a path
/// prefix such as `https://host/sandrun` is kept).
pub fn base_url(text: &str) -> Result<Url> {
    let bad = |reason: &str| Error::BadUrl { url: text.to_owned(), reason: reason.to_owned() };
    let mut url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("use http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the base URL only, without ?query or #fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `base` + `v1/<segments...>`, each segment percent-encoded.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("v1").extend(segments);
    }
    url
}

/// The WebSocket URL: the same host, `ws` for `http`, `wss` for `https`.
pub fn ws_url(base: &Url) -> Url {
    let mut url = endpoint(base, &["ws"]);
    let scheme = if base.scheme() == "https" { "wss" } else { "ws" };
    // Only fails between special and non-special schemes; http/ws and https/wss are both special.
    let _ = url.set_scheme(scheme);
    url
}

impl Gateway {
    pub fn new(url: &str, key: Option<String>) -> Result<Self> {
        let base = base_url(url)?;
        let tls = tls::client_config(base.scheme() == "https")?;
        let mut plain = HttpConnector::new();
        plain.set_connect_timeout(Some(CONNECT_TIMEOUT));
        plain.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { http, tls, base, key })
    }

    /// The TLS settings, for the WebSocket to use too.
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.tls.clone()
    }

    pub fn ws_url(&self) -> Url {
        ws_url(&self.base)
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub async fn submit(&self, request: &SubmitRequest) -> Result<ExecutionView> {
        let body = serde_json::to_vec(request).map_err(|e| Error::Usage(format!("cannot encode the request: {e}")))?;
        self.call(Method::POST, endpoint(&self.base, &["executions"]), Some(body)).await
    }

    pub async fn get(&self, id: &str) -> Result<ExecutionView> {
        self.call(Method::GET, endpoint(&self.base, &["executions", id]), None).await
    }

    pub async fn list(&self, status: Option<&str>, limit: usize, continue_: Option<&str>) -> Result<ExecutionList> {
        let mut url = endpoint(&self.base, &["executions"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(status) = status {
                query.append_pair("status", status);
            }
            query.append_pair("limit", &limit.to_string());
            if let Some(token) = continue_ {
                query.append_pair("continue", token);
            }
        }
        self.call(Method::GET, url, None).await
    }

    /// Asks the gateway to cancel; answers with the execution as it was then.
    pub async fn cancel(&self, id: &str) -> Result<ExecutionView> {
        self.call(Method::DELETE, endpoint(&self.base, &["executions", id]), None).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<T> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Http { url: url.to_string(), source };
        let mut request = Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("sandrun-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &self.key {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| Error::Usage("the API key has characters a header cannot carry".to_owned()))?;
            request = request.header(AUTHORIZATION, value);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| failed(e.into()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| failed(e.into()))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| failed(e.into()))?.to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()).into()))??;
        decode(status, &body)
    }
}

/// A 2xx body as `T`; anything else as the gateway's JSON error when it is one.
pub fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T> {
    let unexpected = || Error::Unexpected { status: status.as_u16(), body: String::from_utf8_lossy(body).into_owned() };
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|_| unexpected());
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => Err(Error::Gateway { status: Some(status.as_u16()), detail: error.error }),
        Err(_) => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_under_the_base() {
        let cases = [
            ("http://127.0.0.1:8090", "http://127.0.0.1:8090/v1/executions/run-1", "ws://127.0.0.1:8090/v1/ws"),
            ("http://h:1/", "http://h:1/v1/executions/run-1", "ws://h:1/v1/ws"),
            ("https://h/sandrun", "https://h/sandrun/v1/executions/run-1", "wss://h/sandrun/v1/ws"),
            ("https://h/sandrun/", "https://h/sandrun/v1/executions/run-1", "wss://h/sandrun/v1/ws"),
        ];
        for (base, rest, ws) in cases {
            let base = base_url(base).unwrap();
            assert_eq!(endpoint(&base, &["executions", "run-1"]).as_str(), rest);
            assert_eq!(ws_url(&base).as_str(), ws);
        }
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        let base = base_url("http://h").unwrap();
        assert_eq!(endpoint(&base, &["executions", "a/../b?c"]).as_str(), "http://h/v1/executions/a%2F..%2Fb%3Fc");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["127.0.0.1:8090", "ftp://h", "http://h/?x=1", "not a url"] {
            assert!(matches!(base_url(url), Err(Error::BadUrl { .. })), "{url}");
        }
    }

    #[test]
    fn bodies_decode_as_results_or_gateway_errors() {
        let error = br#"{"error":{"code":"invalid_request","message":"bad","field":"limits.memory"}}"#;
        match decode::<ExecutionList>(StatusCode::UNPROCESSABLE_ENTITY, error) {
            Err(Error::Gateway { status: Some(422), detail }) => {
                assert_eq!((detail.code.as_str(), detail.field.as_deref()), ("invalid_request", Some("limits.memory")))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode::<ExecutionList>(StatusCode::BAD_GATEWAY, b"<html>proxy</html>"),
            Err(Error::Unexpected { status: 502, .. })
        ));
        assert!(matches!(decode::<ExecutionList>(StatusCode::OK, b"{}"), Err(Error::Unexpected { status: 200, .. })));
        let list: ExecutionList = decode(StatusCode::OK, br#"{"items":[]}"#).unwrap();
        assert!(list.items.is_empty() && list.next.is_none());
    }
}
