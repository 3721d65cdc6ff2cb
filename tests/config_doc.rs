//! docs/configuration.md cannot drift from the schema: every key in the doc's tables is one
//! the serde schema accepts, and every key the schema accepts has a row, section by section.
//! The schema's own key list comes from serde itself: a config with an unknown key is
//! refused with "expected one of `a`, `b`, …", which names every field of that table.

use std::collections::BTreeSet;

/// The TOML that opens each documented section (by its heading), for probing the schema.
fn probe_for(section: &str) -> Option<&'static str> {
    Some(match section {
        "[node]" => "[node]\n",
        "[store]" => "[store]\n",
        "[cluster]" => "[cluster]\n",
        "[access_log]" => "[access_log]\n",
        "[[origins]]" => "[[origins]]\n",
        "[[origin_groups]]" => "[[origin_groups]]\n",
        "[cache_policies.NAME]" => "[cache_policies.P]\n",
        "[origin_request_policies.NAME]" => "[origin_request_policies.P]\n",
        "[response_headers_policies.NAME]" => "[response_headers_policies.P]\n",
        "[[behaviors]]" => "[[behaviors]]\n",
        _ => return None,
    })
}

/// The keys serde expects in a table, from the unknown-field error it gives.
fn schema_keys(probe: &str) -> BTreeSet<String> {
    let text = format!("{probe}zz_not_a_key = 1\n");
    let err = strata::config::ConfigFile::parse(&text, "probe.toml")
        .err()
        .unwrap_or_else(|| panic!("{probe}: an unknown key was accepted"));
    let msg = err.message;
    let expected = msg
        .split_once("expected")
        .unwrap_or_else(|| panic!("{probe}: no field list in {msg:?}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Sections (`## \`[name]\``, with every other table the heading names) and the keys in
/// the first column of their `| key | default | meaning |` tables.
fn documented() -> Vec<(String, BTreeSet<String>)> {
    documented_with_aliases()
        .into_iter()
        .map(|(s, _, k)| (s, k))
        .collect()
}

fn documented_with_aliases() -> Vec<(String, Vec<String>, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let mut out: Vec<(String, Vec<String>, BTreeSet<String>)> = Vec::new();
    let mut in_key_table = false;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let names: Vec<String> = h
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            if let Some(first) = names.first() {
                out.push((first.clone(), names.clone(), BTreeSet::new()));
            }
            in_key_table = false;
            continue;
        }
        if line.starts_with("| key |") {
            in_key_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let Some((_, _, keys)) = out.last_mut() else {
            continue;
        };
        let Some(first) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
            continue;
        };
        if !in_key_table {
            continue;
        }
        // "`primary`, `secondary`" names two keys; header and rule rows have no backticks.
        for k in first.split('`').skip(1).step_by(2) {
            keys.insert(k.to_string());
        }
    }
    out
}

#[test]
fn every_documented_key_exists_and_every_key_is_documented() {
    let sections = documented();
    let mut checked = 0;
    for (section, doc_keys) in &sections {
        let Some(probe) = probe_for(section) else {
            continue;
        };
        let schema = schema_keys(probe);
        let missing_in_doc: Vec<_> = schema.difference(doc_keys).collect();
        let unknown_to_schema: Vec<_> = doc_keys.difference(&schema).collect();
        assert!(
            missing_in_doc.is_empty() && unknown_to_schema.is_empty(),
            "docs/configuration.md section {section}:\n  keys the code accepts but the doc lacks: \
             {missing_in_doc:?}\n  keys the doc lists but the code refuses: {unknown_to_schema:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 10, "every section of the schema is documented");
}

#[test]
fn every_top_level_table_has_a_section() {
    let schema = schema_keys("");
    let sections: BTreeSet<String> = documented_with_aliases()
        .into_iter()
        .flat_map(|(_, names, _)| names)
        .map(|s| {
            s.trim_matches(|c| c == '[' || c == ']')
                .split('.')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for key in &schema {
        assert!(
            sections.contains(key),
            "top-level table {key} has no section in the doc"
        );
    }
}
