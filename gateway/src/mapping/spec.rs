//! The mapping language as it is written in `mappings/*.yaml`: plain serde types, no behaviour.
//!
//! `docs/mapping.md` is the user-facing reference for everything here; keep the two in step.
//! Compilation into executable form (templates, pointers, schemas) happens in `mapping::compile`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A whole mapping file: how one application's REST API stands in for SCIM Users and Groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The mapping's name; tenants refer to it (`mapping: acme-hr`). Must equal the file stem.
    pub app: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Settings for every call to the app.
    #[serde(default)]
    pub http: HttpSpec,
    /// How the app's error answers become SCIM errors.
    #[serde(default)]
    pub errors: ErrorSpec,
    /// `User` and/or `Group`.
    pub resources: BTreeMap<String, ResourceSpec>,
}

/// Settings shared by all calls to the app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Headers sent on every call; values are string templates (e.g. `"{{ credentials.api_key }}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-call timeout; the tenant may lower it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// How the gateway authenticates to the app (besides any `headers`).
    #[serde(default)]
    pub auth: Option<AuthSpec>,
}

/// Authentication to the app. Values are templates over `credentials` (rendered once, at load).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// HTTP Basic.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): tokens fetched from `token_url`, cached until
    /// shortly before they expire, and fetched again when the app answers 401.
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        audience: Option<String>,
    },
}

/// Error translation: the app's message location and status rules, first match wins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// JSON Pointer to the human-readable message in an error body; it becomes the SCIM `detail`.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub rules: Vec<ErrorRule>,
}

/// One error rule: when the app answers `status` (and optionally a body value), answer this SCIM error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub when: ErrorMatch,
    pub scim: ScimErrorSpec,
}

/// The condition of an error rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMatch {
    pub status: u16,
    /// Text the app's message must contain (case-insensitive), e.g. `has already been taken`.
    #[serde(default)]
    pub message_contains: Option<String>,
    /// Optional `{pointer: value}` pairs the error body must contain, e.g. `{"/error/code": "duplicate"}`.
    #[serde(default)]
    pub body: BTreeMap<String, Value>,
}

/// The SCIM error produced by a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimErrorSpec {
    pub status: u16,
    #[serde(default, rename = "scimType")]
    pub scim_type: Option<String>,
}

/// How one SCIM resource type (`User`, `Group`) lives in the app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// JSON Pointer to the app's id inside an app object (e.g. `/id`).
    pub id: String,
    /// Attribute mappings, each usable both ways unless it says otherwise.
    pub attributes: Vec<AttributeSpec>,
    /// The calls that carry out each operation.
    pub operations: OperationsSpec,
    /// Group membership, when the app keeps members apart from the group object.
    #[serde(default)]
    pub members: Option<MembersSpec>,
    /// Updates write `null` for mapped attributes the resource no longer has, for apps whose update
    /// merges into the stored object (a partial PUT) and would otherwise keep the old value.
    #[serde(default)]
    pub clear_with_null: bool,
    /// Sub-resources the app keeps apart from the object (preferences, addresses): each is read
    /// with the object and placed in it at `into`, so attribute lines can map its fields.
    #[serde(default)]
    pub extras: Vec<ExtraSpec>,
}

/// One sub-resource read with the object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraSpec {
    /// Where in the app object the answer goes (e.g. `/preferences`).
    pub into: String,
    /// The call; templates see `id` and `app` (the object read so far).
    pub request: CallSpec,
    /// A 404 means "none" (`null` at `into`) rather than an error.
    #[serde(default)]
    pub optional: bool,
}

/// Which way an attribute mapping applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// SCIM → app on writes and app → SCIM on reads.
    #[default]
    Both,
    /// Only written to the app (e.g. a constant the app requires).
    ToApp,
    /// Only read from the app (e.g. a computed display name).
    ToScim,
}

