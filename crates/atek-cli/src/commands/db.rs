//! `atek db …`: the home's databases, through `atek.cloud/adb-api` with the system token.
//!
//! Databases are named by id (64 hex digits) or, for `ls`, listed per owning user. The
//! server database (the host's own records) is `atek db server`'s answer.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use atek_api::Client;
use serde_json::{Value, json};

use super::{connect, hint};
use crate::output;

const ADB: &str = "atek.cloud/adb-api";

/// `atek db` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DbCommand {
    /// List databases (all users' with `--all`, else the host's own).
    Ls(LsArgs),
    /// Print the server database's id (where the host keeps its own records).
    Server(JsonArg),
    /// Create a database owned by the host (or by `--user` through `--service`).
    Create(CreateArgs),
    /// Show a database: owner, alias, access and its tables.
    Info(DbArg),
    /// List records under a path (all of them, at any depth, in key order).
    List(ListArgs),
    /// Print one record.
    Get(PathArgs),
    /// Write a record: a JSON object given as an argument, or `-` for standard input.
    Put(PutArgs),
    /// Delete a record.
    Rm(PathArgs),
    /// Print the changes of a database from a log index on.
    Changes(ChangesArgs),
}

/// `--json`.
#[derive(Debug, clap::Args)]
pub(crate) struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek db create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// A name for it (unique per owning service).
    #[arg(long)]
    alias: Option<String>,
    /// Readable only by its owner (default: readable by every caller, writable only by
    /// its owner).
    #[arg(long)]
    private: bool,
    /// The owning user's key [default: system].
    #[arg(long, value_name = "USER_KEY", requires = "service")]
    user: Option<String>,
    /// The owning service's key.
    #[arg(long, value_name = "SERVICE_KEY", requires = "user")]
    service: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek db ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Databases of this user (a user key); default: the host's own (`system`).
    #[arg(long, value_name = "USER_KEY", conflicts_with = "all")]
    user: Option<String>,
    /// Every user's databases.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A database.
