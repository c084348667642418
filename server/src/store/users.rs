//! Users: ids, localparts, passwords.

use super::{LoginError, RegisterError, TokenStore, User, idx};
use std::sync::Arc;

/// Checks a localpart the way Synapse does (`a-z`, `0-9`, `=_-./+`).
pub fn validate_localpart(localpart: &str) -> Result<(), RegisterError> {
    if localpart.is_empty() {
        return Err(RegisterError::InvalidUsername(
            "User ID cannot be empty".to_owned(),
        ));
    }
    if localpart.starts_with('_') {
        return Err(RegisterError::InvalidUsername(
            "User ID may not begin with _".to_owned(),
        ));
    }
    let ok = localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"=_-./+".contains(&b));
    if !ok || localpart.len() > 200 {
        return Err(RegisterError::InvalidUsername(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'".to_owned(),
        ));
    }
    Ok(())
}

impl TokenStore {
    /// Turns `alice`, `@alice:localhost` or `Alice` into the full user id.
    pub fn user_id_for(&self, user: &str) -> String {
        if user.starts_with('@') {
            user.to_owned()
        } else {
            format!("@{}:{}", user.to_lowercase(), self.server_name)
        }
    }

    pub(super) fn user_index(&self, user: &str) -> Option<u32> {
        let id = self.user_id_for(user);
        self.users_by_id
            .get(id.as_str())
            .or_else(|| self.users_by_id.get(id.to_lowercase().as_str()))
            .copied()
    }

    /// Whether the user exists.
    pub fn has_user(&self, user: &str) -> bool {
        self.user_index(user).is_some()
    }

    /// Creates a user. Returns the full user id.
    pub fn add_user(&mut self, localpart: &str, password: &str) -> Result<String, RegisterError> {
        validate_localpart(localpart)?;
        let user_id: Arc<str> = Arc::from(format!("@{localpart}:{}", self.server_name));
        if self.users_by_id.contains_key(&user_id) {
            return Err(RegisterError::UserInUse);
        }
        let i = idx(self.users.len());
        self.users.push(User {
            user_id: user_id.clone(),
            localpart: localpart.to_owned(),
            password: password.to_owned(),
            devices: Vec::new(),
        });
        self.users_by_id.insert(user_id.clone(), i);
        Ok(user_id.to_string())
    }

    /// Every user id.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(|u| u.user_id.to_string()).collect()
    }

    /// Checks a password; returns the full user id.
    pub fn check_password(&self, user: &str, password: &str) -> Result<String, LoginError> {
        let i = self.user_index(user).ok_or(LoginError::InvalidCredentials)?;
        let u = &self.users[i as usize];
        if u.password == password {
            Ok(u.user_id.to_string())
        } else {
            Err(LoginError::InvalidCredentials)
        }
    }
}
