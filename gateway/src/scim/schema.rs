//! SCIM schemas (RFC 7643 §2, §4, §7): attribute definitions, the core User, Group and enterprise
//! extension schemas, and name lookup that is case-insensitive as RFC 7643 §2.1 requires.
//!
//! Per-tenant schemas are *subsets* of these, chosen by what a mapping supports: see `restrict`.

use serde_json::{Value, json};

/// URN of the core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// URN of the core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// URN of the enterprise User extension.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Attribute data types of RFC 7643 §2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
            AttrType::Binary => "binary",
        }
    }
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub description: String,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: Vec<String>,
    pub reference_types: Vec<String>,
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// A single-valued, optional, readWrite, case-insensitive attribute of type `ty`.
    pub fn new(name: &str, ty: AttrType) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
        }
    }
    pub fn string(name: &str) -> Self {
        Self::new(name, AttrType::String)
    }
    pub fn boolean(name: &str) -> Self {
        Self::new(name, AttrType::Boolean)
    }
    pub fn complex(name: &str, subs: Vec<Attribute>) -> Self {
        let mut a = Self::new(name, AttrType::Complex);
        a.sub_attributes = subs;
        a
    }
    pub fn reference(name: &str, types: &[&str]) -> Self {
        let mut a = Self::new(name, AttrType::Reference);
        a.reference_types = types.iter().map(|s| (*s).to_owned()).collect();
        a
    }
    pub fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    pub fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    pub fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    pub fn uniqueness(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    pub fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.to_owned();
        self
    }

    /// The sub-attribute named `name`, compared case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The definition as RFC 7643 §7 publishes it under `/Schemas`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability.as_str(),
            "returned": self.returned.as_str(),
            "uniqueness": self.uniqueness.as_str(),
        });
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if self.ty == AttrType::Complex {
            v["subAttributes"] = Value::Array(self.sub_attributes.iter().map(Attribute::to_json).collect());
        }
        v
    }
}

/// One schema: a URN and its top-level attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub id: String,
    pub name: String,
    pub description: String,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    /// The top-level attribute named `name`, compared case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resource type's full schema: its core schema plus its extensions, and the common attributes
/// (`id`, `externalId`, `meta`) every resource has (RFC 7643 §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchema {
    /// `User`, `Group`.
    pub name: String,
    /// `/Users`, `/Groups`.
    pub endpoint: String,
    pub core: Schema,
    pub extensions: Vec<Schema>,
}

impl ResourceSchema {
    /// The schema with URN `urn` (core or extension), compared case-insensitively.
    pub fn schema(&self, urn: &str) -> Option<&Schema> {
        std::iter::once(&self.core).chain(&self.extensions).find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Looks up an attribute: `urn` (if any) selects the schema, otherwise the core schema and then
    /// the common attributes are searched. `sub` selects a sub-attribute of a complex attribute.
    pub fn find(&self, urn: Option<&str>, name: &str, sub: Option<&str>) -> Option<&Attribute> {
        let top = match urn {
            Some(u) => self.schema(u)?.attribute(name)?,
            None => {
                self.core.attribute(name).or_else(|| common().iter().find(|a| a.name.eq_ignore_ascii_case(name)))?
            }
        };
        match sub {
            Some(s) => top.sub(s),
            None => Some(top),
        }
    }
}

/// `id`, `externalId` and `meta`: present on every resource (RFC 7643 §3.1).
pub fn common() -> &'static [Attribute] {
    use std::sync::OnceLock;
    static COMMON: OnceLock<Vec<Attribute>> = OnceLock::new();
    COMMON.get_or_init(|| {
        vec![
            Attribute::string("id")
                .case_exact()
                .mutability(Mutability::ReadOnly)
                .returned(Returned::Always)
                .uniqueness(Uniqueness::Server),
            Attribute::string("externalId").case_exact(),
            Attribute::complex(
                "meta",
                vec![
                    Attribute::string("resourceType").case_exact().mutability(Mutability::ReadOnly),
                    Attribute::new("created", AttrType::DateTime).mutability(Mutability::ReadOnly),
                    Attribute::new("lastModified", AttrType::DateTime).mutability(Mutability::ReadOnly),
                    Attribute::reference("location", &["uri"]).case_exact().mutability(Mutability::ReadOnly),
                    Attribute::string("version").case_exact().mutability(Mutability::ReadOnly),
                ],
            )
            .mutability(Mutability::ReadOnly),
        ]
    })
}

