//! The OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::{rest, ws};

#[derive(OpenApi)]
#[openapi(
    info(title = "sandrun gateway", description = "Run untrusted code in gVisor sandboxes on Kubernetes. \
        WebSocket: GET /v1/ws, then send {\"type\":\"execute\", ...SubmitRequest} or {\"type\":\"subscribe\",\"id\":...}."),
    paths(rest::submit, rest::get, rest::list, rest::cancel, ws::upgrade),
    components(schemas(api::SubmitRequest, api::FileInput, api::LimitsInput, api::ExecutionView, api::ExecutionList,
        api::Links, api::State, api::ErrorBody, api::ErrorDetail)),
    modifiers(&BearerAuth, &KeyedResponses)
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

/// What every operation behind a key can answer, whatever it does: a
/// missing or wrong key, and an empty rate-limit bucket.
struct KeyedResponses;

fn error_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

impl Modify for KeyedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 3] = [&mut item.get, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                if operation.security.as_ref().is_none_or(|s| s.is_empty()) {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                responses.entry("401".to_owned()).or_insert_with(|| error_response("Missing or unknown API key"));
                responses.entry("429".to_owned()).or_insert_with(|| {
                    error_response("This key's rate limit; the Retry-After header says when to retry")
                });
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
