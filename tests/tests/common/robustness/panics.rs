//! The watch for panics on server threads.

use std::sync::{Mutex, Once};

/// Panics seen on server threads (tokio workers, the fuzz servers' runtime): tokio would swallow
/// them, so a hook records them and every test checks the list is empty.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the hook that records panics on tokio's worker threads (once per process).
pub fn watch_panics() {
    watch_panics_on(&[]);
}

/// [`watch_panics`], also recording panics on threads whose names start with one of `also` (the
/// fuzz servers' runtime). The first call in a process decides.
pub fn watch_panics_on(also: &'static [&'static str]) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            if thread.starts_with("tokio-runtime-worker") || also.iter().any(|t| thread.starts_with(t)) {
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{thread}: {info}"));
            }
            previous(info);
        }));
    });
}

/// Fails the test if any server thread panicked.
pub fn assert_no_server_panics() {
    let panics = SERVER_PANICS.lock().unwrap_or_else(|p| p.into_inner());
    assert!(panics.is_empty(), "server tasks panicked: {panics:#?}");
}
