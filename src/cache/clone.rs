//! FICLONE, or a sparse copy of the data extents.
