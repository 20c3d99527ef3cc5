//! SCIM filters (RFC 7644 §3.4.2.2), attribute paths (§3.10) and PATCH paths (§3.5.2): the AST,
//! a hand-written lexer and recursive-descent parser with positioned errors, a canonical printer,
//! an evaluator and a validator against a [`ResourceSchema`].
//!
//! Beyond the RFC grammar, `attr[valFilter].sub op value` is accepted because Microsoft Entra sends
//! it (`emails[type eq "work"].value eq "a@b"`). It means "some element satisfies both", so it
//! parses to `ValuePath { attr, filter: And(valFilter, sub op value) }` and prints as
//! `emails[type eq "work" and value eq "a@b"]`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ScimError;
use super::path::{AttrPath, PatchPath};
use super::schema::{AttrType, Attribute, ResourceSchema};

/// The deepest nesting of `(`, `not (` and `[` a filter may use. It bounds the parser's recursion,
/// so hostile input such as `((((…` gets an error instead of overflowing the stack.
pub const MAX_DEPTH: usize = 32;

/// The most comparisons (`pr` included) one filter may contain. It bounds the size of the AST, the
/// cost of evaluating it per resource, and the recursion depth of printing and dropping it.
pub const MAX_TERMS: usize = 256;

/// The longest filter accepted, in bytes: far beyond any real identity provider's (Entra sends one
/// or two comparisons), and refused before any parsing work.
pub const MAX_LENGTH: usize = 4096;

/// Comparison operators of RFC 7644 Table 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The operator as it appears on the wire, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator spelled `word`, in any case (RFC 7644 §3.4.2.2: operators are case-insensitive).
    pub fn from_keyword(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// `gt`, `ge`, `lt`, `le`: the operators that need an ordering.
    fn is_ordering(self) -> bool {
        matches!(self, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le)
    }

    /// `co`, `sw`, `ew`: the operators defined on strings only.
    fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }

    /// Whether an attribute value that compares to the literal as `ordering` satisfies `self`.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering.is_eq(),
            CompareOp::Ne => ordering.is_ne(),
            CompareOp::Gt => ordering.is_gt(),
            CompareOp::Ge => ordering.is_ge(),
            CompareOp::Lt => ordering.is_lt(),
            CompareOp::Le => ordering.is_le(),
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath op compValue`; `value` is a JSON string, number, bool or null.
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    /// `attrPath pr`.
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attrPath "[" valFilter "]"`, e.g. `emails[type eq "work" and value co "@x"]`.
    /// Paths inside `filter` are relative to the elements of `attr`.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// Why a filter or path did not parse: the byte offset and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        Self { position, message: message.into() }
    }

    /// "expected `what`, found `token`", positioned at `token`.
    fn expected(what: &str, token: &Token<'_>) -> Self {
        Self::new(token.start, format!("expected {what}, found {}", token.describe()))
    }
}

impl From<ParseError> for ScimError {
    fn from(e: ParseError) -> Self {
        ScimError::invalid_filter(e.to_string())
    }
}

/// Parses a `filter` query parameter (RFC 7644 §3.4.2.2).
///
/// Keywords, operators and `true`/`false`/`null` are case-insensitive; attribute names keep the
/// client's spelling. Input nesting deeper than [`MAX_DEPTH`] or with more than [`MAX_TERMS`]
/// comparisons is rejected.
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    if input.len() > MAX_LENGTH {
        return Err(ParseError::new(MAX_LENGTH, format!("filter is longer than {MAX_LENGTH} bytes")));
    }
    let mut parser = Parser::new(input);
    let first = parser.peek()?;
    if first.kind == Kind::End {
        return Err(ParseError::new(first.start, "empty filter"));
    }
    let filter = parser.disjunction(Within::Resource)?;
    parser.finish("'and', 'or' or end of filter")?;
    Ok(filter)
}

/// Parses an attribute path (as in `attributes=`, `sortBy=`), e.g. `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
///
/// In a path starting with `urn:` the URN is everything up to the last `:` (URNs contain dots, as
/// in `2.0`). A bare schema URN such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`
/// therefore parses as `AttrPath { urn: "urn:…:enterprise:2.0", name: "User" }`: the grammar
/// cannot tell it from an attribute, so callers that accept whole schemas (`attributes=`) must
/// first check whether the full text names a schema of the resource type.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ParseError> {
    let mut parser = Parser::new(input);
    let token = parser.next()?;
    let path = parser.path_in(&token, Within::Resource)?;
    parser.finish("end of attribute path")?;
    Ok(path)
}

/// Parses a PATCH operation's `path` (RFC 7644 §3.5.2): `attrPath`, or
/// `attrPath "[" valFilter "]" ["." subAttr]`, e.g. `emails[type eq "work"].value`.
///
/// The same bare-schema-URN caveat as [`parse_attr_path`] applies.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ParseError> {
    let mut parser = Parser::new(input);
    let token = parser.next()?;
    let attr = parser.path_in(&token, Within::Resource)?;
    if parser.peek()?.kind != Kind::LBracket {
        parser.finish("'[' or end of path")?;
        return Ok(PatchPath { attr, filter: None, sub: None });
    }
    let open = parser.next()?;
    let filter = parser.value_filter(&attr, &open)?;
    let sub = match parser.peek()?.kind {
        Kind::Dot => {
            parser.next()?;
            let token = parser.next()?;
            Some(parser.path_in(&token, Within::Element(&attr))?.name)
        }
        _ => None,
    };
    parser.finish(if sub.is_some() { "end of path" } else { "'.' and a sub-attribute, or end of path" })?;
    Ok(PatchPath { attr, filter: Some(filter), sub })
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// What a token is. Words cover attribute paths, operators and keywords alike: which one a word is
/// depends on where it stands, so the parser decides.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Word,
    Str(String),
    Num(Number),
    End,
}

/// A token with its source text and byte offset, for error messages.
#[derive(Debug, Clone)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    start: usize,
}

impl Token<'_> {
    /// Whether this is the word `keyword`, in any case.
    fn is_word(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// How an error message shows the token.
    fn describe(&self) -> String {
        match self.kind {
            Kind::End => "end of input".to_owned(),
            Kind::Str(_) => abbreviate(self.text).into_owned(),
            _ => format!("'{}'", abbreviate(self.text)),
        }
    }
}

/// Cuts long source text so error messages stay readable whatever the client sent.
fn abbreviate(text: &str) -> Cow<'_, str> {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// Characters of attribute paths and keywords: ATTRNAME's, plus `$` (`$ref`), `.` (sub-attributes)
/// and `:` (URNs).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | '.' | ':')
}

/// Splits the input into tokens on demand, so a syntax error is reported before any lexical error
/// further on.
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        let rest = &self.input[self.pos..];
        let trimmed = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let start = self.pos + (rest.len() - trimmed.len());
        let Some(first) = trimmed.chars().next() else {
            self.pos = self.input.len();
            return Ok(Token { kind: Kind::End, text: "", start });
        };
        let (kind, len) = match first {
            '(' => (Kind::LParen, 1),
            ')' => (Kind::RParen, 1),
            '[' => (Kind::LBracket, 1),
            ']' => (Kind::RBracket, 1),
            '.' => (Kind::Dot, 1),
            '"' => string_literal(trimmed, start)?,
            '-' | '0'..='9' => number(trimmed, start)?,
            c if c.is_ascii_alphabetic() || c == '$' || c == '_' => {
                (Kind::Word, trimmed.find(|c| !is_word_char(c)).unwrap_or(trimmed.len()))
            }
            other => return Err(ParseError::new(start, format!("unexpected character '{other}'"))),
        };
        self.pos = start + len;
        Ok(Token { kind, text: &trimmed[..len], start })
    }
}

