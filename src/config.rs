//! `--config FILE` (env STRATA_CONFIG) for the server subcommands (`serve`, `gateway`, `node`):
//! a TOML file whose keys are the subcommand's long flags (docs/config.md).
//!
//! The file is merged *under* clap's own parse, driven by clap's description of the command, so
//! every flag has a key without a second list to keep in step: a key is applied only when its
//! flag's value came from neither the command line nor the environment (`ArgMatches::
//! value_source`), by appending `--flag=value` and parsing again. Precedence is therefore
//! command line > environment > file > built-in default, and clap checks the merged whole
//! (conflicts, requirements) as it checks a command line.
//!
//! Each value is checked before the merge, so an error names the key and the file: unknown key,
//! wrong TOML type, bad value (the flag's own parser). Keys that would hold a secret value are
//! refused: the file may name secret *files* (token file, TLS key) only. Neither the file nor a
//! value is logged; errors quote at most a short value, never PEM material.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The flag (and its id) that names the file; it cannot itself be set in the file.
pub const CONFIG_ARG: &str = "config";
/// A config file is a few KiB; anything much larger is a wrong path.
const MAX_BYTES: u64 = 1 << 20;

/// What was loaded, for one log line after tracing is set up (key names only, no values).
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// Keys applied from the file.
    pub applied: Vec<String>,
    /// Keys present in the file but overridden by a flag or an environment variable.
    pub overridden: Vec<String>,
}

/// Why the command line (with its config file) was refused.
#[derive(Debug)]
pub enum Refused {
    Clap(clap::Error),
    Config(String),
}

impl From<clap::Error> for Refused {
    fn from(e: clap::Error) -> Self {
        Refused::Clap(e)
    }
}

/// The TOML type a flag's value must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Integer,
    Float,
    String,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::String => "string",
        }
    }
}

/// The TOML type of one value of `arg`.
pub fn kind_of(arg: &clap::Arg) -> Kind {
    use std::any::TypeId;
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Kind::Boolean;
    }
    let t = arg.get_value_parser().type_id();
    let ints = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
    ];
    if ints.iter().any(|i| t == *i) {
        Kind::Integer
    } else if t == TypeId::of::<f64>() || t == TypeId::of::<f32>() {
        Kind::Float
    } else if t == TypeId::of::<bool>() {
        Kind::Boolean
    } else {
        Kind::String
    }
}

/// Whether the flag takes several values (repeated on the command line, an array in the file).
pub fn is_list(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// The arguments of subcommand `sub` (with the globals of `root`) that a config file may set:
/// every long flag but help, version and `--config` itself.
pub fn settable_args<'a>(root: &'a Command, sub: &'a Command) -> Vec<&'a clap::Arg> {
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    sub.get_arguments()
        .chain(globals)
        .filter(|a| {
            a.get_long().is_some()
                && a.get_id() != CONFIG_ARG
                && !matches!(
                    a.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                )
        })
        .collect()
}

/// Parses the process's command line with its config file, or exits as clap does (status 2).
pub fn parse<C: clap::Parser>() -> (C, Option<Loaded>) {
    match parse_from::<C>(std::env::args_os().collect()) {
        Ok(v) => v,
        Err(Refused::Clap(e)) => e.exit(),
        Err(Refused::Config(msg)) => {
            eprintln!("error: {msg}");
            std::process::exit(2)
        }
    }
}

/// The command line `argv` (program name first) with the config file its server subcommand
/// names, merged under it.
pub fn parse_from<C: clap::Parser>(argv: Vec<OsString>) -> Result<(C, Option<Loaded>), Refused> {
    let root = C::command();
    let first = match root.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        // A required flag may come from the file: read what was given, check after the merge.
        Err(e) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument => root
            .clone()
            .ignore_errors(true)
            .try_get_matches_from(&argv)
            .map_err(|_| e)?,
        Err(e) => return Err(e.into()),
    };
    let config = first.subcommand().and_then(|(name, sub_m)| {
        if !crate::SERVER_COMMANDS.contains(&name) {
            return None;
        }
        let path = sub_m.try_get_one::<PathBuf>(CONFIG_ARG).ok().flatten()?;
        Some((name.to_string(), path.clone(), sub_m))
    });
    let Some((name, path, sub_m)) = config else {
        let m = root.clone().try_get_matches_from(&argv)?;
        return Ok((C::from_arg_matches(&m)?, None));
    };
    let sub = root
        .find_subcommand(&name)
        .expect("a parsed subcommand exists");
    let (extra, loaded) = merge(&path, &root, &first, sub, sub_m)?;
    let mut argv = argv;
    argv.extend(extra);
    let m = root.clone().try_get_matches_from(&argv)?;
    Ok((C::from_arg_matches(&m)?, Some(loaded)))
}

