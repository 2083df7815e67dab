//! Renders the published API's reference from the compiled descriptors, so
//! `docs/api-reference.md` says exactly what the `.proto` comments say and a
//! test can hold the committed copy to it.
//!
//! The descriptor set `liaison-proto` embeds is built by protox with source
//! info, which carries every comment with the path of the element it
//! documents (`[4, 2, 2, 1]`: the second field of the third message).

use std::{collections::HashMap, fmt::Write as _};

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

// Field numbers in descriptor.proto that source-info paths are made of.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const MESSAGE_ONEOF: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// The package the reference covers.
pub const PACKAGE: &str = "liaison.v1";

struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let mut map = HashMap::new();
        for loc in file.source_code_info.iter().flat_map(|s| s.location.iter()) {
            let text = loc.leading_comments.clone().unwrap_or_default()
                + loc.trailing_comments.as_deref().unwrap_or_default();
            if !text.trim().is_empty() {
                map.insert(loc.path.clone(), tidy(&text));
            }
        }
        Self(map)
    }

    fn at(&self, path: &[i32]) -> &str {
        self.0.get(path).map_or("", String::as_str)
    }
}

/// Joins a comment's lines, keeping blank lines as paragraph breaks.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    for para in text.trim().split("\n\n") {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        let lines: Vec<&str> = para.lines().map(str::trim).collect();
        out.push_str(&lines.join("\n"));
    }
    out
}

/// One line for a table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The anchor GitHub gives a `### {kind} \`{local}\`` heading.
fn anchor(kind: &str, full_name: &str) -> String {
    let local = full_name.trim_start_matches("liaison.v1.");
    format!("{kind}-{}", local.replace('.', "").to_lowercase())
}

fn type_name(field: &prost_types::FieldDescriptorProto) -> String {
    let base = match field.r#type() {
        kind @ (Type::Message | Type::Enum) => {
            let name = field.type_name().trim_start_matches('.');
            let kind = if kind == Type::Enum {
                "enum"
            } else {
                "message"
            };
            match name.strip_prefix("liaison.v1.") {
                Some(local) => format!("[`{local}`](#{})", anchor(kind, name)),
                None => format!("`{name}`"),
            }
        }
        other => format!(
            "`{}`",
            other
                .as_str_name()
                .trim_start_matches("TYPE_")
                .to_lowercase()
        ),
    };
    if field.label() == Label::Repeated {
        format!("repeated {base}")
    } else {
        base
    }
}