/// One attribute mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// SCIM attribute path: `userName`, `name.givenName`, `emails[type eq "work"].value`,
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`. Omitted for app-only
    /// fields (`constant`).
    #[serde(default)]
    pub scim: Option<String>,
    /// JSON Pointer into the app object (`/first_name`, `/profile/dept`). Omitted with `stored`.
    #[serde(default)]
    pub app: Option<String>,
    /// The app has no field for this attribute: the gateway's store keeps it (and answers `eq`
    /// filters on it from an index). Instead of `app`.
    #[serde(default)]
    pub stored: bool,
    #[serde(default)]
    pub direction: Direction,
    /// Value translation table SCIM → app (`{true: active, false: suspended}`); read back inverted.
    #[serde(default)]
    pub values: Option<BTreeMap<String, Value>>,
    /// Expression computing the app value (variables: `value`, `scim`, `credentials`).
    #[serde(default)]
    pub to_app: Option<String>,
    /// Expression computing the SCIM value (variables: `value`, `app`).
    #[serde(default)]
    pub to_scim: Option<String>,
    /// A fixed app value written on every create and update.
    #[serde(default)]
    pub constant: Option<Value>,
    /// The value is the id of another resource of this type (`User`, `Group`): translated between SCIM
    /// ids and app ids through the gateway's store.
    #[serde(default)]
    pub reference: Option<String>,
    /// Extra sub-attributes a read-back multi-valued entry carries (e.g. `{primary: true}`).
    #[serde(default)]
    pub entry: BTreeMap<String, Value>,
    /// The SCIM attribute must be present on create/replace.
    #[serde(default)]
    pub required: bool,
    /// The app value that clears the field, written on updates when the resource no longer has the
    /// attribute (for apps whose update merges and that refuse `null`: `""`, `[]`).
    #[serde(default)]
    pub clear: Option<Value>,
    /// How a string value compares (overrides the SCIM schema's caseExact in published schemas).
    #[serde(default)]
    pub case_exact: Option<bool>,
}

/// The calls behind each operation. `read`, `create` and `delete` are required; `replace` carries
/// PUT and PATCH (one call, or several run in order, each optionally guarded by `when`); `list`
/// carries paging and filter push-down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsSpec {
    /// One call, or several: the first creates the object (its id comes from its answer), the
    /// others complete it (they see `id`; `when` may guard them). A failing later call undoes the
    /// create.
    pub create: OneOrMany<CallSpec>,
    pub read: CallSpec,
    #[serde(default)]
    pub replace: Option<OneOrMany<CallSpec>>,
    pub delete: CallSpec,
    pub list: ListSpec,
}

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, in order.
    pub fn to_vec(&self) -> Vec<&T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v.iter().collect(),
        }
    }
}

/// One HTTP call and where its answer is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    pub method: String,
    /// Path template, relative to the tenant's `base_url`; values of `{{ … }}` are percent-encoded.
    pub path: String,
    /// Query parameters; values are templates. A parameter whose value renders empty is left out.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers for this call only (added to `http.headers`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body template: strings holding exactly one `{{ expr }}` keep the expression's type.
    #[serde(default)]
    pub body: Option<Value>,
    /// How the body is sent: `json` (default) or `form` (`application/x-www-form-urlencoded`, nested
    /// keys as `user[name]`).
    #[serde(default)]
    pub encoding: BodyEncoding,
    /// Where a create's new id is: in the answer's object (`body`, default) or the last path segment
    /// of its `Location` header (`location`), for apps that answer 201 with an empty body.
    #[serde(default)]
    pub id_from: IdFrom,
    /// JSON Pointer to the app object in the response (default: the whole body).
    #[serde(default)]
    pub result: Option<String>,
    /// Extra statuses that count as success (e.g. `[409]` for an add that already happened).
    #[serde(default)]
    pub ok_statuses: Vec<u16>,
    /// For update calls: an expression; the call is made only when it is true (variables: `app`,
    /// `current` (the app object before the update), `scim`, `id`, `credentials`).
    #[serde(default)]
    pub when: Option<String>,
}

/// How a call's body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    #[default]
    Json,
    Form,
}

/// Where a created object's id comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFrom {
    #[default]
    Body,
    Location,
}

/// The list call, its paging, and the filters it can push down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// The call for one page; templates see `offset` (0-based), `limit` and `page` (1-based).
    pub request: CallSpec,
    /// JSON Pointer to the array of app objects in a page.
    pub items: String,
    /// JSON Pointer to the total count, if the app reports one.
    #[serde(default)]
    pub total: Option<String>,
    #[serde(default)]
    pub paging: PagingSpec,
    /// SCIM attribute → extra query parameters that make the app search for `value` (an `eq` filter).
    #[serde(default)]
    pub search: BTreeMap<String, SearchSpec>,
    /// The list's items lack fields the single read has (or the resource has `extras`): each listed
    /// object is read again. Costs one read per item; use only when the app needs it.
    #[serde(default)]
    pub partial: bool,
}

/// How the list call pages. Templates see `offset` (0-based), `limit`, `page` (1-based).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingSpec {
    /// The largest page the app serves.
    #[serde(default = "default_page_size")]
    pub max_page_size: usize,
    /// `offset`: any 0-based start (`offset`/`limit`); `page`: numbered pages of `max_page_size`;
    /// `cursor`: each answer holds the token of the next page (at `next`), templates see `cursor`;
    /// `link`: each answer's `Link: <url>; rel="next"` header is the next page's URL.
    #[serde(default)]
    pub style: PagingStyle,
    /// With `style: cursor`: where the next page's token is in an answer.
    #[serde(default)]
    pub next: Option<String>,
}

/// How an app addresses a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagingStyle {
    /// Any start offset and page length.
    #[default]
    Offset,
    /// Page numbers of a fixed size.
    Page,
    /// An opaque token from each answer names the next page.
    Cursor,
    /// RFC 8288 `Link` headers name the next page.
    Link,
    /// No paging: one answer holds everything.
    None,
}

impl Default for PagingSpec {
    fn default() -> Self {
        Self { max_page_size: default_page_size(), style: PagingStyle::default(), next: None }
    }
}

fn default_page_size() -> usize {
    100
}

/// Push-down of `attr eq "value"` to the app's own search.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Query parameters added to the list call; templates see `value`. Results are always re-checked
    /// against the whole filter, so an app search that is looser than SCIM's `eq` is safe.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Instead of `query`: a call that fetches the one object with this value (`GET /users/{{ value }}`);
    /// a 404 means no match.
    #[serde(default)]
    pub lookup: Option<CallSpec>,
}

/// Group membership held by the app apart from the group object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersSpec {
    /// The resource type members are (`User`).
    #[serde(default = "default_member_type")]
    pub resource: String,
    /// Lists a group's members; templates see `id`, `offset`, `limit`, `page`.
    pub list: MemberListSpec,
    /// Adds one member; templates see `id` and `member_id` (app ids).
    #[serde(default)]
    pub add: Option<CallSpec>,
    /// Removes one member; templates see `id` and `member_id` (and `entry` with `remove_uses_entry`).
    #[serde(default)]
    pub remove: Option<CallSpec>,
    /// Replaces the whole membership in one call; templates see `id` and `member_ids` (the app ids
    /// of every member the group should have). Used for PUT and member replacement, and for adds and
    /// removes when there are no `add`/`remove` calls.
    #[serde(default)]
    pub set: Option<CallSpec>,
    /// Statuses of `add`/`remove` that do not say whether the change happened (some apps answer 422
    /// both for "already a member" and "no such user"): after one, the gateway lists the members
    /// and succeeds if the change is in place.
    #[serde(default)]
    pub verify_on: Vec<u16>,
    /// The remove call needs the member's entry from the member list (`entry`), for apps where a
    /// membership is a resource with its own id (`DELETE /members/{{ entry.member_id }}`).
    #[serde(default)]
    pub remove_uses_entry: bool,
}

fn default_member_type() -> String {
    "User".to_owned()
}

/// The member list call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberListSpec {
    /// The call for one page; templates see `id`, `offset`, `limit` and `page`.
    pub request: CallSpec,
    /// JSON Pointer to the array of member entries in a page.
    pub items: String,
    /// JSON Pointer to the member's app id inside an entry (default: the entry itself).
    #[serde(default)]
    pub member_id: Option<String>,
    /// Expression computing the member's app id from `entry`, when no pointer reaches it (e.g. the
    /// id is the last segment of a URL: `entry.user | basename`). Instead of `member_id`.
    #[serde(default)]
    pub member_id_from: Option<String>,
    /// Expression over `entry`: entries for which it is true are not members as far as SCIM is
    /// concerned (an app's own service account): never shown, never removed.
    #[serde(default)]
    pub skip: Option<String>,
    #[serde(default)]
    pub total: Option<String>,
    #[serde(default)]
    pub paging: PagingSpec,
}
