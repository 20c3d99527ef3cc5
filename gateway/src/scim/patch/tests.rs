use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::scim::schema::{ENTERPRISE_USER as ENT, GROUP, Schema, USER};

const EMPLOYEE_NUMBER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
const MANAGER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";
const ADSCIM_GROUP: &str = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn schema(id: &str, attributes: Vec<Attribute>) -> Schema {
    Schema { id: id.to_owned(), name: String::new(), description: String::new(), attributes }
}

fn resource_schema(name: &str, core: Schema, extensions: Vec<Schema>) -> ResourceSchema {
    ResourceSchema { name: name.to_owned(), endpoint: format!("/{name}s"), core, extensions }
}

fn multi_complex(name: &str, subs: &[&str]) -> Attribute {
    let subs = subs
        .iter()
        .map(|&sub| match sub {
            "primary" => Attribute::boolean(sub),
            _ => Attribute::string(sub),
        })
        .collect();
    Attribute::complex(name, subs).multi()
}

/// A User as the RFC defines the parts this module exercises, plus the enterprise extension.
fn user_schema() -> ResourceSchema {
    let core = vec![
        Attribute::string("userName").required(),
        Attribute::complex(
            "name",
            vec![Attribute::string("givenName"), Attribute::string("familyName"), Attribute::string("formatted")],
        ),
        Attribute::string("displayName"),
        Attribute::string("nickName"),
        Attribute::string("title"),
        Attribute::boolean("active"),
        multi_complex("emails", &["value", "type", "primary"]),
        multi_complex("addresses", &["formatted", "streetAddress", "locality", "region", "type", "primary"]),
        multi_complex("phoneNumbers", &["value", "type", "primary"]),
        multi_complex("roles", &["value", "display", "type", "primary"]),
        Attribute::complex(
            "groups",
            vec![Attribute::string("value"), Attribute::reference("$ref", &["Group"]), Attribute::string("display")],
        )
        .multi()
        .mutability(Mutability::ReadOnly),
    ];
    let enterprise = vec![
        Attribute::string("employeeNumber"),
        Attribute::string("department"),
        Attribute::complex(
            "manager",
            vec![
                Attribute::string("value"),
                Attribute::reference("$ref", &["User"]),
                Attribute::string("displayName").mutability(Mutability::ReadOnly),
            ],
        ),
    ];
    resource_schema("User", schema(USER, core), vec![schema(ENT, enterprise)])
}

fn group_schema() -> ResourceSchema {
    let members = Attribute::complex(
        "members",
        vec![
            Attribute::string("value").mutability(Mutability::Immutable),
            Attribute::reference("$ref", &["User", "Group"]).mutability(Mutability::Immutable),
            Attribute::string("type").mutability(Mutability::Immutable),
            Attribute::string("display"),
        ],
    )
    .multi();
    resource_schema("Group", schema(GROUP, vec![Attribute::string("displayName").required(), members]), vec![])
}

/// A schema with the attribute shapes the User lacks: integer, decimal, immutable.
fn device_schema() -> ResourceSchema {
    let core = vec![
        Attribute::new("loginCount", AttrType::Integer),
        Attribute::new("score", AttrType::Decimal),
        Attribute::string("serial").mutability(Mutability::Immutable),
        Attribute::string("tags").multi(),
    ];
    resource_schema("Device", schema("urn:example:Device", core), vec![])
}

/// The user Entra creates (b3): core and enterprise schemas, a work email, `roles: []`.
fn entra_user() -> Value {
    json!({
        "schemas": [USER, ENT],
        "id": "5171a35d82074e068ce2",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []
    })
}

/// The group Entra creates (b3): empty, members come by PATCH.
fn entra_group() -> Value {
    json!({
        "schemas": [GROUP, ADSCIM_GROUP],
        "id": "a8d2f3c6",
        "externalId": "8aa1a0c0-c4c3-4bc0-a4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"}
    })
}

fn group_with(members: &[&str]) -> Value {
    let mut group = entra_group();
    group["members"] = members.iter().map(|m| json!({"value": m})).collect();
    group
}

fn body(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}

fn try_patch(resource: &mut Value, schema: &ResourceSchema, operations: Value) -> Result<(), ScimError> {
    let ops = parse_request(&body(operations))?;
    apply(resource, &ops, schema)
}

/// Applies a PatchOp body that must succeed, returning the patched resource.
#[track_caller]
fn patched(mut resource: Value, schema: &ResourceSchema, operations: Value) -> Value {
    if let Err(e) = try_patch(&mut resource, schema, operations) {
        panic!("patch failed: {e}");
    }
    resource
}

/// Applies a PatchOp body that must fail, checking that the resource is left unchanged.
#[track_caller]
fn rejected(resource: Value, schema: &ResourceSchema, operations: Value) -> ScimError {
    let mut copy = resource.clone();
    let error = try_patch(&mut copy, schema, operations).expect_err("patch should fail");
    assert_eq!(copy, resource, "a failed patch must leave the resource unchanged");
    error
}

#[track_caller]
fn assert_error(error: &ScimError, scim_type: ScimType, detail_contains: &str) {
    assert_eq!(error.status, 400, "{error}");
    assert_eq!(error.scim_type, Some(scim_type), "{error}");
    assert!(error.detail.contains(detail_contains), "detail {:?} should mention {detail_contains:?}", error.detail);
}

fn user() -> ResourceSchema {
    user_schema()
}

fn group() -> ResourceSchema {
    group_schema()
}

// ---------------------------------------------------------------------------------------------
// Entra ID (entra-scim-behaviour.md b3, b4)
// ---------------------------------------------------------------------------------------------

#[test]
fn entra_replaces_a_single_valued_attribute() {
    let out = patched(entra_user(), &user(), json!([{"op": "Replace", "path": "userName", "value": "new@x"}]));
    assert_eq!(out["userName"], "new@x");
}

