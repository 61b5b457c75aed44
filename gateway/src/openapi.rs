//! The OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::rest;

#[derive(OpenApi)]
#[openapi(
    info(title = "sandrun gateway", description = "Run untrusted code in gVisor sandboxes on Kubernetes. \
        WebSocket: GET /v1/ws, then send {\"type\":\"execute\", ...SubmitRequest} or {\"type\":\"subscribe\",\"id\":...}."),
    paths(rest::submit, rest::get, rest::list, rest::cancel),
    components(schemas(api::SubmitRequest, api::FileInput, api::LimitsInput, api::ExecutionView, api::ExecutionList,
        api::Links, api::State, api::ErrorBody, api::ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
