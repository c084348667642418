//! Validating a parsed scenario file into a [`Scenario`]: ids, `needs`, the server table, faults,
//! steps in order (names, rooms, capabilities) and checks resolved against the steps.

use super::parse::{ScenarioFile, err, header_line};
use super::{DEFAULT_CALL_TIMEOUT, DEFAULT_SCENARIO_TIMEOUT, Scenario, ScenarioError};
use crate::record::Level;
use crate::steps::{Action, Step, Validation};
use rotary_judge::{Check, Shape, StepShape};
use rotary_protocol::CAPABILITIES;
use rotary_server::{FaultRule, ServerConfig, endpoint_names};
use std::collections::HashSet;
use std::path::Path;

fn check_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && id.contains('.')
}

/// `step 3 (parallel)`, `expect 2 (refresh_count)`, `fault 1 (refresh)`.
fn entry(kind: &str, n: usize, what: Option<&str>) -> String {
    match what {
        Some(w) if !w.is_empty() => format!("{kind} {n} ({w})"),
        _ => format!("{kind} {n}"),
    }
}

pub(super) fn validate(raw: ScenarioFile, text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    if !check_id(&raw.id) {
        return Err(err(
            file,
            "id",
            format!(
                "{:?} is not a valid id: use lowercase letters, digits, `-`, `_`, with a group prefix such as `expiry.`",
                raw.id
            ),
        ));
    }
    if raw.title.trim().is_empty() {
        return Err(err(file, "title", "must not be empty"));
    }
    if raw.requirement.trim().is_empty() {
        return Err(err(file, "requirement", "must not be empty"));
    }
    if let Some(n) = raw.needs.iter().find(|n| !CAPABILITIES.contains(&n.as_str())) {
        return Err(err(
            file,
            "needs",
            format!("unknown capability {n:?}; known: {}", CAPABILITIES.join(", ")),
        ));
    }
    // Server: the profile, then the knobs.
    let server_table =
        serde_json::to_value(&raw.server).map_err(|e| err(file, "server", format!("cannot read: {e}")))?;
    let server = ServerConfig::default()
        .patched(&server_table)
        .map_err(|e| err(file, "server", e.to_string()))?;
    let endpoints = endpoint_names();
    let mut faults = Vec::new();
    for (i, t) in raw.fault.into_iter().enumerate() {
        let what = t.get("endpoint").and_then(|v| v.as_str()).map(str::to_owned);
        let field = entry("fault", i + 1, what.as_deref());
        let rule: FaultRule = toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| {
            err(
                file,
                &field,
                format!(
                    "{}{}",
                    header_line(text, "[[fault]]", i + 1),
                    e.message().trim_end()
                ),
            )
        })?;
        rule.validate(&endpoints)
            .map_err(|e| err(file, &field, e.to_string()))?;
        faults.push(rule);
    }
    let steps = steps(raw.step, &raw.needs, &endpoints, text, file)?;
    let shapes: Vec<StepShape> = steps
        .iter()
        .map(|s| StepShape {
            index: s.index,
            name: s.name.clone(),
            action: s.action.name().to_owned(),
            driver_call: s.action.driver_method().is_some(),
        })
        .collect();
    let rooms: Vec<String> = steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::CreateRoom(c) => Some(c.room.clone()),
            _ => None,
        })
        .collect();
    let shape = Shape {
        steps: &shapes,
        rooms: &rooms,
        endpoints: &endpoints,
    };
    let mut checks = Vec::new();
    for (i, table) in raw.expect.into_iter().enumerate() {
        let line = header_line(text, "[[expect]]", i + 1);
        let mut check = Check::from_table(&table).map_err(|e| {
            err(
                file,
                entry("expect", i + 1, Some(&e.name)),
                format!("{line}{}", e.message),
            )
        })?;
        check
            .resolve(&shape)
            .map_err(|m| err(file, entry("expect", i + 1, Some(check.name())), m))?;
        checks.push(check);
    }
    if checks.is_empty() && raw.level != Level::Info {
        return Err(err(
            file,
            "expect",
            "a must/should scenario needs at least one [[expect]]",
        ));
    }
    let mut tags = raw.tags;
    if let Some((prefix, _)) = raw.id.split_once('.')
        && !tags.iter().any(|t| t == prefix)
    {
        tags.insert(0, prefix.to_owned());
    }
    Ok(Scenario {
        file: file.to_owned(),
        file_id: raw.id.clone(),
        id: raw.id,
        auth: crate::steps::Auth::Legacy,
        mechanisms: vec![crate::steps::Auth::Legacy],
        aliases: Vec::new(),
        title: raw.title,
        level: raw.level,
        requirement: raw.requirement.trim().to_owned(),
        references: raw.references,
        tags,
        needs: raw.needs,
        timeout: raw.timeout.unwrap_or(DEFAULT_SCENARIO_TIMEOUT),
        call_timeout: raw.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        server_table,
        server,
        faults,
        steps,
        checks,
    })
}

/// The steps in order: each read, named uniquely, and validated against what came before it.
fn steps(
    tables: Vec<toml::Table>,
    needs: &[String],
    endpoints: &[&str],
    text: &str,
    file: &Path,
) -> Result<Vec<Step>, ScenarioError> {
    if tables.is_empty() {
        return Err(err(file, "step", "a scenario needs at least one [[step]]"));
    }
    let mut names = HashSet::new();
    let mut rooms = HashSet::new();
    let mut steps = Vec::new();
    for (i, mut table) in tables.into_iter().enumerate() {
        let index = i + 1;
        let what = table.get("do").and_then(|v| v.as_str()).map(str::to_owned);
        let field = entry("step", index, what.as_deref());
        let line = header_line(text, "[[step]]", index);
        let name = match table.remove("name") {
            None => None,
            Some(toml::Value::String(n)) => Some(n),
            Some(other) => {
                return Err(err(
                    file,
                    field,
                    format!("{line}`name` must be a string, not {other}"),
                ));
            }
        };
        let action = Action::from_table(&table).map_err(|m| err(file, &field, format!("{line}{m}")))?;
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            return Err(err(file, field, format!("the step name {n:?} is used twice")));
        }
        if let Some(m) = action.driver_method()
            && m != "session"
            && !needs.iter().any(|n| n == m)
        {
            return Err(err(
                file,
                field,
                format!("calls the driver's `{m}`, so `needs` must list {m:?}"),
            ));
        }
        let mut v = Validation {
            needs,
            rooms: &mut rooms,
            endpoints,
        };
        action.validate(&mut v).map_err(|m| err(file, &field, m))?;
        steps.push(Step { index, name, action });
    }
    Ok(steps)
}