#[test]
fn entra_adds_with_capitalised_and_lowercase_op_names() {
    for op in ["Add", "add", "ADD"] {
        let out = patched(entra_user(), &user(), json!([{"op": op, "path": "nickName", "value": "Babs"}]));
        assert_eq!(out["nickName"], "Babs");
    }
}

#[test]
fn entra_replaces_the_work_email_through_a_value_path() {
    let mut resource = entra_user();
    resource["emails"].as_array_mut().unwrap().push(json!({"type": "home", "value": "home@x"}));
    let out = patched(
        resource,
        &user(),
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@b"}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"primary": true, "type": "work", "value": "a@b"}, {"type": "home", "value": "home@x"}])
    );
}

#[test]
fn entra_value_path_that_matches_nothing_creates_the_element() {
    let mut resource = entra_user();
    resource.as_object_mut().unwrap().remove("emails");
    let out = patched(
        resource,
        &user(),
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@b"}]),
    );
    assert_eq!(out["emails"], json!([{"type": "work", "value": "a@b"}]));
}

#[test]
fn entra_address_sub_attributes_land_in_one_element() {
    let out = patched(
        entra_user(),
        &user(),
        json!([
            {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St, Redmond"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Redmond"},
            {"op": "Add", "path": "addresses[type eq \"work\"].region", "value": "WA"}
        ]),
    );
    assert_eq!(
        out["addresses"],
        json!([{"type": "work", "formatted": "1 Main St, Redmond", "locality": "Redmond", "region": "WA"}])
    );
}

#[test]
fn entra_sets_an_extension_attribute_by_urn_path() {
    let mut resource = entra_user();
    resource["schemas"] = json!([USER]);
    let out = patched(resource, &user(), json!([{"op": "Replace", "path": EMPLOYEE_NUMBER, "value": "701984"}]));
    assert_eq!(out[ENT], json!({"employeeNumber": "701984"}));
    assert_eq!(out["schemas"], json!([USER, ENT]), "the extension is declared once it holds data");
}

#[test]
fn entra_default_multi_attribute_update_is_one_op_per_attribute() {
    let out = patched(
        entra_user(),
        &user(),
        json!([
            {"op": "Replace", "path": "displayName", "value": "Babs Jensen"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "babs@contoso.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Barbara"},
            {"op": "Replace", "path": "name.familyName", "value": "Jensen"},
            {"op": "Replace", "path": "externalId", "value": "bjensen"},
            {"op": "Replace", "path": EMPLOYEE_NUMBER, "value": "42"}
        ]),
    );
    assert_eq!(out["displayName"], "Babs Jensen");
    assert_eq!(out["emails"], json!([{"primary": true, "type": "work", "value": "babs@contoso.com"}]));
    assert_eq!(
        out["name"],
        json!({"formatted": "givenName familyName", "familyName": "Jensen", "givenName": "Barbara"})
    );
    assert_eq!(out["externalId"], "bjensen");
    assert_eq!(out[ENT]["employeeNumber"], "42");
}

#[test]
fn entra_flag_sends_one_no_path_op_with_dotted_and_urn_keys() {
    let out = patched(
        entra_user(),
        &user(),
        json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@contoso.com"},
            {"op": "replace", "value": {
                "displayName": "Babs Jensen",
                "name.givenName": "Barbara",
                "name.familyName": "Jensen",
                EMPLOYEE_NUMBER: "42"
            }}
        ]),
    );
    assert_eq!(out["displayName"], "Babs Jensen");
    assert_eq!(out["name"]["givenName"], "Barbara");
    assert_eq!(out["name"]["familyName"], "Jensen");
    assert_eq!(out[ENT]["employeeNumber"], "42");
    assert_eq!(out["emails"][0]["value"], "babs@contoso.com");
}

#[test]
fn entra_disables_with_string_or_boolean() {
    for value in [json!("False"), json!("false"), json!("FALSE"), json!(false)] {
        let out = patched(entra_user(), &user(), json!([{"op": "Replace", "path": "active", "value": value}]));
        assert_eq!(out["active"], json!(false), "value {value}");
    }
    let mut disabled = entra_user();
    disabled["active"] = json!(false);
    let out = patched(disabled, &user(), json!([{"op": "Replace", "path": "active", "value": "True"}]));
    assert_eq!(out["active"], json!(true));
}

#[test]
fn non_boolean_string_for_a_boolean_is_invalid_value() {
    let error = rejected(entra_user(), &user(), json!([{"op": "Replace", "path": "active", "value": "yes"}]));
    assert_error(&error, ScimType::InvalidValue, "active must be a boolean");
}

#[test]
fn boolean_sub_attributes_are_coerced_too() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "Add", "path": "phoneNumbers", "value": [{"value": "555", "type": "work", "primary": "True"}]}]),
    );
    assert_eq!(out["phoneNumbers"], json!([{"value": "555", "type": "work", "primary": true}]));
    let error = rejected(
        entra_user(),
        &user(),
        json!([{"op": "Add", "path": "emails", "value": [{"value": "x@y", "primary": "maybe"}]}]),
    );
    assert_error(&error, ScimType::InvalidValue, "emails.primary must be a boolean");
}

/// b3: the manager is linked by a separate PATCH after the user exists, in the tutorial's shape.
#[test]
fn entra_links_the_manager_with_an_array_value() {
    for path in ["manager", MANAGER] {
        let out = patched(
            entra_user(),
            &user(),
            json!([{"op": "Add", "path": path, "value": [{"$ref": "https://host/scim/Users/26118915", "value": "26118915"}]}]),
        );
        assert_eq!(out[ENT]["manager"], json!({"$ref": "https://host/scim/Users/26118915", "value": "26118915"}));
    }
}

#[test]
fn manager_may_be_an_object_or_a_bare_id() {
    for value in [json!({"value": "26118915"}), json!("26118915"), json!([{"value": "26118915"}])] {
        let out = patched(entra_user(), &user(), json!([{"op": "Add", "path": MANAGER, "value": value}]));
        assert_eq!(out[ENT]["manager"], json!({"value": "26118915"}), "value {value}");
    }
}

