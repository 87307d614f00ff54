//! Reading versions out of git tag names and choosing the release to install.

use nodejs_semver::{Range, Version};

use super::InstallError;

/// node-semver's limit on the digits of one version part, kept so tags coerce the same way.
const MAX_PART_DIGITS: usize = 16;

/// Finds the first `N`, `N.N` or `N.N.N` in `tag` (missing parts are 0), the way
/// node-semver's `semver.coerce` does: `v1.2.3` → 1.2.3, `release-1.2` → 1.2.0, `abc` → None.
pub fn coerce(tag: &str) -> Option<Version> {
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let major_end = digit_run_end(bytes, i);
        if major_end - i > MAX_PART_DIGITS {
            // Too long to be a version part; the next candidate must start after a non-digit.
            i = major_end;
            continue;
        }
        let major = parse_part(&bytes[i..major_end])?;
        let (minor, after_minor) = dotted_part(bytes, major_end);
        let patch = match minor {
            Some(_) => dotted_part(bytes, after_minor).0,
            None => None,
        };
        return Some(Version::from((
            major,
            minor.unwrap_or(0),
            patch.unwrap_or(0),
        )));
    }
    None
}

/// Picks the release to install from `tags`: the highest one satisfying `desired` (an npm
/// range; `None`, `""`, `latest` and `*` accept everything). Tags that hold no version are
/// ignored. `Ok(None)` when nothing matches.
pub fn pick(
    tags: &[String],
    desired: Option<&str>,
) -> Result<Option<(String, Version)>, InstallError> {
    let range = parse_range(desired)?;
    let best = tags
        .iter()
        .filter_map(|tag| coerce(tag).map(|v| (tag, v)))
        .filter(|(_, v)| range.as_ref().is_none_or(|r| v.satisfies(r)))
        // `v1.0.0` and `1.0.0` are the same version; the tag name breaks the tie so the
        // choice does not depend on the order git lists tags in.
        .max_by(|(ta, va), (tb, vb)| va.cmp(vb).then_with(|| ta.cmp(tb)));
    Ok(best.map(|(tag, v)| (tag.clone(), v)))
}

/// The tags that hold a version, lowest version first, for error messages.
pub fn releases(tags: &[String]) -> Vec<String> {
    let mut versioned: Vec<(Version, &String)> = tags
        .iter()
        .filter_map(|tag| coerce(tag).map(|v| (v, tag)))
        .collect();
    versioned.sort();
    versioned.into_iter().map(|(_, tag)| tag.clone()).collect()
}

/// True when `desired` means "whatever is newest".
pub(crate) fn is_latest(desired: Option<&str>) -> bool {
    matches!(desired.map(str::trim), None | Some("" | "latest" | "*"))
}

fn parse_range(desired: Option<&str>) -> Result<Option<Range>, InstallError> {
    if is_latest(desired) {
        return Ok(None);
    }
    let text = desired.unwrap_or_default().trim();
    Range::parse(text)
        .map(Some)
        .map_err(|e| InstallError::BadVersionRange {
            range: text.to_owned(),
            reason: e.to_string(),
        })
}

fn digit_run_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(bytes.len(), |n| start + n)
}

/// A `.N` part starting at `at`, and where it ends. A part with too many digits is not a part
/// at all, exactly as the regex in node-semver backtracks past it.
fn dotted_part(bytes: &[u8], at: usize) -> (Option<u64>, usize) {
    if bytes.get(at) != Some(&b'.') || !bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
        return (None, at);
    }
    let end = digit_run_end(bytes, at + 1);
    if end - (at + 1) > MAX_PART_DIGITS {
        return (None, at);
    }
    match parse_part(&bytes[at + 1..end]) {
        Some(n) => (Some(n), end),
        None => (None, at),
    }
}

fn parse_part(digits: &[u8]) -> Option<u64> {
    // At most 16 ASCII digits, so this cannot overflow a u64.
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coerce_table() {
        let cases = [
            ("v1.2.3", Some("1.2.3")),
            ("1.2", Some("1.2.0")),
            ("release-1.2.3", Some("1.2.3")),
            ("v2", Some("2.0.0")),
            ("abc", None),
            ("", None),
            ("1.2.3.4", Some("1.2.3")),
            ("v1.2.3-beta.1", Some("1.2.3")),
            ("x1.2y", Some("1.2.0")),
            ("1.", Some("1.0.0")),
            ("01.002.3", Some("1.2.3")),
            ("12345678901234567.1", Some("1.0.0")),
            ("1.12345678901234567", Some("1.0.0")),
            ("9999999999999999", Some("9999999999999999.0.0")),
        ];
        for (tag, want) in cases {
            let got = coerce(tag).map(|v| v.to_string());
            assert_eq!(got.as_deref(), want, "{tag:?}");
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pick_with_ranges() {
        let tags = strings(&["v1.0.0", "v1.1.0", "v2.0.0", "not-a-version"]);
        let picked = |desired: Option<&str>| pick(&tags, desired).unwrap().map(|(tag, _)| tag);
        assert_eq!(picked(Some("^1")).as_deref(), Some("v1.1.0"));
        assert_eq!(picked(Some("~1.0")).as_deref(), Some("v1.0.0"));
        assert_eq!(picked(Some("2.0.0")).as_deref(), Some("v2.0.0"));
        assert_eq!(picked(Some("1.0.0")).as_deref(), Some("v1.0.0"));
        assert_eq!(picked(Some(">=1.0.1 <2")).as_deref(), Some("v1.1.0"));
        for latest in [None, Some(""), Some("latest"), Some("*")] {
            assert_eq!(picked(latest).as_deref(), Some("v2.0.0"), "{latest:?}");
        }
        assert_eq!(picked(Some("^3")), None);
        let (_, version) = pick(&tags, Some("^1")).unwrap().unwrap();
        assert_eq!(version.to_string(), "1.1.0");
        assert_eq!(pick(&[], None).unwrap(), None);
    }

    #[test]
    fn bad_ranges() {
        let err = pick(&strings(&["v1.0.0"]), Some(" not a range! ")).unwrap_err();
        assert!(
            matches!(&err, InstallError::BadVersionRange { range, .. } if range == "not a range!"),
            "{err:?}"
        );
        assert!(err.to_string().contains("latest"), "{err}");
    }

    #[test]
    fn ties_break_on_the_tag_name() {
        for order in [["v1.0.0", "1.0.0"], ["1.0.0", "v1.0.0"]] {
            assert_eq!(pick(&strings(&order), None).unwrap().unwrap().0, "v1.0.0");
        }
    }

    #[test]
    fn latest_words() {
        for d in [None, Some(""), Some("latest"), Some("*"), Some(" latest ")] {
            assert!(is_latest(d), "{d:?}");
        }
        assert!(!is_latest(Some("^1")));
    }

    #[test]
    fn releases_sorted_by_version() {
        let tags = strings(&["v10.0.0", "v2.0.0", "junk", "v1.0.0"]);
        assert_eq!(releases(&tags), ["v1.0.0", "v2.0.0", "v10.0.0"]);
    }
}