/// URN of the schema that describes schemas (RFC 7643 §7).
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// URN of the schema that describes resource types (RFC 7643 §6).
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// URN of the schema that describes the service provider configuration (RFC 7643 §5).
pub const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

impl Schema {
    /// A schema with URN `id`.
    pub fn new(id: &str, name: &str, description: &str, attributes: Vec<Attribute>) -> Self {
        Self { id: id.to_owned(), name: name.to_owned(), description: description.to_owned(), attributes }
    }
}

/// The core User schema, attribute for attribute as RFC 7643 §8.7.1 publishes it.
///
/// One deliberate addition: `addresses.primary`. §4.1.2 and §2.4 give every multi-valued
/// attribute a `primary` flag, but the §8.7.1 listing forgot it for addresses.
pub fn user_schema() -> Schema {
    let attributes = vec![
        Attribute::string("userName")
            .required()
            .uniqueness(Uniqueness::Server)
            .describe("Unique identifier for the User, typically used by the user to sign in."),
        Attribute::complex(
            "name",
            vec![
                Attribute::string("formatted").describe("The full name, formatted for display."),
                Attribute::string("familyName").describe("The family (last) name."),
                Attribute::string("givenName").describe("The given (first) name."),
                Attribute::string("middleName").describe("The middle name(s)."),
                Attribute::string("honorificPrefix").describe("The honorific prefix(es), e.g. 'Ms.'."),
                Attribute::string("honorificSuffix").describe("The honorific suffix(es), e.g. 'III'."),
            ],
        )
        .describe("The components of the user's real name."),
        Attribute::string("displayName").describe("The name of the User, suitable for display to end-users."),
        Attribute::string("nickName").describe("The casual way to address the user."),
        Attribute::reference("profileUrl", &["external"]).describe("A URI pointing to the user's online profile."),
        Attribute::string("title").describe("The user's title, such as 'Vice President'."),
        Attribute::string("userType").describe("The relationship between the organization and the user."),
        Attribute::string("preferredLanguage").describe("The user's preferred language (RFC 7231 Accept-Language)."),
        Attribute::string("locale").describe("The user's default location (a BCP 47 language tag)."),
        Attribute::string("timezone").describe("The user's time zone in IANA Time Zone database format."),
        Attribute::boolean("active").describe("The user's administrative status."),
        Attribute::string("password")
            .mutability(Mutability::WriteOnly)
            .returned(Returned::Never)
            .describe("The user's cleartext password; never returned."),
        multi_valued("emails", Attribute::string("value"), &["work", "home", "other"])
            .describe("Email addresses for the user."),
        multi_valued("phoneNumbers", Attribute::string("value"), &["work", "home", "mobile", "fax", "pager", "other"])
            .describe("Phone numbers for the user."),
        multi_valued(
            "ims",
            Attribute::string("value"),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        )
        .describe("Instant messaging addresses for the user."),
        multi_valued("photos", Attribute::reference("value", &["external"]), &["photo", "thumbnail"])
            .describe("URLs of photos of the user."),
        addresses(),
        groups(),
        multi_valued("entitlements", Attribute::string("value"), &[]).describe("Entitlements the user has."),
        multi_valued("roles", Attribute::string("value"), &[]).describe("Roles the user has."),
        multi_valued("x509Certificates", Attribute::new("value", AttrType::Binary), &[])
            .describe("DER-encoded X.509 certificates issued to the user."),
    ];
    Schema::new(USER, "User", "User Account", attributes)
}

/// The core Group schema (RFC 7643 §4.2, §8.7.1).
///
/// Two departures from the §8.7.1 listing, both from §4.2's prose: `displayName` is required,
/// and `members` carries the `display` sub-attribute clients such as Okta send.
pub fn group_schema() -> Schema {
    let members = Attribute::complex(
        "members",
        vec![
            Attribute::string("value").mutability(Mutability::Immutable).describe("The id of the member."),
            Attribute::reference("$ref", &["User", "Group"])
                .mutability(Mutability::Immutable)
                .describe("The URI of the member resource."),
            Attribute::string("type")
                .canonical(&["User", "Group"])
                .mutability(Mutability::Immutable)
                .describe("The type of the member resource."),
            Attribute::string("display").describe("A human-readable name of the member."),
        ],
    )
    .multi()
    .describe("A list of members of the Group.");
    let attributes =
        vec![Attribute::string("displayName").required().describe("A human-readable name for the Group."), members];
    Schema::new(GROUP, "Group", "Group", attributes)
}

