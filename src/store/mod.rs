//! The till's SQLite store.
