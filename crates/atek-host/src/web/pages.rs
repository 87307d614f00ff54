//! The host's own pages: login, first-admin setup, the welcome page, and the error pages a
//! browser gets for an app that is missing, down or not the user's. Self-contained HTML
//! (inline styles and scripts, nothing fetched from elsewhere), embedded in the binary.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};

use std::sync::LazyLock;

/// The login page (`/_atek/login`).
pub(crate) static LOGIN: LazyLock<String> =
    LazyLock::new(|| with_style(include_str!("login.html")));
/// The first-admin page (`/_atek/setup`).
pub(crate) static SETUP: LazyLock<String> =
    LazyLock::new(|| with_style(include_str!("setup.html")));
/// The page at `/` for a user without a main service.
static WELCOME: LazyLock<String> = LazyLock::new(|| with_style(include_str!("welcome.html")));

/// The pages' shared styles, written once and inlined into each page where it says so.
const BASE_CSS: &str = include_str!("base.css");
/// Where a page wants [`BASE_CSS`].
const STYLE_MARKER: &str = "/*ATEK_BASE_CSS*/";

fn with_style(page: &str) -> String {
    page.replacen(STYLE_MARKER, BASE_CSS, 1)
}

/// The marker in `welcome.html` replaced by its data.
const DATA_MARKER: &str = "<!--ATEK_DATA-->";

/// An HTML answer that no cache keeps and no other site may frame.
pub(crate) fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The login or setup page, which no other origin may frame (clickjacking).
pub(crate) fn own_page(page: &str) -> Response<Body> {
    let mut response = html(StatusCode::OK, page.to_owned());
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'self'"),
    );
    response
}

/// The welcome page with its data.
pub(crate) fn welcome(data: &serde_json::Value) -> Response<Body> {
    // JSON inside <script>: `<` escaped so no `</script>` can end it early.
    let json = data.to_string().replace('<', "\\u003c");
    let script = format!(r#"<script id="atek-data" type="application/json">{json}</script>"#);
    let mut response = html(StatusCode::OK, WELCOME.replacen(DATA_MARKER, &script, 1));
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'self'"),
    );
    response
}

/// A small error page: a title, a sentence saying what to do, and a link to the host's
/// home page at `home` (absolute on an app's subdomain, where `/` is the app's).
pub(crate) fn error(status: StatusCode, title: &str, detail: &str, home: &str) -> Response<Body> {
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Atek</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:10vh auto;padding:0 1rem;color:#1d2330}}
h1{{font-size:1.4rem}}p{{color:#4a5263}}code{{background:#f0f2f5;padding:0 .3em;border-radius:4px}}</style>
</head><body><h1>{title}</h1><p>{detail}</p><p><a href="{home}">Atek home</a></p></body></html>
"#,
        title = escape(title),
        detail = escape(detail),
        home = escape(home),
    );
    html(status, body)
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn welcome_data_cannot_close_its_script() {
        assert!(WELCOME.contains(DATA_MARKER));
        let data = serde_json::json!({"username": "</script><script>alert(1)</script>"});
        let response = welcome(&data);
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn pages_are_self_contained() {
        for page in [&*LOGIN, &*SETUP, &*WELCOME] {
            assert!(
                !page.contains(STYLE_MARKER),
                "every page gets the shared styles"
            );
            assert!(page.contains(":root {"), "the shared styles are inlined");
            for external in [
                "src=\"http",
                "href=\"http",
                "@import",
                "src=\"//",
                "href=\"//",
            ] {
                assert!(!page.contains(external), "{external} in a page");
            }
        }
    }
}