#[test]
fn changing_the_manager_replaces_the_whole_reference() {
    let mut resource = entra_user();
    resource[ENT] = json!({"manager": {"value": "old", "$ref": "https://host/Users/old", "displayName": "Old Boss"}});
    let out = patched(resource, &user(), json!([{"op": "Replace", "path": MANAGER, "value": {"value": "new"}}]));
    assert_eq!(out[ENT]["manager"], json!({"value": "new"}), "no stale $ref or displayName");
}

#[test]
fn replacing_the_manager_with_an_empty_value_removes_it() {
    for empty in [json!(""), json!(null), json!({}), json!([]), json!({"value": ""})] {
        let mut resource = entra_user();
        resource[ENT] = json!({"manager": {"value": "26118915"}, "department": "Sales"});
        let out = patched(resource, &user(), json!([{"op": "Replace", "path": MANAGER, "value": empty}]));
        assert_eq!(out[ENT], json!({"department": "Sales"}), "value {empty}");
    }
}

#[test]
fn removing_the_last_extension_attribute_drops_the_extension() {
    let mut resource = entra_user();
    resource[ENT] = json!({"manager": {"value": "26118915"}});
    let out = patched(resource, &user(), json!([{"op": "Replace", "path": MANAGER, "value": ""}]));
    assert!(out.get(ENT).is_none());
    assert_eq!(out["schemas"], json!([USER]));
}

#[test]
fn manager_display_name_is_read_only() {
    let error = rejected(
        entra_user(),
        &user(),
        json!([{"op": "Replace", "path": format!("{MANAGER}.displayName"), "value": "Boss"}]),
    );
    assert_error(&error, ScimType::Mutability, "manager.displayName is readOnly");
}

/// b3 + b4: groups are created empty; members come by PATCH, several at once.
#[test]
fn entra_adds_several_members() {
    let out = patched(
        entra_group(),
        &group(),
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u1"}, {"$ref": null, "value": "u2"}]}]),
    );
    assert_eq!(out["members"], json!([{"value": "u1"}, {"value": "u2"}]));
}

#[test]
fn adding_an_existing_member_changes_nothing() {
    let out = patched(
        group_with(&["u1"]),
        &group(),
        json!([{"op": "add", "path": "members", "value": [{"value": "u1", "display": "Babs"}, {"value": "u2"}]}]),
    );
    assert_eq!(out["members"], json!([{"value": "u1"}, {"value": "u2"}]));
}

#[test]
fn entra_removes_only_the_members_listed_in_value() {
    let out = patched(
        group_with(&["u1", "u2", "u3"]),
        &group(),
        json!([{"op": "Remove", "path": "members", "value": [{"value": "u1"}, {"value": "u3"}]}]),
    );
    assert_eq!(out["members"], json!([{"value": "u2"}]));
    let unchanged = patched(group_with(&["u1"]), &group(), json!([{"op": "Remove", "path": "members", "value": []}]));
    assert_eq!(unchanged, group_with(&["u1"]), "an empty list removes nobody");
}

#[test]
fn entra_flag_removes_a_member_by_filter() {
    let out =
        patched(group_with(&["u1", "u2"]), &group(), json!([{"op": "remove", "path": "members[value eq \"u2\"]"}]));
    assert_eq!(out["members"], json!([{"value": "u1"}]));
}

#[test]
fn entra_renames_a_group() {
    let out = patched(entra_group(), &group(), json!([{"op": "Replace", "path": "displayName", "value": "Renamed"}]));
    assert_eq!(out["displayName"], "Renamed");
}

#[test]
fn entra_json_encoded_roles_are_decoded() {
    let role = r#"{"id":"7c6f3bb6-8d8b-4e5a-9d52-08a1a24f0c1e","value":"25","displayName":"Role1234"}"#;
    let out = patched(entra_user(), &user(), json!([{"op": "Add", "path": "roles", "value": [{"value": role}]}]));
    assert_eq!(out["roles"], json!([{"value": "25", "display": "Role1234"}]));
}

#[test]
fn decoded_roles_keep_type_and_primary() {
    let role = r#"{"id":"x","value":"25","displayName":"Role1234"}"#;
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "Add", "path": "roles", "value": [{"value": role, "type": "WindowsAzureActiveDirectoryRole", "primary": "True"}]}]),
    );
    assert_eq!(
        out["roles"],
        json!([{"value": "25", "type": "WindowsAzureActiveDirectoryRole", "primary": true, "display": "Role1234"}])
    );
}

#[test]
fn json_looking_strings_elsewhere_are_kept_as_sent() {
    let out =
        patched(entra_user(), &user(), json!([{"op": "Replace", "path": "nickName", "value": "{\"value\":\"1\"}"}]));
    assert_eq!(out["nickName"], "{\"value\":\"1\"}");
}

#[test]
fn entra_assertive_role_sync_replaces_all_roles() {
    let mut resource = entra_user();
    resource["roles"] = json!([{"value": "Old", "primary": true}]);
    let roles = json!([
        {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "Admin", "value": "Admin"},
        {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "User", "value": "User"}
    ]);
    let out = patched(resource, &user(), json!([{"op": "replace", "path": "roles", "value": roles.clone()}]));
    assert_eq!(out["roles"], roles);
}

#[test]
fn entra_role_paths_filter_on_primary_true_string() {
    let mut resource = entra_user();
    resource["roles"] = json!([{"value": "Admin", "primary": true}, {"value": "User", "primary": false}]);
    let out = patched(
        resource,
        &user(),
        json!([{"op": "Replace", "path": "roles[primary eq \"True\"].display", "value": "Administrator"}]),
    );
    assert_eq!(
        out["roles"],
        json!([{"value": "Admin", "primary": true, "display": "Administrator"}, {"value": "User", "primary": false}])
    );
}

#[test]
fn entra_add_only_role_sync_with_no_roles_changes_nothing() {
    let out = patched(entra_user(), &user(), json!([{"op": "Add", "path": "roles", "value": []}]));
    assert_eq!(out, entra_user());
}

