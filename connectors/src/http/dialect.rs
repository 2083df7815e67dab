//! What the JSON over HTTP connector compiles for itself: requests with
//! templated paths and query parameters, and JSON pointers.

use crate::map::compile::{Compiler, Dialect, ListKeys, Part, RecordSource, Template};
use crate::map::params::{CHANGE_PARAMS, HEAD_PARAMS, PERSON_PARAMS, Param, SEARCH_PARAMS};
use crate::mapping::{ChangesMapping, HttpRequest, PersonMapping, SourceIdType};

/// The JSON dialect of the mapping.
#[derive(Debug)]
pub(crate) struct Json;

/// One request the connector may make.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The mapping's name for it, used in errors: `person.search`.
    pub(crate) name: String,
    /// Path segments after the base URL's path, each a template.
    pub(crate) segments: Vec<Template>,
    /// Query parameters and their templates.
    pub(crate) query: Vec<(String, Template)>,
    /// Pointer to the array of items in an answer.
    pub(crate) items: Option<String>,
    /// Pointer, within an item (or the answer), to the object to read.
    pub(crate) item: String,
}

/// How people are searched for and read.
#[derive(Debug)]
pub(crate) struct JsonPerson {
    pub(crate) search: Request,
    pub(crate) get: Request,
}

impl Dialect for Json {
    const KIND: &'static str = "json-http";
    type Person = JsonPerson;
    type List = String;
    type Records = Request;

    fn list_source(entry: ListKeys<'_>) -> Option<(&'static str, &str)> {
        entry.each.map(|each| ("each", each))
    }

    fn person(c: &mut Compiler<'_>, p: &PersonMapping, columns: Vec<String>) -> JsonPerson {
        pointers(c, "person", &columns);
        let search = request(c, "person.search", p.search.as_ref(), SEARCH_PARAMS, true);
        let get = request(c, "person.get", p.get.as_ref(), PERSON_PARAMS, false);
        if !get
            .segments
            .iter()
            .chain(get.query.iter().map(|(_, t)| t))
            .any(|t| {
                t.parts
                    .iter()
                    .any(|p| matches!(p, Part::Column(name) if name == "source_id"))
            })
            && p.get.is_some()
        {
            c.problem("person.get", "does not use `{source_id}`");
        }
        JsonPerson { search, get }
    }

    fn list(c: &mut Compiler<'_>, key: &str, source: &str, columns: Vec<String>) -> String {
        pointer(c, key, source);
        pointers(c, key.trim_end_matches(".each"), &columns);
        source.to_owned()
    }

    fn records(
        c: &mut Compiler<'_>,
        key: &str,
        source: RecordSource<'_>,
        columns: Vec<String>,
    ) -> Request {
        pointers(c, key, &columns);
        let request = request(
            c,
            &format!("{key}.request"),
            source.request,
            PERSON_PARAMS,
            true,
        );
        let uses_id = request
            .segments
            .iter()
            .chain(request.query.iter().map(|(_, t)| t))
            .any(|t| {
                t.parts
                    .iter()
                    .any(|p| matches!(p, Part::Column(name) if name == "source_id"))
            });
        if source.request.is_some() && !uses_id {
            c.problem(
                &format!("{key}.request"),
                "does not use `{source_id}`, so every person would get the same records",
            );
        }
        request
    }
}

/// A compiled `[changes]`: a feed read by polling after a cursor.
#[derive(Debug)]
pub(crate) struct ChangesPlan {
    /// The changes after `{after}`, at most `{limit}`.
    pub(crate) changes: Request,
    /// The latest cursor, for "from now".
    pub(crate) head: Request,
    /// `{<cursor pointer>}`, read from each change and from the head.
    pub(crate) cursor: Template,
    pub(crate) cursor_type: SourceIdType,
    pub(crate) person_source_id: Template,
}

