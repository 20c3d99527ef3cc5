//! Finds the line of a document path (`resources.User.attributes[3].to_app`) in YAML text, so that
//! problems found after parsing (mapping compilation) can still name a line. Reads block style and
//! keys inside one-line flow mappings; best effort: `None` when the path cannot be followed.

/// One step of a path: a key, then optional list indices.
fn steps(path: &str) -> Vec<(String, Vec<usize>)> {
    path.split('.')
        .map(|part| {
            let key_end = part.find('[').unwrap_or(part.len());
            let indices =
                part[key_end..].split(['[', ']']).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
            (part[..key_end].to_owned(), indices)
        })
        .collect()
}

/// Column of the first non-blank character; `None` for blank and comment lines.
fn indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    (!trimmed.is_empty() && !trimmed.starts_with('#')).then(|| line.len() - trimmed.len())
}

/// Where `key:` starts on a line: at the content's start, after a list dash, or (flow style)
/// after `{` or `,`.
fn key_column(line: &str, key: &str) -> Option<usize> {
    let pat = format!("{key}:");
    let quoted = [format!("\"{key}\":"), format!("'{key}':")];
    let mut search = 0;
    while let Some(i) = [&pat, &quoted[0], &quoted[1]].iter().filter_map(|p| line[search..].find(p.as_str())).min() {
        let at = search + i;
        let before = line[..at].trim_end();
        if before.is_empty() || before.ends_with('-') || before.ends_with('{') || before.ends_with(',') {
            return Some(at);
        }
        search = at + 1;
    }
    None
}

/// The 1-based line of `path` in `text`.
pub fn line_of(text: &str, path: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut parent: Option<usize> = None;
    let mut found = None;
    for (key, indices) in steps(path) {
        let mut at = None;
        for (n, line) in lines.iter().enumerate().skip(start) {
            let Some(ind) = indent(line) else { continue };
            if n > start && parent.is_some_and(|p| ind <= p) && found.is_some() {
                break; // left the parent's block
            }
            if let Some(col) = key_column(line, &key)
                && parent.is_none_or(|p| col > p || n == start)
            {
                at = Some((n, col));
                break;
            }
        }
        let (mut n, mut col) = at?;
        for index in indices {
            let mut seen = 0;
            let mut item = None;
            let mut item_col = None;
            for (m, line) in lines.iter().enumerate().skip(n + 1) {
                let Some(ind) = indent(line) else { continue };
                if ind <= col && !line.trim_start().starts_with('-') {
                    break;
                }
                if line.trim_start().starts_with('-') && item_col.is_none_or(|c| c == ind) {
                    item_col = Some(ind);
                    if seen == index {
                        item = Some((m, ind));
                        break;
                    }
                    seen += 1;
                }
            }
            (n, col) = item?;
        }
        found = Some(n);
        start = n;
        parent = Some(col);
    }
    found.map(|n| n as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "app: t\nresources:\n  User:\n    id: /id\n    attributes:\n      - scim: userName\n        app: /login\n      - scim: title\n        app: /t\n        to_app: \"x |\"\n    operations:\n      create: { method: FETCH, path: /u }\n      list:\n        request: { method: GET, path: /u }\n        paging: { max_page_size: 0 }\n  Group:\n    id: /id\n";

    #[test]
    fn follows_keys_lists_and_flow_mappings() {
        assert_eq!(line_of(DOC, "resources.User.id"), Some(4));
        assert_eq!(line_of(DOC, "resources.User.attributes[1]"), Some(8));
        assert_eq!(line_of(DOC, "resources.User.attributes[1].to_app"), Some(10));
        assert_eq!(line_of(DOC, "resources.User.operations.create"), Some(12));
        assert_eq!(line_of(DOC, "resources.User.operations.list.paging.max_page_size"), Some(15));
        assert_eq!(line_of(DOC, "resources.Group.id"), Some(17));
        assert_eq!(line_of(DOC, "resources.Nope"), None);
    }
}
