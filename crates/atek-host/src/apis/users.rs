//! `atek.cloud/users-api` (reference §4.3): accounts, for admins; a user may read their own
//! record and read and change their own settings.
//!
//! A password change or a deletion ends the user's sessions at once. A new user gets
//! `defaultMainService` installed as their main service, in the background (a failure is
//! logged; the user can install one from the welcome page).

use std::sync::Arc;

use atek_api::jsonrpc::RpcError;
use atek_api::services::InstallOpts;
use atek_api::users::{NewUser, UserList, UserSettings, UserUpdate};
use atek_core::UserKey;
use serde_json::Value;

use super::{Params, to_value};
use crate::auth::Caller;
use crate::host::HostState;
use crate::users::UserError;

fn failed(e: UserError) -> RpcError {
    RpcError::general(e.to_string())
}

/// Param `i` as a user key.
fn user_key(params: &Params, i: usize) -> Result<UserKey, RpcError> {
    let key = params.string(i)?;
    key.parse()
        .map_err(|_| failed(UserError::NotFound(key.to_owned())))
}

/// The user named by param `i`, when the caller is an admin or that user.
fn self_or_admin(caller: &Caller, params: &Params, i: usize) -> Result<UserKey, RpcError> {
    let key = user_key(params, i)?;
    if caller.admin || (caller.user == key && !key.is_system()) {
        Ok(key)
    } else {
        Err(RpcError::not_authorized())
    }
}

fn admin_only(caller: &Caller) -> Result<(), RpcError> {
    if caller.admin {
        Ok(())
    } else {
        Err(RpcError::not_authorized())
    }
}

pub(super) async fn call(
    host: &HostState,
    caller: &Caller,
    method: &str,
    params: &Params,
) -> Result<Value, RpcError> {
    match method {
        "list" => {
            admin_only(caller)?;
            to_value(UserList {
                users: host.users.list(),
            })
        }
        "get" => {
            let key = self_or_admin(caller, params, 0)?;
            let user = host
                .users
                .get(&key)
                .ok_or_else(|| failed(UserError::NotFound(key.to_string())))?;
            to_value(user)
        }
        "create" => {
            admin_only(caller)?;
            let new: NewUser = params.object(0)?;
            let user = host.users.create(new).await.map_err(failed)?;
            tracing::info!(user = %user.key, "user created");
            new_user_main_service(host, &user.key);
            to_value(user)
        }
        "update" => {
            admin_only(caller)?;
            let key = user_key(params, 0)?;
            let update: UserUpdate = params.object(1)?;
            let (user, password_changed) = host.users.update(&key, update).await.map_err(failed)?;
            if password_changed {
                end_sessions(host, &key);
            }
            to_value(user)
        }
        "delete" => {
            admin_only(caller)?;
            let key = user_key(params, 0)?;
            host.users.delete(&key).map_err(failed)?;
            end_sessions(host, &key);
            tracing::info!(user = %key, "user deleted");
            Ok(Value::Null)
        }
        "getSettings" => {
            let key = self_or_admin(caller, params, 0)?;
            let settings = host
                .users
                .settings(&key)
                .ok_or_else(|| failed(UserError::NotFound(key.to_string())))?;
            to_value(settings)
        }
        "updateSettings" => {
            let key = self_or_admin(caller, params, 0)?;
            let settings: UserSettings = params.object(1)?;
            to_value(host.users.update_settings(&key, settings).map_err(failed)?)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn end_sessions(host: &HostState, key: &UserKey) {
    match host.sessions.revoke_user(key) {
        Ok(n) if n > 0 => tracing::info!(user = %key, sessions = n, "sessions ended"),
        Ok(_) => {}
        Err(e) => tracing::error!(user = %key, error = %e, "cannot save the sessions"),
    }
}

/// Installs `defaultMainService`, if set, for the new user `user` in the background.
pub(crate) fn new_user_main_service(host: &HostState, user: &UserKey) {
    if !host.config.default_main_service.is_empty()
        && let Some(host) = host.me()
    {
        tokio::spawn(install_main_service(host, user.clone()));
    }
}

/// Installs `defaultMainService` for a new user and makes it their main service.
async fn install_main_service(host: Arc<HostState>, user: UserKey) {
    let opts = InstallOpts {
        source_url: host.config.default_main_service.clone(),
        ..InstallOpts::default()
    };
    let installed = match host.install(opts, user.clone()).await {
        Ok(info) => info,
        Err(e) => {
            return tracing::error!(user = %user, source = %host.config.default_main_service, error = %e, "cannot install the main service of a new user");
        }
    };
    let settings = UserSettings {
        main_service_id: Some(installed.settings.id.to_string()),
    };
    if let Err(e) = host.users.update_settings(&user, settings) {
        tracing::error!(user = %user, error = %e, "cannot save the main service of a new user");
    }
}