/// The flags the file adds (`--flag=value`, only where neither a flag nor the environment gave
/// one), after checking every key of the file.
fn merge(
    path: &Path,
    root: &Command,
    root_m: &ArgMatches,
    sub: &Command,
    sub_m: &ArgMatches,
) -> Result<(Vec<OsString>, Loaded), Refused> {
    let p = path.display();
    let table = read(path)?;
    let args = settable_args(root, sub);
    let mut extra = Vec::new();
    let mut loaded = Loaded {
        path: path.to_path_buf(),
        applied: Vec::new(),
        overridden: Vec::new(),
    };
    let mut seen = std::collections::BTreeMap::new();
    for (shown, flag, value) in flatten(path, &table)? {
        if let Some(first) = seen.insert(flag.clone(), shown.clone()) {
            return Err(Refused::Config(format!(
                "config {p}: `{shown}` and `{first}` are the same key"
            )));
        }
        if let Some(hint) = secret_hint(&flag) {
            return Err(Refused::Config(format!(
                "config {p}: key `{shown}` would hold a secret, which a config file never does; {hint}"
            )));
        }
        if flag == CONFIG_ARG {
            return Err(Refused::Config(format!(
                "config {p}: key `{shown}`: a config file cannot name another config file"
            )));
        }
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(flag.as_str())) else {
            let kebab = flag.replace('_', "-");
            let hint = if kebab != flag && args.iter().any(|a| a.get_long() == Some(&kebab)) {
                format!("keys are kebab-case: `{kebab}`")
            } else {
                format!("`strata {}` has no --{flag}", sub.get_name())
            };
            return Err(Refused::Config(format!(
                "config {p}: unknown key `{shown}` ({hint}; docs/config.md lists the keys)"
            )));
        };
        let values = values_of(path, &shown, arg, &value)?;
        for v in &values {
            check_value(path, &shown, arg, v)?;
        }
        // Overridden by its own flag, or by a flag it conflicts with (`--tls-self-signed` on
        // the command line beats `tls-cert` in the file).
        let given = |id: &str| {
            [sub_m, root_m].iter().any(|m| {
                m.try_contains_id(id).is_ok()
                    && matches!(
                        m.value_source(id),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
            })
        };
        let conflicting = !arg.is_global_set()
            && args.iter().filter(|b| !b.is_global_set()).any(|b| {
                let hit = sub
                    .get_arg_conflicts_with(b)
                    .iter()
                    .any(|c| c.get_id() == arg.get_id())
                    || sub
                        .get_arg_conflicts_with(arg)
                        .iter()
                        .any(|c| c.get_id() == b.get_id());
                hit && given(b.get_id().as_str())
            });
        if given(arg.get_id().as_str()) || conflicting {
            loaded.overridden.push(shown);
            continue;
        }
        match kind_of(arg) {
            // A switch: `true` sets it, `false` leaves it at its default (off).
            Kind::Boolean if matches!(arg.get_action(), ArgAction::SetTrue) => {
                if values[0] == "true" {
                    extra.push(OsString::from(format!("--{flag}")));
                }
            }
            _ => {
                for v in values {
                    extra.push(OsString::from(format!("--{flag}={v}")));
                }
            }
        }
        loaded.applied.push(shown);
    }
    Ok((extra, loaded))
}

