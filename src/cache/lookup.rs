//! Find a published entry and check its superblock magic.