/// The enterprise User extension (RFC 7643 §4.3, §8.7.1).
pub fn enterprise_user_schema() -> Schema {
    let manager = Attribute::complex(
        "manager",
        vec![
            Attribute::string("value").describe("The id of the user's manager."),
            Attribute::reference("$ref", &["User"]).describe("The URI of the user's manager."),
            Attribute::string("displayName")
                .mutability(Mutability::ReadOnly)
                .describe("The display name of the user's manager."),
        ],
    )
    .describe("The user's manager.");
    let attributes = vec![
        Attribute::string("employeeNumber").describe("Numeric or alphanumeric identifier assigned to a person."),
        Attribute::string("costCenter").describe("Identifies the name of a cost center."),
        Attribute::string("organization").describe("Identifies the name of an organization."),
        Attribute::string("division").describe("Identifies the name of a division."),
        Attribute::string("department").describe("Identifies the name of a department."),
        manager,
    ];
    Schema::new(ENTERPRISE_USER, "EnterpriseUser", "Enterprise User", attributes)
}

/// The User resource type: core User plus the enterprise extension, served at `/Users`.
pub fn user_resource() -> ResourceSchema {
    ResourceSchema {
        name: "User".to_owned(),
        endpoint: "/Users".to_owned(),
        core: user_schema(),
        extensions: vec![enterprise_user_schema()],
    }
}

/// The Group resource type, served at `/Groups`.
pub fn group_resource() -> ResourceSchema {
    ResourceSchema {
        name: "Group".to_owned(),
        endpoint: "/Groups".to_owned(),
        core: group_schema(),
        extensions: vec![],
    }
}

/// A multi-valued complex attribute with the `value`, `display`, `type` and `primary`
/// sub-attributes RFC 7643 §2.4 gives every such attribute of the User schema.
fn multi_valued(name: &str, value: Attribute, types: &[&str]) -> Attribute {
    let subs = vec![
        value.describe("The attribute's significant value."),
        Attribute::string("display").describe("A human-readable name, primarily used for display purposes."),
        Attribute::string("type").canonical(types).describe("A label indicating the attribute's function."),
        primary(),
    ];
    Attribute::complex(name, subs).multi()
}

fn primary() -> Attribute {
    Attribute::boolean("primary").describe("Whether this is the primary or preferred value; at most one is true.")
}

/// `addresses` (RFC 7643 §4.1.2): a multi-valued complex attribute without `value`.
fn addresses() -> Attribute {
    let subs = vec![
        Attribute::string("formatted").describe("The full mailing address, formatted for display."),
        Attribute::string("streetAddress").describe("The full street address component."),
        Attribute::string("locality").describe("The city or locality component."),
        Attribute::string("region").describe("The state or region component."),
        Attribute::string("postalCode").describe("The zip code or postal code component."),
        Attribute::string("country").describe("The country name component (ISO 3166-1 alpha-2)."),
        Attribute::string("type").canonical(&["work", "home", "other"]).describe("The kind of address."),
        primary(),
    ];
    Attribute::complex("addresses", subs).multi().describe("A physical mailing address for this user.")
}

/// `groups` (RFC 7643 §4.1.2): read-only, because membership is managed through `/Groups`.
fn groups() -> Attribute {
    let subs = vec![
        Attribute::string("value").describe("The id of the user's group."),
        Attribute::reference("$ref", &["User", "Group"]).describe("The URI of the group."),
        Attribute::string("display").describe("A human-readable name of the group."),
        Attribute::string("type").canonical(&["direct", "indirect"]).describe("How the membership was derived."),
    ];
    let subs = subs.into_iter().map(|a| a.mutability(Mutability::ReadOnly)).collect();
    Attribute::complex("groups", subs)
        .multi()
        .mutability(Mutability::ReadOnly)
        .describe("The groups to which the user belongs.")
}

