//! This database's instance id, which labels every container this flvpc creates.

use crate::{Store, StoreError};

impl Store {
    /// This database's instance id: it labels every container this flvpc creates, so that
    /// another flvpc (or a test server) on the same Docker engine never adopts or removes them.
    ///
    /// `"key"` is quoted: a reserved word in MySQL (whose sessions take ANSI quotes, `dialect.rs`).
    pub async fn instance_id(&self) -> Result<String, StoreError> {
        if let Some(id) = crate::sql::query_scalar::<String>(
            self.dialect,
            "SELECT value FROM server_settings WHERE \"key\" = 'instance_id'",
        )
        .fetch_optional(&self.pool)
        .await?
        {
            return Ok(id);
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        let mut tx = self.begin_write().await?;
        let inserted =
            crate::sql::query(self.dialect, "INSERT INTO server_settings (\"key\", value) VALUES ('instance_id', $1)")
                .bind(&id)
                .execute(&mut *tx.tx)
                .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(id)
            }
            // Another server on the same database wrote its id first: that one is the instance's.
            Err(_) => {
                drop(tx);
                Ok(crate::sql::query_scalar(
                    self.dialect,
                    "SELECT value FROM server_settings WHERE \"key\" = 'instance_id'",
                )
                .fetch_one(&self.pool)
                .await?)
            }
        }
    }
}
