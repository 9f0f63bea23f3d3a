//! archives (todo)
