//! Devices (sessions): creation, lookup, deletion with their tokens, listings and expiry.

use super::{AccessGone, Device, DeviceInfo, OAuthGrant, RefreshGone, TokenStore, at_label, idx, rt_label};
use rand::RngExt;
use std::sync::Arc;

impl TokenStore {
    pub(super) fn device_for(
        &mut self,
        user: u32,
        device_id: Option<&str>,
        display_name: Option<&str>,
        oauth: Option<&OAuthGrant>,
    ) -> u32 {
        if let Some(id) = device_id
            && let Some(&d) = self.devices_by_key.get(&(user, Arc::from(id)))
            && !self.devices[d as usize].deleted
        {
            if display_name.is_some() {
                self.devices[d as usize].display_name = display_name.map(str::to_owned);
            }
            if let Some(grant) = oauth {
                self.devices[d as usize].oauth = Some(grant.clone());
            }
            return d;
        }
        let device_id: Arc<str> = match device_id {
            Some(id) => Arc::from(id),
            None => {
                let mut rng = rand::rng();
                let id: String = (0..10)
                    .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
                    .collect();
                Arc::from(id)
            }
        };
        let d = idx(self.devices.len());
        self.devices.push(Device {
            user,
            device_id: device_id.clone(),
            display_name: display_name.map(str::to_owned),
            access: Vec::new(),
            refresh: Vec::new(),
            deleted: false,
            oauth: oauth.cloned(),
        });
        self.devices_by_key.insert((user, device_id), d);
        self.users[user as usize].devices.push(d);
        d
    }

    pub(super) fn device_index(&self, user_id: &str, device_id: &str) -> Option<u32> {
        let u = self.user_index(user_id)?;
        self.devices_by_key
            .get(&(u, Arc::from(device_id)))
            .copied()
            .filter(|&d| !self.devices[d as usize].deleted)
    }

    /// Whether the user has this (undeleted) device.
    pub fn has_device(&self, user_id: &str, device_id: &str) -> bool {
        self.device_index(user_id, device_id).is_some()
    }

    /// Deletes a device and every token it holds. Returns whether it existed.
    pub fn delete_device(&mut self, user_id: &str, device_id: &str) -> bool {
        let Some(d) = self.device_index(user_id, device_id) else {
            return false;
        };
        self.delete_device_at(d);
        true
    }

    pub(super) fn delete_device_at(&mut self, d: u32) {
        if self.devices[d as usize].deleted {
            return;
        }
        for r in self.devices[d as usize].refresh.clone() {
            self.delete_refresh(r, RefreshGone::Revoked, Some(AccessGone::Revoked));
        }
        for a in self.devices[d as usize].access.clone() {
            self.revoke_access(a, AccessGone::Revoked);
        }
        let dev = &mut self.devices[d as usize];
        dev.deleted = true;
        let user = dev.user as usize;
        self.users[user].devices.retain(|&x| x != d);
    }

    /// Sets a device's display name. Returns whether the device exists.
    pub fn set_device_display_name(&mut self, user_id: &str, device_id: &str, name: Option<String>) -> bool {
        match self.device_index(user_id, device_id) {
            Some(d) => {
                self.devices[d as usize].display_name = name;
                true
            }
            None => false,
        }
    }

    /// Deletes every device of a user. Returns how many there were.
    pub fn delete_all_devices(&mut self, user_id: &str) -> usize {
        let Some(u) = self.user_index(user_id) else {
            return 0;
        };
        let devices: Vec<String> = self.users[u as usize]
            .devices
            .iter()
            .map(|&d| self.devices[d as usize].device_id.to_string())
            .collect();
        for d in &devices {
            self.delete_device(user_id, d);
        }
        devices.len()
    }

    /// Makes every live access token of a device expired as of now. Returns their labels.
    pub fn expire_access_tokens(&mut self, user_id: &str, device_id: &str, now_ms: i64) -> Vec<String> {
        let Some(d) = self.device_index(user_id, device_id) else {
            return Vec::new();
        };
        let mut labels = Vec::new();
        for a in self.devices[d as usize].access.clone() {
            let at = &mut self.access[a as usize];
            if at.valid_until_ms.is_none_or(|v| v >= now_ms) {
                at.valid_until_ms = Some(now_ms - 1);
                labels.push(at_label(a));
            }
        }
        labels
    }

    /// The newest refresh token of a device, if it has one.
    pub fn current_refresh_token(&self, user_id: &str, device_id: &str) -> Option<String> {
        let d = self.device_index(user_id, device_id)?;
        self.devices[d as usize]
            .refresh
            .iter()
            .map(|&r| &self.refresh[r as usize])
            .find(|rt| rt.next.is_none())
            .map(|rt| rt.token.to_string())
    }

    /// The devices of one user, or of every user when `user_id` is `None`.
    pub fn devices(&self, user_id: Option<&str>) -> Vec<DeviceInfo> {
        let users: Vec<u32> = match user_id {
            Some(u) => self.user_index(u).into_iter().collect(),
            None => (0..idx(self.users.len())).collect(),
        };
        let mut out = Vec::new();
        for u in users {
            for &d in &self.users[u as usize].devices {
                let dev = &self.devices[d as usize];
                out.push(DeviceInfo {
                    device_id: dev.device_id.to_string(),
                    user_id: self.users[u as usize].user_id.to_string(),
                    display_name: dev.display_name.clone(),
                    live_access_tokens: dev.access.iter().map(|&a| at_label(a)).collect(),
                    live_refresh_tokens: dev.refresh.iter().map(|&r| rt_label(r)).collect(),
                    current_refresh_token: dev
                        .refresh
                        .iter()
                        .find(|&&r| self.refresh[r as usize].next.is_none())
                        .map(|&r| rt_label(r)),
                    oauth_client_id: dev.oauth.as_ref().map(|g| g.client_id.clone()),
                });
            }
        }
        out
    }

    /// How many access and refresh tokens are still stored (not deleted), as Synapse's tables
    /// would count rows.
    pub fn live_token_counts(&self) -> (usize, usize) {
        (
            self.access.iter().filter(|a| a.gone.is_none()).count(),
            self.refresh.iter().filter(|r| r.gone.is_none()).count(),
        )
    }
}