/// SCIM_Null_Update_Test: empty strings, then nulls, must read back empty.
#[test]
fn entra_null_update_clears_attributes() {
    for empty in [json!(""), json!(null)] {
        let mut resource = entra_user();
        resource["nickName"] = json!("Babs");
        resource["title"] = json!("Boss");
        resource[ENT] = json!({"employeeNumber": "42", "department": "Sales"});
        let out = patched(
            resource,
            &user(),
            json!([
                {"op": "Replace", "path": "nickName", "value": empty},
                {"op": "Add", "path": "title", "value": empty},
                {"op": "Replace", "path": "name.givenName", "value": empty},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": empty},
                {"op": "Replace", "path": EMPLOYEE_NUMBER, "value": empty},
                {"op": "Replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": empty}}
            ]),
        );
        for gone in ["nickName", "title", "emails", ENT] {
            assert!(out.get(gone).is_none(), "{gone} should be gone with {empty}: {out}");
        }
        assert_eq!(out["name"], json!({"formatted": "givenName familyName", "familyName": "familyName"}));
        assert_eq!(out["schemas"], json!([USER]));
    }
}

// ---------------------------------------------------------------------------------------------
// Okta (b10)
// ---------------------------------------------------------------------------------------------

#[test]
fn okta_deactivates_without_a_path() {
    let out = patched(entra_user(), &user(), json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!(out["active"], json!(false));
}

#[test]
fn okta_renames_a_group_echoing_its_id() {
    let out = patched(
        entra_group(),
        &group(),
        json!([{"op": "replace", "value": {"id": "a8d2f3c6", "displayName": "Okta Renamed"}}]),
    );
    assert_eq!(out["displayName"], "Okta Renamed");
    assert_eq!(out["id"], "a8d2f3c6");
    let error =
        rejected(entra_group(), &group(), json!([{"op": "replace", "value": {"id": "other", "displayName": "x"}}]));
    assert_error(&error, ScimType::Mutability, "id");
}

#[test]
fn okta_membership_patch_removes_and_adds() {
    let out = patched(
        group_with(&["u1", "u2"]),
        &group(),
        json!([
            {"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u3", "display": "user3@x"}]}
        ]),
    );
    assert_eq!(out["members"], json!([{"value": "u2"}, {"value": "u3", "display": "user3@x"}]));
}

#[test]
fn okta_replaces_all_members() {
    let out = patched(
        group_with(&["u1", "u2"]),
        &group(),
        json!([{"op": "replace", "path": "members", "value": [{"value": "u3", "display": "user3@x"}]}]),
    );
    assert_eq!(out["members"], json!([{"value": "u3", "display": "user3@x"}]));
}

// ---------------------------------------------------------------------------------------------
// RFC 7644 §3.5.2 examples
// ---------------------------------------------------------------------------------------------

const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
const JAMES: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

fn babs() -> Value {
    json!({"display": "Babs Jensen", "$ref": format!("https://example.com/v2/Users/{BABS}"), "value": BABS})
}

fn james() -> Value {
    json!({"display": "James Smith", "$ref": format!("https://example.com/v2/Users/{JAMES}"), "value": JAMES})
}

#[test]
fn rfc_adds_a_member() {
    let out = patched(entra_group(), &group(), json!([{"op": "add", "path": "members", "value": [babs()]}]));
    assert_eq!(out["members"], json!([babs()]));
}

#[test]
fn rfc_adds_without_a_path() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "add", "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickname": "Babs"}}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}, {"value": "babs@jensen.org", "type": "home"}])
    );
    assert_eq!(out["nickName"], "Babs", "new keys take the schema's spelling");
}

#[test]
fn rfc_removes_all_members() {
    let out = patched(group_with(&[BABS, JAMES]), &group(), json!([{"op": "remove", "path": "members"}]));
    assert!(out.get("members").is_none());
}

#[test]
fn rfc_removes_one_member() {
    let path = format!("members[value eq \"{BABS}\"]");
    let out = patched(group_with(&[BABS, JAMES]), &group(), json!([{"op": "remove", "path": path}]));
    assert_eq!(out["members"], json!([{"value": JAMES}]));
}

#[test]
fn rfc_removes_values_matching_a_complex_filter() {
    let mut resource = entra_user();
    resource["emails"] = json!([
        {"value": "a@example.com", "type": "work"},
        {"value": "b@other.org", "type": "work"},
        {"value": "c@example.com", "type": "home"}
    ]);
    let out = patched(
        resource,
        &user(),
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"value": "b@other.org", "type": "work"}, {"value": "c@example.com", "type": "home"}])
    );
}

#[test]
fn rfc_removes_all_members_then_adds() {
    let out = patched(
        group_with(&["u1", "u2"]),
        &group(),
        json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [babs(), james()]}
        ]),
    );
    assert_eq!(out["members"], json!([babs(), james()]));
}

#[test]
fn rfc_replaces_members() {
    let out = patched(
        group_with(&["u1"]),
        &group(),
        json!([{"op": "replace", "path": "members", "value": [babs(), james()]}]),
    );
    assert_eq!(out["members"], json!([babs(), james()]));
}

fn user_with_addresses() -> Value {
    let mut resource = entra_user();
    resource["addresses"] = json!([
        {"type": "work", "streetAddress": "old street", "locality": "Old Town", "primary": true},
        {"type": "home", "streetAddress": "home street"}
    ]);
    resource
}

#[test]
fn rfc_replaces_the_work_address() {
    let address = json!({
        "type": "work",
        "streetAddress": "911 Universal City Plaza",
        "locality": "Hollywood",
        "region": "CA",
        "formatted": "911 Universal City Plaza\nHollywood, CA 91608 USA",
        "primary": true
    });
    let out = patched(
        user_with_addresses(),
        &user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": address.clone()}]),
    );
    assert_eq!(out["addresses"], json!([address, {"type": "home", "streetAddress": "home street"}]));
}