fn read(path: &Path) -> Result<toml::Table, Refused> {
    let p = path.display();
    let fail = |what: String| Refused::Config(format!("config {p}: {what}"));
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a file".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(fail(format!(
            "{} bytes; a config file has at most {MAX_BYTES}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    text.parse::<toml::Table>().map_err(|e| {
        // The message and position only: toml's Display quotes the offending line.
        let at = e.span().map_or(String::new(), |s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: ")
        });
        fail(format!("{at}not valid TOML: {}", e.message().trim()))
    })
}

/// (key as written, flag name, value): a table `[a]` with key `b` is the flag `a-b`.
fn flatten(
    path: &Path,
    table: &toml::Table,
) -> Result<Vec<(String, String, toml::Value)>, Refused> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                for (k2, v2) in t {
                    if v2.is_table() {
                        return Err(Refused::Config(format!(
                            "config {}: `{k}.{k2}`: sections nest one level only",
                            path.display()
                        )));
                    }
                    out.push((format!("{k}.{k2}"), format!("{k}-{k2}"), v2.clone()));
                }
            }
            _ => out.push((k.clone(), k.clone(), v.clone())),
        }
    }
    Ok(out)
}

/// Why a key that would hold a secret value is refused, and what to do instead.
fn secret_hint(flag: &str) -> Option<&'static str> {
    if flag == "metrics-token" || flag == "token" || flag.ends_with("-token") {
        Some("put the token in a file and name it with `metrics-token-file`")
    } else if flag.contains("secret") || flag.contains("password") || flag.contains("passphrase") {
        Some(
            "give the first admin's keys with STRATA_ADMIN_ACCESS_KEY / STRATA_ADMIN_SECRET_KEY in \
             the environment of the first start",
        )
    } else if flag == "master-key" || flag.ends_with("-pem") {
        Some("key material stays in files (DATA/master.key; `tls-key` names the TLS key file)")
    } else {
        None
    }
}

fn a_or_an(word: &str) -> String {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "string",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Datetime(_) => "datetime",
        toml::Value::Array(_) => "array",
        toml::Value::Table(_) => "table",
    }
}

/// The value(s) as command-line text, refusing a TOML type the flag does not take.
fn values_of(
    path: &Path,
    shown: &str,
    arg: &clap::Arg,
    value: &toml::Value,
) -> Result<Vec<String>, Refused> {
    let kind = kind_of(arg);
    let want = if is_list(arg) {
        format!("an array of {}s", kind.name())
    } else {
        a_or_an(kind.name())
    };
    let wrong = |found: &toml::Value| {
        Refused::Config(format!(
            "config {}: key `{shown}` must be {want}, not {}",
            path.display(),
            a_or_an(type_name(found))
        ))
    };
    let one = |v: &toml::Value| -> Result<String, Refused> {
        match (kind, v) {
            (Kind::Boolean, toml::Value::Boolean(b)) => Ok(b.to_string()),
            (Kind::Integer, toml::Value::Integer(i)) => Ok(i.to_string()),
            (Kind::Float, toml::Value::Float(f)) => Ok(f.to_string()),
            (Kind::Float, toml::Value::Integer(i)) => Ok(i.to_string()),
            (Kind::String, toml::Value::String(s)) => {
                if s.contains("-----BEGIN") {
                    return Err(Refused::Config(format!(
                        "config {}: key `{shown}` holds PEM key material; a config file names \
                         the file that holds it instead",
                        path.display()
                    )));
                }
                Ok(s.clone())
            }
            _ => Err(wrong(v)),
        }
    };
    match value {
        toml::Value::Array(items) if is_list(arg) => items.iter().map(one).collect(),
        v if is_list(arg) => Err(wrong(v)),
        v => Ok(vec![one(v)?]),
    }
}

