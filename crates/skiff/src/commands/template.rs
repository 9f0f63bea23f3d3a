//! The part of Go's templates that scripts use with `inspect --format`:
//! `{{.State.Status}}`, `{{.Config.Env}}`, `{{json .State}}`, text around them.

use serde_json::Value;

/// Renders `template` against `v`.
pub fn render(template: &str, v: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            anyhow::bail!("template {template:?}: an unclosed {{{{");
        };
        let action = after[..end].trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        let field = lookup(v, path).ok_or_else(|| {
            anyhow::anyhow!("template {template:?}: no field {path:?} (use {{{{.Field.Sub}}}} or {{{{json .Field}}}})")
        })?;
        if json {
            out.push_str(&serde_json::to_string(field)?);
        } else {
            out.push_str(&plain(field));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.strip_prefix('.')?;
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// How Go prints a value: strings bare, lists as `[a b]`, maps as `map[k:v]`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_and_text() {
        let v = json!({"State": {"Status": "running", "Pid": 7}, "Config": {"Env": ["A=1", "B=2"]}, "Name": "/web"});
        assert_eq!(render("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(render("{{ .State.Pid }} {{.Name}}", &v).unwrap(), "7 /web");
        assert_eq!(render("{{.Config.Env}}", &v).unwrap(), "[A=1 B=2]");
        assert_eq!(
            render("{{json .State}}", &v).unwrap(),
            r#"{"Pid":7,"Status":"running"}"#
        );
        assert!(render("{{.Nope}}", &v)
            .unwrap_err()
            .to_string()
            .contains("no field"));
        assert!(render("{{.State", &v).is_err());
    }
}