/// Renders the reference for every file of [`PACKAGE`] in `descriptor_set`.
pub fn render(descriptor_set: &[u8]) -> Result<String, String> {
    let set = FileDescriptorSet::decode(descriptor_set).map_err(|e| e.to_string())?;
    let mut files: Vec<&FileDescriptorProto> =
        set.file.iter().filter(|f| f.package() == PACKAGE).collect();
    files.sort_by_key(|f| f.name().to_owned());
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from proto/liaison/v1/*.proto by \
         `cargo run -p liaison-conformance --bin proto-doc`; do not edit. -->\n\n\
         # Liaison API reference (`liaison.v1`)\n\n\
         Every element below is documented in the `.proto` files; this page is \
         regenerated from their descriptors and a test keeps it current. For how to \
         use the API, see [integrating.md](integrating.md).\n",
    );
    for file in files {
        render_file(&mut out, file);
    }
    Ok(out)
}

fn render_file(out: &mut String, file: &FileDescriptorProto) {
    let c = Comments::of(file);
    let _ = writeln!(out, "\n## `{}`\n", file.name());
    for (i, service) in file.service.iter().enumerate() {
        let sp = vec![FILE_SERVICE, i32::try_from(i).unwrap_or(i32::MAX)];
        let _ = writeln!(out, "### service `{}`\n", service.name());
        push_text(out, c.at(&sp));
        for (j, method) in service.method.iter().enumerate() {
            let mut mp = sp.clone();
            mp.extend([SERVICE_METHOD, i32::try_from(j).unwrap_or(i32::MAX)]);
            let link = |t: &str| {
                let t = t.trim_start_matches('.');
                let local = t.strip_prefix("liaison.v1.").unwrap_or(t);
                format!("[`{local}`](#{})", anchor("message", t))
            };
            let stream = if method.server_streaming() {
                "stream "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "#### `{}({}) returns ({stream}{})`\n",
                method.name(),
                method.input_type().trim_start_matches(".liaison.v1."),
                method.output_type().trim_start_matches(".liaison.v1."),
            );
            let _ = writeln!(
                out,
                "Request {}, response {}.\n",
                link(method.input_type()),
                link(method.output_type())
            );
            push_text(out, c.at(&mp));
        }
    }
    for (i, message) in file.message_type.iter().enumerate() {
        let path = vec![FILE_MESSAGE, i32::try_from(i).unwrap_or(i32::MAX)];
        render_message(
            out,
            &c,
            &path,
            &format!("{PACKAGE}.{}", message.name()),
            message,
        );
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        let path = vec![FILE_ENUM, i32::try_from(i).unwrap_or(i32::MAX)];
        render_enum(out, &c, &path, &format!("{PACKAGE}.{}", e.name()), e);
    }
}

fn push_text(out: &mut String, text: &str) {
    if !text.is_empty() {
        out.push_str(text);
        out.push_str("\n\n");
    }
}

fn render_message(
    out: &mut String,
    c: &Comments,
    path: &[i32],
    full_name: &str,
    message: &DescriptorProto,
) {
    let local = full_name.trim_start_matches("liaison.v1.");
    let _ = writeln!(out, "### message `{local}`\n");
    push_text(out, c.at(path));
    if !message.field.is_empty() {
        out.push_str("| Field | Number | Type | Description |\n| --- | --- | --- | --- |\n");
        for (j, field) in message.field.iter().enumerate() {
            let mut fp = path.to_vec();
            fp.extend([MESSAGE_FIELD, i32::try_from(j).unwrap_or(i32::MAX)]);
            let oneof = field
                .oneof_index
                .filter(|_| !field.proto3_optional())
                .and_then(|k| {
                    message
                        .oneof_decl
                        .get(usize::try_from(k).unwrap_or(usize::MAX))
                })
                .map(|o| format!(" (one of `{}`)", o.name()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | {}{oneof} | {} |",
                field.name(),
                field.number(),
                type_name(field),
                cell(c.at(&fp))
            );
        }
        out.push('\n');
    }
    for (k, oneof) in message.oneof_decl.iter().enumerate() {
        let mut op = path.to_vec();
        op.extend([MESSAGE_ONEOF, i32::try_from(k).unwrap_or(i32::MAX)]);
        let text = c.at(&op);
        if !text.is_empty() {
            let _ = writeln!(out, "One of `{}`: {}\n", oneof.name(), cell(text));
        }
    }
    for (k, nested) in message.nested_type.iter().enumerate() {
        let mut np = path.to_vec();
        np.extend([MESSAGE_NESTED, i32::try_from(k).unwrap_or(i32::MAX)]);
        render_message(
            out,
            c,
            &np,
            &format!("{full_name}.{}", nested.name()),
            nested,
        );
    }
    for (k, e) in message.enum_type.iter().enumerate() {
        let mut ep = path.to_vec();
        ep.extend([MESSAGE_ENUM, i32::try_from(k).unwrap_or(i32::MAX)]);
        render_enum(out, c, &ep, &format!("{full_name}.{}", e.name()), e);
    }
}

fn render_enum(
    out: &mut String,
    c: &Comments,
    path: &[i32],
    full_name: &str,
    e: &EnumDescriptorProto,
) {
    let local = full_name.trim_start_matches("liaison.v1.");
    let _ = writeln!(out, "### enum `{local}`\n");
    push_text(out, c.at(path));
    out.push_str("| Value | Number | Description |\n| --- | --- | --- |\n");
    for (j, v) in e.value.iter().enumerate() {
        let mut vp = path.to_vec();
        vp.extend([ENUM_VALUE, i32::try_from(j).unwrap_or(i32::MAX)]);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            v.name(),
            v.number(),
            cell(c.at(&vp))
        );
    }
    out.push('\n');
}
