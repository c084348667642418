//! One simulated session: log in, a sync loop and an action loop until a logout or the stop, then
//! a last sync; log in again after a logout.

use super::events::{ActionKind, MessageFate, Outcome, SessionEvent};
use super::messages::{MessageBook, Sent, Sighting};
use super::profile::{Account, AppProfile};
use super::stats::{Counters, bump, drop_one};
use super::{Shared, Slot, lock};
use crate::soak::rng::SeededRng;
use futures_util::future::join_all;
use rotary_reference::{Client, ClientConfig, ClientError, ClientEvent, SyncBatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Attempts of the final sync at the end.
const DRAIN_ATTEMPTS: u32 = 3;
/// How long one final sync may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Set by the client's event sink when it ends the session.
#[derive(Debug, Default)]
struct LogoutFlag {
    done: AtomicBool,
    soft: AtomicBool,
    notify: Notify,
}

impl LogoutFlag {
    fn set(&self, soft: bool) {
        self.soft.store(soft, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// How a logged-in stretch of a session ended.
enum Ended {
    Stopped,
    LoggedOut,
}

/// One simulated session.
pub(crate) struct Session {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    account: Account,
    config: ClientConfig,
    rng: Mutex<SeededRng>,
    since: Mutex<Option<String>>,
    room: Mutex<Option<String>>,
    book: Mutex<MessageBook>,
    /// The body prefix of this session's messages (`tag/index/`).
    prefix: String,
}

impl Session {
    pub(crate) fn new(
        slot: Arc<Slot>,
        shared: Arc<Shared>,
        account: Account,
        config: ClientConfig,
        rng: SeededRng,
    ) -> Session {
        let prefix = format!("{}/{}/", shared.tag, slot.index);
        Session {
            slot,
            shared,
            account,
            config,
            rng: Mutex::new(rng),
            since: Mutex::new(None),
            room: Mutex::new(None),
            book: Mutex::new(MessageBook::default()),
            prefix,
        }
    }

    fn event(&self, e: &SessionEvent<'_>) {
        self.shared.observer.on_event(self.slot.index, e);
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn profile(&self) -> &AppProfile {
        &self.shared.profile
    }

    pub(crate) async fn run(self, start_at: Instant, mut stop: watch::Receiver<bool>) {
        if !sleep_until_or_stop(start_at, &mut stop).await {
            return;
        }
        let mut last: Option<(Arc<Client>, Arc<LogoutFlag>)> = None;
        loop {
            let Some((client, flag)) = self.login(&mut stop).await else {
                break;
            };
            last = Some((Arc::clone(&client), Arc::clone(&flag)));
            match self.live(&client, &flag, &mut stop).await {
                Ended::Stopped => break,
                Ended::LoggedOut => {
                    self.logged_out(&flag);
                    let delay = lock(&self.rng).jitter(self.profile().relogin_delay, 0.5, 1.5);
                    if !sleep_until_or_stop(Instant::now() + delay, &mut stop).await {
                        break;
                    }
                }
            }
        }
        // The end: a last sync shows the last messages; what is still unseen is lost.
        let drained = match &last {
            Some((client, flag)) if !flag.is_set() => self.drain(client).await,
            _ => false,
        };
        if let Some((_, flag)) = &last
            && !flag.is_set()
            && lock(&self.slot.current).take().is_some()
        {
            drop_one(&self.counters().alive);
        }
        self.finish(drained);
    }

    /// Logs in, trying again with a backoff until it works or the workload stops.
    async fn login(&self, stop: &mut watch::Receiver<bool>) -> Option<(Arc<Client>, Arc<LogoutFlag>)> {
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                return None;
            }
            let flag = Arc::new(LogoutFlag::default());
            let sink_flag = Arc::clone(&flag);
            let sink: rotary_reference::EventSink = Arc::new(move |event| {
                if let ClientEvent::LoggedOut { soft_logout } = event {
                    sink_flag.set(soft_logout);
                }
            });
            let client = match Client::new(self.config.clone(), sink) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    // A bad base URL: no attempt can work.
                    tracing::error!(error = %e, "cannot create the session's client");
                    self.event(&SessionEvent::LoginFailed { error: &e });
                    return None;
                }
            };
            let attempt = client.login(&self.account.user, &self.account.password, true, None);
            let result = tokio::select! {
                r = attempt => r,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match result {
                Ok(info) => {
                    bump(&self.counters().logins);
                    bump(&self.counters().alive);
                    self.event(&SessionEvent::LoggedIn {
                        user_id: &info.user_id,
                        device_id: &info.device_id,
                    });
                    *lock(&self.slot.current) = Some(info);
                    return Some((client, flag));
                }
                Err(e) => {
                    failures += 1;
                    bump(&self.counters().login_failures);
                    self.event(&SessionEvent::LoginFailed { error: &e });
                    let wait = backoff(failures, Duration::from_millis(500), Duration::from_secs(5));
                    if !sleep_until_or_stop(Instant::now() + wait, stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Bookkeeping of a logout the client signalled.
    fn logged_out(&self, flag: &LogoutFlag) {
        let soft = flag.soft.load(Ordering::Relaxed);
        bump(&self.counters().logouts);
        if soft {
            bump(&self.counters().soft_logouts);
        }
        if let Some(info) = lock(&self.slot.current).take() {
            drop_one(&self.counters().alive);
            self.event(&SessionEvent::LoggedOut {
                user_id: &info.user_id,
                device_id: &info.device_id,
                soft,
            });
        }
        if self.slot.suspend.send_replace(None).is_some() {
            // A suspension ends with the session.
        }
    }

    /// The logged-in life of the session: the sync loop and the action loop, until a logout or
    /// the stop.
    async fn live(&self, client: &Client, flag: &LogoutFlag, stop: &mut watch::Receiver<bool>) -> Ended {
        let loops = async {
            tokio::join!(self.sync_loop(client, flag), self.action_loop(client, flag));
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Ended::Stopped,
            _ = flag.wait() => Ended::LoggedOut,
            _ = loops => if flag.is_set() { Ended::LoggedOut } else { Ended::Stopped },
        }
    }

    /// Waits while the session is suspended.
    async fn while_suspended(&self) {
        let mut rx = self.slot.suspend.subscribe();
        let mut was_suspended = false;
        loop {
            let until = *rx.borrow_and_update();
            match until {
                Some(until) if until > Instant::now() => {
                    if !was_suspended {
                        was_suspended = true;
                        bump(&self.counters().suspended);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = rx.changed() => {}
                    }
                }
                _ => break,
            }
        }
        if was_suspended {
            drop_one(&self.counters().suspended);
        }
    }

    /// Resolves when a suspension starts.
    async fn suspension_starts(&self) {
        let mut rx = self.slot.suspend.subscribe();
        rx.borrow_and_update();
        loop {
            if rx.changed().await.is_err() {
                // The workload is gone: nothing will suspend this session any more.
                std::future::pending::<()>().await;
            }
            if rx.borrow().is_some_and(|until| until > Instant::now()) {
                return;
            }
        }
    }

    async fn sync_loop(&self, client: &Client, flag: &LogoutFlag) {
        let mut failures = 0u32;
        let background = self.slot.background;
        loop {
            self.while_suspended().await;
            if flag.is_set() {
                return;
            }
            let timeout = if background {
                Duration::ZERO
            } else {
                self.profile().sync_timeout
            };
            let since = lock(&self.since).clone();
            let request = client.sync_events(timeout, since.as_deref());
            let result = tokio::select! {
                r = request => Some(r),
                _ = self.suspension_starts() => None,
            };
            let Some(result) = result else {
                continue;
            };
            match result {
                Ok(batch) => {
                    failures = 0;
                    bump(&self.counters().syncs);
                    self.absorb(&batch);
                    *lock(&self.since) = Some(batch.next_batch);
                }
                Err(e) => {
                    let outcome = Outcome::of(&e);
                    if outcome == Outcome::LoggedOut {
                        flag.set(matches!(e, ClientError::LoggedOut { soft: true }));
                        return;
                    }
                    failures += 1;
                    bump(&self.counters().sync_failures);
                    self.event(&SessionEvent::SyncFailed { outcome });
                    tokio::time::sleep(backoff(
                        failures,
                        Duration::from_millis(250),
                        Duration::from_secs(4),
                    ))
                    .await;
                }
            }
            if background {
                let pause = lock(&self.rng).jitter(self.profile().background_sync_interval, 0.5, 1.5);
                tokio::time::sleep(pause).await;
            }
            self.expire_messages();
        }
    }

    async fn action_loop(&self, client: &Client, flag: &LogoutFlag) {
        let messaging = self.profile().messaging();
        loop {
            self.while_suspended().await;
            let (wait, roll) = {
                let mut rng = lock(&self.rng);
                (rng.jitter(self.profile().action_interval, 0.5, 1.5), rng.unit())
            };
            tokio::time::sleep(wait).await;
            self.while_suspended().await;
            if flag.is_set() {
                return;
            }
            let has_room = lock(&self.room).is_some();
            let outcomes = if messaging && !has_room {
                vec![self.create_room(client).await]
            } else if roll < self.profile().burst_share {
                let size = self.profile().burst_size;
                let calls = (0..size).map(|i| async move {
                    if i == 0 && messaging {
                        self.send(client).await
                    } else {
                        self.whoami(client).await
                    }
                });
                join_all(calls).await
            } else if messaging && roll < self.profile().burst_share + self.profile().send_share {
                vec![self.send(client).await]
            } else {
                vec![self.whoami(client).await]
            };
            if let Some(soft) = outcomes.iter().find_map(|o| match o {
                Err(ClientError::LoggedOut { soft }) => Some(*soft),
                _ => None,
            }) {
                flag.set(soft);
                return;
            }
        }
    }

    /// Records one finished request of the app.
    fn record<T>(&self, kind: ActionKind, started: Instant, result: &Result<T, ClientError>) {
        let outcome = Outcome::of_result(result);
        let c = self.counters();
        bump(&c.actions);
        if outcome != Outcome::Ok {
            bump(&c.actions_failed);
        }
        if outcome == Outcome::Unauthorized {
            bump(&c.unauthorized);
        }
        self.event(&SessionEvent::Action {
            kind,
            latency: started.elapsed(),
            outcome,
        });
    }

    async fn whoami(&self, client: &Client) -> Result<(), ClientError> {
        let started = Instant::now();
        let r = client.whoami().await.map(drop);
        self.record(ActionKind::Whoami, started, &r);
        r
    }

    async fn create_room(&self, client: &Client) -> Result<(), ClientError> {
        let started = Instant::now();
        let r = client.create_room(Some("rotary soak")).await;
        self.record(ActionKind::CreateRoom, started, &r);
        let r = r.map(|room| *lock(&self.room) = Some(room));
        r.map(drop)
    }

    async fn send(&self, client: &Client) -> Result<(), ClientError> {
        let Some(room) = lock(&self.room).clone() else {
            return self.whoami(client).await;
        };
        let started = Instant::now();
        let n = lock(&self.book).begin(started);
        let body = format!("{}{n}", self.prefix);
        let r = client.send_text(&room, &body).await.map(drop);
        lock(&self.book).settle(n, r.is_ok());
        if r.is_ok() {
            bump(&self.counters().messages_sent);
        } else {
            bump(&self.counters().messages_send_failed);
        }
        self.record(ActionKind::Send, started, &r);
        r
    }

    /// What a sync showed of this session's messages.
    fn absorb(&self, batch: &SyncBatch) {
        let Some(room) = lock(&self.room).clone() else {
            return;
        };
        let me = lock(&self.slot.current).as_ref().map(|i| i.user_id.clone());
        let Some(me) = me else {
            return;
        };
        for timeline in batch.rooms.iter().filter(|t| t.room_id == room) {
            let mine: Vec<u64> = timeline
                .events
                .iter()
                .filter(|e| e.sender == me)
                .filter_map(|e| {
                    e.body
                        .as_deref()?
                        .strip_prefix(self.prefix.as_str())?
                        .parse()
                        .ok()
                })
                .collect();
            let mut book = lock(&self.book);
            if timeline.limited {
                bump(&self.counters().timeline_gaps);
                let unverified = book.gap(mine.iter().copied().min());
                self.given_up(unverified, MessageFate::Unverified);
            }
            for n in mine {
                let c = self.counters();
                match book.seen(n) {
                    Sighting::First { after_error } => {
                        bump(&c.messages_seen);
                        if after_error {
                            bump(&c.messages_seen_after_error);
                        }
                    }
                    Sighting::Again => {
                        bump(&c.messages_duplicated);
                        self.event(&SessionEvent::Message {
                            n,
                            fate: MessageFate::Duplicated,
                        });
                    }
                    Sighting::Late => {
                        bump(&c.messages_late);
                        self.event(&SessionEvent::Message {
                            n,
                            fate: MessageFate::Late,
                        });
                    }
                    Sighting::Unknown => {}
                }
            }
        }
    }

    /// Counts messages given up: a confirmed send as `fate`; a failed one silently (it may never
    /// have been stored).
    fn given_up(&self, messages: Vec<(u64, Sent)>, fate: MessageFate) {
        for (n, state) in messages {
            if state != Sent::Confirmed {
                continue;
            }
            let counter = match fate {
                MessageFate::Lost => &self.counters().messages_lost,
                _ => &self.counters().messages_unverified,
            };
            bump(counter);
            self.event(&SessionEvent::Message { n, fate });
        }
    }

    fn expire_messages(&self) {
        let overdue = lock(&self.book).overdue(Instant::now(), self.profile().message_deadline);
        self.given_up(overdue, MessageFate::Lost);
    }

    /// The last sync at the end; whether it answered.
    async fn drain(&self, client: &Client) -> bool {
        if lock(&self.room).is_none() {
            return true;
        }
        for attempt in 1..=DRAIN_ATTEMPTS {
            let since = lock(&self.since).clone();
            let sync = client.sync_events(Duration::ZERO, since.as_deref());
            // A client that never gives up (a bug) must not hold the end of the workload.
            let Ok(result) = tokio::time::timeout(DRAIN_TIMEOUT, sync).await else {
                return false;
            };
            match result {
                Ok(batch) => {
                    self.absorb(&batch);
                    *lock(&self.since) = Some(batch.next_batch);
                    return true;
                }
                Err(e) if e.is_logout() => return false,
                Err(_) => tokio::time::sleep(Duration::from_millis(200) * attempt).await,
            }
        }
        false
    }

    /// Settles the messages still pending at the end.
    fn finish(&self, drained: bool) {
        let rest = lock(&self.book).gap(None);
        let fate = if drained {
            MessageFate::Lost
        } else {
            MessageFate::Unverified
        };
        self.given_up(rest, fate);
    }
}

/// `start` doubling per failure, at most `cap`.
fn backoff(failures: u32, start: Duration, cap: Duration) -> Duration {
    start
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(cap)
}

/// Sleeps until `at`; `false` if the stop came first.
pub(crate) async fn sleep_until_or_stop(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    let slept = tokio::select! {
        _ = tokio::time::sleep_until(at) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !*stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(1, ms(250), ms(4000)), ms(250));
        assert_eq!(backoff(3, ms(250), ms(4000)), ms(1000));
        assert_eq!(backoff(30, ms(250), ms(4000)), ms(4000));
    }
}
