pub use super::order_items::Entity as OrderItems;
pub use super::order_logs::Entity as OrderLogs;
pub use super::orders::Entity as Orders;
pub use super::outbox::Entity as Outbox;
pub use super::payment_attempts::Entity as PaymentAttempts;
pub use super::skus::Entity as Skus;
pub use super::webhook_receipts::Entity as WebhookReceipts;
