//! Steps the harness performs on the mock homeserver: expire, move the clock, rotate out of band,
//! revoke, add and clear faults, create rooms.

use super::account::alice;
use super::context::{Broken, Ctx, StepAt};
use super::kind::{StepKind, Validation};
use crate::record::StepOutcome;
use rotary_judge::duration::format_duration;
use rotary_server::FaultRule;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

fn ok(result: serde_json::Value) -> Result<StepOutcome, Broken> {
    Ok(StepOutcome::Ok { result })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Expire every access token of the user's devices now.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireAccessTokens {
    /// Whose (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
}

impl StepKind for ExpireAccessTokens {
    const SUMMARY: &'static str = "server: expire every access token of the user's devices now";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("user", "whose (default `alice`)")];

    fn summary(&self) -> String {
        self.user.clone()
    }

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        let mut labels = Vec::new();
        for d in ctx.devices_of(&self.user) {
            labels.extend(ctx.server.expire_session(&self.user, &d).unwrap_or_default());
        }
        ok(json!({"expired": labels}))
    }
}

/// Move the server clock forward.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// By how much (`"10m"`).
    #[serde(with = "rotary_judge::duration::required")]
    pub by: Duration,
}

impl StepKind for AdvanceClock {
    const SUMMARY: &'static str = "server: move the server clock forward (expiry without waiting)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("by", "how far, e.g. `\"10m\"`")];

    fn summary(&self) -> String {
        format!("by {}", format_duration(self.by))
    }

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        ctx.server.advance_clock(self.by);
        ok(json!({"advanced_ms": ms(self.by)}))
    }
}

/// Refresh the user's session out of band, as another copy of the client would.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateOutOfBand {
    /// Whose (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
    /// Also use the new access token once (so the old refresh token is no longer accepted).
    #[serde(default)]
    pub use_new: bool,
}

impl StepKind for RotateOutOfBand {
    const SUMMARY: &'static str =
        "server: refresh the user's session out of band, as another copy of the client would";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("user", "whose (default `alice`)"),
        (
            "use_new",
            "also use the new access token once, so the old refresh token is no longer accepted",
        ),
    ];

    fn summary(&self) -> String {
        format!("{}, use_new={}", self.user, self.use_new)
    }

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        let mut issued = Vec::new();
        for d in ctx.devices_of(&self.user) {
            if let Ok(i) = ctx.server.rotate_out_of_band(&self.user, &d, self.use_new) {
                issued.push(
                    json!({"device_id": d, "access_token": i.access_label, "refresh_token": i.refresh_label}),
                );
            }
        }
        ok(json!({"rotated": issued}))
    }
}

/// Revoke the user's sessions (every token of every device).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeSession {
    /// Whose (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
}

impl StepKind for RevokeSession {
    const SUMMARY: &'static str = "server: revoke the user's sessions (every token of every device)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("user", "whose (default `alice`)")];

    fn summary(&self) -> String {
        self.user.clone()
    }

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        let devices = ctx.devices_of(&self.user);
        for d in &devices {
            let _ = ctx.server.revoke_session(&self.user, d);
        }
        ok(json!({"revoked_devices": devices.len()}))
    }
}

/// Add a fault rule (same fields as a `[[fault]]` table).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddFault {
    /// The rule (boxed: it is much larger than the other steps).
    pub fault: Box<FaultRule>,
}

impl StepKind for AddFault {
    const SUMMARY: &'static str = "server: add a fault rule from now on";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("fault", "the rule, as in a `[[fault]]` table")];

    fn summary(&self) -> String {
        format!(
            "{} on {}",
            self.fault.action.kind(),
            self.fault.endpoint.as_deref().unwrap_or("any endpoint")
        )
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        self.fault.validate(v.endpoints).map_err(|e| e.to_string())
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        match ctx.server.add_fault((*self.fault).clone()) {
            Ok(id) => ok(json!({"fault_id": id})),
            Err(e) => Err(ctx.error(Some(at), format!("the fault rule was refused: {e}"))),
        }
    }
}

/// Remove every fault rule.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClearFaults {}

impl StepKind for ClearFaults {
    const SUMMARY: &'static str = "server: remove every fault rule";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        ctx.server.clear_faults();
        ok(json!({}))
    }
}

fn main_room() -> String {
    "main".to_owned()
}

/// Create a room joined by the user; later steps refer to it by `room`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// The handle later steps use (default `main`).
    #[serde(default = "main_room")]
    pub room: String,
    /// Creator and member (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
}

impl StepKind for CreateRoom {
    const SUMMARY: &'static str =
        "server: create a room joined by the user; later steps refer to it by its handle";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("room", "the handle later steps use (default `main`)"),
        ("user", "creator and member (default `alice`)"),
    ];

    fn summary(&self) -> String {
        format!("{} by {}", self.room, self.user)
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        v.rooms.insert(self.room.clone());
        Ok(())
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        match ctx.server.create_room(&self.user, Some(&self.room)) {
            Ok(id) => {
                ctx.rooms.insert(self.room.clone(), id.clone());
                ok(json!({"room_id": id}))
            }
            Err(e) => Err(ctx.error(Some(at), format!("cannot create the room: {e}"))),
        }
    }
}
