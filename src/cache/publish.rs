//! Atomic publication: stage in `<key>.tmp.<pid>/`, fsync, rename onto `<key>/`.
