//! JSON-RPC 2.0 as Atek speaks it.
//!
//! Requests carry positional params. Responses always come back with HTTP 200 and one of the
//! two envelopes below, with the codes of [`codes`].

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Error codes callers see (reference §3.4).
pub mod codes {
    /// The body is not JSON, or a provider answered with something that is not JSON-RPC.
    pub const PARSE_ERROR: i64 = -32700;
    /// The body is JSON but not a JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No provider for the API, or no such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A fault at the gateway itself: provider unreachable, too slow, too large.
    pub const SERVER_ERROR: i64 = -32000;
    /// A parameter failed validation (`Parameter {n} …`).
    pub const PARAM_VALIDATION: i64 = -32001;
    /// A handler's response failed validation.
    pub const RESPONSE_VALIDATION: i64 = -32002;
    /// Any error raised inside a handler, such as `Not authorized`.
    pub const GENERAL: i64 = -32003;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// One of [`codes`], or whatever a provider chose.
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Optional detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `Not authorized` (-32003): the caller may not do this.
    pub fn not_authorized() -> Self {
        Self::new(codes::GENERAL, "Not authorized")
    }

    /// An error raised by a handler (-32003), as node-rpc reports thrown errors.
    pub fn general(message: impl Into<String>) -> Self {
        Self::new(codes::GENERAL, message)
    }

    /// `Method not found: {method}` (-32601).
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )
    }

    /// `Parameter {n} {problem}` (-32001); `index` counts from 0.
    pub fn param(index: usize, problem: impl fmt::Display) -> Self {
        Self::new(
            codes::PARAM_VALIDATION,
            format!("Parameter {} {problem}", index + 1),
        )
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// A request as it arrives, borrowing its `id` and `params` unparsed so the gateway can pass
/// them on without building a tree.
#[derive(Debug, Deserialize)]
pub struct IncomingRequest<'a> {
    /// Must be `"2.0"`.
    #[serde(borrow)]
    pub jsonrpc: Cow<'a, str>,
    /// Absent for notifications.
    #[serde(default, borrow)]
    pub id: Option<&'a RawValue>,
    /// The method name.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// Positional params; anything that is not an array counts as `[]`.
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
}

impl IncomingRequest<'_> {
    /// The params if they are a JSON array, otherwise `[]` (reference §3.1).
    pub fn params_array(&self) -> &str {
        match self.params {
            Some(p) if p.get().trim_start().starts_with('[') => p.get(),
            _ => "[]",
        }
    }
}

/// A response from a provider, borrowed.
#[derive(Debug, Deserialize)]
pub struct IncomingResponse<'a> {
    /// Must be `"2.0"`.
    #[serde(borrow)]
    pub jsonrpc: Cow<'a, str>,
    /// The result on success.
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    /// The error on failure.
    #[serde(default)]
    pub error: Option<RpcError>,
}

/// Writes a success envelope: `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn success_body(id: &str, result: &str) -> String {
    let mut out = String::with_capacity(36 + id.len() + result.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(id);
    out.push_str(r#","result":"#);
    out.push_str(result);
    out.push('}');
    out
}

/// Writes an error envelope: `{"jsonrpc":"2.0","id":…,"error":{…}}`.
pub fn error_body(id: &str, error: &RpcError) -> String {
    let error = serde_json::to_string(error)
        .unwrap_or_else(|_| r#"{"code":-32000,"message":"unserialisable error"}"#.to_owned());
    let mut out = String::with_capacity(36 + id.len() + error.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(id);
    out.push_str(r#","error":"#);
    out.push_str(&error);
    out.push('}');
    out
}

/// Writes a request envelope with positional params (already serialised as a JSON array).
pub fn request_body(id: u64, method: &str, params_array: &str) -> String {
    let mut out = String::with_capacity(64 + method.len() + params_array.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(itoa::Buffer::new().format(id));
    out.push_str(r#","method":"#);
    if method.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        // Nothing to escape (JSON escapes only quotes, backslashes and control characters).
        out.push('"');
        out.push_str(method);
        out.push('"');
    } else {
        // A method name is a JSON string; serialising one into a String cannot fail.
        out.push_str(&serde_json::to_string(method).unwrap_or_default());
    }
    out.push_str(r#","params":"#);
    out.push_str(params_array);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_match_the_original_byte_for_byte() {
        assert_eq!(
            success_body("7", "true"),
            r#"{"jsonrpc":"2.0","id":7,"result":true}"#
        );
        assert_eq!(
            error_body("7", &RpcError::not_authorized()),
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"Not authorized"}}"#
        );
        assert_eq!(
            request_body(1, "get", r#"["x"]"#),
            r#"{"jsonrpc":"2.0","id":1,"method":"get","params":["x"]}"#
        );
    }

    #[test]
    fn method_names_are_written_as_json_strings() {
        // Every way a name can be written: plain, needing escapes, non-ASCII, and with the
        // characters just past the ones JSON escapes.
        for method in [
            "get",
            "a\"b",
            "back\\slash",
            "new\nline",
            "tab\t\u{1}",
            "ünï ✓",
            " \u{7f}~",
        ] {
            let body = request_body(3, method, "[]");
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(parsed["method"], method, "{body}");
            let expected = format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":{},"params":[]}}"#,
                serde_json::to_string(method).unwrap()
            );
            assert_eq!(body, expected, "as serde_json writes it");
        }
    }

    #[test]
    fn non_array_params_become_empty() {
        let r: IncomingRequest<'_> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}"#)
                .unwrap();
        assert_eq!(r.params_array(), "[]");
        let r: IncomingRequest<'_> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":"x","method":"m","params":[1, 2]}"#)
                .unwrap();
        assert_eq!(r.params_array(), "[1, 2]");
        assert_eq!(r.id.unwrap().get(), r#""x""#);
    }

    #[test]
    fn param_errors_count_from_one() {
        assert_eq!(
            RpcError::param(0, "must be string").message,
            "Parameter 1 must be string"
        );
    }
}
