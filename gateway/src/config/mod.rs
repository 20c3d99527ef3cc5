//! Configuration files: finds `tenants/*.yaml` and `mappings/*.yaml` in a config directory, parses
//! them with positions, and reports every problem with its file, line and a hint.
//!
//! Compiling parsed files into running tenants is `tenant::Registry::build`'s job; this module only
//! reads and parses, so `scimbridge check` and `serve` share one path.

pub mod duration;
pub mod env;
pub mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::mapping::spec::MappingFile;
use crate::tenant::spec::TenantFile;

/// Largest config file read; a guard against pointing the gateway at the wrong directory.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Where in the document, when known without a line (`resources.User.attributes[2]`).
    pub location: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: None, column: None, location: None, message: message.into(), hint: None }
    }
    /// Problems found after parsing, at document paths (`auth.jwt[0].issuer`): the file is read
    /// again to name each one's line.
    pub fn located(file: &Path, found: impl IntoIterator<Item = (String, String, Option<String>)>) -> Vec<Self> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        found
            .into_iter()
            .map(|(location, message, hint)| Self {
                file: file.to_owned(),
                line: locate::line_of(&text, &location),
                column: None,
                location: Some(location),
                message,
                hint,
            })
            .collect()
    }
    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(loc) = &self.location {
            write!(f, " ({loc})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// All problems found in a configuration.
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        write!(f, "{} problem(s)", self.0.len())
    }
}

impl std::error::Error for Problems {}

/// The parsed files of a config directory.
#[derive(Debug, Default)]
pub struct ConfigSet {
    pub dir: PathBuf,
    pub tenants: Vec<(PathBuf, TenantFile)>,
    /// By mapping name (the file stem).
    pub mappings: BTreeMap<String, (PathBuf, MappingFile)>,
}

/// Reads and parses every tenant and mapping file under `dir`.
pub fn read_dir(dir: &Path) -> Result<ConfigSet, Problems> {
    let mut problems = Vec::new();
    let mut set = ConfigSet { dir: dir.to_owned(), ..ConfigSet::default() };
    for path in yaml_files(&dir.join("mappings"), &mut problems) {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if let Some(m) = parse_file::<MappingFile>(&path, &mut problems) {
            if m.app != stem {
                problems.push(
                    Problem::file(&path, format!("`app: {}` must match the file name `{stem}`", m.app))
                        .hint(format!("rename the file to `{}.yaml` or set `app: {stem}`", m.app)),
                );
            }
            set.mappings.insert(stem, (path, m));
        }
    }
    for path in yaml_files(&dir.join("tenants"), &mut problems) {
        if let Some(t) = parse_file::<TenantFile>(&path, &mut problems) {
            set.tenants.push((path, t));
        }
    }
    if set.tenants.is_empty() && problems.is_empty() {
        problems.push(
            Problem::file(&dir.join("tenants"), "no tenant files found")
                .hint("each tenant is one `tenants/<id>.yaml`; see docs/tenants.md"),
        );
    }
    if problems.is_empty() { Ok(set) } else { Err(Problems(problems)) }
}

fn yaml_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::file(dir, format!("cannot read directory: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

fn parse_file<T: DeserializeOwned>(path: &Path, problems: &mut Vec<Problem>) -> Option<T> {
    let text = match std::fs::metadata(path).and_then(|m| {
        if m.len() > MAX_FILE_BYTES {
            Err(std::io::Error::other("file larger than 4 MiB"))
        } else {
            std::fs::read_to_string(path)
        }
    }) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::file(path, format!("cannot read: {e}")));
            return None;
        }
    };
    match parse_yaml(&text) {
        Ok(v) => Some(v),
        Err((line, column, message)) => {
            let hint = message.contains("unknown field").then(|| {
                "check the spelling against docs/mapping.md (mappings) or docs/tenants.md (tenants)".to_owned()
            });
            problems.push(Problem { file: path.to_owned(), line, column, location: None, message, hint });
            None
        }
    }
}

/// Parses YAML text into `T`; on failure returns line, column and message.
pub fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, (Option<u64>, Option<u64>, String)> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let loc = e.location();
        (loc.map(|l| l.line()), loc.map(|l| l.column()), first_line(&e.to_string()))
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}