#[test]
fn rfc_replaces_the_work_street_address() {
    let out = patched(
        user_with_addresses(),
        &user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]),
    );
    assert_eq!(out["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(out["addresses"][0]["locality"], "Old Town");
    assert_eq!(out["addresses"][1]["streetAddress"], "home street");
}

#[test]
fn rfc_replaces_without_a_path() {
    let emails = json!([
        {"value": "bjensen@example.com", "type": "work", "primary": true},
        {"value": "babs@jensen.org", "type": "home"}
    ]);
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "replace", "value": {"emails": emails.clone(), "nickname": "Babs"}}]),
    );
    assert_eq!(out["emails"], emails);
    assert_eq!(out["nickName"], "Babs");
}

// ---------------------------------------------------------------------------------------------
// Semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn complex_add_and_replace_merge_sub_attributes() {
    for op in ["add", "replace"] {
        let out =
            patched(entra_user(), &user(), json!([{"op": op, "path": "name", "value": {"givenName": "Barbara"}}]));
        assert_eq!(
            out["name"],
            json!({"formatted": "givenName familyName", "familyName": "familyName", "givenName": "Barbara"})
        );
    }
}

#[test]
fn multi_valued_add_appends_and_skips_duplicates() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "add", "path": "emails", "value": [
            {"value": "Test_User_fd0ea19b@testuser.com", "type": "work"},
            {"value": "second@x", "type": "other"},
            {"value": "second@x", "type": "other"}
        ]}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}, {"value": "second@x", "type": "other"}])
    );
}

#[test]
fn a_single_value_for_a_multi_valued_attribute_is_one_element() {
    let out =
        patched(entra_user(), &user(), json!([{"op": "replace", "path": "emails", "value": {"value": "only@x"}}]));
    assert_eq!(out["emails"], json!([{"value": "only@x"}]));
}

#[test]
fn a_new_primary_demotes_the_old_one() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@x", "type": "home", "primary": true}]}]),
    );
    assert_eq!(
        out["emails"],
        json!([
            {"primary": false, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"},
            {"value": "new@x", "type": "home", "primary": true}
        ])
    );
}

#[test]
fn removing_a_sub_attribute_keeps_elements_with_other_data() {
    let out = patched(
        user_with_addresses(),
        &user(),
        json!([{"op": "remove", "path": "addresses[type eq \"work\"].locality"}]),
    );
    assert_eq!(out["addresses"][0], json!({"type": "work", "streetAddress": "old street", "primary": true}));
}

#[test]
fn created_then_removed_value_path_leaves_nothing() {
    let mut resource = entra_user();
    resource.as_object_mut().unwrap().remove("addresses");
    let out = patched(
        resource.clone(),
        &user(),
        json!([
            {"op": "add", "path": "addresses[type eq \"work\"].locality", "value": "Redmond"},
            {"op": "remove", "path": "addresses[type eq \"work\"].locality"}
        ]),
    );
    assert_eq!(out, resource);
}

#[test]
fn removing_an_elements_value_removes_the_element() {
    let out = patched(entra_user(), &user(), json!([{"op": "remove", "path": "emails[type eq \"work\"].value"}]));
    assert!(out.get("emails").is_none());
}

#[test]
fn remove_with_a_filter_that_matches_nothing_is_a_no_op() {
    let out = patched(group_with(&["u1"]), &group(), json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}]));
    assert_eq!(out, group_with(&["u1"]));
    let out = patched(entra_user(), &user(), json!([{"op": "remove", "path": MANAGER}]));
    assert_eq!(out, entra_user(), "removing from an absent extension changes nothing");
}

#[test]
fn a_non_eq_filter_that_matches_nothing_is_no_target() {
    let error = rejected(
        entra_user(),
        &user(),
        json!([{"op": "replace", "path": "emails[value co \"@nowhere\"].type", "value": "other"}]),
    );
    assert_error(&error, ScimType::NoTarget, "emails");
    let error = rejected(
        entra_user(),
        &user(),
        json!([{"op": "replace", "path": "emails[type eq \"a\" or type eq \"b\"].value", "value": "x@y"}]),
    );
    assert_error(&error, ScimType::NoTarget, "emails");
}

#[test]
fn filters_with_booleans_create_typed_elements() {
    let mut resource = entra_user();
    resource.as_object_mut().unwrap().remove("emails");
    let out = patched(
        resource,
        &user(),
        json!([{"op": "add", "path": "emails[type eq \"work\" and primary eq \"True\"].value", "value": "a@b"}]),
    );
    assert_eq!(out["emails"], json!([{"type": "work", "primary": true, "value": "a@b"}]));
}

#[test]
fn whole_extension_path_merges_and_removes() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "add", "path": ENT, "value": {"department": "Sales", "employeeNumber": "7"}}]),
    );
    assert_eq!(out[ENT], json!({"department": "Sales", "employeeNumber": "7"}));
    let out = patched(out, &user(), json!([{"op": "replace", "path": ENT, "value": {"department": "R&D"}}]));
    assert_eq!(out[ENT], json!({"department": "R&D", "employeeNumber": "7"}));
    let out = patched(out, &user(), json!([{"op": "remove", "path": ENT}]));
    assert!(out.get(ENT).is_none());
    assert_eq!(out["schemas"], json!([USER]));
}

#[test]
fn extension_keys_hold_objects_in_no_path_values() {
    let out = patched(entra_user(), &user(), json!([{"op": "replace", "value": {ENT: {"department": "Sales"}}}]));
    assert_eq!(out[ENT], json!({"department": "Sales"}));
}

#[test]
fn no_path_values_ignore_schemas_and_meta() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "replace", "value": {"schemas": ["x"], "meta": {"version": "W/1"}, "title": "Boss"}}]),
    );
    assert_eq!(out["schemas"], entra_user()["schemas"]);
    assert_eq!(out["meta"], entra_user()["meta"]);
    assert_eq!(out["title"], "Boss");
}

