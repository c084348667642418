//! Steps that let real time pass: `sleep` (the client's clock cannot be moved, so waiting for it
//! takes real time).

use super::context::{Broken, Ctx, StepAt};
use super::kind::StepKind;
use crate::record::StepOutcome;
use rotary_judge::duration::format_duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Wait in real time.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long.
    #[serde(with = "rotary_judge::duration::required")]
    pub duration: Duration,
}

impl StepKind for Sleep {
    const SUMMARY: &'static str = "wait in real time (the client's own clock moves only this way)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("duration", "how long, e.g. `\"1500ms\"`")];

    fn summary(&self) -> String {
        format_duration(self.duration)
    }

    async fn run(&self, ctx: &mut Ctx, _: StepAt) -> Result<StepOutcome, Broken> {
        tokio::time::sleep(self.duration).await;
        ctx.waited += self.duration;
        Ok(StepOutcome::Ok {
            result: serde_json::json!({}),
        })
    }
}