/// The schema of `/ServiceProviderConfig` (RFC 7643 §5, §8.7.2).
pub fn service_provider_config_schema() -> Schema {
    let supported = || Attribute::boolean("supported").required().describe("Whether the operation is supported.");
    let integer = |name: &str, d: &str| Attribute::new(name, AttrType::Integer).required().describe(d);
    let feature = |name: &str, d: &str, extra: Vec<Attribute>| {
        Attribute::complex(name, std::iter::once(supported()).chain(extra).collect()).required().describe(d)
    };
    let schemes = Attribute::complex(
        "authenticationSchemes",
        vec![
            Attribute::string("type")
                .required()
                .canonical(&["oauth", "oauth2", "oauthbearertoken", "httpbasic", "httpdigest"])
                .describe("The authentication scheme."),
            Attribute::string("name").required().describe("The common authentication scheme name."),
            Attribute::string("description").required().describe("A description of the authentication scheme."),
            Attribute::reference("specUri", &["external"]).describe("A URL of the scheme's specification."),
            Attribute::reference("documentationUri", &["external"]).describe("A URL of the scheme's documentation."),
            primary(),
        ],
    )
    .multi()
    .required()
    .describe("The supported authentication schemes.");
    let attributes = vec![
        Attribute::reference("documentationUri", &["external"]).describe("A URL of human-readable help."),
        feature("patch", "PATCH configuration options.", vec![]),
        feature(
            "bulk",
            "Bulk configuration options.",
            vec![
                integer("maxOperations", "The maximum number of operations."),
                integer("maxPayloadSize", "The maximum payload size in bytes."),
            ],
        ),
        feature(
            "filter",
            "Filter options.",
            vec![integer("maxResults", "The maximum number of resources returned in a response.")],
        ),
        feature("changePassword", "Change password options.", vec![]),
        feature("sort", "Sort options.", vec![]),
        feature("etag", "ETag options.", vec![]),
        schemes,
    ];
    read_only_schema(SERVICE_PROVIDER_CONFIG, "ServiceProviderConfig", "Service Provider Configuration", attributes)
}

/// The schema of `/ResourceTypes` (RFC 7643 §6, §8.7.2).
pub fn resource_type_schema() -> Schema {
    let uri = |name: &str| Attribute::reference(name, &["uri"]).required().case_exact();
    let attributes = vec![
        Attribute::string("id").describe("The resource type's server unique id."),
        Attribute::string("name").required().describe("The resource type name."),
        Attribute::string("description").describe("The resource type's human-readable description."),
        uri("endpoint").describe("The resource type's endpoint, relative to the base URL."),
        uri("schema").describe("The resource type's primary schema URI."),
        Attribute::complex(
            "schemaExtensions",
            vec![
                uri("schema").describe("The URI of a schema extension."),
                Attribute::boolean("required")
                    .required()
                    .describe("Whether resources of this type must include the extension."),
            ],
        )
        .multi()
        .describe("The resource type's schema extensions."),
    ];
    read_only_schema(RESOURCE_TYPE, "ResourceType", "Resource Type", attributes)
}

/// The schema of `/Schemas` itself (RFC 7643 §7, §8.7.2).
pub fn schema_schema() -> Schema {
    let mut attribute_subs = definition_subs();
    attribute_subs.push(
        Attribute::complex("subAttributes", definition_subs())
            .multi()
            .describe("The sub-attributes of a complex attribute."),
    );
    let attributes = vec![
        Attribute::string("id").required().case_exact().describe("The unique URI of the schema."),
        Attribute::string("name").describe("The schema's human-readable name."),
        Attribute::string("description").describe("The schema's human-readable description."),
        Attribute::complex("attributes", attribute_subs)
            .multi()
            .required()
            .describe("The attributes the schema defines and their characteristics."),
    ];
    read_only_schema(SCHEMA, "Schema", "Schema", attributes)
}

/// The characteristics of one attribute definition (RFC 7643 §7), shared by `attributes` and
/// `subAttributes` in the Schema schema.
fn definition_subs() -> Vec<Attribute> {
    let keyword = |name: &str, values: &[&str]| Attribute::string(name).case_exact().canonical(values);
    let type_names = ["string", "complex", "boolean", "decimal", "integer", "dateTime", "reference", "binary"];
    vec![
        Attribute::string("name").required().case_exact().describe("The attribute's name."),
        keyword("type", &type_names).required().describe("The attribute's data type."),
        Attribute::boolean("multiValued").required().describe("Whether the attribute is multi-valued."),
        Attribute::string("description").describe("The attribute's human-readable description."),
        Attribute::boolean("required").describe("Whether the attribute is required."),
        Attribute::string("canonicalValues").multi().case_exact().describe("Suggested canonical values."),
        Attribute::boolean("caseExact").describe("Whether string values are case sensitive."),
        keyword("mutability", &["readOnly", "readWrite", "immutable", "writeOnly"])
            .describe("When the attribute's value can be (re)defined."),
        keyword("returned", &["always", "never", "default", "request"])
            .describe("When the attribute is returned in a response."),
        keyword("uniqueness", &["none", "server", "global"]).describe("How uniqueness of values is enforced."),
        Attribute::string("referenceTypes").multi().case_exact().describe("The resource types that may be referenced."),
    ]
}

