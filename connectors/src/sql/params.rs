//! Named parameters in mapping SQL, translated to positional binds.
//!
//! Operators write `:family_name`; the connector rewrites it to `$1` (which
//! both SQLite and PostgreSQL accept) and binds the caller's value there.
//! The SQL text itself comes only from configuration, so caller input can
//! never change a statement's shape.

pub(crate) use crate::map::params::{PERSON_PARAMS, Param, SEARCH_PARAMS};

/// SQL with positional placeholders and the parameter bound at each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    pub(crate) sql: String,
    /// `params[i]` is bound to `$i+1`; each parameter appears once however
    /// often the SQL names it.
    pub(crate) params: Vec<Param>,
}

/// Rewrites `:name` placeholders outside literals, quoted identifiers and
/// comments to `$n`, refusing parameters not in `allowed`, positional
/// placeholders, several statements, and SQL that does not use `:limit`.
pub(crate) fn translate(sql: &str, allowed: &[Param]) -> Result<Translated, String> {
    let mut out = String::with_capacity(sql.len());
    let mut params: Vec<Param> = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                let mut closed = false;
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(format!("has an unterminated {c} quote"));
                }
            }
            '-' if chars.peek().is_some_and(|(_, n)| *n == '-') => {
                out.push(c);
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                out.push_str("/*");
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if prev == '*' && inner == '/' {
                        closed = true;
                        break;
                    }
                    prev = inner;
                }
                if !closed {
                    return Err("has an unterminated comment".into());
                }
            }
            '$' => {
                if chars.peek().is_some_and(|(_, n)| n.is_ascii_digit()) {
                    return Err("uses a positional parameter; name parameters as `:name`".into());
                }
                // A PostgreSQL dollar-quoted literal, `$tag$ ... $tag$`.
                let rest = sql.get(at + 1..).unwrap_or("");
                let tag_len = rest
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                if rest.get(tag_len..tag_len + 1) == Some("$") {
                    let delimiter = sql.get(at..at + tag_len + 2).unwrap_or("$$");
                    let body_start = at + tag_len + 2;
                    let Some(len) = sql.get(body_start..).and_then(|b| b.find(delimiter)) else {
                        return Err("has an unterminated dollar-quoted literal".into());
                    };
                    let end = body_start + len + delimiter.len();
                    out.push_str(sql.get(at..end).unwrap_or(""));
                    while chars.peek().is_some_and(|(i, _)| *i < end) {
                        chars.next();
                    }
                } else {
                    out.push(c);
                }
            }
            '?' => {
                return Err("uses a positional parameter; name parameters as `:name`".into());
            }
            ':' if chars.peek().is_some_and(|(_, n)| *n == ':') => {
                out.push_str("::");
                chars.next();
            }
            ':' if chars
                .peek()
                .is_some_and(|(_, n)| n.is_ascii_alphabetic() || *n == '_') =>
            {
                let mut name = String::new();
                while let Some((_, n)) = chars.peek() {
                    if n.is_ascii_alphanumeric() || *n == '_' {
                        name.push(*n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let param = Param::from_name(&name)
                    .filter(|p| allowed.contains(p))
                    .ok_or_else(|| {
                        let names: Vec<String> =
                            allowed.iter().map(|p| format!(":{}", p.name())).collect();
                        format!(
                            "uses `:{name}`, which is not a parameter here (use {})",
                            names.join(", ")
                        )
                    })?;
                let position = match params.iter().position(|p| *p == param) {
                    Some(i) => i + 1,
                    None => {
                        params.push(param);
                        params.len()
                    }
                };
                out.push('$');
                out.push_str(&position.to_string());
            }
            ';' => {
                let rest = sql.get(at + 1..).unwrap_or("");
                if !rest.trim().is_empty() {
                    return Err("holds more than one statement".into());
                }
                break;
            }
            _ => out.push(c),
        }
    }
    if !params.contains(&Param::Limit) {
        return Err("does not use `:limit`, so nothing bounds how many rows it reads".into());
    }
    Ok(Translated { sql: out, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_numbered_once_each() {
        let t = translate(
            "SELECT * FROM N WHERE (:family_name IS NULL OR UPPER(S) = UPPER(:family_name)) \
             AND D = :date_of_birth LIMIT :limit",
            SEARCH_PARAMS,
        )
        .unwrap();
        assert_eq!(
            t.sql,
            "SELECT * FROM N WHERE ($1 IS NULL OR UPPER(S) = UPPER($1)) AND D = $2 LIMIT $3"
        );
        assert_eq!(
            t.params,
            vec![Param::FamilyName, Param::DateOfBirth, Param::Limit]
        );
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        let sql = "SELECT ':not_a_param', \":nor\", x::text, $$ :nope $$, $q$ ? $q$ -- :no ?\n\
                   /* :none ? */ FROM t WHERE id = :source_id LIMIT :limit;";
        let t = translate(sql, PERSON_PARAMS).unwrap();
        assert_eq!(
            t.sql,
            "SELECT ':not_a_param', \":nor\", x::text, $$ :nope $$, $q$ ? $q$ -- :no ?\n\
             /* :none ? */ FROM t WHERE id = $1 LIMIT $2"
        );
        let doubled = translate("SELECT 'it''s :x' FROM t LIMIT :limit", PERSON_PARAMS).unwrap();
        assert_eq!(doubled.sql, "SELECT 'it''s :x' FROM t LIMIT $1");
    }

    #[test]
    fn unsafe_or_unbounded_sql_is_refused() {
        let cases = [
            (
                "SELECT * FROM t WHERE a = ? LIMIT :limit",
                "positional parameter",
            ),
            (
                "SELECT * FROM t WHERE a = $1 LIMIT :limit",
                "positional parameter",
            ),
            (
                "SELECT * FROM t WHERE a = :nhs_number LIMIT :limit",
                "`:nhs_number`",
            ),
            (
                "SELECT * FROM t WHERE a = :whatever LIMIT :limit",
                "`:whatever`",
            ),
            (
                "SELECT * FROM t LIMIT :limit; DELETE FROM t",
                "more than one statement",
            ),
            (
                "SELECT * FROM t WHERE a = :source_id",
                "does not use `:limit`",
            ),
            ("SELECT 'open FROM t LIMIT :limit", "unterminated"),
            ("SELECT 1 /* open LIMIT :limit", "unterminated comment"),
            ("SELECT 1 /*/ LIMIT :limit", "unterminated comment"),
            ("SELECT $a$ open LIMIT :limit", "unterminated dollar"),
        ];
        for (sql, expected) in cases {
            let err = translate(sql, PERSON_PARAMS).unwrap_err();
            assert!(err.contains(expected), "{sql}: {err}");
        }
    }
}