/// Compiles a mapping's `[changes]`, listing its problems in `problems`.
pub(crate) fn changes(m: &ChangesMapping, problems: &mut Vec<String>) -> Option<ChangesPlan> {
    let mut c = Compiler::detached();
    for (key, present) in [
        ("changes.sql", m.sql.is_some()),
        ("changes.head_sql", m.head_sql.is_some()),
    ] {
        if present {
            c.problem(key, "is only read by `sql` connectors");
        }
    }
    let changes = request(
        &mut c,
        "changes.request",
        m.request.as_ref(),
        CHANGE_PARAMS,
        true,
    );
    let uses_after = changes
        .segments
        .iter()
        .chain(changes.query.iter().map(|(_, t)| t))
        .any(|t| {
            t.parts
                .iter()
                .any(|p| matches!(p, Part::Column(name) if name == "after"))
        });
    if m.request.is_some() && !uses_after {
        c.problem(
            "changes.request",
            "does not use `{after}`, so the feed would never move on",
        );
    }
    let head = request(&mut c, "changes.head", m.head.as_ref(), HEAD_PARAMS, false);
    pointer(&mut c, "changes.cursor", &m.cursor);
    let cursor = Template {
        parts: vec![Part::Column(m.cursor.clone())],
    };
    let mut columns = Vec::new();
    let person_source_id = c.template(
        "changes.person_source_id",
        &m.person_source_id,
        &mut columns,
    );
    pointers(&mut c, "changes.person_source_id", &columns);
    let found = c.into_problems();
    if !found.is_empty() {
        problems.extend(found);
        return None;
    }
    Some(ChangesPlan {
        changes,
        head,
        cursor,
        cursor_type: m.cursor_type,
        person_source_id,
    })
}

/// Checks a JSON pointer's shape (RFC 6901: empty, or starting with `/`).
fn pointer(c: &mut Compiler<'_>, key: &str, text: &str) {
    if !(text.is_empty() || text.starts_with('/')) {
        c.problem(
            key,
            format!("`{text}` is not a json pointer; pointers start with `/`"),
        );
    }
}

fn pointers(c: &mut Compiler<'_>, key: &str, columns: &[String]) {
    for column in columns {
        pointer(c, key, column);
    }
}

fn request(
    c: &mut Compiler<'_>,
    key: &str,
    spec: Option<&HttpRequest>,
    allowed: &[Param],
    list: bool,
) -> Request {
    let mut out = Request {
        name: key.trim_end_matches(".request").to_owned(),
        segments: Vec::new(),
        query: Vec::new(),
        items: None,
        item: String::new(),
    };
    let Some(spec) = spec else {
        c.problem(key, "is required by `json-http` connectors");
        return out;
    };
    let check = |c: &mut Compiler<'_>, at: &str, text: &str| -> Template {
        let mut names = Vec::new();
        let template = c.template_of(at, text, &mut names);
        for name in names {
            match Param::from_name(&name) {
                Some(param) if allowed.contains(&param) || param == Param::Limit => {}
                _ => c.problem(
                    at,
                    format!("uses `{{{name}}}`, which is not a parameter here"),
                ),
            }
        }
        template
    };
    if !spec.path.starts_with('/') {
        c.problem(&format!("{key}.path"), "must start with `/`");
    }
    for segment in spec.path.split('/').filter(|s| !s.is_empty()) {
        if matches!(segment, "." | "..") {
            c.problem(&format!("{key}.path"), "must not hold `.` or `..` segments");
        }
        let template = check(c, &format!("{key}.path"), segment);
        out.segments.push(template);
    }
    for (name, value) in &spec.query {
        let template = check(c, &format!("{key}.query.{name}"), value);
        out.query.push((name.clone(), template));
    }
    match (&spec.items, list) {
        (Some(items), true) => {
            pointer(c, &format!("{key}.items"), items);
            out.items = Some(items.clone());
        }
        (None, true) => c.problem(
            &format!("{key}.items"),
            "is required: it points at the array of results",
        ),
        (Some(_), false) => c.problem(
            &format!("{key}.items"),
            "is not read here: the answer is one person",
        ),
        (None, false) => {}
    }
    if let Some(item) = &spec.item {
        pointer(c, &format!("{key}.item"), item);
        out.item = item.clone();
    }
    out
}
