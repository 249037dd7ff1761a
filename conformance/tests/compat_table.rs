//! Keeps the compatibility table in conformance/README.md true: every row
//! that claims support names the tests that prove it, and every named test
//! exists. A row without evidence cannot say "supported".

use std::fs;
use std::path::Path;

const STATUSES: [&str; 3] = ["supported", "partial", "not supported"];

struct Row {
    feature: String,
    status: String,
    evidence: Vec<String>,
}

fn table_rows(readme: &str) -> Vec<Row> {
    let start = readme
        .find("<!-- compat-table -->")
        .expect("conformance/README.md has a <!-- compat-table --> marker");
    readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(
                cells.len(),
                3,
                "a row needs feature | status | tests: {line}"
            );
            Row {
                feature: cells[0].clone(),
                status: cells[1].clone(),
                // Test names are the `quoted` parts of the cell.
                evidence: cells[2]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
            }
        })
        .collect()
}

fn read_dir_text(dir: &Path, ext: &str) -> String {
    let mut text = String::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == ext) {
            text.push_str(&fs::read_to_string(&path).unwrap());
        }
    }
    text
}

#[test]
fn every_supported_feature_in_the_compatibility_table_names_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let rust_tests = read_dir_text(&root.join("tests/s3"), "rs");
    let boto3_tests = read_dir_text(&root.join("boto3"), "py");
    let clients = fs::read_to_string(root.join("clients.sh")).unwrap();

    let rows = table_rows(&readme);
    assert!(rows.len() >= 10, "the table has only {} rows", rows.len());
    for row in &rows {
        assert!(
            STATUSES.contains(&row.status.as_str()),
            "{}: status must be one of {STATUSES:?}, not {:?}",
            row.feature,
            row.status
        );
        if row.status != "not supported" {
            assert!(
                !row.evidence.is_empty(),
                "{} says {} without a test",
                row.feature,
                row.status
            );
        }
        for test in &row.evidence {
            let found = if let Some(name) = test.strip_prefix("boto3::") {
                boto3_tests.contains(&format!("def {name}("))
            } else if let Some(step) = test.strip_prefix("clients.sh:") {
                clients.contains(step.trim())
            } else {
                let name = test.rsplit("::").next().unwrap_or(test);
                rust_tests.contains(&format!("async fn {name}("))
                    || rust_tests.contains(&format!("fn {name}("))
            };
            assert!(found, "{}: test {test} does not exist", row.feature);
        }
    }
}
