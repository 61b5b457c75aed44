//! The playground page at `/`, for people who would rather click than curl.
//!
//! Its files are embedded at compile time (see `build.rs`: the bundle that
//! `web/build.sh` writes to `web/dist/`), so the gateway serves it with no
//! files on disk and nothing fetched from elsewhere. No key is needed for
//! the page; the page asks for one and calls the API with it.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and connections only from the gateway itself, no inline scripts. Files
//! under `assets/` are named by their content hash and cached for a year;
//! the rest (the page itself) are revalidated by ETag on every load.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/`, e.g. `index.html` or `assets/app-4KXJ2B.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    /// Named by its content's hash, so it never changes under its name.
    pub immutable: bool,
    pub body: &'static [u8],
    /// The same bytes gzipped at build time, when that made them smaller.
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// `connect-src 'self'` covers the page's own WebSocket (`ws:`/`wss:` to
/// the same host and port) as well as its REST calls.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Whether this binary carries the real page (false: a placeholder that
/// says how to build it).
pub fn bundled() -> bool {
    BUNDLED
}

/// Every embedded file.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// A route for each embedded file; `index.html` is `/`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let route = if asset.path == "index.html" { "/".to_owned() } else { format!("/{}", asset.path) };
        router.route(&route, get(move |headers: HeaderMap| async move { serve(asset, &headers) }))
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let cache = if asset.immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if etag_matches(request, asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    let body = match asset.gzip {
        Some(gzip) if accepts_gzip(request) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzip
        }
        _ => asset.body,
    };
    (StatusCode::OK, headers, body).into_response()
}

fn etag_matches(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// `Accept-Encoding` names gzip (or `*`) without `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused =
                parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q == 0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn gzip_is_sent_only_to_who_takes_it() {
        let yes = ["gzip", "deflate, gzip;q=0.5", "br, *", "GZIP"];
        let no = ["", "br", "gzip;q=0", "identity", "gzip; q=0.0"];
        for value in yes {
            assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, value)])), "{value:?}");
        }
        for value in no {
            assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, value)])), "{value:?}");
        }
    }

    #[test]
    fn etags_match_strong_weak_listed_and_star() {
        let tag = "\"0123456789abcdef\"";
        for value in [tag, "W/\"0123456789abcdef\"", "\"x\", \"0123456789abcdef\"", "*"] {
            assert!(etag_matches(&headers(&[(header::IF_NONE_MATCH, value)]), tag), "{value}");
        }
        assert!(!etag_matches(&headers(&[(header::IF_NONE_MATCH, "\"x\"")]), tag));
        assert!(!etag_matches(&HeaderMap::new(), tag));
    }

    #[test]
    fn every_file_has_one_route_and_the_page_is_there() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        assert!(paths.contains(&"index.html"));
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| a.immutable == a.path.starts_with("assets/")));
    }
}