#[test]
fn keys_are_found_in_any_case_and_created_in_the_schemas() {
    let resource = json!({"schemas": [USER], "id": "1", "UserName": "a", "NAME": {"GivenName": "x"}});
    let out = patched(
        resource,
        &user(),
        json!([
            {"op": "replace", "path": "username", "value": "b"},
            {"op": "replace", "path": "name.givenname", "value": "y"},
            {"op": "add", "path": "DISPLAYNAME", "value": "D"}
        ]),
    );
    assert_eq!(
        out,
        json!({"schemas": [USER], "id": "1", "UserName": "b", "NAME": {"GivenName": "y"}, "displayName": "D"})
    );
}

#[test]
fn core_urn_qualified_paths_are_core_attributes() {
    let out = patched(
        entra_user(),
        &user(),
        json!([
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "q@x"},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:externalId", "value": "e"}
        ]),
    );
    assert_eq!(out["userName"], "q@x");
    assert_eq!(out["externalId"], "e");
}

#[test]
fn unknown_sub_attributes_and_read_only_ones_in_values_are_dropped() {
    let out = patched(
        entra_user(),
        &user(),
        json!([{"op": "add", "path": MANAGER, "value": {"value": "m", "displayName": "Boss", "junk": 1}}]),
    );
    assert_eq!(out[ENT]["manager"], json!({"value": "m"}));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_attributes_are_invalid_path() {
    let error = rejected(entra_user(), &user(), json!([{"op": "add", "path": "favouriteColour", "value": "red"}]));
    assert_error(&error, ScimType::InvalidPath, "favouriteColour");
    let error = rejected(entra_user(), &user(), json!([{"op": "replace", "value": {"favouriteColour": "red"}}]));
    assert_error(&error, ScimType::InvalidPath, "favouriteColour");
    let error = rejected(entra_user(), &user(), json!([{"op": "replace", "path": "name.middle", "value": "x"}]));
    assert_error(&error, ScimType::InvalidPath, "name.middle");
    let error = rejected(
        entra_user(),
        &user(),
        json!([{"op": "replace", "path": "emails[kind eq \"x\"].value", "value": "x"}]),
    );
    assert_error(&error, ScimType::InvalidPath, "kind");
    let error =
        rejected(entra_user(), &user(), json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "x"}]));
    assert_error(&error, ScimType::InvalidPath, "single-valued");
}

#[test]
fn read_only_attributes_are_mutability_errors() {
    for path in ["id", "meta.created", "meta", "groups"] {
        let error = rejected(entra_user(), &user(), json!([{"op": "replace", "path": path, "value": "x"}]));
        assert_error(&error, ScimType::Mutability, "readOnly");
        let error = rejected(entra_user(), &user(), json!([{"op": "remove", "path": path}]));
        assert_error(&error, ScimType::Mutability, "readOnly");
    }
}

#[test]
fn immutable_attributes_can_be_set_once() {
    let device = device_schema();
    let out = patched(json!({"id": "d"}), &device, json!([{"op": "add", "path": "serial", "value": "S1"}]));
    assert_eq!(out["serial"], "S1");
    let same = patched(out.clone(), &device, json!([{"op": "replace", "path": "serial", "value": "S1"}]));
    assert_eq!(same, out);
    let error = rejected(out.clone(), &device, json!([{"op": "replace", "path": "serial", "value": "S2"}]));
    assert_error(&error, ScimType::Mutability, "serial is immutable");
    let error = rejected(out, &device, json!([{"op": "remove", "path": "serial"}]));
    assert_error(&error, ScimType::Mutability, "serial is immutable");
}

#[test]
fn immutable_sub_attributes_cannot_change() {
    let error = rejected(
        group_with(&["u1"]),
        &group(),
        json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u2"}]),
    );
    assert_error(&error, ScimType::Mutability, "members.value is immutable");
    let out = patched(
        group_with(&["u1"]),
        &group(),
        json!([{"op": "replace", "path": "members[value eq \"u1\"].display", "value": "Babs"}]),
    );
    assert_eq!(out["members"], json!([{"value": "u1", "display": "Babs"}]));
}

#[test]
fn values_are_checked_against_attribute_types() {
    let cases = [
        (json!({"op": "replace", "path": "displayName", "value": 5}), "displayName must be a string"),
        (json!({"op": "replace", "path": "name", "value": "Babs"}), "name must be an object"),
        (json!({"op": "replace", "path": "name.givenName", "value": ["a"]}), "name.givenName must be a string"),
        (json!({"op": "add", "path": "emails", "value": [{"value": 1}]}), "emails.value must be a string"),
        (json!({"op": "add", "path": MANAGER, "value": [{"value": "a"}, {"value": "b"}]}), "manager must be one value"),
        (json!({"op": "replace", "path": "active", "value": 1}), "active must be a boolean"),
    ];
    for (op, detail) in cases {
        let error = rejected(entra_user(), &user(), json!([op]));
        assert_error(&error, ScimType::InvalidValue, detail);
    }
    let device = device_schema();
    let error = rejected(json!({}), &device, json!([{"op": "add", "path": "loginCount", "value": 1.5}]));
    assert_error(&error, ScimType::InvalidValue, "loginCount must be an integer");
    let out =
        patched(json!({}), &device, json!([{"op": "add", "value": {"loginCount": 3, "score": 1.5, "tags": "a"}}]));
    assert_eq!(out, json!({"loginCount": 3, "score": 1.5, "tags": ["a"]}));
}

#[test]
fn required_attributes_cannot_be_removed() {
    for op in [json!({"op": "remove", "path": "userName"}), json!({"op": "replace", "path": "userName", "value": ""})] {
        let error = rejected(entra_user(), &user(), json!([op]));
        assert_error(&error, ScimType::InvalidValue, "userName is required");
    }
}

