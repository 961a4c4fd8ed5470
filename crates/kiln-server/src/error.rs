//! Errors: what a model reports ([`ModelError`]), what loading a folder reports ([`LoadError`]),
//! and what a client receives ([`ApiError`], OpenAI's `{"error": {...}}` object).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure inside a model call.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The request cannot be served by this model (a character outside the vocabulary, a
    /// feature count mismatch...): the client's fault, answered with 400.
    #[error("{message}")]
    InvalidInput {
        /// The request field at fault, if one is.
        param: Option<String>,
        /// What was expected and what arrived.
        message: String,
    },
    /// The model failed (a numerical or tensor error): answered with 500.
    #[error("model failure: {0}")]
    Internal(String),
}

impl ModelError {
    /// A 400-class input error about `param`.
    pub fn input(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }
}

/// A model folder that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder could not be read or is not a valid model folder.
    #[error("{0}")]
    Folder(#[from] kiln_core::Error),
    /// A neural model could not be built from the folder.
    #[error("{path}: {message}")]
    Model {
        /// The folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The folder's kind is not one the server can serve.
    #[error("{path}: model kind {kind:?} cannot be served; the server reads: {known}")]
    UnknownKind {
        /// The folder.
        path: String,
        /// Its kind.
        kind: String,
        /// The kinds the server reads.
        known: String,
    },
    /// Two models would be served under one id.
    #[error("two models are named {0:?}; give one of them another folder name")]
    DuplicateId(String),
}

/// An error answered to a client as OpenAI does: a status and
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `rate_limit_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(String::from),
            code: None,
        }
    }

    /// 400 for a parameter out of range: names it, its value and the allowed range.
    pub fn out_of_range(param: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        let mut e = Self::invalid(
            Some(param),
            format!("{param} = {value} is out of range: expected {expected}"),
        );
        e.code = Some("invalid_value");
        e
    }

    /// 404 for a model id that is not served.
    pub fn unknown_model(id: &str, served: &[String]) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the model {id:?} does not exist; this server has: {}",
                if served.is_empty() {
                    "no models".to_string()
                } else {
                    served.join(", ")
                }
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// An error with any status, type and code.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidInput { param, message } => Self::invalid(param.as_deref(), message),
            ModelError::Internal(m) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                format!("model failure: {m}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
