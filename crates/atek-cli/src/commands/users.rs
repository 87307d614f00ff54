//! `atek users`, `atek mkuser`, `atek moduser`, `atek deluser`: accounts, through users-api
//! with the system token. What is not given as a flag is asked for; passwords are read
//! without echo (twice, to catch a typo), or from standard input with `--password-stdin`
//! for scripts. A password is never taken as an argument: it would land in shell history
//! and in `ps`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use atek_api::Client;
use atek_api::users::{ADMIN_ROLE, NewUser, User, UserUpdate};

use super::{connect, hint};
use crate::output;

/// Options of `atek users`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON (the users-api `list` result's users array).
    #[arg(long)]
    json: bool,
}

/// Options of `atek mkuser`.
#[derive(Debug, clap::Args)]
pub(crate) struct MkArgs {
    /// The login name (3-64 characters: a letter, then letters, digits, `-`, `_`, `.`);
    /// asked for when missing.
    username: Option<String>,
    /// Make the user an admin (sees and manages every user and service).
    #[arg(long)]
    admin: bool,
    /// Read the password from the first line of standard input instead of asking.
    #[arg(long)]
    password_stdin: bool,
    /// Print the new user as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek moduser`.
#[derive(Debug, clap::Args)]
pub(crate) struct ModArgs {
    /// The user's login name.
    username: String,
    /// A new login name.
    #[arg(long, value_name = "NAME")]
    rename: Option<String>,
    /// Ask for a new password (ends the user's sessions).
    #[arg(long, conflicts_with = "password_stdin")]
    set_password: bool,
    /// Read a new password from the first line of standard input (ends the user's sessions).
    #[arg(long)]
    password_stdin: bool,
    /// Make the user an admin.
    #[arg(long, conflicts_with = "no_admin")]
    admin: bool,
    /// Make the user a plain user.
    #[arg(long)]
    no_admin: bool,
    /// Print the changed user as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek deluser`.
#[derive(Debug, clap::Args)]
pub(crate) struct DelArgs {
    /// The user's login name.
    username: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
}

pub(crate) async fn list(config_dir: PathBuf, args: ListArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let users = client
        .users()
        .list()
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&users);
    }
    if users.is_empty() {
        println!("No users yet. Create the first admin with `atek mkuser --admin`.");
        return Ok(());
    }
    let mut table = output::table(["USERNAME", "ROLE", "KEY"]);
    for user in &users {
        let role = if user.is_admin() { "admin" } else { "user" };
        table.add_row([user.username.as_str(), role, user.key.as_str()]);
    }
    println!("{table}");
    Ok(())
}

pub(crate) async fn mkuser(config_dir: PathBuf, args: MkArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let username = match args.username {
        Some(name) => name,
        None => prompt_line("Username: ")?,
    };
    let password = if args.password_stdin {
        read_stdin_line()?
    } else {
        prompt_new_password()?
    };
    let new = NewUser {
        username,
        password,
        role: args.admin.then(|| ADMIN_ROLE.to_owned()),
    };
    let user = client
        .users()
        .create(&new)
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&user);
    }
    let role = if user.is_admin() { "admin" } else { "user" };
    println!("Created {role} {} (key {}).", user.username, user.key);
    Ok(())
}

pub(crate) async fn moduser(config_dir: PathBuf, args: ModArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let user = find(&client, &config_dir, &args.username).await?;
    let password = if args.password_stdin {
        Some(read_stdin_line()?)
    } else if args.set_password {
        Some(prompt_new_password()?)
    } else {
        None
    };
    let role = match (args.admin, args.no_admin) {
        (true, _) => Some(ADMIN_ROLE.to_owned()),
        (_, true) => Some(String::new()),
        _ => None,
    };
    let update = UserUpdate {
        username: args.rename,
        password,
        role,
    };
    if update == UserUpdate::default() {
        bail!(
            "nothing to change: give --rename, --set-password, --password-stdin, --admin or --no-admin"
        );
    }
    let changed = client
        .users()
        .update(user.key.as_str(), &update)
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&changed);
    }
    println!("Updated {}.", changed.username);
    if update.password.is_some() {
        println!("Their sessions have ended: they sign in again with the new password.");
    }
    Ok(())
}

pub(crate) async fn deluser(config_dir: PathBuf, args: DelArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let user = find(&client, &config_dir, &args.username).await?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "deleting {} needs confirmation: run it in a terminal, or add --yes",
                user.username
            );
        }
        // `[y/N]`: Enter alone (or end of input) is the default, no, not an error.
        let answer = prompt_answer(&format!(
            "Delete user {}? Their services stay installed. [y/N] ",
            user.username
        ))?;
        if !matches!(answer.as_str(), "y" | "Y" | "yes") {
            println!("Nothing deleted.");
            return Ok(());
        }
    }
    client
        .users()
        .delete(user.key.as_str())
        .await
        .map_err(|e| hint(e, &config_dir))?;
    println!("Deleted {}.", user.username);
    Ok(())
}

/// The user with this login name.
async fn find(
    client: &Client,
    config_dir: &std::path::Path,
    username: &str,
) -> anyhow::Result<User> {
    let users = client
        .users()
        .list()
        .await
        .map_err(|e| hint(e, config_dir))?;
    users
        .into_iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))
        .with_context(|| format!("no user is named {username}: see `atek users`"))
}

fn prompt_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    read_stdin_line()
}

/// Like [`prompt_line`], for a question with a default: the answer may be empty.
fn prompt_answer(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    read_stdin_answer()
}

fn read_stdin_line() -> anyhow::Result<String> {
    let line = read_stdin_answer()?;
    if line.is_empty() {
        bail!("nothing was entered");
    }
    Ok(line)
}

/// One line of standard input without its line end; empty at end of input.
fn read_stdin_answer() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn prompt_new_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for a password: pipe it in with --password-stdin");
    }
    let first = rpassword::prompt_password("Password (at least 8 characters): ")
        .context("cannot read the password")?;
    let again =
        rpassword::prompt_password("Password again: ").context("cannot read the password")?;
    if first != again {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
