//! `atek.cloud/inspect-api`.

use atek_api::jsonrpc::RpcError;
use serde_json::Value;

use super::Params;
use crate::auth::Caller;
use crate::host::HostState;

pub(super) async fn call(
    host: &HostState,
    caller: &Caller,
    method: &str,
    _params: &Params,
) -> Result<Value, RpcError> {
    match method {
        "isReady" | "getConfig" if !caller.admin => Err(RpcError::not_authorized()),
        "isReady" => Ok(Value::Bool(true)),
        // The persisted file, not the flags that override it (as the original).
        "getConfig" => host
            .persisted_config()
            .map_err(|e| RpcError::general(format!("cannot read config.json: {e}"))),
        _ => Err(RpcError::method_not_found(method)),
    }
}
