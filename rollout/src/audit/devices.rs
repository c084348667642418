//! The devices the audit created, with their newest tokens, so that every one is logged out at
//! the end — after success, an error or Ctrl-C.

use super::http::Http;
use hyper::Method;
use serde_json::json;
use std::sync::Mutex;

/// One device the audit created.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its id (as the server named it).
    pub device_id: String,
    /// The newest access token known for it.
    pub access_token: String,
    /// The newest refresh token known for it.
    pub refresh_token: Option<String>,
    /// Whether it was logged out already.
    pub logged_out: bool,
}

/// The audit's devices.
#[derive(Debug, Default)]
pub struct Devices(Mutex<Vec<Device>>);

impl Devices {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Device>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a new device.
    pub fn add(&self, device_id: &str, access_token: &str, refresh_token: Option<&str>) {
        self.lock().push(Device {
            device_id: device_id.to_owned(),
            access_token: access_token.to_owned(),
            refresh_token: refresh_token.map(str::to_owned),
            logged_out: false,
        });
    }

    /// Records the newest tokens of a device.
    pub fn update(&self, device_id: &str, access_token: &str, refresh_token: Option<&str>) {
        if let Some(d) = self.lock().iter_mut().find(|d| d.device_id == device_id) {
            d.access_token = access_token.to_owned();
            if let Some(rt) = refresh_token {
                d.refresh_token = Some(rt.to_owned());
            }
        }
    }

    /// Marks a device (or, with `None`, every device) logged out.
    pub fn logged_out(&self, device_id: Option<&str>) {
        for d in self.lock().iter_mut() {
            if device_id.is_none_or(|id| id == d.device_id) {
                d.logged_out = true;
            }
        }
    }

    /// How many devices the audit created.
    pub fn created(&self) -> usize {
        self.lock().len()
    }

    /// Logs out every device still logged in (refreshing first where its access token is no
    /// longer accepted); answers the ids of those that could not be logged out.
    pub async fn log_out_all(&self, http: &Http, refresh_path: Option<&str>) -> Vec<String> {
        let pending: Vec<Device> = self.lock().iter().filter(|d| !d.logged_out).cloned().collect();
        let mut left = Vec::new();
        for d in pending {
            let mut done = logout(http, &d.access_token).await;
            if !done
                && let (Some(rt), Some(path)) = (&d.refresh_token, refresh_path)
                && let Ok(a) = http
                    .send(
                        "cleanup",
                        Method::POST,
                        path,
                        None,
                        Some(&json!({"refresh_token": rt})),
                    )
                    .await
                && let Some(at) = a.str("access_token")
            {
                done = logout(http, at).await;
            }
            if done {
                self.logged_out(Some(&d.device_id));
                tracing::info!(device = d.device_id, "audit device logged out");
            } else {
                tracing::warn!(device = d.device_id, "could not log out an audit device");
                left.push(d.device_id.clone());
            }
        }
        left
    }
}

async fn logout(http: &Http, access_token: &str) -> bool {
    match http
        .send(
            "cleanup",
            Method::POST,
            "/_matrix/client/v3/logout",
            Some(access_token),
            Some(&json!({})),
        )
        .await
    {
        Ok(a) => a.ok(),
        Err(_) => false,
    }
}
