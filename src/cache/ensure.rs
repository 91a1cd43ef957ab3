//! The lifecycle: lookup, lock, look again, build, publish.
