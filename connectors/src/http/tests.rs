use serde_json::json;

use super::*;

fn template(text: &str) -> Template {
    let mapping: Mapping = toml::from_str("[person]\nsource_id = \"{/id}\"").unwrap();
    let mut c = crate::map::compile::Compiler::new(&mapping);
    c.template_of("t", text, &mut Vec::new())
}

#[test]
fn templates_fill_in_values_and_leave_out_absent_ones() {
    let value = |name: &str| match name {
        "family_name" => Some("O'Brien & co".to_owned()),
        _ => None,
    };
    assert_eq!(
        render(&template("{family_name}"), &value).as_deref(),
        Some("O'Brien & co")
    );
    assert_eq!(render(&template("{given_name}"), &value), None);
    assert_eq!(
        render(&template("x-{given_name}"), &value),
        None,
        "a template naming only absent values is left out"
    );
    assert_eq!(render(&template("fixed"), &value).as_deref(), Some("fixed"));
}

#[test]
fn next_links_are_read_from_strings_and_link_arrays() {
    assert_eq!(
        next_link(Some(&json!("https://h/p?page=2"))).as_deref(),
        Some("https://h/p?page=2")
    );
    let links = json!([
        { "relation": "self", "url": "https://h/p?page=1" },
        { "relation": "next", "url": "https://h/p?page=2" },
    ]);
    assert_eq!(
        next_link(Some(&links)).as_deref(),
        Some("https://h/p?page=2")
    );
    let hal = json!([{ "rel": "next", "href": "/p?page=3" }]);
    assert_eq!(next_link(Some(&hal)).as_deref(), Some("/p?page=3"));
    assert_eq!(
        next_link(Some(&json!([{ "relation": "self", "url": "x" }]))),
        None
    );
    assert_eq!(next_link(Some(&json!(""))), None);
    assert_eq!(next_link(None), None);
}

#[test]
fn base_urls_are_checked() {
    assert!(base_url("https://api.example/v2").is_ok());
    for (bad, why) in [
        ("ftp://api.example", "scheme `ftp` is not `https` or `http`"),
        (
            "https://u:p@api.example",
            "must not hold credentials; use `headers`",
        ),
        (
            "https://api.example/v2?key=1",
            "must not have a query or fragment",
        ),
    ] {
        assert_eq!(base_url(bad).unwrap_err(), why, "{bad}");
    }
    assert!(base_url("not a url").unwrap_err().starts_with("not a url"));
}

#[test]
fn query_parameters_are_replaced_not_repeated() {
    let mut url = Url::parse("https://h/p?a=1&page=1").unwrap();
    set_query(&mut url, "page", "2");
    assert_eq!(url.as_str(), "https://h/p?a=1&page=2");
}