/// A schema whose attributes, and their sub-attributes, are all `readOnly`: discovery
/// documents are published by the service provider, never written by clients.
fn read_only_schema(id: &str, name: &str, description: &str, attributes: Vec<Attribute>) -> Schema {
    Schema::new(id, name, description, attributes.into_iter().map(read_only).collect())
}

fn read_only(attr: Attribute) -> Attribute {
    let mut attr = attr.mutability(Mutability::ReadOnly);
    attr.sub_attributes = std::mem::take(&mut attr.sub_attributes).into_iter().map(read_only).collect();
    attr
}

/// The attributes a tenant's mapping supports, built by the mapping compiler and applied with
/// `restrict`. Entries name attributes case-insensitively; their order does not matter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub entries: Vec<Keep>,
}

/// One kept attribute or sub-attribute, with the characteristics the tenant overrides.
///
/// Keeping a sub-attribute keeps its parent. A complex attribute kept without any entry naming
/// one of its sub-attributes keeps all of them; once one is named, only the named ones stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keep {
    /// The schema URN; `None` means the resource's core schema.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
    pub overrides: Overrides,
}

/// Characteristics a tenant may narrow: `None` keeps the standard's value. Overrides let
/// discovery tell a client exactly what the app holds, e.g. `emails.type` limited to `work`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub description: Option<String>,
    pub required: Option<bool>,
    pub case_exact: Option<bool>,
    pub mutability: Option<Mutability>,
    pub returned: Option<Returned>,
    pub uniqueness: Option<Uniqueness>,
    pub canonical_values: Option<Vec<String>>,
}

impl Overrides {
    /// Writes the set characteristics into `attr`.
    pub fn apply(&self, attr: &mut Attribute) {
        if let Some(d) = &self.description {
            attr.description.clone_from(d);
        }
        if let Some(values) = &self.canonical_values {
            attr.canonical_values.clone_from(values);
        }
        attr.required = self.required.unwrap_or(attr.required);
        attr.case_exact = self.case_exact.unwrap_or(attr.case_exact);
        attr.mutability = self.mutability.unwrap_or(attr.mutability);
        attr.returned = self.returned.unwrap_or(attr.returned);
        attr.uniqueness = self.uniqueness.unwrap_or(attr.uniqueness);
    }
}

impl Keep {
    /// Keeps the core attribute `name`.
    pub fn attr(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }
    /// Keeps the sub-attribute `name.sub` of the core schema.
    pub fn sub(name: &str, sub: &str) -> Self {
        Self { name: name.to_owned(), sub: Some(sub.to_owned()), ..Self::default() }
    }
    /// Moves the entry to the schema `urn` (an extension, usually).
    pub fn in_schema(mut self, urn: &str) -> Self {
        self.urn = Some(urn.to_owned());
        self
    }
    /// Overrides the canonical values.
    pub fn canonical(mut self, values: &[&str]) -> Self {
        self.overrides.canonical_values = Some(values.iter().map(|s| (*s).to_owned()).collect());
        self
    }
    /// Overrides `required`.
    pub fn required(mut self, required: bool) -> Self {
        self.overrides.required = Some(required);
        self
    }
    /// Overrides `mutability`.
    pub fn mutability(mut self, m: Mutability) -> Self {
        self.overrides.mutability = Some(m);
        self
    }

    /// Whether the entry belongs to `schema`; `core` tells whether that is the core schema.
    fn targets(&self, schema: &Schema, core: bool) -> bool {
        match &self.urn {
            Some(urn) => urn.eq_ignore_ascii_case(&schema.id),
            None => core,
        }
    }

    /// The entry as a path, for error messages.
    fn path(&self) -> String {
        let urn = self.urn.as_deref().map(|u| format!("{u}:")).unwrap_or_default();
        let sub = self.sub.as_deref().map(|s| format!(".{s}")).unwrap_or_default();
        format!("{urn}{}{sub}", self.name)
    }
}

/// Why a `Selection` does not fit a resource schema: the mapping names something the standard
/// schema lacks, which `restrict` would otherwise silently ignore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("resource type {resource} has no schema {urn}")]
    UnknownSchema { resource: String, urn: String },
    #[error("resource type {resource} has no attribute {path}")]
    UnknownAttribute { resource: String, path: String },
}

impl Selection {
    /// A selection of `entries`.
    pub fn new(entries: Vec<Keep>) -> Self {
        Self { entries }
    }

