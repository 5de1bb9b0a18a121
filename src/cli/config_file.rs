//! `--config FILE` for `load` and `conform`: a TOML or JSON table of options under their long
//! names (`_` or `-` alike), read before clap parses and placed ahead of the command line's own
//! arguments, so the command line wins (clap keeps an option's last value) and every option is
//! available in the file without a second list of them.

use std::ffi::OsString;
use std::path::Path;

use super::Error;

/// The subcommands whose options a config file may hold (`serve` has its own, typed file).
const SUBCOMMANDS: &[&str] = &["load", "conform"];

/// The largest config file read, bytes: far above any real one.
const MAX_LEN: u64 = 1 << 20;

/// `args` (the process's, program name first) with the options of a `--config FILE` given to
/// `load` or `conform` inserted right after the subcommand. Other command lines come back as
/// they were.
/// An error comes with the subcommand's name, for its one line.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, (&'static str, Error)> {
    let Some((sub, name)) = args.iter().enumerate().find_map(|(i, a)| {
        SUBCOMMANDS
            .iter()
            .find(|s| a.as_os_str() == **s)
            .map(|s| (i, *s))
    }) else {
        return Ok(args);
    };
    let mut path = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args[sub + 1..].iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--" {
            rest.push(a.clone());
            rest.extend(it.cloned());
            break;
        }
        if text == "--config" {
            path = it.next().cloned();
            if path.is_none() {
                return Err((name, Error::Usage("--config needs a FILE".to_owned())));
            }
        } else if let Some(p) = text.strip_prefix("--config=") {
            path = Some(OsString::from(p));
        } else {
            rest.push(a.clone());
        }
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let from_file = options(Path::new(&path)).map_err(|e| (name, e))?;
    let mut out: Vec<OsString> = args[..=sub].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(rest);
    Ok(out)
}

/// The file's table as command-line arguments: `key = value` is `--key value`, `true` a bare
/// flag (`false` leaves it out), a list repeats the option.
fn options(path: &Path) -> Result<Vec<String>, Error> {
    use std::io::Read;
    let read = |e| Error::read("--config", path, e);
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    let content = |message: String| Error::Content {
        path: path.to_owned(),
        message,
    };
    if text.len() as u64 > MAX_LEN {
        return Err(content("larger than 1 MiB: not a config file".to_owned()));
    }
    let table: toml::Table = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| content(e.to_string()))?
    } else {
        toml::from_str(&text).map_err(|e| content(e.message().to_owned()))?
    };
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        if flag == "--config" {
            return Err(content("a config file cannot name another".to_owned()));
        }
        push(&mut out, &flag, &key, &value).map_err(content)?;
    }
    Ok(out)
}

fn push(out: &mut Vec<String>, flag: &str, key: &str, value: &toml::Value) -> Result<(), String> {
    match value {
        toml::Value::Boolean(true) => out.push(flag.to_owned()),
        toml::Value::Boolean(false) => {}
        toml::Value::String(s) => out.extend([flag.to_owned(), s.clone()]),
        toml::Value::Integer(n) => out.extend([flag.to_owned(), n.to_string()]),
        toml::Value::Float(x) => out.extend([flag.to_owned(), x.to_string()]),
        toml::Value::Array(items) => {
            for item in items {
                if item.is_array() || item.is_table() {
                    return Err(format!("{key}: a list of plain values, not nested ones"));
                }
                push(out, flag, key, item)?;
            }
        }
        toml::Value::Table(_) | toml::Value::Datetime(_) => {
            return Err(format!("{key}: a string, number, boolean or list"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn with_file(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("kmsharness-cfg-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn test_file_options_go_before_the_command_line() {
        let path = with_file(
            "load.toml",
            "clients = 50\nmode = \"reuse\"\nquiet = true\nthreshold = [\"p99<5ms\", \"errors<1%\"]\nno_such = false\n",
        );
        let p = path.display().to_string();
        let out = expand(args(&["kmsharness", "load", "--config", &p, "-c", "4"])).unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(out[..2], ["kmsharness", "load"]);
        assert_eq!(out[out.len() - 2..], ["-c", "4"]);
        for pair in [
            ["--clients", "50"],
            ["--mode", "reuse"],
            ["--threshold", "p99<5ms"],
        ] {
            assert!(out.windows(2).any(|w| w == pair), "{out:?}");
        }
        assert!(out.contains(&"--quiet".to_owned()));
        assert!(
            !out.iter().any(|a| a == "--no-such"),
            "false flags are left out"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn test_other_command_lines_pass_unchanged() {
        let a = args(&["kmsharness", "serve", "--config", "host.toml"]);
        assert_eq!(expand(a.clone()).unwrap(), a);
        let a = args(&["kmsharness", "load", "-d", "1s"]);
        assert_eq!(expand(a.clone()).unwrap(), a);
    }

    #[test]
    fn test_bad_files_are_named() {
        let missing = expand(args(&["k", "conform", "--config", "/nonexistent/c.toml"]));
        assert!(matches!(missing, Err(("conform", Error::Read { .. }))));
        let path = with_file("bad.toml", "threshold = [[1]]\n");
        let e = expand(args(&[
            "k",
            "load",
            "--config",
            &path.display().to_string(),
        ]));
        assert!(e.unwrap_err().1.to_string().contains("threshold"));
        let _ = std::fs::remove_file(path);
    }
}