#[test]
fn remove_without_a_path_is_no_target() {
    let error = try_patch(&mut entra_user(), &user(), json!([{"op": "remove"}])).unwrap_err();
    assert_error(&error, ScimType::NoTarget, "Operations[0]");
    let op = PatchOperation { op: OpKind::Remove, path: None, value: None };
    let mut resource = entra_user();
    let error = apply(&mut resource, &[op], &user()).unwrap_err();
    assert_eq!(error.scim_type, Some(ScimType::NoTarget));
    assert_eq!(resource, entra_user());
}

#[test]
fn a_failing_operation_undoes_the_earlier_ones() {
    let error = rejected(
        entra_user(),
        &user(),
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "remove", "path": "emails"},
            {"op": "add", "path": EMPLOYEE_NUMBER, "value": "1"},
            {"op": "replace", "path": "active", "value": "nope"}
        ]),
    );
    assert_error(&error, ScimType::InvalidValue, "Operations[3]: active");
}

#[test]
fn parse_request_rejects_malformed_bodies() {
    let op = json!({"op": "add", "path": "nickName", "value": "x"});
    let cases = [
        (json!([op.clone()]), ScimType::InvalidSyntax, "JSON object"),
        (json!({"Operations": [op.clone()]}), ScimType::InvalidSyntax, PATCH_OP_SCHEMA),
        (json!({"schemas": [USER], "Operations": [op.clone()]}), ScimType::InvalidSyntax, PATCH_OP_SCHEMA),
        (json!({"schemas": [PATCH_OP_SCHEMA]}), ScimType::InvalidSyntax, "missing `Operations`"),
        (json!({"schemas": [PATCH_OP_SCHEMA], "Operations": op.clone()}), ScimType::InvalidSyntax, "must be an array"),
        (body(json!([])), ScimType::InvalidSyntax, "empty"),
        (body(json!([1])), ScimType::InvalidSyntax, "Operations[0]: an operation must be a JSON object"),
        (body(json!([{"path": "x", "value": 1}])), ScimType::InvalidSyntax, "missing `op`"),
        (
            body(json!([op.clone(), {"op": "merge", "value": {}}])),
            ScimType::InvalidSyntax,
            "Operations[1]: unknown op \"merge\"",
        ),
        (body(json!([{"op": "add", "path": 3, "value": 1}])), ScimType::InvalidSyntax, "`path` must be a string"),
        (body(json!([{"op": "add", "path": "emails[type eq", "value": 1}])), ScimType::InvalidPath, "invalid path"),
        (body(json!([{"op": "add", "path": "nickName"}])), ScimType::InvalidSyntax, "add needs a `value`"),
    ];
    for (request, scim_type, detail) in cases {
        let error = parse_request(&request).unwrap_err();
        assert_error(&error, scim_type, detail);
    }
    let too_many = body(Value::Array(vec![op; MAX_OPERATIONS + 1]));
    assert_error(&parse_request(&too_many).unwrap_err(), ScimType::InvalidSyntax, "at most 1000");
}

#[test]
fn parse_request_normalises_operations() {
    let ops = parse_request(&json!({
        "schemas": ["URN:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@b"},
            {"op": "replace", "path": "", "value": {"active": false}},
            {"op": "Remove", "path": "nickName", "value": null}
        ]
    }))
    .unwrap();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].op, OpKind::Replace);
    let path = ops[0].path.as_ref().unwrap();
    assert_eq!((path.attr.name.as_str(), path.sub.as_deref()), ("emails", Some("value")));
    assert_eq!(ops[1].path, None);
    assert_eq!(
        ops[2],
        PatchOperation {
            op: OpKind::Remove,
            path: Some(parse_patch_path("nickName").unwrap()),
            value: Some(Value::Null)
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Membership fast path
// ---------------------------------------------------------------------------------------------

fn delta(operations: Value) -> Option<MembershipDelta> {
    membership_delta(&parse_request(&body(operations)).unwrap())
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&id| id.to_owned()).collect()
}

#[test]
fn delta_of_entra_add() {
    let d = delta(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u1"}, {"$ref": null, "value": "u2"}]}])).unwrap();
    assert_eq!(d, MembershipDelta { add: ids(&["u1", "u2"]), remove: vec![], rest: vec![] });
}

#[test]
fn delta_of_entra_remove_with_value() {
    let d = delta(json!([{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}])).unwrap();
    assert_eq!(d, MembershipDelta { add: vec![], remove: ids(&["u1"]), rest: vec![] });
}

#[test]
fn delta_of_rfc_remove_by_filter() {
    let d = delta(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}])).unwrap();
    assert_eq!(d.remove, ids(&["u1"]));
    let d = delta(json!([{"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"}])).unwrap();
    assert_eq!(d.remove, ids(&["u1", "u2"]));
}

#[test]
fn delta_of_okta_remove_add_pair_and_rename() {
    let d = delta(json!([
        {"op": "replace", "value": {"id": "a8d2f3c6", "displayName": "Okta Group"}},
        {"op": "remove", "path": "members[value eq \"u1\"]"},
        {"op": "add", "path": "members", "value": [{"value": "u2", "display": "user2@x"}]}
    ]))
    .unwrap();
    assert_eq!(d.add, ids(&["u2"]));
    assert_eq!(d.remove, ids(&["u1"]));
    assert_eq!(d.rest.len(), 1);
    let mut resource = entra_group();
    apply(&mut resource, &d.rest, &group()).unwrap();
    assert_eq!(resource["displayName"], "Okta Group");
}

