//! One rustls client config, ring provider, for HTTPS and WSS alike.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// A client config trusting the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured). With `load_roots` false it trusts nothing,
/// which is all a plain-HTTP gateway URL needs.
pub fn client_config(load_roots: bool) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    if load_roots {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
            return Err(Error::Tls(format!("no trusted root certificates found{why}; set SSL_CERT_FILE")));
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
