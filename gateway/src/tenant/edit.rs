//! Edits a tenant file's text in place for `scimbridge token rotate`: adds a token under
//! `auth.tokens` and optionally gives the others an expiry, keeping every comment and the layout
//! people wrote. Pure text in, text out; the caller validates the result before writing it.
//!
//! Only block-style YAML is edited (the style of every example); anything else is refused with a
//! message rather than rewritten.

/// Column of the first non-blank character; `None` for blank and comment lines.
fn indent(line: &str) -> Option<usize> {
    let t = line.trim_start();
    (!t.is_empty() && !t.starts_with('#')).then(|| line.len() - t.len())
}

/// The index of the line `key:` at `col` between `from` and `to` (a block's lines).
fn find_key(lines: &[&str], from: usize, to: usize, col: usize, key: &str) -> Option<usize> {
    (from..to).find(|&i| indent(lines[i]) == Some(col) && lines[i][col..].starts_with(&format!("{key}:")))
}

/// The end (exclusive) of the block that starts after line `start`, whose lines are indented
/// deeper than `col`.
fn block_end(lines: &[&str], start: usize, col: usize) -> usize {
    (start + 1..lines.len()).find(|&i| indent(lines[i]).is_some_and(|c| c <= col)).unwrap_or(lines.len())
}

/// Adds the token `label`/`sha256` to `auth.tokens`; with `expire_others`, every other token
/// without an `expires:` gets that one (RFC 3339).
pub fn add_token(text: &str, label: &str, sha256: &str, expire_others: Option<&str>) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let auth = find_key(&lines, 0, lines.len(), 0, "auth").ok_or("the file has no top-level `auth:`")?;
    if !lines[auth].trim_end().ends_with(':') {
        return Err("`auth:` is not in block style; add the token by hand".into());
    }
    let auth_end = block_end(&lines, auth, 0);
    let child = (auth + 1..auth_end).find_map(|i| indent(lines[i])).unwrap_or(2);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match find_key(&lines, auth + 1, auth_end, child, "tokens") {
        None => {
            let item = " ".repeat(child + 2);
            let new = [
                format!("{}tokens:", " ".repeat(child)),
                format!("{item}- label: {}", quoted(label)),
                format!("{item}  sha256: \"{sha256}\""),
            ];
            out.splice(auth + 1..auth + 1, new);
        }
        Some(tokens) => {
            let rest = lines[tokens][child + "tokens:".len()..].trim();
            if !(rest.is_empty() || rest == "[]" || rest.starts_with('#')) {
                return Err("`auth.tokens` is not in block style; add the token by hand".into());
            }
            // The list ends at the next key; its items may sit at the key's own indent
            // (`tokens:\n- label: x`).
            let end = (tokens + 1..lines.len())
                .find(|&i| {
                    indent(lines[i]).is_some_and(|c| c < child || (c == child && !lines[i][c..].starts_with('-')))
                })
                .unwrap_or(lines.len());
            let items: Vec<usize> = (tokens + 1..end)
                .filter(|&i| indent(lines[i]).is_some() && lines[i].trim_start().starts_with("- "))
                .collect();
            let item_col = items.first().and_then(|&i| indent(lines[i])).unwrap_or(child + 2);
            let items: Vec<usize> = items.into_iter().filter(|&i| indent(lines[i]) == Some(item_col)).collect();
            if items.iter().any(|&i| lines[i][item_col + 2..].trim_start().starts_with('{')) {
                return Err("a token under `auth.tokens` is in flow style; add the token by hand".into());
            }
            // The last line that belongs to the list, so the new item follows it (not a trailing comment).
            let last = (tokens..end).rev().find(|&i| indent(lines[i]).is_some()).unwrap_or(tokens);
            let pad = " ".repeat(item_col);
            let new = [format!("{pad}- label: {}", quoted(label)), format!("{pad}  sha256: \"{sha256}\"")];
            out.splice(last + 1..last + 1, new);
            if rest == "[]" {
                out[tokens] = format!("{}tokens:", " ".repeat(child));
            }
            if let Some(when) = expire_others {
                // Bottom-up, so earlier indices stay valid.
                for (n, &start) in items.iter().enumerate().rev() {
                    let item_end = items.get(n + 1).copied().unwrap_or(last + 1);
                    let has = (start..item_end).any(|i| {
                        let l = lines[i].trim_start().trim_start_matches("- ");
                        l.starts_with("expires:")
                    });
                    if !has {
                        out.insert(start + 1, format!("{pad}  expires: \"{when}\""));
                    }
                }
            }
        }
    }
    let mut s = out.join("\n");
    if text.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
id: acme   # the customer
mapping: some-app
auth:
  tokens:
    # first token, from onboarding
    - label: entra-2026-01
      sha256: \"aa\"
    - sha256: \"bb\"
      label: spare
      expires: \"2026-12-01T00:00:00Z\"
  jwt: []
options:
  max_results: 10
";

    #[test]
    fn adds_after_the_last_token_and_keeps_comments() {
        let out = add_token(FILE, "entra-2026-11", "cc", Some("2026-11-29T00:00:00Z")).unwrap();
        assert_eq!(
            out,
            "\
id: acme   # the customer
mapping: some-app
auth:
  tokens:
    # first token, from onboarding
    - label: entra-2026-01
      expires: \"2026-11-29T00:00:00Z\"
      sha256: \"aa\"
    - sha256: \"bb\"
      label: spare
      expires: \"2026-12-01T00:00:00Z\"
    - label: \"entra-2026-11\"
      sha256: \"cc\"
  jwt: []
options:
  max_results: 10
"
        );
        let parsed: serde_json::Value = crate::config::parse_yaml(&out).unwrap();
        assert_eq!(parsed["auth"]["tokens"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn creates_the_list_when_there_is_none() {
        let f = "id: a\nauth:\n  jwt: []\n";
        assert_eq!(
            add_token(f, "t", "cc", None).unwrap(),
            "id: a\nauth:\n  tokens:\n    - label: \"t\"\n      sha256: \"cc\"\n  jwt: []\n"
        );
        let f = "id: a\nauth:\n  tokens: []\n";
        assert_eq!(
            add_token(f, "t", "cc", None).unwrap(),
            "id: a\nauth:\n  tokens:\n    - label: \"t\"\n      sha256: \"cc\"\n"
        );
        let f = "id: a\nauth:\n  tokens:\n  - label: x\n    sha256: \"aa\"\nother: 1\n";
        assert_eq!(
            add_token(f, "t", "cc", None).unwrap(),
            "id: a\nauth:\n  tokens:\n  - label: x\n    sha256: \"aa\"\n  - label: \"t\"\n    sha256: \"cc\"\nother: 1\n"
        );
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        assert!(add_token("id: a\n", "t", "cc", None).is_err());
        assert!(add_token("auth: {tokens: []}\n", "t", "cc", None).is_err());
        assert!(add_token("auth:\n  tokens: [{label: a, sha256: b}]\n", "t", "cc", None).is_err());
        assert!(add_token("auth:\n  tokens:\n    - {label: a, sha256: b}\n", "t", "cc", None).is_err());
    }
}