#[derive(Debug, clap::Args)]
pub(crate) struct DbArg {
    /// The database's id (64 hex digits, or hyper://ID).
    db: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A database and a record path.
#[derive(Debug, clap::Args)]
pub(crate) struct PathArgs {
    /// The database's id.
    db: String,
    /// The record's path, like /example.com/notes/n1.
    path: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek db list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The database's id.
    db: String,
    /// List below this path [default: /].
    #[arg(default_value = "/")]
    path: String,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Last key first.
    #[arg(long)]
    reverse: bool,
    /// Keys after this one.
    #[arg(long)]
    gt: Option<String>,
    /// Keys before this one.
    #[arg(long)]
    lt: Option<String>,
    /// Print JSON (the records, one array).
    #[arg(long)]
    json: bool,
}

/// Options of `atek db put`.
#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// The database's id.
    db: String,
    /// The record's path.
    path: String,
    /// The record: a JSON object, or `-` to read it from standard input.
    value: String,
    /// Print the stored record as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek db changes`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChangesArgs {
    /// The database's id.
    db: String,
    /// The first log index [default: 0].
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Keep waiting for new changes (Ctrl-C ends).
    #[arg(long, short)]
    follow: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config_dir: PathBuf, command: DbCommand) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let call = |method: &'static str, params: Value| {
        let client = &client;
        let config_dir = &config_dir;
        async move {
            client
                .call::<_, Value>(ADB, method, params)
                .await
                .map_err(|e| hint(e, config_dir))
        }
    };
    match command {
        DbCommand::Ls(args) => {
            let dbs = if args.all {
                all_databases(&client, &config_dir).await?
            } else {
                let user = args.user.unwrap_or_else(|| "system".into());
                call("adminListDbsByOwningUser", json!([user])).await?
            };
            if args.json {
                return output::json(&dbs);
            }
            let mut table = output::table(["ID", "ALIAS", "ACCESS", "OWNER", "CREATED"]);
            for db in dbs.as_array().map(Vec::as_slice).unwrap_or_default() {
                let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
                let owner = if db["isServerDb"].as_bool() == Some(true) {
                    "server database".to_owned()
                } else {
                    format!(
                        "{} / {}",
                        text(&db["owner"]["userKey"]),
                        text(&db["owner"]["serviceKey"])
                    )
                };
                table.add_row([
                    text(&db["dbId"]),
                    text(&db["alias"]),
                    text(&db["access"]),
                    owner,
                    text(&db["createdAt"]),
                ]);
            }
            println!("{table}");
        }
        DbCommand::Server(args) => {
            let config = call("getConfig", json!([])).await?;
            if args.json {
                return output::json(&config);
            }
            println!("{}", config["serverDbId"].as_str().unwrap_or(""));
        }
        DbCommand::Create(args) => {
            let mut config = json!({"access": if args.private { "private" } else { "public" }});
            if let Some(alias) = args.alias {
                config["alias"] = json!(alias);
            }
            if let (Some(user), Some(service)) = (args.user, args.service) {
                config["owner"] = json!({"userKey": user, "serviceKey": service});
            }
            let created = call("adminCreateDb", json!([config])).await?;
            if args.json {
                return output::json(&created);
            }
            println!("{}", created["dbId"].as_str().unwrap_or(""));
        }
        DbCommand::Info(args) => {
            let info = call("dbDescribe", json!([args.db])).await?;
            let tables = call("tableList", json!([args.db])).await?;
            if args.json {
                return output::json(&json!({"db": info, "tables": tables["tables"]}));
            }
            println!("{}", serde_json::to_string_pretty(&info)?);
            for table in tables["tables"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                println!(
                    "table {} (revision {})",
                    table["id"].as_str().unwrap_or(""),
                    table["revision"]
                );
            }
        }
        DbCommand::List(args) => {
            let opts =
                json!({"limit": args.limit, "reverse": args.reverse, "gt": args.gt, "lt": args.lt});
            let opts: serde_json::Map<String, Value> = opts
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let result = call("recordList", json!([args.db, args.path, opts])).await?;
            let records = &result["records"];
            if args.json {
                return output::json(records);
            }
            for record in records.as_array().map(Vec::as_slice).unwrap_or_default() {
                println!(
                    "{}\t{}",
                    record["path"].as_str().unwrap_or(""),
                    record["value"]
                );
            }
        }
        DbCommand::Get(args) => {
            let record = call("recordGet", json!([args.db, args.path])).await?;
            if args.json {
                return output::json(&record);
            }
            println!("{}", serde_json::to_string_pretty(&record["value"])?);
        }
        DbCommand::Put(args) => {
            let text = if args.value == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the record from standard input")?;
                text
            } else {
                args.value
            };
            let value: Value = serde_json::from_str(&text)
                .context("the record is not JSON: give a JSON object like '{\"title\": \"hi\"}'")?;
            if !value.is_object() {
                bail!("the record must be a JSON object, like '{{\"title\": \"hi\"}}'");
            }
            let record = call("recordPut", json!([args.db, args.path, value])).await?;
            if args.json {
                return output::json(&record);
            }
            println!(
                "Wrote {} (log index {}).",
                record["path"].as_str().unwrap_or(""),
                record["seq"]
            );
        }
        DbCommand::Rm(args) => {
            call("recordDelete", json!([args.db, args.path])).await?;
            if !args.json {
                println!("Deleted {}.", args.path);
            }
        }
        DbCommand::Changes(args) => {
            let mut since = args.since;
            loop {
                let wait = if args.follow { 25_000 } else { 0 };
                let result = call(
                    "recordChanges",
                    json!([args.db, {"since": since, "wait": wait}]),
                )
                .await?;
                for change in result["changes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if args.json {
                        println!("{change}");
                    } else {
                        let what = change["path"]
                            .as_str()
                            .or(change["table"]["id"].as_str())
                            .unwrap_or("");
                        println!(
                            "{}\t{}\t{}",
                            change["seq"],
                            change["type"].as_str().unwrap_or(""),
                            what
                        );
                    }
                }
                let next = result["next"].as_u64().unwrap_or(since);
                if !args.follow && next == since {
                    break;
                }
                since = next;
            }
        }
    }
    Ok(())
}

/// Every user's databases: the host's, then each user's.
async fn all_databases(client: &Client, config_dir: &std::path::Path) -> anyhow::Result<Value> {
    let mut all = Vec::new();
    let users = client
        .users()
        .list()
        .await
        .map_err(|e| hint(e, config_dir))?;
    let keys = std::iter::once("system".to_owned()).chain(users.iter().map(|u| u.key.to_string()));
    for key in keys {
        let dbs: Value = client
            .call(ADB, "adminListDbsByOwningUser", json!([key]))
            .await
            .map_err(|e| hint(e, config_dir))?;
        all.extend(dbs.as_array().cloned().unwrap_or_default());
    }
    Ok(Value::Array(all))
}
