//! The config file: `--config FILE` (or AITRAIL_CONFIG), TOML whose keys are the long
//! names of the command-line options (`database`, `data-dir`, `listen`, `log-name`,
//! `rate-limit`, …; `_` and `-` alike). A setting there becomes that option's default, so
//! the command line wins over the environment, which wins over the file.
//!
//! ```toml
//! database = "postgres://aitrail@db.internal/aitrail"
//! listen = "0.0.0.0:8080"
//! log-name = "audit.example.com"
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Command;

/// The config file named by `--config FILE` / `--config=FILE` in `args`, or AITRAIL_CONFIG.
pub fn path(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("AITRAIL_CONFIG").map(PathBuf::from)
}

/// `command` with the file's settings as the defaults of the options they name, in the
/// top-level options and every subcommand's. A key that names no option is an error.
pub fn apply(mut command: Command, file: &PathBuf) -> anyhow::Result<Command> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the config file {}", file.display()))?;
    let table: toml::Table =
        text.parse().with_context(|| format!("{} is not TOML", file.display()))?;
    for (key, value) in table {
        let long = key.replace('_', "-");
        let value: &'static str = Box::leak(
            match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => bail!("{}: {key} must be a string, number or boolean", file.display()),
            }
            .into_boxed_str(),
        );
        let mut found = false;
        command = set_default(command, &long, value, &mut found);
        if !found {
            bail!("{}: {key} is not an aitrail option (see aitrail --help)", file.display());
        }
    }
    Ok(command)
}

/// Set the default of every option `--long` in `command` and its subcommands.
fn set_default(mut command: Command, long: &str, value: &'static str, found: &mut bool) -> Command {
    let ids: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        *found = true;
        command = command.mut_arg(id, |a| a.default_value(value));
    }
    let subcommands: Vec<String> =
        command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |c| set_default(c, long, value, found));
    }
    command
}
