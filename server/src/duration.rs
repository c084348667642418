//! Human-friendly durations (`300ms`, `3s`, `5m`, `24h`): the format lives in `rotary_judge::duration`
//! (scenario files, config files, flags and the control API share it); re-exported here.

pub use rotary_judge::duration::{
    DurationError, format_duration, optional, parse_duration, parse_optional_duration, required,
};
