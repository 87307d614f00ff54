//! What the CLI prints: tables for people, JSON for scripts.

use atek_api::services::ServiceInfo;
use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};

/// Prints `value` as pretty JSON.
pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An empty table in the CLI's style.
pub(crate) fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(header);
    table
}

/// A table of services.
pub(crate) fn services_table(services: &[ServiceInfo]) -> String {
    let mut table = table(["ID", "STATUS", "VERSION", "SOURCE", "OWNER", "PID", "NOTE"]);
    for s in services {
        let version = s
            .settings
            .package
            .installed_version
            .as_deref()
            .unwrap_or("-");
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let mut note = s.status_reason.clone().unwrap_or_default();
        if s.core {
            note = if note.is_empty() {
                "core".into()
            } else {
                format!("core; {note}")
            };
        }
        table.add_row([
            Cell::new(&s.settings.id),
            Cell::new(s.status.as_str()),
            Cell::new(version),
            Cell::new(&s.settings.source_url),
            Cell::new(&s.settings.owning_user_key),
            Cell::new(pid),
            Cell::new(note),
        ]);
    }
    table.to_string()
}

/// One service, for people.
pub(crate) fn service_details(s: &ServiceInfo) -> String {
    let mut out = format!("{} ({})\n", s.settings.id, s.status.as_str());
    let mut row = |k: &str, v: &str| out.push_str(&format!("  {k:<16}{v}\n"));
    row("key", s.key.as_str());
    row("source", &s.settings.source_url);
    row(
        "type",
        match s.settings.package.source_type {
            atek_api::services::SourceType::File => "folder",
            atek_api::services::SourceType::Git => "git",
        },
    );
    if let Some(v) = &s.settings.desired_version {
        row("desired version", v);
    }
    if let Some(v) = &s.settings.package.installed_version {
        row("installed", v);
    }
    row("owner", s.settings.owning_user_key.as_str());
    if let Some(pid) = s.pid {
        row("pid", &pid.to_string());
    }
    if let Some(port) = s.port {
        row("port", &port.to_string());
    }
    if s.restarts > 0 {
        row("restarts", &s.restarts.to_string());
    }
    if let Some(r) = &s.status_reason {
        row("reason", r);
    }
    if let Some(e) = &s.last_exit {
        row("last exit", e);
    }
    if let Some(m) = &s.settings.manifest {
        for e in &m.exports {
            row(
                "exports",
                &format!("{} ({}, {})", e.api, e.transport().as_str(), e.path()),
            );
        }
    }
    for (k, v) in s.settings.config.iter().flatten() {
        row("env", &format!("{}={v}", k.to_uppercase()));
    }
    out
}