/// Lexes the JSON string at the start of `rest`, decoding its escapes with serde_json.
fn string_literal(rest: &str, start: usize) -> Result<(Kind, usize), ParseError> {
    let bytes = rest.as_bytes();
    let mut i = 1;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            // Escapes are ASCII, so skipping one byte never lands on a quote inside a character.
            b'\\' => i += 2,
            b'"' => {
                let raw = &rest[..=i];
                return match serde_json::from_str(raw) {
                    Ok(decoded) => Ok((Kind::Str(decoded), raw.len())),
                    Err(_) => Err(ParseError::new(
                        start,
                        format!("invalid string {}: bad escape or unescaped control character", abbreviate(raw)),
                    )),
                };
            }
            _ => i += 1,
        }
    }
    Err(ParseError::new(start, "unterminated string: missing closing '\"'"))
}

/// Lexes the JSON number at the start of `rest`. The token runs to the next delimiter so that
/// `12ab` is one bad number rather than a number followed by a word.
fn number(rest: &str, start: usize) -> Result<(Kind, usize), ParseError> {
    let len =
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))).unwrap_or(rest.len());
    let text = &rest[..len];
    serde_json::from_str(text)
        .map(|n| (Kind::Num(n), len))
        .map_err(|_| ParseError::new(start, format!("invalid number '{}'", abbreviate(text))))
}

/// Parses the text of a word token as `[urn ":"] name ["." sub]`; `start` is its byte offset.
fn attr_path(text: &str, start: usize) -> Result<AttrPath, ParseError> {
    let is_urn = text.get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:"));
    let (urn, rest, rest_start) = match text.rfind(':') {
        Some(colon) if is_urn => (Some(&text[..colon]), &text[colon + 1..], start + colon + 1),
        _ => (None, text, start),
    };
    if urn.is_some_and(|urn| !is_schema_urn(urn)) {
        return Err(ParseError::new(start, format!("invalid schema URN in '{}'", abbreviate(text))));
    }
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    check_name(name, rest_start, text)?;
    if let Some(sub) = sub {
        let sub_start = rest_start + name.len() + 1;
        if let Some(dot) = sub.find('.') {
            return Err(ParseError::new(
                sub_start + dot,
                format!("attribute paths have at most one sub-attribute, found '{}'", abbreviate(text)),
            ));
        }
        check_name(sub, sub_start, text)?;
    }
    Ok(AttrPath { urn: urn.map(str::to_owned), name: name.to_owned(), sub: sub.map(str::to_owned) })
}

/// Whether `urn` has the shape `urn:NID:NSS` (RFC 8141): at least three non-empty `:`-separated parts.
fn is_schema_urn(urn: &str) -> bool {
    urn.split(':').count() >= 3 && !urn.split(':').any(str::is_empty)
}

