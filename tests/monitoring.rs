//! The alerts (`config/monitoring/prometheus-rule.yaml`) and the Grafana dashboard
//! (`config/monitoring/grafana-dashboard.json`) use only metrics binauthz exports, and every
//! expression parses as PromQL (the Greptime `promql-parser`, which follows Prometheus' grammar).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use prometheus_client::registry::Registry;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

fn config(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/monitoring")
            .join(file),
    )
    .unwrap()
}

/// Every series name binauthz's `/metrics` can carry, from the registered metrics' types.
fn exported() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let metrics = binauthz::metrics::Metrics::register(&mut registry);
    let leader = binauthz::metrics::LeaderMetrics::default();
    leader.register(&mut registry);
    // Labelled families appear once they have a series: give each one, as a running replica
    // does.
    metrics.registry_request(
        "registry.example.com",
        "ok",
        std::time::Duration::from_millis(3),
    );
    metrics.set_registry_signatures("cosign", Some(1));
    metrics.registry_sync_failed("cosign");
    metrics.lookup("found");
    leader.set_policy_violations(&[("require-build".to_owned(), 1)].into_iter().collect());
    leader.set_key_expiry("build", &[("KEY".to_owned(), 2_000_000_000)]);
    let text = binauthz::metrics::encode(&registry).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

struct Selectors(BTreeSet<String>);

impl ExprVisitor for Selectors {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(v) => {
                self.0.extend(v.name.clone());
            }
            Expr::MatrixSelector(m) => {
                self.0.extend(m.vs.name.clone());
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The metric names an expression reads; it must parse.
fn metrics_of(expr: &str) -> BTreeSet<String> {
    let ast = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut selectors = Selectors(BTreeSet::new());
    walk_expr(&mut selectors, &ast).unwrap();
    assert!(!selectors.0.is_empty(), "{expr} reads no metric");
    selectors.0
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported();
    assert!(
        exported.contains("binauthz_admission_decisions_total"),
        "{exported:?}"
    );
    assert!(
        exported.contains("binauthz_key_expiry_seconds"),
        "{exported:?}"
    );

    let rule: Value = serde_yaml::from_str(&config("prometheus-rule.yaml")).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    let mut alerts = Vec::new();
    let mut used = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap().to_owned();
            let expr = r["expr"].as_str().unwrap();
            for metric in metrics_of(expr) {
                assert!(
                    exported.contains(&metric),
                    "alert {name} reads {metric}, which binauthz does not export"
                );
                used.insert(metric);
            }
            assert!(r["annotations"]["summary"].is_string(), "{name}");
            alerts.push(name);
        }
    }
    // What the alerts must cover.
    for alert in [
        "BinauthzKeyExpiringSoon",
        "BinauthzPolicyViolations",
        "BinauthzWebhookErrors",
        "BinauthzWebhookSlow",
        "BinauthzIndexNotReady",
        "BinauthzWatchDown",
        "BinauthzRegistrySyncFailing",
    ] {
        assert!(
            alerts.iter().any(|a| a == alert),
            "{alert} missing: {alerts:?}"
        );
    }

    let dashboard: Value = serde_json::from_str(&config("grafana-dashboard.json")).unwrap();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for metric in metrics_of(expr) {
                assert!(
                    exported.contains(&metric),
                    "panel {} reads {metric}, which binauthz does not export",
                    panel["title"]
                );
                used.insert(metric);
            }
        }
        panels += 1;
    }
    assert!(panels >= 10);
    println!(
        "{} alerts and {panels} panels read {} of the {} series binauthz exports",
        alerts.len(),
        used.len(),
        exported.len()
    );
}