    /// Checks that every entry names an attribute of `full`, so the mapping compiler can report
    /// typos instead of publishing a schema that silently lacks them.
    pub fn validate(&self, full: &ResourceSchema) -> Result<(), SelectionError> {
        self.entries.iter().try_for_each(|e| {
            let urn = e.urn.as_deref().unwrap_or(&full.core.id);
            let schema = full
                .schema(urn)
                .ok_or_else(|| SelectionError::UnknownSchema { resource: full.name.clone(), urn: urn.to_owned() })?;
            let attr = schema.attribute(&e.name);
            let found = match &e.sub {
                Some(sub) => attr.and_then(|a| a.sub(sub)),
                None => attr,
            };
            found
                .map(|_| ())
                .ok_or_else(|| SelectionError::UnknownAttribute { resource: full.name.clone(), path: e.path() })
        })
    }

    /// The entries of `schema` naming the top-level attribute `name`.
    fn named<'a>(&'a self, schema: &Schema, core: bool, name: &str) -> Vec<&'a Keep> {
        self.entries.iter().filter(|e| e.targets(schema, core) && e.name.eq_ignore_ascii_case(name)).collect()
    }
}

/// The per-tenant schema: `full` cut down to what `keep` selects, with the tenant's overrides
/// applied. Attributes keep the standard's order. An extension left without attributes is
/// dropped; the core schema always stays. Unknown entries are ignored: see `Selection::validate`.
pub fn restrict(full: &ResourceSchema, keep: &Selection) -> ResourceSchema {
    ResourceSchema {
        name: full.name.clone(),
        endpoint: full.endpoint.clone(),
        core: restrict_schema(&full.core, true, keep),
        extensions: full
            .extensions
            .iter()
            .map(|s| restrict_schema(s, false, keep))
            .filter(|s| !s.attributes.is_empty())
            .collect(),
    }
}

fn restrict_schema(schema: &Schema, core: bool, keep: &Selection) -> Schema {
    let attributes =
        schema.attributes.iter().filter_map(|a| restrict_attribute(a, &keep.named(schema, core, &a.name))).collect();
    Schema { attributes, ..schema.clone() }
}

/// `attr` as `entries` (all naming it) keep it, or `None` when there are none.
fn restrict_attribute(attr: &Attribute, entries: &[&Keep]) -> Option<Attribute> {
    if entries.is_empty() {
        return None;
    }
    let mut kept = attr.clone();
    for e in entries.iter().filter(|e| e.sub.is_none()) {
        e.overrides.apply(&mut kept);
    }
    let subs: Vec<&Keep> = entries.iter().copied().filter(|e| e.sub.is_some()).collect();
    if !subs.is_empty() {
        kept.sub_attributes = attr.sub_attributes.iter().filter_map(|s| restrict_sub(s, &subs)).collect();
    }
    Some(kept)
}

