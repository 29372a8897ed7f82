//! How the agent opens a file channel and which directories it holds.

use std::path::PathBuf;
use std::sync::Arc;

use super::{FileChannel, FileChannelConfig};
use crate::channels::{ChannelRef, ChannelSpec};

impl ChannelSpec for FileChannelConfig {
    fn open(
        &self,
        name: &str,
    ) -> Result<ChannelRef, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Arc::new(FileChannel::open(name, self.clone())?))
    }

    fn dirs(&self) -> Vec<PathBuf> {
        std::iter::once(&self.checkpoint_dir)
            .chain(&self.backup_checkpoint_dir)
            .chain(&self.data_dirs)
            .cloned()
            .collect()
    }
}
