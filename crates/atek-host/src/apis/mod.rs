//! The host's own APIs, served in-process through the broker like any service's.
//!
//! Params are positional and checked the way node-rpc's validators report them
//! (`Parameter 1 must be string`, code -32001); permission failures are `Not authorized`
//! (-32003); any other handler failure is -32003 with its message; an unknown method is
//! -32601 `Method not found: {name}` (the original answered a JavaScript TypeError with
//! -32000 there).

mod inspect;
mod services;

use atek_api::jsonrpc::RpcError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Caller;
use crate::broker::HostApi;
use crate::host::HostState;

/// Calls `method` of a host API with the raw params array.
pub(crate) async fn call(
    host: &HostState,
    caller: Option<&Caller>,
    api: HostApi,
    method: &str,
    params: &str,
) -> Result<Value, RpcError> {
    let params = Params::parse(params)?;
    let Some(caller) = caller else {
        return Err(RpcError::not_authorized());
    };
    match api {
        HostApi::Inspect => inspect::call(host, caller, method, &params).await,
        HostApi::Services => services::call(host, caller, method, &params).await,
    }
}

/// Positional params with node-rpc-style validation messages.
pub(crate) struct Params(Vec<Value>);

impl Params {
    fn parse(raw: &str) -> Result<Self, RpcError> {
        serde_json::from_str(raw)
            .map(Self)
            .map_err(|e| RpcError::param(0, format!("is not valid JSON: {e}")))
    }

    /// Param `i` as a string.
    pub(crate) fn string(&self, i: usize) -> Result<&str, RpcError> {
        match self.0.get(i) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(RpcError::param(i, "must be string")),
        }
    }

    /// Param `i` as an object of type `T`.
    pub(crate) fn object<T: DeserializeOwned>(&self, i: usize) -> Result<T, RpcError> {
        let value = self.0.get(i).cloned().unwrap_or(Value::Null);
        if !value.is_object() {
            return Err(RpcError::param(i, "must be object"));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                RpcError::param(i, inner)
            } else {
                RpcError::param(i, format!("/{} {inner}", path.replace('.', "/")))
            }
        })
    }
}

/// Serialises a handler's result.
pub(crate) fn to_value(v: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::general(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_messages_follow_node_rpc() {
        let p = Params::parse(r#"[1, {"sourceUrl": 5}]"#).unwrap();
        assert_eq!(
            p.string(0).unwrap_err().message,
            "Parameter 1 must be string"
        );
        let e = p.object::<atek_api::services::InstallOpts>(1).unwrap_err();
        assert_eq!(e.code, -32001);
        assert!(
            e.message.starts_with("Parameter 2 /sourceUrl invalid type"),
            "{}",
            e.message
        );
        assert_eq!(
            p.string(5).unwrap_err().message,
            "Parameter 6 must be string"
        );
    }
}