/// Runs the flag's own value parser on one value, so a bad value is refused naming the key.
fn check_value(path: &Path, shown: &str, arg: &clap::Arg, value: &str) -> Result<(), Refused> {
    let probe = Command::new("strata").no_binary_name(true).arg(
        clap::Arg::new("v")
            .long("v")
            .value_parser(arg.get_value_parser().clone())
            .action(ArgAction::Set),
    );
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(());
    }
    probe
        .try_get_matches_from([OsString::from(format!("--v={value}"))])
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            // clap quotes the value and names the probe's `--v <v>`: keep only its reason.
            let reason = first
                .split_once("': ")
                .map(|(_, r)| r)
                .filter(|r| !r.is_empty())
                .unwrap_or("not accepted");
            let shown_value: String = value.chars().take(80).collect();
            Refused::Config(format!(
                "config {}: key `{shown}`: invalid value {shown_value:?}: {reason}",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("strata")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn serve(args: &[&str]) -> Result<crate::serve::ServeArgs, String> {
        match parse_from::<crate::Cli>(argv(args)) {
            Ok((cli, _)) => match cli.command {
                crate::Command::Serve(a) => Ok(a),
                _ => panic!("not serve"),
            },
            Err(Refused::Config(m)) => Err(m),
            Err(Refused::Clap(e)) => Err(e.to_string()),
        }
    }

    fn refused(text: &str) -> String {
        let f = file(text);
        serve(&["serve", "--config", f.path().to_str().unwrap()])
            .err()
            .expect("refused")
    }

    #[test]
    fn file_sets_values_and_the_command_line_wins() {
        let f = file(
            "listen = \"127.0.0.1:9123\"\ndisks = 8\nlog-format = \"json\"\n\
             archive-compact-below = 1\n[tls]\nlisten = \"127.0.0.1:9443\"\n",
        );
        let p = f.path().to_str().unwrap();
        let a = serve(&["serve", "--config", p]).unwrap();
        assert_eq!(a.listen.port(), 9123);
        assert_eq!(a.disks, 8);
        assert_eq!(a.tls.tls_listen.unwrap().port(), 9443);
        assert_eq!(a.lifecycle.archive_compact_below, 1.0);
        let a = serve(&["serve", "--config", p, "--listen", "127.0.0.1:9555"]).unwrap();
        assert_eq!(a.listen.port(), 9555);
        assert_eq!(a.disks, 8);
        // A flag that conflicts with a key of the file overrides it.
        let f2 = file("metrics-token-file = \"/nonexistent\"\n");
        let a = serve(&[
            "serve",
            "--config",
            f2.path().to_str().unwrap(),
            "--metrics-public",
        ])
        .unwrap();
        assert!(a.edge.metrics_public && a.edge.metrics_token_file.is_none());
        // Without the file: the built-in default.
        assert_eq!(serve(&["serve"]).unwrap().disks, 6);
        let (cli, loaded) = parse_from::<crate::Cli>(argv(&["serve", "--config", p])).unwrap();
        assert!(matches!(cli.log_format, crate::LogFormat::Json));
        let loaded = loaded.unwrap();
        assert!(loaded.applied.contains(&"tls.listen".to_string()));
    }

    #[test]
    fn a_switch_and_a_list_from_the_file() {
        let f = file("metrics-public = true\nallow-sse-c-over-http = false\n");
        let a = serve(&["serve", "--config", f.path().to_str().unwrap()]).unwrap();
        assert!(a.edge.metrics_public);
        assert!(!a.allow_sse_c_over_http);
        // Required flags of `strata gateway` may come from the file alone.
        let f = file("cluster = \"/tmp/c\"\nnode = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n");
        let (cli, _) =
            parse_from::<crate::Cli>(argv(&["gateway", "--config", f.path().to_str().unwrap()]))
                .unwrap();
        let crate::Command::Gateway(g) = cli.command else {
            panic!("not gateway")
        };
        assert_eq!(g.cluster.nodes.len(), 2);
        let f = file("node = \"127.0.0.1:1\"\ncluster = \"/tmp/c\"\n");
        let e =
            parse_from::<crate::Cli>(argv(&["gateway", "--config", f.path().to_str().unwrap()]))
                .err()
                .expect("refused");
        assert!(
            matches!(e, Refused::Config(m) if m.contains("`node` must be an array of strings"))
        );
    }

    #[test]
    fn invalid_files_are_refused_naming_the_key() {
        let e = refused("listn = \"127.0.0.1:1\"\n");
        assert!(e.contains("unknown key `listn`"), "{e}");
        let e = refused("disks = \"six\"\n");
        assert!(
            e.contains("`disks` must be an integer, not a string"),
            "{e}"
        );
        let e = refused("listen = \"nope\"\n");
        assert!(e.contains("key `listen`: invalid value \"nope\""), "{e}");
        let e = refused("log-format = \"xml\"\n");
        assert!(e.contains("key `log-format`"), "{e}");
        let e = refused("data_dir = \"/tmp/x\"\n");
        assert!(
            e.contains("unknown key `data_dir`") && e.contains("`data-dir`"),
            "{e}"
        );
        let e = refused("[tls]\nfoo = 1\n");
        assert!(e.contains("unknown key `tls.foo`"), "{e}");
        let e = refused("tls-cert = \"a\"\n[tls]\ncert = \"b\"\n");
        assert!(e.contains("same key"), "{e}");
        let e = refused("listen = \n");
        assert!(e.contains("line 1") && e.contains("not valid TOML"), "{e}");
        // Key material and secrets stay out, and are not echoed.
        let e = refused("tls-key = \"-----BEGIN PRIVATE KEY-----\\nMIIabc\"\n");
        assert!(e.contains("PEM") && !e.contains("MIIabc"), "{e}");
        let e = refused("metrics-token = \"0123456789abcdef0123\"\n");
        assert!(
            e.contains("secret") && !e.contains("0123456789abcdef"),
            "{e}"
        );
        let e = refused("admin-secret-key = \"x\"\n");
        assert!(e.contains("secret"), "{e}");
        // The subcommand's own keys only: `node` belongs to `strata gateway`.
        let e = refused("node = [\"127.0.0.1:1\"]\n");
        assert!(
            e.contains("unknown key `node`") && e.contains("strata serve"),
            "{e}"
        );
    }

    /// docs/config.md documents every key of every server subcommand (with its env var).
    #[test]
    fn every_server_flag_has_a_documented_key() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md"))
            .unwrap();
        let root = crate::Cli::command();
        let mut missing = Vec::new();
        for name in crate::SERVER_COMMANDS {
            let sub = root.find_subcommand(name).unwrap();
            assert!(
                sub.get_arguments().any(|a| a.get_id() == CONFIG_ARG),
                "strata {name} has no --config"
            );
            for arg in settable_args(&root, sub) {
                let key = arg.get_long().unwrap();
                let row = doc.lines().find(|l| l.starts_with(&format!("| `{key}` |")));
                match row {
                    None => missing.push(format!("{name}: `{key}` has no row")),
                    Some(row) => {
                        if let Some(env) = arg.get_env() {
                            let env = env.to_str().unwrap();
                            if !row.contains(env) {
                                missing.push(format!("{name}: `{key}` row lacks {env}"));
                            }
                        }
                        if !row.contains(name) {
                            missing.push(format!("{name}: `{key}` row lacks `{name}`"));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "docs/config.md: {missing:#?}");
    }

    /// `cargo test --workspace --bin strata -- config::tests::print_key_table --ignored
    /// --nocapture` prints the key table's skeleton for docs/config.md.
    #[test]
    #[ignore]
    fn print_key_table() {
        let root = crate::Cli::command();
        let mut rows: Vec<(String, Vec<&str>, String, String, String)> = Vec::new();
        for name in crate::SERVER_COMMANDS {
            let sub = root.find_subcommand(name).unwrap();
            for arg in settable_args(&root, sub) {
                let key = arg.get_long().unwrap().to_string();
                if let Some(r) = rows.iter_mut().find(|r| r.0 == key) {
                    r.1.push(name);
                    continue;
                }
                let ty = if is_list(arg) {
                    format!("array of {}s", kind_of(arg).name())
                } else {
                    kind_of(arg).name().to_string()
                };
                let def = arg
                    .get_default_values()
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",");
                let env = arg
                    .get_env()
                    .map_or("-".into(), |e| format!("`{}`", e.to_string_lossy()));
                rows.push((key, vec![name], ty, def, env));
            }
        }
        for (key, cmds, ty, def, env) in rows {
            println!(
                "| `{key}` | {ty} | {} | {env} | {} | |",
                if def.is_empty() {
                    "-".into()
                } else {
                    format!("`{def}`")
                },
                cmds.join(", ")
            );
        }
    }
}
