//! Keeping secrets out of printed configs and logs.

/// Query parameters that carry a secret in Postgres and Redis URLs.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "pass"];

/// Replaces the password of a URL (`scheme://user:password@host`, or a `password=` query
/// parameter) with `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}=***")
                }
                _ => param.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let redacted = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://fdc:s3cret@db:5432/fdc"),
            "postgres://fdc:***@db:5432/fdc"
        );
        assert_eq!(redact_url("redis://:pw@r:6379/0"), "redis://:***@r:6379/0");
        assert_eq!(redact_url("postgres://fdc@db/fdc"), "postgres://fdc@db/fdc");
        assert_eq!(redact_url("redis://r:6379/"), "redis://r:6379/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn hides_passwords_in_query_parameters() {
        assert_eq!(
            redact_url("postgres://db/fdc?user=fdc&password=hunter2&sslmode=require"),
            "postgres://db/fdc?user=fdc&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/fdc?sslpassword=k"),
            "postgres://u:***@db/fdc?sslpassword=***"
        );
    }
}