#[test]
fn delta_combines_changes_in_request_order() {
    let d = delta(json!([
        {"op": "remove", "path": "members[value eq \"u1\"]"},
        {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
        {"op": "remove", "path": "members", "value": [{"value": "u2"}]}
    ]))
    .unwrap();
    assert_eq!(d.add, ids(&["u1"]));
    assert_eq!(d.remove, ids(&["u2"]));
}

#[test]
fn delta_is_none_when_the_member_list_is_needed() {
    let cases = [
        json!([{"op": "replace", "path": "members", "value": [{"value": "u1"}]}]),
        json!([{"op": "remove", "path": "members"}]),
        json!([{"op": "remove", "path": "members", "value": null}]),
        json!([{"op": "remove", "path": "members[display eq \"Babs\"]"}]),
        json!([{"op": "remove", "path": "members[value ne \"u1\"]"}]),
        json!([{"op": "replace", "path": "members[value eq \"u1\"].display", "value": "x"}]),
        json!([{"op": "add", "path": "members", "value": [{"display": "no id"}]}]),
        json!([{"op": "replace", "value": {"displayName": "x", "members": []}}]),
        json!([{"op": "add", "path": "displayName", "value": "x"}, {"op": "remove", "path": "Members"}]),
    ];
    for operations in cases {
        assert_eq!(delta(operations.clone()), None, "{operations}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn path_text() -> impl Strategy<Value = Option<String>> {
    let paths = [
        "userName",
        "name",
        "name.givenName",
        "nickName",
        "active",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[type eq \"work\" and primary eq \"True\"].primary",
        "emails[value co \"@\"].type",
        "addresses[type eq \"home\"].locality",
        "roles",
        "roles[primary eq true].display",
        "groups",
        "id",
        "meta.created",
        "unknown",
        "manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "urn:ietf:params:scim:schemas:core:2.0:User:displayName",
        "urn:x:y:z",
    ];
    prop_oneof![
        1 => Just(None),
        6 => prop::sample::select(paths.to_vec()).prop_map(|p| Some(p.to_owned())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "value",
        "type",
        "primary",
        "display",
        "givenName",
        "$ref",
        "userName",
        "name.givenName",
        "id",
        "meta",
        "schemas",
        "emails",
        "active",
        "Value",
        "junk",
        EMPLOYEE_NUMBER,
        ENT,
    ])
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        Just(json!(1.5)),
        prop::sample::select(vec!["", "x", "work", "True", "false", "{\"value\":\"2\",\"displayName\":\"R\"}", "{"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Mostly present: an add or replace without a value fails before it reaches anything interesting.
fn op_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 9 => json_value().prop_map(Some)]
}

fn operation() -> impl Strategy<Value = PatchOperation> {
    let kind = prop::sample::select(vec![OpKind::Add, OpKind::Replace, OpKind::Remove]);
    (kind, path_text(), op_value()).prop_map(|(op, path, value)| PatchOperation {
        op,
        path: path.map(|p| parse_patch_path(&p).expect("alphabet paths parse")),
        value,
    })
}

fn group_operation() -> impl Strategy<Value = PatchOperation> {
    let kind = prop::sample::select(vec![OpKind::Add, OpKind::Replace, OpKind::Remove]);
    let path = prop::option::of(prop::sample::select(vec![
        "members",
        "members[value eq \"u1\"]",
        "members[value eq \"u2\"].display",
        "displayName",
        "Members[type eq \"User\"]",
    ]));
    (kind, path, op_value()).prop_map(|(op, path, value)| PatchOperation {
        op,
        path: path.map(|p| parse_patch_path(p).expect("alphabet paths parse")),
        value,
    })
}

proptest! {
    #[test]
    fn apply_never_panics_and_failures_change_nothing(ops in prop::collection::vec(operation(), 1..5)) {
        let original = entra_user();
        let mut resource = original.clone();
        match apply(&mut resource, &ops, &user()) {
            Ok(()) => prop_assert!(resource.is_object()),
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert_eq!(resource, original);
            }
        }
    }

    #[test]
    fn group_patches_never_panic_and_failures_change_nothing(ops in prop::collection::vec(group_operation(), 1..6)) {
        let original = group_with(&["u1", "u2"]);
        let mut resource = original.clone();
        if apply(&mut resource, &ops, &group()).is_err() {
            prop_assert_eq!(resource, original);
        }
    }

    /// The fast path agrees with applying the operations to the full member list.
    #[test]
    fn membership_delta_agrees_with_apply(ops in prop::collection::vec(group_operation(), 1..6)) {
        let Some(delta) = membership_delta(&ops) else { return Ok(()) };
        let mut full = group_with(&["u1", "u2"]);
        if apply(&mut full, &ops, &group()).is_err() {
            return Ok(());
        }
        let mut members: Vec<String> = ["u1", "u2"].iter().map(|m| (*m).to_owned()).collect();
        members.retain(|m| !delta.remove.contains(m));
        for id in &delta.add {
            if !members.contains(id) {
                members.push(id.clone());
            }
        }
        let mut applied: Vec<String> = full["members"]
            .as_array()
            .map(|list| list.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        applied.sort();
        members.sort();
        prop_assert_eq!(applied, members);
    }

    #[test]
    fn parse_request_never_panics(operations in prop::collection::vec(
        (prop::sample::select(vec!["add", "Replace", "REMOVE", "x"]), prop::option::of(path_text()), prop::option::of(json_value())),
        0..4,
    )) {
        let operations: Vec<Value> = operations
            .into_iter()
            .map(|(op, path, value)| {
                let mut object = Map::new();
                object.insert("op".to_owned(), json!(op));
                if let Some(path) = path {
                    object.insert("path".to_owned(), path.map_or(Value::Null, Value::String));
                }
                if let Some(value) = value {
                    object.insert("value".to_owned(), value);
                }
                Value::Object(object)
            })
            .collect();
        let _ = parse_request(&body(Value::Array(operations)));
    }
}

#[test]
fn whole_extension_value_may_carry_schemas() {
    let schema = crate::scim::schema::user_resource();
    let mut user = serde_json::json!({"schemas": [crate::scim::schema::USER], "userName": "b"});
    let body = serde_json::json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "add", "path": crate::scim::schema::ENTERPRISE_USER,
            "value": {"schemas": [crate::scim::schema::ENTERPRISE_USER], "department": "R&D"}}]
    });
    let ops = parse_request(&body).unwrap();
    apply(&mut user, &ops, &schema).unwrap();
    assert_eq!(user[crate::scim::schema::ENTERPRISE_USER]["department"], "R&D");
}