fn restrict_sub(sub: &Attribute, entries: &[&Keep]) -> Option<Attribute> {
    let named: Vec<&Keep> = entries
        .iter()
        .copied()
        .filter(|e| e.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&sub.name)))
        .collect();
    if named.is_empty() {
        return None;
    }
    let mut kept = sub.clone();
    for e in named {
        e.overrides.apply(&mut kept);
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(attrs: &[Attribute]) -> Vec<&str> {
        attrs.iter().map(|a| a.name.as_str()).collect()
    }

    fn attr<'s>(schema: &'s Schema, name: &str) -> &'s Attribute {
        schema.attribute(name).unwrap_or_else(|| panic!("{} lacks {name}", schema.id))
    }

    fn sub<'s>(schema: &'s Schema, name: &str, sub: &str) -> &'s Attribute {
        attr(schema, name).sub(sub).unwrap_or_else(|| panic!("{name} lacks {sub}"))
    }

    #[test]
    fn user_schema_has_every_rfc_attribute_in_order() {
        let user = user_schema();
        assert_eq!(user.id, USER);
        assert_eq!(
            names(&user.attributes),
            [
                "userName",
                "name",
                "displayName",
                "nickName",
                "profileUrl",
                "title",
                "userType",
                "preferredLanguage",
                "locale",
                "timezone",
                "active",
                "password",
                "emails",
                "phoneNumbers",
                "ims",
                "photos",
                "addresses",
                "groups",
                "entitlements",
                "roles",
                "x509Certificates",
            ]
        );
        assert_eq!(
            names(&attr(&user, "name").sub_attributes),
            ["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"]
        );
        assert_eq!(
            names(&attr(&user, "addresses").sub_attributes),
            ["formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary"]
        );
        for multi in ["emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"] {
            assert_eq!(names(&attr(&user, multi).sub_attributes), ["value", "display", "type", "primary"], "{multi}");
            assert!(attr(&user, multi).multi_valued, "{multi}");
        }
    }

    #[test]
    fn user_schema_characteristics_follow_rfc_7643() {
        let user = user_schema();
        let user_name = attr(&user, "userName");
        assert!(user_name.required && !user_name.case_exact);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);
        let password = attr(&user, "password");
        assert_eq!((password.mutability, password.returned), (Mutability::WriteOnly, Returned::Never));
        assert_eq!(attr(&user, "active").ty, AttrType::Boolean);
        assert_eq!(attr(&user, "profileUrl").reference_types, ["external"]);
        assert_eq!(sub(&user, "photos", "value").reference_types, ["external"]);
        assert_eq!(sub(&user, "x509Certificates", "value").ty, AttrType::Binary);
        assert_eq!(sub(&user, "emails", "type").canonical_values, ["work", "home", "other"]);
        assert_eq!(
            sub(&user, "phoneNumbers", "type").canonical_values,
            ["work", "home", "mobile", "fax", "pager", "other"]
        );
        assert_eq!(
            sub(&user, "ims", "type").canonical_values,
            ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        );
        assert_eq!(sub(&user, "photos", "type").canonical_values, ["photo", "thumbnail"]);
        assert!(sub(&user, "roles", "type").canonical_values.is_empty());
        assert_eq!(sub(&user, "emails", "primary").ty, AttrType::Boolean);
    }

    #[test]
    fn user_groups_are_read_only_through_and_through() {
        let user = user_schema();
        let groups = attr(&user, "groups");
        assert_eq!(groups.mutability, Mutability::ReadOnly);
        assert!(groups.sub_attributes.iter().all(|s| s.mutability == Mutability::ReadOnly));
        assert_eq!(names(&groups.sub_attributes), ["value", "$ref", "display", "type"]);
        assert_eq!(groups.sub("$REF").map(|r| r.reference_types.clone()), Some(vec!["User".into(), "Group".into()]));
        assert_eq!(sub(&user, "groups", "type").canonical_values, ["direct", "indirect"]);
    }

    #[test]
    fn group_schema_members_are_immutable() {
        let group = group_schema();
        assert_eq!(group.id, GROUP);
        assert!(attr(&group, "displayName").required);
        let members = attr(&group, "members");
        assert!(members.multi_valued);
        assert_eq!(names(&members.sub_attributes), ["value", "$ref", "type", "display"]);
        for s in ["value", "$ref", "type"] {
            assert_eq!(sub(&group, "members", s).mutability, Mutability::Immutable, "{s}");
        }
        assert_eq!(sub(&group, "members", "type").canonical_values, ["User", "Group"]);
        assert_eq!(sub(&group, "members", "$ref").reference_types, ["User", "Group"]);
    }

    #[test]
    fn enterprise_schema_matches_rfc() {
        let ent = enterprise_user_schema();
        assert_eq!(ent.id, ENTERPRISE_USER);
        assert_eq!(
            names(&ent.attributes),
            ["employeeNumber", "costCenter", "organization", "division", "department", "manager"]
        );
        assert_eq!(names(&attr(&ent, "manager").sub_attributes), ["value", "$ref", "displayName"]);
        assert_eq!(sub(&ent, "manager", "$ref").reference_types, ["User"]);
        assert_eq!(sub(&ent, "manager", "displayName").mutability, Mutability::ReadOnly);
    }

    #[test]
    fn resources_bind_schemas_to_endpoints() {
        let user = user_resource();
        assert_eq!((user.name.as_str(), user.endpoint.as_str()), ("User", "/Users"));
        assert_eq!(user.extensions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [ENTERPRISE_USER]);
        assert!(user.find(Some(ENTERPRISE_USER), "manager", Some("value")).is_some());
        let group = group_resource();
        assert_eq!((group.name.as_str(), group.endpoint.as_str()), ("Group", "/Groups"));
        assert!(group.extensions.is_empty());
    }

    fn all_read_only(attrs: &[Attribute]) -> bool {
        attrs.iter().all(|a| a.mutability == Mutability::ReadOnly && all_read_only(&a.sub_attributes))
    }

    #[test]
    fn discovery_schemas_are_read_only_and_nest_at_most_twice() {
        for schema in [service_provider_config_schema(), resource_type_schema(), schema_schema()] {
            assert!(all_read_only(&schema.attributes), "{}", schema.id);
        }
        let schema = schema_schema();
        let subs = sub(&schema, "attributes", "subAttributes");
        assert!(subs.sub_attributes.iter().all(|s| s.ty != AttrType::Complex));
        assert_eq!(subs.sub_attributes.len() + 1, attr(&schema, "attributes").sub_attributes.len());
        assert_eq!(
            names(&service_provider_config_schema().attributes),
            ["documentationUri", "patch", "bulk", "filter", "changePassword", "sort", "etag", "authenticationSchemes"]
        );
        assert_eq!(resource_type_schema().name, "ResourceType");
    }

    #[test]
    fn restrict_keeps_selected_attributes_in_standard_order() {
        let keep = Selection::new(vec![
            Keep::sub("emails", "type").canonical(&["work"]),
            Keep::attr("USERNAME"),
            Keep::sub("Emails", "Value"),
        ]);
        let tenant = restrict(&user_resource(), &keep);
        assert_eq!(names(&tenant.core.attributes), ["userName", "emails"]);
        let emails = attr(&tenant.core, "emails");
        assert_eq!(names(&emails.sub_attributes), ["value", "type"]);
        assert_eq!(sub(&tenant.core, "emails", "type").canonical_values, ["work"]);
        assert!(tenant.extensions.is_empty(), "an extension with nothing kept is dropped");
        assert_eq!((tenant.name, tenant.endpoint), ("User".to_owned(), "/Users".to_owned()));
    }

    #[test]
    fn restrict_keeps_whole_complex_attributes_and_applies_overrides() {
        let keep = Selection::new(vec![
            Keep::attr("userName").mutability(Mutability::Immutable),
            Keep::attr("name").required(true),
            Keep::attr("displayName").required(true),
            Keep::attr("displayName").required(false).canonical(&["x"]),
        ]);
        let tenant = restrict(&user_resource(), &keep);
        assert_eq!(attr(&tenant.core, "userName").mutability, Mutability::Immutable);
        let name = attr(&tenant.core, "name");
        assert!(name.required);
        assert_eq!(name.sub_attributes, attr(&user_schema(), "name").sub_attributes);
        let display = attr(&tenant.core, "displayName");
        assert!(!display.required, "later entries win");
        assert_eq!(display.canonical_values, ["x"]);
    }

    #[test]
    fn restrict_keeps_extensions_with_kept_attributes() {
        let keep = Selection::new(vec![
            Keep::attr("userName"),
            Keep::attr("department").in_schema(&ENTERPRISE_USER.to_uppercase()),
            Keep::sub("manager", "value").in_schema(ENTERPRISE_USER),
        ]);
        let tenant = restrict(&user_resource(), &keep);
        let ent = tenant.schema(ENTERPRISE_USER).map(|s| names(&s.attributes));
        assert_eq!(ent, Some(vec!["department", "manager"]));
        assert_eq!(tenant.find(Some(ENTERPRISE_USER), "manager", None).map(|m| m.sub_attributes.len()), Some(1));
        assert!(tenant.core.attribute("department").is_none(), "entries stay in their schema");
    }

    #[test]
    fn restrict_with_nothing_selected_leaves_an_empty_core() {
        let tenant = restrict(&user_resource(), &Selection::default());
        assert!(tenant.core.attributes.is_empty());
        assert!(tenant.extensions.is_empty());
        assert_eq!(tenant.core.id, USER);
    }

    #[test]
    fn validate_reports_what_restrict_would_ignore() {
        let full = user_resource();
        let ok = Selection::new(vec![Keep::attr("userName"), Keep::sub("manager", "value").in_schema(ENTERPRISE_USER)]);
        assert_eq!(ok.validate(&full), Ok(()));
        let bad_attr = Selection::new(vec![Keep::attr("userNme")]);
        assert_eq!(
            bad_attr.validate(&full),
            Err(SelectionError::UnknownAttribute { resource: "User".into(), path: "userNme".into() })
        );
        let bad_sub = Selection::new(vec![Keep::sub("manager", "email").in_schema(ENTERPRISE_USER)]);
        let expected = format!("resource type User has no attribute {ENTERPRISE_USER}:manager.email");
        assert_eq!(bad_sub.validate(&full).map_err(|e| e.to_string()), Err(expected));
        let bad_urn = Selection::new(vec![Keep::attr("x").in_schema("urn:x")]);
        assert_eq!(
            bad_urn.validate(&full),
            Err(SelectionError::UnknownSchema { resource: "User".into(), urn: "urn:x".into() })
        );
        assert_eq!(restrict(&full, &bad_attr).core.attributes, vec![]);
    }
}