/// Checks `name` (at byte offset `start` of the word `word`) against ATTRNAME, or is `$ref`.
fn check_name(name: &str, start: usize, word: &str) -> Result<(), ParseError> {
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let mut chars = name.char_indices();
    match chars.next() {
        None => Err(ParseError::new(start, format!("missing attribute name in '{}'", abbreviate(word)))),
        Some((_, first)) if !first.is_ascii_alphabetic() => Err(ParseError::new(
            start,
            format!("attribute names start with a letter, found '{first}' in '{}'", abbreviate(word)),
        )),
        Some(_) => match chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            Some((at, c)) => Err(ParseError::new(
                start + at,
                format!("invalid character '{c}' in attribute name '{}'", abbreviate(word)),
            )),
            None => Ok(()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Where paths are being parsed: at the top level, or inside `attr[…]`, where they name
/// sub-attributes of `attr`.
#[derive(Clone, Copy)]
enum Within<'p> {
    Resource,
    Element(&'p AttrPath),
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    depth: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self { lexer: Lexer { input, pos: 0 }, peeked: None, depth: 0, terms: 0 }
    }

    fn peek(&mut self) -> Result<&Token<'a>, ParseError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(token))
    }

    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    /// Expects the end of input, naming stray closers specifically.
    fn finish(&mut self, expected: &str) -> Result<(), ParseError> {
        let token = self.next()?;
        match token.kind {
            Kind::End => Ok(()),
            Kind::RParen => Err(ParseError::new(token.start, "unbalanced ')': no '(' to close")),
            Kind::RBracket => Err(ParseError::new(token.start, "unbalanced ']': no '[' to close")),
            _ => Err(ParseError::expected(expected, &token)),
        }
    }

    /// `conjunction *("or" conjunction)`, left-associative.
    fn disjunction(&mut self, within: Within<'_>) -> Result<Filter, ParseError> {
        let mut left = self.conjunction(within)?;
        while self.peek()?.is_word("or") {
            self.next()?;
            let right = self.conjunction(within)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `term *("and" term)`, left-associative.
    fn conjunction(&mut self, within: Within<'_>) -> Result<Filter, ParseError> {
        let mut left = self.term(within)?;
        while self.peek()?.is_word("and") {
            self.next()?;
            let right = self.term(within)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `"(" filter ")"`, `"not" "(" filter ")"`, or an attribute expression.
    fn term(&mut self, within: Within<'_>) -> Result<Filter, ParseError> {
        let token = self.next()?;
        match token.kind {
            Kind::LParen => self.group(&token, within),
            Kind::Word if token.is_word("not") => {
                // `not` is also a legal attribute name: it is one when an operator or `[` follows.
                let next = self.peek()?;
                match next.kind {
                    Kind::LParen => {
                        let open = self.next()?;
                        Ok(Filter::Not(Box::new(self.group(&open, within)?)))
                    }
                    Kind::LBracket => self.attr_expr(&token, within),
                    Kind::Word if next.is_word("pr") || CompareOp::from_keyword(next.text).is_some() => {
                        self.attr_expr(&token, within)
                    }
                    _ => Err(ParseError::expected("'(' after 'not'", next)),
                }
            }
            Kind::Word => self.attr_expr(&token, within),
            _ => Err(ParseError::expected("an attribute path, '(' or 'not'", &token)),
        }
    }

    /// The rest of a parenthesised filter whose `(` was `open`.
    fn group(&mut self, open: &Token<'a>, within: Within<'_>) -> Result<Filter, ParseError> {
        self.enter(open)?;
        let inner = self.disjunction(within)?;
        self.close(Kind::RParen, open)?;
        Ok(inner)
    }

    /// The rest of `attr[valFilter]` whose `[` was `open`.
    fn value_filter(&mut self, attr: &AttrPath, open: &Token<'a>) -> Result<Filter, ParseError> {
        if attr.sub.is_some() {
            return Err(ParseError::new(
                open.start,
                format!("value filters apply to multi-valued attributes, not to the sub-attribute '{attr}'"),
            ));
        }
        self.enter(open)?;
        let inner = self.disjunction(Within::Element(attr))?;
        self.close(Kind::RBracket, open)?;
        Ok(inner)
    }

    /// Counts one more level of nesting, refusing to go past [`MAX_DEPTH`].
    fn enter(&mut self, open: &Token<'a>) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(open.start, format!("filter is nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Expects `closer` to end the group `open` started, and leaves that level of nesting.
    fn close(&mut self, closer: Kind, open: &Token<'a>) -> Result<(), ParseError> {
        let token = self.next()?;
        if token.kind != closer {
            let closer = if closer == Kind::RParen { ')' } else { ']' };
            let what = format!("'and', 'or' or '{closer}' to close '{}' at position {}", open.text, open.start);
            return Err(ParseError::expected(&what, &token));
        }
        self.depth -= 1;
        Ok(())
    }

    /// The word `token` as a path; inside a value filter only a plain sub-attribute name is allowed.
    fn path_in(&self, token: &Token<'a>, within: Within<'_>) -> Result<AttrPath, ParseError> {
        if token.kind != Kind::Word {
            return Err(ParseError::expected("an attribute path", token));
        }
        let path = attr_path(token.text, token.start)?;
        match within {
            Within::Element(parent) if path.urn.is_some() || path.sub.is_some() => Err(ParseError::new(
                token.start,
                format!("expected a sub-attribute name of '{parent}', found '{}'", abbreviate(token.text)),
            )),
            _ => Ok(path),
        }
    }

    /// A comparison, presence test or value path starting with the word `token`.
    fn attr_expr(&mut self, token: &Token<'a>, within: Within<'_>) -> Result<Filter, ParseError> {
        let attr = self.path_in(token, within)?;
        if self.peek()?.kind != Kind::LBracket {
            return self.comparison(attr, token.text);
        }
        let open = self.next()?;
        if let Within::Element(parent) = within {
            return Err(ParseError::new(
                open.start,
                format!("value filters cannot be nested: found '[' inside '{parent}[…]'"),
            ));
        }
        let mut filter = self.value_filter(&attr, &open)?;
        // Entra's `attr[valFilter].sub op value`: an element must satisfy both.
        if self.peek()?.kind == Kind::Dot {
            self.next()?;
            let token = self.next()?;
            let sub = self.path_in(&token, Within::Element(&attr))?;
            let comparison = self.comparison(sub, token.text)?;
            filter = Filter::And(Box::new(filter), Box::new(comparison));
        }
        Ok(Filter::ValuePath { attr, filter: Box::new(filter) })
    }

    /// `pr` or `compareOp compValue` after `path` (spelled `path_text`).
    fn comparison(&mut self, path: AttrPath, path_text: &str) -> Result<Filter, ParseError> {
        let token = self.next()?;
        if token.is_word("pr") {
            self.count_term(&token)?;
            self.reject_value_after_pr()?;
            return Ok(Filter::Present(path));
        }
        let op = match token.kind {
            Kind::Word => CompareOp::from_keyword(token.text),
            _ => None,
        };
        let Some(op) = op else {
            let what = format!(
                "a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after '{}'",
                abbreviate(path_text)
            );
            return Err(ParseError::expected(&what, &token));
        };
        self.count_term(&token)?;
        let value = self.comp_value(&token)?;
        Ok(Filter::Compare { path, op, value })
    }

    /// Counts one more comparison, refusing to go past [`MAX_TERMS`].
    fn count_term(&mut self, token: &Token<'a>) -> Result<(), ParseError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(ParseError::new(token.start, format!("filter has more than {MAX_TERMS} comparisons")));
        }
        Ok(())
    }

    /// `pr` takes no operand; say so rather than reporting the value as trailing input.
    fn reject_value_after_pr(&mut self) -> Result<(), ParseError> {
        let next = self.peek()?;
        let is_value = match &next.kind {
            Kind::Str(_) | Kind::Num(_) => true,
            Kind::Word => keyword_value(next.text).is_some(),
            _ => false,
        };
        if is_value {
            return Err(ParseError::new(next.start, format!("'pr' takes no value, found {}", next.describe())));
        }
        Ok(())
    }

    /// compValue after the operator `op`: a JSON string or number, `true`, `false` or `null`.
    fn comp_value(&mut self, op: &Token<'a>) -> Result<Value, ParseError> {
        let token = self.next()?;
        let what = || format!("a value (a JSON string, number, true, false or null) after '{}'", op.text);
        match token.kind {
            Kind::Str(s) => Ok(Value::String(s)),
            Kind::Num(n) => Ok(Value::Number(n)),
            Kind::Word => keyword_value(token.text)
                .ok_or_else(|| ParseError::expected(&format!("{}; strings need double quotes", what()), &token)),
            _ => Err(ParseError::expected(&what(), &token)),
        }
    }
}

/// `true`, `false` and `null`, in any case.
fn keyword_value(word: &str) -> Option<Value> {
    if word.eq_ignore_ascii_case("true") {
        Some(Value::Bool(true))
    } else if word.eq_ignore_ascii_case("false") {
        Some(Value::Bool(false))
    } else if word.eq_ignore_ascii_case("null") {
        Some(Value::Null)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Printer
// ---------------------------------------------------------------------------------------------

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Prints the canonical form: operators and keywords lowercase, values as JSON, `not (…)`, and
/// parentheses only where precedence needs them. It parses back to an equal filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(left, right) => write_binary(f, self, left, "and", right),
            Filter::Or(left, right) => write_binary(f, self, left, "or", right),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

impl Filter {
    /// How tightly the printed form binds: `or` < `and` < everything else.
    fn precedence(&self) -> u8 {
        match self {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        }
    }
}

/// Prints `left keyword right`. Both operators parse left-associatively, so a right operand of the
/// same precedence needs parentheses to keep its grouping.
fn write_binary(
    f: &mut fmt::Formatter<'_>,
    parent: &Filter,
    left: &Filter,
    keyword: &str,
    right: &Filter,
) -> fmt::Result {
    let precedence = parent.precedence();
    write_operand(f, left, left.precedence() < precedence)?;
    write!(f, " {keyword} ")?;
    write_operand(f, right, right.precedence() <= precedence)
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, parenthesize: bool) -> fmt::Result {
    if parenthesize { write!(f, "({operand})") } else { write!(f, "{operand}") }
}

// ---------------------------------------------------------------------------------------------
// Evaluator and validator
// ---------------------------------------------------------------------------------------------

impl Filter {
    /// Whether `resource` (a SCIM resource as JSON) matches, using `schema` for case-exactness
    /// and types.
    ///
    /// Follows RFC 7644 §3.4.2.2: names match case-insensitively; a multi-valued attribute matches
    /// if any element does; a complex attribute compared without a sub-attribute compares its
    /// `value`; `pr` needs a value that is not null, `""`, `[]` or `{}`. Choices the RFC leaves
    /// open:
    /// - `ne` is the negation of `eq`: it matches an absent attribute, and a multi-valued one only
    ///   if no element is equal.
    /// - `eq null` matches an absent or null attribute.
    /// - A JSON boolean equals the string literals `"true"`/`"false"` in any case, as Entra sends
    ///   `primary eq "True"`.
    /// - `dateTime` values compare chronologically when both sides parse as RFC 3339, and as
    ///   strings otherwise; comparisons of mismatched types are false.
    pub fn matches(&self, resource: &Value, schema: &ResourceSchema) -> bool {
        self.eval(Scope::Resource(schema), resource)
    }

    /// Checks the filter against `schema`: every attribute must exist, `gt`/`ge`/`lt`/`le`/`co`/
    /// `sw`/`ew` must not be applied to booleans, a complex attribute can be compared only
    /// through its `value` sub-attribute, and value filters apply only to complex attributes.
    /// Errors are 400 `invalidFilter`.
    pub fn validate(&self, schema: &ResourceSchema) -> Result<(), ScimError> {
        self.check(Scope::Resource(schema))
    }

    fn eval(&self, scope: Scope<'_>, node: &Value) -> bool {
        match self {
            Filter::Compare { path, op, value } => {
                let rules = Rules::of(scope.definition(path).and_then(compared_definition));
                let candidates: Vec<&Value> = scope.values(node, path).into_iter().filter_map(compared_value).collect();
                compare(&candidates, *op, value, rules)
            }
            Filter::Present(path) => scope.values(node, path).into_iter().any(is_present),
            Filter::And(left, right) => left.eval(scope, node) && right.eval(scope, node),
            Filter::Or(left, right) => left.eval(scope, node) || right.eval(scope, node),
            Filter::Not(inner) => !inner.eval(scope, node),
            Filter::ValuePath { attr, filter } => {
                let inner = Scope::Element(scope.definition(attr));
                scope.values(node, attr).into_iter().any(|element| filter.eval(inner, element))
            }
        }
    }

    fn check(&self, scope: Scope<'_>) -> Result<(), ScimError> {
        match self {
            Filter::Compare { path, op, .. } => check_operator(path, *op, scope.require(path)?),
            Filter::Present(path) => scope.require(path).map(drop),
            Filter::And(left, right) | Filter::Or(left, right) => {
                left.check(scope)?;
                right.check(scope)
            }
            Filter::Not(inner) => inner.check(scope),
            Filter::ValuePath { attr, filter } => {
                let definition = scope.require(attr)?;
                if definition.ty != AttrType::Complex {
                    return Err(ScimError::invalid_filter(format!(
                        "'{attr}' is not a complex attribute, so it cannot take a value filter '[…]'"
                    )));
                }
                filter.check(Scope::Element(Some(definition)))
            }
        }
    }
}

/// Rejects operators that make no sense for the attribute `definition` describes.
fn check_operator(path: &AttrPath, op: CompareOp, definition: &Attribute) -> Result<(), ScimError> {
    let Some(compared) = compared_definition(definition) else {
        let example = definition.sub_attributes.first().map(|sub| format!(", e.g. '{path}.{}'", sub.name));
        return Err(ScimError::invalid_filter(format!(
            "'{path}' is complex and has no 'value' sub-attribute: compare one of its sub-attributes{}",
            example.unwrap_or_default()
        )));
    };
    if compared.ty == AttrType::Boolean && (op.is_ordering() || op.is_substring()) {
        return Err(ScimError::invalid_filter(format!(
            "'{op}' does not apply to the boolean attribute '{path}': use eq, ne or pr"
        )));
    }
    Ok(())
}

/// Where a path is resolved: against a whole resource, or (inside `attr[…]`) against one element
/// of `attr`, whose definition, if known, describes the sub-attributes.
#[derive(Clone, Copy)]
enum Scope<'s> {
    Resource(&'s ResourceSchema),
    Element(Option<&'s Attribute>),
}

impl<'s> Scope<'s> {
    /// The schema definition of `path`, if the schema knows it.
    fn definition(self, path: &AttrPath) -> Option<&'s Attribute> {
        match self {
            Scope::Resource(schema) => schema.find(extension_urn(schema, path), &path.name, path.sub.as_deref()),
            Scope::Element(parent) => {
                let attribute = parent?.sub(&path.name)?;
                match &path.sub {
                    Some(sub) => attribute.sub(sub),
                    None => Some(attribute),
                }
            }
        }
    }

    /// The definition of `path`, or a 400 naming the unknown attribute.
    fn require(self, path: &AttrPath) -> Result<&'s Attribute, ScimError> {
        self.definition(path).ok_or_else(|| match self {
            Scope::Element(Some(parent)) => {
                ScimError::invalid_filter(format!("'{path}' is not a sub-attribute of '{}'", parent.name))
            }
            _ => ScimError::invalid_filter(format!("unknown attribute '{path}' in filter")),
        })
    }

    /// The values `path` names in `node`, multi-valued attributes flattened to their elements.
    fn values<'v>(self, node: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
        let container = match self {
            Scope::Resource(schema) => match extension_urn(schema, path) {
                Some(urn) => member(node, urn),
                None => Some(node),
            },
            Scope::Element(_) => Some(node),
        };
        let values = container.and_then(|c| member(c, &path.name)).into_iter().flat_map(elements);
        match &path.sub {
            Some(sub) => values.filter_map(|value| member(value, sub)).flat_map(elements).collect(),
            None => values.collect(),
        }
    }
}

/// The URN of the extension object that holds `path`'s attribute. Core-qualified attributes and
/// those of the core schema sit at the top level of the resource, so they have none. An unqualified
/// name only one extension defines (Entra's `manager eq "…"`) resolves to that extension.
fn extension_urn<'a>(schema: &'a ResourceSchema, path: &'a AttrPath) -> Option<&'a str> {
    match path.urn.as_deref() {
        Some(urn) => Some(urn).filter(|urn| !urn.eq_ignore_ascii_case(&schema.core.id)),
        None if schema.find(None, &path.name, None).is_some() => None,
        None => {
            let mut holders = schema.extensions.iter().filter(|e| e.attribute(&path.name).is_some());
            match (holders.next(), holders.next()) {
                (Some(only), None) => Some(only.id.as_str()),
                _ => None,
            }
        }
    }
}

/// `value[key]`, with `key` matched case-insensitively (RFC 7643 §2.1).
fn member<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// The elements of a multi-valued attribute, or the single value itself.
fn elements(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// What a comparison sees of a value: a complex value is compared through its `value`.
fn compared_value(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(_) => member(value, "value"),
        other => Some(other),
    }
}

/// The definition a comparison sees: a complex attribute's `value` sub-attribute.
fn compared_definition(definition: &Attribute) -> Option<&Attribute> {
    match definition.ty {
        AttrType::Complex => definition.sub("value"),
        _ => Some(definition),
    }
}

/// RFC 7644 `pr`: present and not null, not an empty string, array or object.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// How the schema says values of an attribute compare. Unknown attributes compare
/// case-insensitively, as strings.
#[derive(Clone, Copy)]
struct Rules {
    case_exact: bool,
    date_time: bool,
}

impl Rules {
    fn of(definition: Option<&Attribute>) -> Self {
        Self {
            case_exact: definition.is_some_and(|d| d.case_exact),
            date_time: definition.is_some_and(|d| d.ty == AttrType::DateTime),
        }
    }

    /// `s` as compared: lowercased unless the attribute is case-exact.
    fn fold<'s>(self, s: &'s str) -> Cow<'s, str> {
        if self.case_exact { Cow::Borrowed(s) } else { Cow::Owned(s.to_lowercase()) }
    }
}

/// Applies `op` with `literal` to the values of one attribute.
fn compare(candidates: &[&Value], op: CompareOp, literal: &Value, rules: Rules) -> bool {
    let any_equal =
        || (literal.is_null() && candidates.is_empty()) || candidates.iter().any(|c| equals(c, literal, rules));
    match op {
        CompareOp::Eq => any_equal(),
        CompareOp::Ne => !any_equal(),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            candidates.iter().any(|c| substring_matches(c, op, literal, rules))
        }
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            candidates.iter().any(|c| order(c, literal, rules).is_some_and(|o| op.accepts(o)))
        }
    }
}

fn equals(value: &Value, literal: &Value, rules: Rules) -> bool {
    match (value, literal) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bool(a), Value::String(s)) => parse_bool(s) == Some(*a),
        _ => order(value, literal, rules).is_some_and(Ordering::is_eq),
    }
}

