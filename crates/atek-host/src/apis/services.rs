//! `atek.cloud/services-api`: permission rules (reference §4.2) over [`crate::manage`].

use atek_api::jsonrpc::RpcError;
use atek_api::services::{ConfigureOpts, InstallOpts, ServiceList};
use atek_core::UserKey;
use serde_json::Value;

use super::{Params, to_value};
use crate::auth::Caller;
use crate::host::HostState;
use crate::manage::ManageError;
use crate::store::StoredService;

fn general(e: ManageError) -> RpcError {
    RpcError::general(e.to_string())
}

/// Owner-or-admin: the service's record, when the caller may manage it.
fn owned(host: &HostState, caller: &Caller, id: &str) -> Result<(StoredService, bool), RpcError> {
    let (stored, core) = host.find(id).map_err(general)?;
    if caller.admin || stored.record.owning_user_key == caller.user {
        Ok((stored, core))
    } else {
        Err(RpcError::not_authorized())
    }
}

/// Installing runs code with the host's rights: admins only, unless `usersMayInstall`.
fn may_install(host: &HostState, caller: &Caller) -> Result<(), RpcError> {
    if caller.admin || host.config.users_may_install {
        Ok(())
    } else {
        Err(RpcError::general(
            "Only an admin may install services on this host: a service runs with the host's rights. Ask an admin, or have them set usersMayInstall in config.json",
        ))
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
            let mut all: Vec<_> = host
                .core_services()
                .into_iter()
                .map(|s| (s, true))
                .collect();
            all.extend(host.store.list().into_iter().map(|s| (s, false)));
            let services = all
                .iter()
                .filter(|(s, _)| caller.admin || s.record.owning_user_key == caller.user)
                .map(|(s, core)| host.info(s, *core))
                .collect();
            to_value(ServiceList { services })
        }
        "get" => {
            let id = params.string(0)?;
            let (stored, core) = owned(host, caller, id)?;
            to_value(host.info(&stored, core))
        }
        "install" => {
            may_install(host, caller)?;
            let opts: InstallOpts = params.object(0)?;
            if opts.source_url.is_empty() {
                return Err(RpcError::param(
                    0,
                    "must have required property 'sourceUrl'",
                ));
            }
            let owner = match opts.user.as_deref() {
                None | Some("") => caller.user.clone(),
                Some(_) if !caller.admin => return Err(RpcError::not_authorized()),
                Some("system") => UserKey::system(),
                Some(name) => match host.users.find_username(name) {
                    Some(user) => user.key,
                    None => return Err(general(ManageError::NoSuchUser(name.to_owned()))),
                },
            };
            to_value(host.install(opts, owner).await.map_err(general)?)
        }
        "uninstall" | "start" | "stop" | "restart" | "checkForPackageUpdates" | "updatePackage" => {
            let id = params.string(0)?;
            owned(host, caller, id)?;
            match method {
                "uninstall" => host.uninstall(id).await.map_err(general)?,
                "start" => host.start(id).await.map_err(general)?,
                "stop" => host.stop(id).await.map_err(general)?,
                "restart" => host.restart(id).await.map_err(general)?,
                "checkForPackageUpdates" => {
                    return to_value(host.check_for_updates(id).await.map_err(general)?);
                }
                _ => return to_value(host.update_package(id).await.map_err(general)?),
            }
            Ok(Value::Null)
        }
        "configure" => {
            let id = params.string(0)?;
            let opts: ConfigureOpts = params.object(1)?;
            let (stored, _) = owned(host, caller, id)?;
            if opts
                .source_url
                .as_deref()
                .is_some_and(|url| url != stored.record.source_url)
            {
                may_install(host, caller)?;
            }
            host.configure(id, opts).await.map_err(general)?;
            Ok(Value::Null)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}
