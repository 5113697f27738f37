use sea_orm::entity::prelude::*;

/// One operator console session. The cookie carries a secret token; the row holds only its
/// SHA-256, so a copy of the table signs nobody in. Written by the HTTP layer's console only.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sessions")]
pub struct Model {
    /// Public, short: the order log records it next to the operator's name
    /// (`admin:<name> (session <id>)`), so one session's actions can be traced.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// SHA-256 (hex) of the session's secret token.
    #[sea_orm(unique)]
    pub token_digest: String,
    /// The name given at sign-in.
    pub operator: String,
    pub created_at: DateTimeUtc,
    /// Refreshed as the session is used; a session unused for `console.idle_seconds` ends.
    pub last_seen_at: DateTimeUtc,
    /// `console.session_seconds` after sign-in, whatever the use.
    pub expires_at: DateTimeUtc,
    /// Signed out (this session, or every session at once).
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
