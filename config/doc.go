// Package config reads, checks and writes SQ's tenant configuration file:
// the Rust SQ v0.5.5 tenants.json format (a map of API token to tenant name
// and data dir), plus SQ's optional per-tenant quota, enabled flag and
// durability, and the admin and metrics tokens. It also makes new tenant
// tokens and the embedded development config that `sq host` serves without
// --config.
//
// The server (which serves a Config and reloads it) and the sq command
// (which generates, edits and shards config files) both import it; it
// imports only store, to check durability names.
//
// Entry points: Load and LoadServing read a file, Parse decodes bytes,
// Config.Validate checks one, WriteFile writes one safely, GenerateToken
// makes a token, EnsureDefault prepares the embedded default.
//
// # Caveats
//
//   - A Config holds every tenant's token in plain text: WriteFile writes
//     mode 0600, and LoadServing refuses a world-readable file unless told
//     otherwise. Messages name a token only by a digest fingerprint.
//   - Load makes relative data dirs absolute (relative to the file's
//     directory); Parse leaves them as written, so a Config that is
//     rewritten keeps them relative.
//   - WriteFile and WriteFileAtomic replace the file by rename: a reader
//     sees the old or the new file whole, never half of one, and a crash
//     leaves one of the two.
package config
