//! The domain stays pure: no database driver, HTTP framework, exporter or config loader
//! may reach it, directly or through another crate.

use std::process::Command;

const FORBIDDEN: [&str; 12] = [
    "diesel",
    "diesel-async",
    "tokio-postgres",
    "postgres-protocol",
    "deadpool",
    "actix-web",
    "actix-http",
    "hyper",
    "reqwest",
    "opentelemetry-otlp",
    "metrics-exporter-prometheus",
    "config",
];

#[test]
fn the_domain_depends_on_no_adapter_or_io_crate() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--package", "aurore-domain", "--edges", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"serde_json"), "the tree looks wrong:\n{tree}");
    let found: Vec<&str> = FORBIDDEN.iter().copied().filter(|name| crates.contains(name)).collect();
    assert!(found.is_empty(), "aurore-domain reaches {found:?}; move that code into an adapter behind a port");
}