/// `"true"`/`"false"` in any case.
fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn substring_matches(value: &Value, op: CompareOp, literal: &Value, rules: Rules) -> bool {
    let (Value::String(value), Value::String(literal)) = (value, literal) else {
        return false;
    };
    let (value, literal) = (rules.fold(value), rules.fold(literal));
    match op {
        CompareOp::Co => value.contains(literal.as_ref()),
        CompareOp::Sw => value.starts_with(literal.as_ref()),
        CompareOp::Ew => value.ends_with(literal.as_ref()),
        _ => false,
    }
}

/// How `value` orders against `literal`; `None` when the types do not compare.
fn order(value: &Value, literal: &Value, rules: Rules) -> Option<Ordering> {
    match (value, literal) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => {
            let chronological = if rules.date_time { compare_timestamps(a, b) } else { None };
            Some(chronological.unwrap_or_else(|| rules.fold(a).cmp(&rules.fold(b))))
        }
        _ => None,
    }
}

/// Integers compare exactly; anything else (`1` vs `1.0`) as `f64`.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Chronological order of two RFC 3339 timestamps, if both parse.
fn compare_timestamps(a: &str, b: &str) -> Option<Ordering> {
    let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_USER, Schema, USER};

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// A small User-like schema: enough attribute shapes to exercise every rule.
    fn schema() -> ResourceSchema {
        let core = vec![
            Attribute::string("userName").required(),
            Attribute::string("displayName"),
            Attribute::string("title"),
            Attribute::string("nickName"),
            Attribute::string("code").case_exact(),
            Attribute::complex("name", vec![Attribute::string("givenName"), Attribute::string("familyName")]),
            Attribute::complex(
                "emails",
                vec![Attribute::string("value"), Attribute::string("type"), Attribute::boolean("primary")],
            )
            .multi(),
            Attribute::boolean("active"),
            Attribute::new("loginCount", AttrType::Integer),
            Attribute::new("hired", AttrType::DateTime),
        ];
        let enterprise = vec![
            Attribute::string("employeeNumber"),
            Attribute::complex("manager", vec![Attribute::string("value"), Attribute::string("displayName")]),
        ];
        let schema = |id: &str, name: &str, attributes| Schema {
            id: id.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            attributes,
        };
        ResourceSchema {
            name: "User".to_owned(),
            endpoint: "/Users".to_owned(),
            core: schema(USER, "User", core),
            extensions: vec![schema(ENTERPRISE_USER, "EnterpriseUser", enterprise)],
        }
    }

    /// A user whose keys differ in case from the schema's in places, as real stores' do.
    fn user() -> Value {
        json!({
            "schemas": [USER, ENTERPRISE],
            "id": "2819c223-7f76",
            "externalId": "Ext-1",
            "UserName": "Bjensen",
            "displayName": "Sales",
            "nickName": "",
            "title": null,
            "code": "AbC",
            "name": { "givenName": "Barbara", "FamilyName": "Jensen" },
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@jensen.org", "type": "home" }
            ],
            "active": true,
            "loginCount": 42,
            "hired": "2011-05-13T04:42:34Z",
            "meta": { "lastModified": "2011-05-13T04:42:34Z" },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {
                "EmployeeNumber": "701984",
                "manager": { "value": "26118915" }
            }
        })
    }

    fn parse(input: &str) -> Filter {
        parse_filter(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn error(input: &str) -> ParseError {
        match parse_filter(input) {
            Ok(f) => panic!("{input:?} parsed as {f:?}"),
            Err(e) => e,
        }
    }

    fn matches(input: &str) -> bool {
        parse(input).matches(&user(), &schema())
    }

    fn compare(path: &str, op: CompareOp, value: Value) -> Filter {
        let path = parse_attr_path(path).expect("test path");
        Filter::Compare { path, op, value }
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn value_path(attr: &str, filter: Filter) -> Filter {
        Filter::ValuePath { attr: AttrPath::new(attr), filter: Box::new(filter) }
    }

    // --- attribute and PATCH paths ---

    #[test]
    fn attr_paths() {
        assert_eq!(parse_attr_path("userName"), Ok(AttrPath::new("userName")));
        assert_eq!(parse_attr_path(" name.givenName "), Ok(AttrPath::with_sub("name", "givenName")));
        assert_eq!(parse_attr_path("members.$ref"), Ok(AttrPath::with_sub("members", "$ref")));
        let manager = parse_attr_path(&format!("{ENTERPRISE}:manager.value")).expect("urn path");
        assert_eq!(manager.urn.as_deref(), Some(ENTERPRISE));
        assert_eq!((manager.name.as_str(), manager.sub.as_deref()), ("manager", Some("value")));
    }

    #[test]
    fn overlong_filters_are_refused_before_parsing() {
        let long = format!("userName eq \"{}\"", "x".repeat(MAX_LENGTH));
        let e = parse_filter(&long).expect_err("too long");
        assert!(e.message.contains("longer than"), "{e}");
        assert!(parse_filter(&format!("userName eq \"{}\"", "x".repeat(100))).is_ok());
    }

    #[test]
    fn unqualified_extension_attribute_resolves_to_its_extension() {
        let schema = crate::scim::schema::user_resource();
        let user = json!({"id": "u1", ENTERPRISE: {"manager": {"value": "m1"}}});
        let f = parse_filter(r#"id eq "u1" and manager eq "m1""#).expect("parse");
        assert!(f.validate(&schema).is_ok());
        assert!(f.matches(&user, &schema));
        assert!(!parse_filter(r#"manager eq "m2""#).expect("parse").matches(&user, &schema));
    }

    #[test]
    fn bare_schema_urn_splits_at_last_colon() {
        let path = parse_attr_path(ENTERPRISE).expect("bare urn");
        assert_eq!(path.urn.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0"));
        assert_eq!(path.name, "User");
        assert_eq!(path.to_string(), ENTERPRISE);
    }

    #[test]
    fn attr_path_errors() {
        let cases = [
            ("", 0, "expected an attribute path, found end of input"),
            ("a.b.c", 3, "at most one sub-attribute"),
            ("urn:foo", 0, "invalid schema URN"),
            ("name.", 5, "missing attribute name"),
            ("a:b", 1, "invalid character ':'"),
            ("a.1b", 2, "start with a letter"),
            ("userName eq", 9, "expected end of attribute path, found 'eq'"),
        ];
        for (input, position, message) in cases {
            let e = parse_attr_path(input).expect_err(input);
            assert_eq!(e.position, position, "{input}: {e}");
            assert!(e.message.contains(message), "{input}: {e}");
        }
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"members[value eq "2819c223"]"#).expect("members");
        assert_eq!(p.attr, AttrPath::new("members"));
        assert_eq!(p.filter, Some(compare("value", CompareOp::Eq, json!("2819c223"))));
        assert_eq!(p.sub, None);

        let p = parse_patch_path(r#"emails[type eq "work"].value"#).expect("emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

        let p = parse_patch_path(&format!("{ENTERPRISE}:manager")).expect("manager");
        assert_eq!((p.attr.urn.as_deref(), p.filter, p.sub), (Some(ENTERPRISE), None, None));

        let p = parse_patch_path("name.givenName").expect("sub");
        assert_eq!(p.attr, AttrPath::with_sub("name", "givenName"));
    }

    #[test]
    fn patch_path_errors() {
        for (input, position) in [
            (r#"emails[type eq "work"] x"#, 23),
            (r#"emails[type eq "work"].a.b"#, 23),
            (r#"name.givenName[type pr]"#, 14),
            (r#"emails[type eq "work""#, 21),
            (r#"emails eq "x""#, 7),
            ("", 0),
        ] {
            assert_eq!(parse_patch_path(input).expect_err(input).position, position, "{input}");
        }
    }

    // --- parsing ---

    #[test]
    fn every_operator_in_any_case() {
        for op in CompareOp::ALL {
            for spelling in [op.as_str().to_owned(), op.as_str().to_uppercase()] {
                let f = parse(&format!("title {spelling} \"x\""));
                assert_eq!(f, compare("title", op, json!("x")));
            }
        }
        assert_eq!(parse("title PR"), Filter::Present(AttrPath::new("title")));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let (a, b, c) = (
            compare("a", CompareOp::Eq, json!(1)),
            compare("b", CompareOp::Eq, json!(2)),
            compare("c", CompareOp::Eq, json!(3)),
        );
        assert_eq!(parse("a eq 1 or b eq 2 and c eq 3"), or(a.clone(), and(b.clone(), c.clone())));
        assert_eq!(parse("a eq 1 AND b eq 2 Or c eq 3"), or(and(a.clone(), b.clone()), c.clone()));
        assert_eq!(parse("(a eq 1 or b eq 2) and c eq 3"), and(or(a.clone(), b.clone()), c.clone()));
        assert_eq!(parse("a eq 1 or b eq 2 or c eq 3"), or(or(a.clone(), b.clone()), c.clone()));
        assert_eq!(parse("((a eq 1))"), a);
    }

    #[test]
    fn not_needs_parentheses() {
        let present = Filter::Present(AttrPath::new("title"));
        assert_eq!(parse("not (title pr)"), Filter::Not(Box::new(present.clone())));
        assert_eq!(parse("NOT(title pr) and a pr"), and(Filter::Not(Box::new(present)), parse("a pr")));
        assert_eq!(parse("not eq 1"), compare("not", CompareOp::Eq, json!(1)));
        let e = error("not title pr");
        assert_eq!((e.position, e.message.as_str()), (4, "expected '(' after 'not', found 'title'"));
    }

    #[test]
    fn value_paths() {
        let inner = and(compare("type", CompareOp::Eq, json!("work")), compare("value", CompareOp::Co, json!("@x")));
        assert_eq!(parse(r#"emails[type eq "work" and value co "@x"]"#), value_path("emails", inner));

        let f = parse(r#"userName sw "b" or emails[not (type eq "work") or (primary eq true)]"#);
        let Filter::Or(_, right) = f else { panic!("{f:?}") };
        assert!(matches!(*right, Filter::ValuePath { ref filter, .. } if matches!(**filter, Filter::Or(..))));
    }

    #[test]
    fn urn_paths() {
        let employee_number = format!("{ENTERPRISE}:employeeNumber");
        let f = parse(&format!("{employee_number} eq \"1\""));
        assert_eq!(f, compare(&employee_number, CompareOp::Eq, json!("1")));

        let manager = format!("{ENTERPRISE}:manager.value");
        let f = parse(&format!("{manager} pr and userName pr"));
        let expected = AttrPath { urn: Some(ENTERPRISE.to_owned()), name: "manager".into(), sub: Some("value".into()) };
        assert_eq!(f, and(Filter::Present(expected), Filter::Present(AttrPath::new("userName"))));
        assert_eq!(f.to_string(), format!("{manager} pr and userName pr"));
    }

    #[test]
    fn value_types() {
        let cases = [
            ("true", json!(true)),
            ("False", json!(false)),
            ("NULL", Value::Null),
            ("42", json!(42)),
            ("-7", json!(-7)),
            ("1.5", json!(1.5)),
            ("-2.5e3", json!(-2500.0)),
            (r#""a\"b\\c\u00e9\n""#, json!("a\"b\\c\u{e9}\n")),
            (r#""日本""#, json!("日本")),
        ];
        for (literal, value) in cases {
            assert_eq!(parse(&format!("x eq {literal}")), compare("x", CompareOp::Eq, value), "{literal}");
        }
    }

    #[test]
    fn entra_shapes() {
        assert_eq!(parse(r#"userName eq "x""#), compare("userName", CompareOp::Eq, json!("x")));
        assert_eq!(parse(r#"externalId eq "9a-b""#), compare("externalId", CompareOp::Eq, json!("9a-b")));
        assert_eq!(parse(r#"displayName eq "Sales""#), compare("displayName", CompareOp::Eq, json!("Sales")));
        assert_eq!(
            parse(r#"id eq "1" and manager eq "2""#),
            and(compare("id", CompareOp::Eq, json!("1")), compare("manager", CompareOp::Eq, json!("2")))
        );
        let f = parse(r#"emails[type eq "work"].value eq "a@b""#);
        let inner = and(compare("type", CompareOp::Eq, json!("work")), compare("value", CompareOp::Eq, json!("a@b")));
        assert_eq!(f, value_path("emails", inner));
        assert_eq!(f.to_string(), r#"emails[type eq "work" and value eq "a@b"]"#);
    }

    // --- errors ---

    #[test]
    fn error_messages_say_what_was_expected_and_found() {
        assert_eq!(
            error(r#"userName equals "x""#).to_string(),
            "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after 'userName', \
             found 'equals' at position 9"
        );
        let cases = [
            (r#"userName eq "abc"#, 12, "unterminated string"),
            (r#"userName eq "\q""#, 12, "invalid string"),
            ("userName eq", 11, "expected a value (a JSON string, number, true, false or null) after 'eq', found end"),
            ("userName eq bob", 12, "strings need double quotes"),
            ("userName eq 12ab", 12, "invalid number '12ab'"),
            ("userName eq 1 userName", 14, "expected 'and', 'or' or end of filter, found 'userName'"),
            ("(title pr", 9, "expected 'and', 'or' or ')' to close '(' at position 0, found end of input"),
            ("title pr)", 8, "unbalanced ')'"),
            (r#"emails[type pr"#, 14, "or ']' to close '[' at position 6"),
            ("title pr]", 8, "unbalanced ']'"),
            ("", 0, "empty filter"),
            ("   ", 3, "empty filter"),
            ("()", 1, "expected an attribute path, '(' or 'not', found ')'"),
            (r#"title pr "x""#, 9, "'pr' takes no value, found \"x\""),
            ("title pr true", 9, "'pr' takes no value"),
            (r#"emails[type[value pr] pr]"#, 11, "value filters cannot be nested"),
            (r#"emails[a.b pr]"#, 7, "expected a sub-attribute name of 'emails', found 'a.b'"),
            ("title # 1", 6, "unexpected character '#'"),
            ("title pr and", 12, "found end of input"),
        ];
        for (input, position, message) in cases {
            let e = error(input);
            assert_eq!(e.position, position, "{input}: {e}");
            assert!(e.message.contains(message), "{input}: {e}");
        }
    }

    #[test]
    fn long_tokens_are_abbreviated_in_messages() {
        let long = "x".repeat(1000);
        let e = error(&format!("userName {long}"));
        assert!(e.message.len() < 200, "{e}");
        assert!(e.message.contains('…'));
    }

    #[test]
    fn parse_error_becomes_invalid_filter() {
        let e = ScimError::from(error("userName eq"));
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidFilter)));
    }

    // --- limits ---

    #[test]
    fn nesting_is_limited() {
        let nested = |depth: usize| format!("{}title pr{}", "(".repeat(depth), ")".repeat(depth));
        assert!(parse_filter(&nested(MAX_DEPTH)).is_ok());
        let e = error(&nested(MAX_DEPTH + 1));
        assert_eq!(e.position, MAX_DEPTH);
        assert!(e.message.contains("nested deeper"), "{e}");
        assert!(error(&"(".repeat(MAX_LENGTH)).message.contains("nested deeper"));
        assert!(error(&"not (".repeat(MAX_LENGTH / 5)).message.contains("nested deeper"));
        // Beyond the length cap a hostile input is refused before it is parsed at all.
        assert!(error(&"(".repeat(100_000)).message.contains("longer than"));
        assert!(error(&format!("emails[{}type pr", "(".repeat(MAX_DEPTH))).message.contains("nested deeper"));
    }

    #[test]
    fn terms_are_limited() {
        let terms = |n: usize| vec!["title pr"; n].join(" or ");
        assert!(parse_filter(&terms(MAX_TERMS)).is_ok());
        assert!(error(&terms(MAX_TERMS + 1)).message.contains("more than 256 comparisons"));
    }

    // --- printing ---

    #[test]
    fn prints_canonically() {
        let cases = [
            ("A EQ 1 Or b Eq 2 AND c eq 3", "A eq 1 or b eq 2 and c eq 3"),
            ("(a eq 1 or b eq 2) and c eq 3", "(a eq 1 or b eq 2) and c eq 3"),
            ("a eq 1 or (b eq 2 or c eq 3)", "a eq 1 or (b eq 2 or c eq 3)"),
            ("(a eq 1 and b eq 2) or c eq 3", "a eq 1 and b eq 2 or c eq 3"),
            ("((title pr))", "title pr"),
            ("NOT(title Pr)", "not (title pr)"),
            ("x eq TRUE or x eq Null", "x eq true or x eq null"),
            (r#"x eq "a\u0022\/""#, r#"x eq "a\"/""#),
            ("x gt 1.50", "x gt 1.5"),
            (r#"emails[type eq "w" or (primary eq true)]"#, r#"emails[type eq "w" or primary eq true]"#),
        ];
        for (input, printed) in cases {
            assert_eq!(parse(input).to_string(), printed, "{input}");
        }
    }

    // --- evaluation ---

    #[test]
    fn eq_and_ne() {
        assert!(matches(r#"userName eq "bjensen""#), "key and value case-insensitive");
        assert!(matches(r#"USERNAME Eq "BJENSEN""#));
        assert!(!matches(r#"code eq "abc""#), "case-exact attribute");
        assert!(matches(r#"code eq "AbC""#));
        assert!(!matches(r#"id eq "2819C223-7F76""#), "id is case-exact");
        assert!(matches(r#"externalId eq "Ext-1""#));
        assert!(matches(r#"userName ne "other""#));
        assert!(!matches(r#"userName ne "BJENSEN""#));
        assert!(matches(r#"missing ne "x""#), "ne matches an absent attribute");
        assert!(matches("missing eq null") && matches("title eq null"));
        assert!(!matches("userName eq null") && matches("userName ne null"));
        assert!(!matches(r#"userName eq 1"#), "mismatched types never compare equal");
    }

    #[test]
    fn substring_operators() {
        assert!(matches(r#"userName co "JENS""#));
        assert!(matches(r#"userName sw "bj""#));
        assert!(matches(r#"userName ew "SEN""#));
        assert!(!matches(r#"userName sw "jensen""#));
        assert!(!matches(r#"code co "abc""#));
        assert!(!matches("loginCount co 4"), "co applies to strings only");
    }

    #[test]
    fn ordering_operators() {
        assert!(matches("loginCount gt 41") && matches("loginCount ge 42") && !matches("loginCount gt 42"));
        assert!(matches("loginCount lt 42.5") && matches("loginCount le 42") && !matches("loginCount lt 42"));
        assert!(matches("loginCount eq 42.0"), "numbers compare numerically");
        assert!(matches(r#"userName gt "Alice""#) && matches(r#"userName lt "CAROL""#));
        assert!(!matches(r#"active gt false"#), "booleans do not order");
    }

    #[test]
    fn dates_compare_chronologically() {
        // 05:42:34+02:00 is 03:42:34Z: earlier, although it sorts later as a string.
        assert!(matches(r#"hired gt "2011-05-13T05:42:34+02:00""#));
        assert!(matches(r#"meta.lastModified gt "2011-05-13T05:42:34+02:00""#));
        assert!(matches(r#"hired eq "2011-05-13T06:42:34.000+02:00""#));
        assert!(matches(r#"hired lt "2012-01-01T00:00:00Z""#));
        assert!(matches(r#"hired ge "2011-05-13""#), "unparseable dates fall back to string order");
    }

    #[test]
    fn booleans_and_entra_string_booleans() {
        assert!(matches("active eq true") && matches("active eq TRUE") && !matches("active eq false"));
        assert!(matches(r#"active eq "True""#) && matches(r#"active ne "false""#));
        assert!(matches(r#"emails[primary eq "True"].value eq "bjensen@example.com""#));
    }

    #[test]
    fn presence() {
        assert!(matches("userName pr") && matches("emails pr") && matches("name pr"));
        assert!(!matches("title pr"), "null");
        assert!(!matches("nickName pr"), "empty string");
        assert!(!matches("missing pr"));
        assert!(matches("name.familyName pr"), "sub-attribute key case differs");
        assert!(matches("not (title pr)"));
    }

    #[test]
    fn multi_valued_attributes() {
        assert!(matches(r#"emails co "jensen.org""#), "complex multi-valued compares 'value'");
        assert!(matches(r#"emails.type eq "home""#));
        assert!(matches(r#"emails.value ew "EXAMPLE.COM""#));
        assert!(!matches(r#"emails eq "nobody@x""#) && matches(r#"emails ne "nobody@x""#));
        assert!(!matches(r#"emails ne "babs@jensen.org""#), "ne: no element may be equal");
    }

    #[test]
    fn value_path_elements_must_match_as_a_whole() {
        assert!(matches(r#"emails[type eq "work" and value co "example"]"#));
        assert!(!matches(r#"emails[type eq "home" and value co "example"]"#));
        assert!(matches(r#"emails[type eq "home" or primary eq true]"#));
        assert!(matches(r#"emails[not (primary pr)]"#));
        assert!(matches(r#"emails[type eq "work"].value eq "BJENSEN@example.com""#));
        assert!(!matches(r#"emails[type eq "home"].value eq "bjensen@example.com""#));
        assert!(!matches(r#"missing[type pr]"#));
    }

    #[test]
    fn urn_qualified_attributes() {
        assert!(matches(&format!("{ENTERPRISE}:employeeNumber eq \"701984\"")), "extension key case differs");
        assert!(matches(&format!("{}:EMPLOYEENUMBER sw \"70\"", ENTERPRISE.to_uppercase())));
        assert!(matches(&format!("{ENTERPRISE}:manager.value eq \"26118915\"")));
        assert!(matches(&format!("{ENTERPRISE}:manager eq \"26118915\"")), "complex compares 'value'");
        assert!(matches(&format!("{USER}:userName eq \"bjensen\"")), "core URN");
        assert!(matches(&format!("{USER}:id pr")), "common attribute under the core URN");
        assert!(matches("employeeNumber pr"), "an unqualified name only one extension defines resolves to it");
    }

    #[test]
    fn evaluation_combines_with_precedence() {
        assert!(matches(r#"userName eq "x" or displayName eq "Sales" and active eq true"#));
        assert!(!matches(r#"(userName eq "x" or displayName eq "Sales") and active eq false"#));
        assert!(matches(r#"userName eq "bjensen" and not (emails[type eq "other"])"#));
    }

    // --- validation ---

    #[test]
    fn validate_accepts_known_attributes() {
        for input in [
            r#"userName eq "x" and name.givenName sw "B""#,
            r#"emails[type eq "work" and primary eq true].value co "@""#,
            r#"emails co "@x" and active ne true"#,
            r#"id eq "1" and externalId pr and meta.lastModified gt "2011-01-01T00:00:00Z""#,
            &format!("{ENTERPRISE}:manager eq \"1\" and {ENTERPRISE}:employeeNumber pr"),
            &format!("{USER}:userName pr and {USER}:id pr"),
            "name pr",
        ] {
            assert_eq!(parse(input).validate(&schema()), Ok(()), "{input}");
        }
    }

    #[test]
    fn validate_rejects_with_a_clear_detail() {
        let cases = [
            ("nickname2 eq 1", "unknown attribute 'nickname2'"),
            ("name.middle pr", "unknown attribute 'name.middle'"),
            ("emails[kind eq 1]", "'kind' is not a sub-attribute of 'emails'"),
            ("active gt true", "'gt' does not apply to the boolean attribute 'active'"),
            (r#"emails.primary co "t""#, "boolean attribute 'emails.primary'"),
            (r#"name eq "x""#, "'name' is complex and has no 'value' sub-attribute"),
            (r#"userName[value eq "x"]"#, "'userName' is not a complex attribute"),
            ("urn:x:y:User:employeeNumber pr", "unknown attribute"),
        ];
        for (input, detail) in cases {
            let e = parse(input).validate(&schema()).expect_err(input);
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
            assert!(e.detail.contains(detail), "{input}: {}", e.detail);
        }
    }

    // --- properties ---

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
            Just("$ref".to_owned()),
            Just("not".to_owned()),
            Just("and".to_owned()),
            Just("pr".to_owned()),
        ]
    }

    fn path() -> impl Strategy<Value = AttrPath> {
        let urn = prop::option::of("urn:ietf:params:scim:schemas:(core|extension:[a-z]{1,6}):2\\.0:[A-Z][a-z]{0,5}");
        (urn, name(), prop::option::of(name())).prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
    }

    /// Values that survive printing exactly: integers and decimals with few digits.
    fn literal() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1_000_000i32..1_000_000, 0u32..4)
                .prop_map(|(n, scale)| Value::from(f64::from(n) / 10f64.powi(scale as i32))),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    }

    fn op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(CompareOp::ALL.to_vec())
    }

    /// Filters over `leaf`, combined with and/or/not, up to `depth` levels and about `size` leaves.
    fn tree(leaf: BoxedStrategy<Filter>, depth: u32, size: u32) -> impl Strategy<Value = Filter> {
        leaf.prop_recursive(depth, size, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let element_leaf = prop_oneof![
            (name(), op(), literal()).prop_map(|(n, op, value)| Filter::Compare { path: AttrPath::new(&n), op, value }),
            name().prop_map(|n| Filter::Present(AttrPath::new(&n))),
        ];
        let value_path = (name(), tree(element_leaf.boxed(), 3, 6))
            .prop_map(|(attr, filter)| Filter::ValuePath { attr: AttrPath::new(&attr), filter: Box::new(filter) });
        let leaf = prop_oneof![
            3 => (path(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            1 => path().prop_map(Filter::Present),
            1 => value_path,
        ];
        tree(leaf.boxed(), 5, 20)
    }

    /// Filter-like text: real tokens in random order, to reach deep into the parser.
    fn filter_like() -> impl Strategy<Value = String> {
        let tokens = prop::sample::select(vec![
            "(",
            ")",
            "[",
            "]",
            ".",
            "not",
            "and",
            "or",
            "eq",
            "ne",
            "co",
            "gt",
            "pr",
            "\"x\"",
            "\"\\u00e9\"",
            "\"",
            "\\",
            "1",
            "-2.5e1",
            "true",
            "null",
            "userName",
            "emails",
            "type",
            "value",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "é",
            "urn:",
            "$ref",
        ]);
        (prop::collection::vec(tokens, 0..24), any::<bool>())
            .prop_map(|(tokens, spaced)| tokens.join(if spaced { " " } else { "" }))
    }

    /// Whatever parses must print, re-parse to the same AST, evaluate and validate without panicking.
    fn exercise(input: &str) {
        let _ = parse_attr_path(input);
        let _ = parse_patch_path(input);
        if let Ok(f) = parse_filter(input) {
            assert_eq!(parse_filter(&f.to_string()).as_ref(), Ok(&f), "{input:?} printed as {f}");
            let _ = f.matches(&user(), &schema());
            let _ = f.validate(&schema());
        }
    }

    proptest! {
        #[test]
        fn printing_round_trips(f in filter()) {
            let printed = f.to_string();
            prop_assert_eq!(parse_filter(&printed), Ok(f), "printed: {}", printed);
        }

        #[test]
        fn arbitrary_text_never_panics(input in any::<String>()) {
            exercise(&input);
        }

        #[test]
        fn filter_like_text_never_panics(input in filter_like()) {
            exercise(&input);
        }
    }
}
