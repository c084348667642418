//! The threshold parser: examples, errors as users see them (snapshots), and properties.

use super::*;
use proptest::prelude::*;

fn err(expr: &str) -> String {
    match expr.parse::<Threshold>() {
        Ok(t) => format!("parsed: {t}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn thresholds_parse() {
    let t: Threshold = "violations.must == 0".parse().expect("parses");
    assert_eq!(
        (t.metric.as_str(), t.op, t.value),
        ("violations.must", Op::Eq, 0.0)
    );
    let t: Threshold = "  refresh.p99<50ms ".parse().expect("parses");
    assert_eq!(
        (t.op, t.value, t.expr.as_str()),
        (Op::Lt, 50.0, "refresh.p99<50ms")
    );
    let t: Threshold = "memory.growth <= 1.5GiB".parse().expect("parses");
    assert_eq!(t.value, 1.5 * 1024.0 * 1024.0 * 1024.0);
    let t: Threshold = "action.max >= 2m".parse().expect("parses");
    assert_eq!(t.value, 120_000.0);
    assert!(t.holds(120_000.0) && !t.holds(1.0));
    assert_eq!(Threshold::defaults().len(), DEFAULT_THRESHOLDS.len());
}

#[test]
fn errors_point_at_the_character() {
    insta::assert_snapshot!(err("refresh.p99 < 50xs"), @r#"
    invalid threshold at character 17: unit "xs" does not fit refresh.p99: units are ms, s or m (a bare number is ms)
      refresh.p99 < 50xs
                      ^
    "#);
    insta::assert_snapshot!(err("refresh.p42 < 5"), @r#"
    invalid threshold at character 1: unknown metric "refresh.p42"; did you mean one of refresh.count, refresh.failed, refresh.rate, refresh.per_lifetime, refresh.p50, refresh.p90, refresh.p99, refresh.max?
      refresh.p42 < 5
      ^
    "#);
    insta::assert_snapshot!(err("logouts = 0"), @r"
    invalid threshold at character 9: a single '=': compare with '=='
      logouts = 0
              ^
    ");
    insta::assert_snapshot!(err("logouts == zero"), @r#"
    invalid threshold at character 12: expected a number, found 'z'
      logouts == zero
                 ^
    "#);
    insta::assert_snapshot!(err("logouts == 0 && messages.lost == 0"), @r#"
    invalid threshold at character 14: unexpected '&' after the threshold (one comparison per --threshold)
      logouts == 0 && messages.lost == 0
                   ^
    "#);
    insta::assert_snapshot!(err("logouts == 0MiB"), @r#"
    invalid threshold at character 13: unit "MiB" does not fit logouts: units are none: this metric is a plain number
      logouts == 0MiB
                  ^
    "#);
    insta::assert_snapshot!(err(""), @r"
    invalid threshold at character 1: empty: expected a metric, e.g. 'violations.must == 0'
      
      ^
    ");
}

proptest! {
    #[test]
    fn any_input_parses_or_points_inside_it(s in "\\PC{0,40}") {
        if let Err(e) = s.parse::<Threshold>() {
            prop_assert!(e.at <= s.chars().count());
        }
    }

    #[test]
    fn written_thresholds_read_back(
        m in prop::sample::select(crate::soak::metrics::catalogue().into_iter().map(|m| m.name).collect::<Vec<_>>()),
        op in prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
        v in 0u32..1_000_000,
        ws in " {0,2}",
    ) {
        let expr = format!("{m}{ws}{op}{ws}{v}");
        let t: Threshold = expr.parse().map_err(|e: ThresholdError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&t.metric, &m);
        prop_assert_eq!(t.op.symbol(), op);
        prop_assert_eq!(t.value, f64::from(v));
        let again: Threshold = t.to_string().parse().map_err(|e: ThresholdError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.value, t.value);
    }
}
